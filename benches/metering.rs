//! Benchmarks of the metering hot paths: the per-chunk stream meter, the per-request price
//! lookup, and the fallback prompt count.

use std::hint::black_box;

use bytes::Bytes;
use catgate::metering::pricing::PriceTable;
use catgate::metering::stream_meter::StreamMeter;
use catgate::metering::tokenizer::Tokenizer;
use catgate::metering::usage::Usage;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// A 200-chunk chat completion stream as OpenAI sends it with `include_usage`: every chunk has
/// `"usage":null`, then a usage-only chunk and `[DONE]`.
fn chat_stream() -> Vec<u8> {
    let mut s = String::new();
    let head = r#"{"id":"chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_e2bde53e6e","choices":[{"index":0,"delta":"#;
    for i in 0..200 {
        let delta = match i {
            0 => r#"{"role":"assistant","content":"","refusal":null}"#.to_string(),
            _ => format!(r#"{{"content":" word{i}"}}"#),
        };
        let finish = if i == 199 { r#""stop""# } else { "null" };
        s += &format!(
            "data: {head}{delta},\"logprobs\":null,\"finish_reason\":{finish}}}],\"usage\":null}}\n\n"
        );
    }
    s += r#"data: {"id":"chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_e2bde53e6e","choices":[],"usage":{"prompt_tokens":1024,"completion_tokens":200,"total_tokens":1224,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#;
    s += "\n\ndata: [DONE]\n\n";
    s.into_bytes()
}

/// Cuts the stream the way reads from a TCP/TLS socket do: mostly whole events, sometimes
/// several at once, sometimes a piece of one.
fn tcp_pieces(stream: &[u8]) -> Vec<Bytes> {
    let sizes = [1369, 260, 97, 4096, 333, 16, 1200, 731];
    let mut pieces = Vec::new();
    let mut rest = stream;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at((*size).min(rest.len()));
        pieces.push(Bytes::copy_from_slice(piece));
        rest = tail;
    }
    pieces
}

fn stream_meter(c: &mut Criterion) {
    let stream = chat_stream();
    let pieces = tcp_pieces(&stream);
    let mut group = c.benchmark_group("stream_meter");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    for strip in [false, true] {
        let name = if strip {
            "200_chunks_strip"
        } else {
            "200_chunks"
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut meter = StreamMeter::new(strip);
                let mut forwarded = 0;
                for piece in &pieces {
                    forwarded += meter.on_chunk(piece.clone()).len();
                }
                forwarded += meter.on_end().len();
                black_box((forwarded, meter.finish()))
            })
        });
    }
    group.finish();
}

fn pricing(c: &mut Criterion) {
    let table = PriceTable::builtin().expect("built-in prices");
    let usage = Usage {
        cached_tokens: 768,
        reasoning_tokens: 64,
        ..Usage::plain(1024, 200)
    };
    let models = [
        "gpt-4o",
        "gpt-4o-mini-2024-07-18",
        "gpt-35-turbo",
        "unknown-model",
    ];
    let mut group = c.benchmark_group("pricing");
    for model in models {
        group.bench_function(format!("lookup_cost/{model}"), |b| {
            b.iter(|| table.cost(black_box(model), black_box(Some("flex")), black_box(&usage)))
        });
    }
    group.finish();
}

/// A chat request of about 1k prompt tokens.
fn chat_request() -> Vec<u8> {
    let sentence = "The quarterly report shows steady growth across all regions, with particular \
                    strength in the enterprise segment and encouraging early results abroad. ";
    let messages = serde_json::json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a careful analyst. Answer briefly."},
            {"role": "user", "content": sentence.repeat(23)},
            {"role": "assistant", "content": sentence.repeat(14)},
            {"role": "user", "name": "analyst", "content": sentence.repeat(6)},
        ],
    });
    serde_json::to_vec(&messages).unwrap_or_default()
}

fn tokenizer(c: &mut Criterion) {
    let tok = Tokenizer::new().unwrap();
    let body = chat_request();
    println!(
        "prompt_tokens of the bench request: {}",
        tok.prompt_tokens("gpt-4o", &body)
    );
    c.bench_function("tokenizer/prompt_tokens_1k_chat", |b| {
        b.iter(|| tok.prompt_tokens(black_box("gpt-4o"), black_box(&body)))
    });
}

criterion_group!(benches, stream_meter, pricing, tokenizer);
criterion_main!(benches);
