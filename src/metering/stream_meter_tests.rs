use super::*;

const CHUNK: &str = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}"#;
const USAGE: &str = r#"{"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","service_tier":"default","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0}}}"#;
const FILTER: &str = r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}"#;

fn ev(data: &str) -> String {
    format!("data: {data}\n\n")
}

fn run(meter: &mut StreamMeter, pieces: &[&str]) -> String {
    let mut out = Vec::new();
    for p in pieces {
        out.extend_from_slice(&meter.on_chunk(Bytes::copy_from_slice(p.as_bytes())));
    }
    out.extend_from_slice(&meter.on_end());
    String::from_utf8(out).unwrap()
}

fn usage(p: u64, c: u64, t: u64) -> Option<Usage> {
    Some(Usage {
        prompt_tokens: p,
        completion_tokens: c,
        total_tokens: t,
        ..Usage::default()
    })
}

#[test]
fn responses_api_stream_usage_is_found_in_every_terminal_event() {
    let created = r#"{"type":"response.created","response":{"id":"r1","model":"gpt-5-2025-08-07","service_tier":"auto","usage":null}}"#;
    let delta = r#"{"type":"response.output_text.delta","delta":"Hi"}"#;
    for kind in ["completed", "incomplete", "failed"] {
        let end = format!(
            r#"{{"type":"response.{kind}","response":{{"id":"r1","model":"gpt-5-2025-08-07","service_tier":"flex","status":"{kind}","usage":{{"input_tokens":1000,"input_tokens_details":{{"cached_tokens":600}},"output_tokens":500,"output_tokens_details":{{"reasoning_tokens":320}},"total_tokens":1500}}}}}}"#
        );
        let mut meter = StreamMeter::new(false);
        let text = run(&mut meter, &[&ev(created), &ev(delta), &ev(&end)]);
        assert_eq!(text, [ev(created), ev(delta), ev(&end)].concat());
        let o = meter.finish();
        let want = Usage {
            prompt_tokens: 1000,
            cached_tokens: 600,
            completion_tokens: 500,
            reasoning_tokens: 320,
            total_tokens: 1500,
            ..Usage::default()
        };
        assert_eq!(o.usage, Some(want), "{kind}");
        assert_eq!(o.model.as_deref(), Some("gpt-5-2025-08-07"));
        // The tier served (named with the usage), not the one requested (`auto`).
        assert_eq!(o.service_tier.as_deref(), Some("flex"), "{kind}");
    }
}

#[test]
fn chat_stream_details_and_tier() {
    let last = r#"{"id":"c1","object":"chat.completion.chunk","model":"gpt-5-mini","service_tier":"priority","choices":[],"usage":{"prompt_tokens":2000,"completion_tokens":300,"total_tokens":2300,"prompt_tokens_details":{"cached_tokens":1500,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":256,"audio_tokens":0}}}"#;
    let first = CHUNK.replace("\"default\"", "\"priority\"");
    let mut meter = StreamMeter::new(true);
    let out = run(&mut meter, &[&ev(&first), &ev(last), &ev("[DONE]")]);
    assert_eq!(out, [ev(&first), ev("[DONE]")].concat());
    let o = meter.finish();
    let u = o.usage.unwrap();
    assert_eq!(
        (
            u.prompt_tokens,
            u.cached_tokens,
            u.completion_tokens,
            u.reasoning_tokens
        ),
        (2000, 1500, 300, 256)
    );
    assert_eq!(o.service_tier.as_deref(), Some("priority"));
}

#[test]
fn strips_only_the_usage_chunk_and_keeps_done() {
    let stream = [ev(FILTER), ev(CHUNK), ev(CHUNK), ev(USAGE), ev("[DONE]")].concat();
    for strip in [true, false] {
        let mut meter = StreamMeter::new(strip);
        let (a, b) = stream.split_at(stream.len() / 2);
        let out = run(&mut meter, &[a, b]);
        let want = if strip {
            stream.replace(&ev(USAGE), "")
        } else {
            stream.clone()
        };
        assert_eq!(out, want);
        let o = meter.finish();
        assert_eq!(o.usage, usage(9, 12, 21));
        assert_eq!(o.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        assert_eq!(o.service_tier.as_deref(), Some("default"));
        assert!(o.saw_done);
        assert_eq!(o.events, 5);
        assert_eq!(o.text.held_bytes(), 0);
    }
}

#[test]
fn unstripped_output_is_a_slice_of_the_input() {
    let mut meter = StreamMeter::new(false);
    let chunk = Bytes::from([ev(CHUNK), ev(CHUNK), ev(USAGE), "data: {\"par".into()].concat());
    let out = meter.on_chunk(chunk.clone());
    assert_eq!(out.len(), chunk.len() - "data: {\"par".len());
    assert_eq!(out.as_ptr(), chunk.as_ptr());
    assert_eq!(meter.on_chunk(Bytes::from_static(b"tial\n")), Bytes::new());
    assert_eq!(
        meter.on_chunk(Bytes::from_static(b"\n")),
        "data: {\"partial\n\n"
    );
}

#[test]
fn last_usage_wins_and_usage_inside_content_chunks_is_forwarded() {
    let with_content = CHUNK.replace(
        r#""usage":null"#,
        r#""usage": {"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}"#,
    );
    let stream = [ev(USAGE), ev(&with_content)].concat();
    let mut meter = StreamMeter::new(true);
    let out = run(&mut meter, &[&stream]);
    assert_eq!(out, ev(&with_content));
    assert_eq!(meter.finish().usage, usage(1, 1, 2));
}

#[test]
fn malformed_and_odd_events_pass_through() {
    let stream = [
        ": ping\n\n".to_string(),
        ev(r#"{"choices":[],"usage":{"prompt_tokens":1,"#),
        ev(r#"{"choices":[],"usage":{"prompt_tokens":-1}}"#),
        "event: x\ndata: {\"model\":\"\"}\n\n".into(),
        ev(CHUNK),
    ]
    .concat();
    let mut meter = StreamMeter::new(true);
    let out = run(&mut meter, &[&stream, "data: [DONE]"]);
    // The usage-only chunk catgate asked for is removed even when its numbers are bogus.
    let bogus = ev(r#"{"choices":[],"usage":{"prompt_tokens":-1}}"#);
    assert_eq!(out, stream.replace(&bogus, "") + "data: [DONE]");
    let o = meter.finish();
    assert_eq!((o.usage, o.saw_done, o.events), (None, true, 6));
    assert_eq!(o.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(o.text.into_text(), "Hi");
}

#[test]
fn kept_text_is_bounded() {
    let mut meter = StreamMeter::new(false);
    let big = ev(&format!("{{\"x\":\"{}\"}}", "a".repeat(1 << 20)));
    for _ in 0..6 {
        meter.on_chunk(Bytes::from(big.clone()));
    }
    // Payloads without text are dropped when reduced to text.
    assert!(meter.finish().text.held_bytes() <= 2 << 20);
}

#[test]
fn implausible_usage_is_not_taken_and_the_text_is_kept() {
    let bogus = r#"{"choices":[],"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":1000000000000,"total_tokens":5}}"#;
    let mut meter = StreamMeter::new(true).with_token_bound(10_000_000);
    let out = run(&mut meter, &[&ev(CHUNK), &ev(bogus), &ev("[DONE]")]);
    assert_eq!(out, [ev(CHUNK), ev("[DONE]")].concat());
    let o = meter.finish();
    assert_eq!(o.usage, None);
    assert_eq!(o.text.into_text(), "Hi");
}
