//! What metrics cost per request: the request-path part (model label, the request counter,
//! one first-byte observation) and the writer-thread part (one settled record).

use std::hint::black_box;
use std::time::Duration;

use catgate::metering::pricing::PriceTable;
use catgate::metrics::Metrics;
use catgate::route::Route;
use catgate::store::usage::{UsageRecord, UsageSource};
use criterion::{criterion_group, criterion_main, Criterion};

fn record() -> UsageRecord {
    UsageRecord {
        request_id: "01a21f43-5176-7029-8d0e-0afb413d6567".into(),
        user_id: 2,
        key_id: Some(1),
        model: "gpt-4o-mini".into(),
        route: "/v1/chat/completions".into(),
        prompt_tokens: 9,
        cached_tokens: 0,
        cache_write_tokens: 0,
        audio_input_tokens: 0,
        completion_tokens: 12,
        reasoning_tokens: 0,
        audio_output_tokens: 0,
        total_tokens: 21,
        service_tier: None,
        usage_source: UsageSource::Upstream,
        cost: Some("0.00000855".parse().unwrap_or_default()),
        stream: false,
        status: 200,
        latency_ms: 3,
        attempts: 1,
        created_at: "2026-11-27T23:07:15.190584Z".into(),
    }
}

fn metrics(c: &mut Criterion) {
    let Ok(prices) = PriceTable::builtin() else {
        panic!("built-in prices do not parse");
    };
    let m = Metrics::new(prices.models());
    let canonical = |name: &str| prices.lookup(name).map(|(n, _)| n);
    c.bench_function("metrics/request path (label + count + first byte)", |b| {
        b.iter(|| {
            let label = m.model(black_box(Some("gpt-4o-mini")), canonical);
            m.request(Route::ChatCompletions, black_box(200), label);
            m.upstream_first_byte(Route::ChatCompletions, Duration::from_micros(800));
        })
    });
    let r = record();
    c.bench_function("metrics/settled record (writer thread)", |b| {
        b.iter(|| {
            let label = m.model(Some(r.model.as_str()), canonical);
            m.settled(black_box(&r), label);
        })
    });
}

criterion_group!(benches, metrics);
criterion_main!(benches);
