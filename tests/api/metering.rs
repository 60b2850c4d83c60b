//! Metering v2 through HTTP: modern usage details (cached, reasoning, audio), service tiers,
//! the Responses API, unknown models and bogus upstream numbers. Every expected cost is worked
//! out by hand from OpenAI's list prices (USD per 1M tokens) in the comment above it.

use catgate::store::usage::UsageRecord;
use serde_json::{json, Value};

use crate::helpers::*;

fn ask(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hi"}]})
}

/// Sends one request whose answer is `reply`; returns the usage row.
async fn metered(
    app: &TestApp,
    member: &str,
    path: &str,
    body: Value,
    reply: Reply,
) -> UsageRecord {
    let before = app.app.store.usage_records(10_000).await.unwrap().len();
    app.mock.push(reply);
    let resp = app
        .http
        .post(app.url(path))
        .bearer_auth(member)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    app.usage_rows(before + 1).await.pop().unwrap()
}

/// The token columns of a record, in api.md's order.
fn tokens(r: &UsageRecord) -> [u64; 8] {
    [
        r.prompt_tokens,
        r.cached_tokens,
        r.cache_write_tokens,
        r.audio_input_tokens,
        r.completion_tokens,
        r.reasoning_tokens,
        r.audio_output_tokens,
        r.total_tokens,
    ]
}

#[tokio::test]
async fn chat_with_cached_and_reasoning_tokens_on_the_priority_tier() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    let answer = json!({"id":"c","object":"chat.completion","model":"gpt-5-2025-08-07",
        "service_tier":"priority","choices":[],
        "usage":{"prompt_tokens":2000,"completion_tokens":300,"total_tokens":2300,
            "prompt_tokens_details":{"cached_tokens":1500,"audio_tokens":0},
            "completion_tokens_details":{"reasoning_tokens":256,"audio_tokens":0}}});
    let r = metered(
        &app,
        &member,
        "/v1/chat/completions",
        ask("gpt-5"),
        Reply::json(200, answer),
    )
    .await;
    assert_eq!(tokens(&r), [2000, 1500, 0, 0, 300, 256, 0, 2300]);
    assert_eq!(
        (r.model.as_str(), r.service_tier.as_deref()),
        ("gpt-5-2025-08-07", Some("priority"))
    );
    assert_eq!(r.usage_source.as_str(), "upstream");
    // gpt-5 priority: 500 uncached × 2.50 + 1500 cached × 0.25 + 300 out × 20.00
    //   = 1250 + 375 + 6000 = 7625 per 1M.
    assert_eq!(r.cost_text(), "0.007625");
}

#[tokio::test]
async fn chat_stream_on_the_flex_tier_strips_the_injected_usage_chunk() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    let chunk = json!({"id":"c","object":"chat.completion.chunk","model":"gpt-5-mini-2025-08-07",
        "service_tier":"flex","choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null});
    let usage = json!({"id":"c","object":"chat.completion.chunk","model":"gpt-5-mini-2025-08-07",
        "service_tier":"flex","choices":[],
        "usage":{"prompt_tokens":4000,"completion_tokens":500,"total_tokens":4500,
            "prompt_tokens_details":{"cached_tokens":3000},
            "completion_tokens_details":{"reasoning_tokens":200}}});
    let (a, b) = (format!("data: {chunk}\n\n"), format!("data: {usage}\n\n"));
    app.mock.push(Reply::sse(&[&a, &b, "data: [DONE]\n\n"]));
    let mut req = ask("gpt-5-mini");
    req["stream"] = json!(true);
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&member)
        .body(req.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), format!("{a}data: [DONE]\n\n"));
    assert_eq!(
        app.mock.received()[0].json()["stream_options"],
        json!({"include_usage": true})
    );
    let r = app.usage_rows(1).await.pop().unwrap();
    assert_eq!(tokens(&r), [4000, 3000, 0, 0, 500, 200, 0, 4500]);
    assert_eq!(r.service_tier.as_deref(), Some("flex"));
    assert!(r.stream);
    // gpt-5-mini flex: 1000 × 0.125 + 3000 × 0.0125 + 500 × 1.00 = 125 + 37.5 + 500 = 662.5.
    assert_eq!(r.cost_text(), "0.0006625");
}

#[tokio::test]
async fn responses_api_non_stream_with_cached_and_reasoning_tokens() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    let answer = json!({"id":"resp_1","object":"response","model":"o3-2025-04-16",
        "service_tier":"default","output":[{"type":"message","content":[{"type":"output_text","text":"Hi"}]}],
        "usage":{"input_tokens":5000,"input_tokens_details":{"cached_tokens":4096},
            "output_tokens":900,"output_tokens_details":{"reasoning_tokens":700},"total_tokens":5900}});
    let req = json!({"model":"o3","input":"Say hi"});
    let r = metered(
        &app,
        &member,
        "/v1/responses",
        req,
        Reply::json(200, answer),
    )
    .await;
    assert_eq!(tokens(&r), [5000, 4096, 0, 0, 900, 700, 0, 5900]);
    assert_eq!(r.route, "/v1/responses");
    // o3 standard: 904 × 2.00 + 4096 × 0.50 + 900 × 8.00 = 1808 + 2048 + 7200 = 11056.
    assert_eq!(r.cost_text(), "0.011056");
}

#[tokio::test]
async fn responses_api_stream_ending_incomplete_is_billed_from_its_usage() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    let created = r#"data: {"type":"response.created","response":{"id":"r","model":"gpt-5-2025-08-07","service_tier":"auto","usage":null}}"#;
    let delta = r#"data: {"type":"response.output_text.delta","delta":"Hi"}"#;
    let end = r#"data: {"type":"response.incomplete","response":{"id":"r","model":"gpt-5-2025-08-07","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"service_tier":"flex","usage":{"input_tokens":1000,"input_tokens_details":{"cached_tokens":600},"output_tokens":500,"output_tokens_details":{"reasoning_tokens":320},"total_tokens":1500}}}"#;
    let stream = format!("event: response.created\n{created}\n\nevent: response.output_text.delta\n{delta}\n\nevent: response.incomplete\n{end}\n\n");
    app.mock.push(Reply::sse(&[&stream]));
    let req = json!({"model":"gpt-5","input":"Say hi","stream":true,"service_tier":"flex"});
    let resp = app
        .http
        .post(app.url("/v1/responses"))
        .bearer_auth(&member)
        .body(req.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), stream, "forwarded untouched");
    assert_eq!(
        app.mock.received()[0].json(),
        req,
        "no stream_options on /v1/responses"
    );
    let r = app.usage_rows(1).await.pop().unwrap();
    assert_eq!(tokens(&r), [1000, 600, 0, 0, 500, 320, 0, 1500]);
    assert_eq!(r.service_tier.as_deref(), Some("flex"));
    // gpt-5 flex: 400 × 0.625 + 600 × 0.0625 + 500 × 5.00 = 250 + 37.5 + 2500 = 2787.5.
    assert_eq!(r.cost_text(), "0.0027875");
}

#[tokio::test]
async fn audio_tokens_have_their_own_prices() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    let answer = json!({"model":"gpt-4o-audio-preview-2025-06-03","choices":[],
        "usage":{"prompt_tokens":1200,"completion_tokens":400,"total_tokens":1600,
            "prompt_tokens_details":{"audio_tokens":100,"cached_tokens":0},
            "completion_tokens_details":{"audio_tokens":300,"reasoning_tokens":0}}});
    let r = metered(
        &app,
        &member,
        "/v1/chat/completions",
        ask("gpt-4o-audio-preview"),
        Reply::json(200, answer),
    )
    .await;
    assert_eq!(tokens(&r), [1200, 0, 0, 100, 400, 0, 300, 1600]);
    // 1100 text in × 2.50 + 100 audio in × 40 + 100 text out × 10 + 300 audio out × 80
    //   = 2750 + 4000 + 1000 + 24000 = 31750.
    assert_eq!(r.cost_text(), "0.03175");
}

#[tokio::test]
async fn cache_writes_and_configured_prices_and_multipliers() {
    let config = r#"
[pricing.models."team-model"]
input = "3"
cached_input = "0.30"
cache_write = "3.75"
output = "15"
[pricing.service_tiers]
priority = "1.5"
"#;
    let app = spawn_app_with(config).await;
    let (_, member) = app.with_team(1).await;
    let answer = json!({"model":"team-model","service_tier":"priority","choices":[],
        "usage":{"prompt_tokens":10000,"completion_tokens":500,"total_tokens":10500,
            "prompt_tokens_details":{"cached_tokens":6000,"cache_write_tokens":2000}}});
    let r = metered(
        &app,
        &member,
        "/v1/chat/completions",
        ask("team-model"),
        Reply::json(200, answer),
    )
    .await;
    assert_eq!(tokens(&r), [10000, 6000, 2000, 0, 500, 0, 0, 10500]);
    // 2000 × 3 + 6000 × 0.30 + 2000 × 3.75 + 500 × 15 = 6000 + 1800 + 7500 + 7500 = 22800
    //   per 1M = 0.0228, × 1.5 for priority (no priority table) = 0.0342.
    assert_eq!(r.cost_text(), "0.0342");
}

#[tokio::test]
async fn unknown_model_is_unpriced_never_zero_and_counted_in_reports() {
    let app = spawn_app().await;
    let (root, member) = app.with_team(1).await;
    let answer = chat_completion("mystery-model-1", "Hi", Some((100, 20)));
    let r = metered(
        &app,
        &member,
        "/v1/chat/completions",
        ask("mystery-model-1"),
        Reply::json(200, answer),
    )
    .await;
    assert_eq!(r.cost, None);
    assert_eq!(r.usage_source.as_str(), "upstream");
    // A priced request beside it: gpt-4o-mini (100 × 0.15 + 20 × 0.60) = 27 per 1M.
    let answer = chat_completion("gpt-4o-mini", "Hi", Some((100, 20)));
    metered(
        &app,
        &member,
        "/v1/chat/completions",
        ask("gpt-4o-mini"),
        Reply::json(200, answer),
    )
    .await;
    app.expect_get(
        "/1/usages",
        &root,
        200,
        json!([{"userId": 2, "totalUnit": 240, "cost": "0.000027"}]),
    )
    .await;
    let (status, rows) = app.get("/1/usages/detail?group_by=model", &root).await;
    assert_eq!(status, 200);
    assert_eq!(rows[0]["model"], "gpt-4o-mini");
    assert_eq!(
        (
            rows[0]["cost"].as_str(),
            rows[0]["unpricedRequests"].as_i64()
        ),
        (Some("0.000027"), Some(0))
    );
    assert_eq!(rows[1]["model"], "mystery-model-1");
    assert_eq!(
        (
            rows[1]["cost"].as_str(),
            rows[1]["unpricedRequests"].as_i64()
        ),
        (Some("0.000000"), Some(1))
    );
}

#[tokio::test]
async fn bogus_upstream_numbers_are_not_billed_and_reports_still_answer() {
    let app = spawn_app().await;
    let (root, member) = app.with_team(1).await;
    let mut answer = chat_completion("gpt-4o-mini", "Hello there!", None);
    answer["usage"] = json!({"prompt_tokens": u64::MAX, "completion_tokens": 1_000_000_000_000u64,
        "total_tokens": 5});
    let r = metered(
        &app,
        &member,
        "/v1/chat/completions",
        ask("gpt-4o-mini"),
        Reply::json(200, answer),
    )
    .await;
    // Treated as missing usage and estimated (o200k_base): "user" = 1, "Say hi" = 2 →
    // 3 + 1 + 2 + 3 (primer) = 9 prompt tokens; "Hello there!" = 3 completion tokens.
    assert_eq!(r.usage_source.as_str(), "estimated");
    assert_eq!(
        (r.prompt_tokens, r.completion_tokens, r.total_tokens),
        (9, 3, 12)
    );
    // 9 × 0.15 + 3 × 0.60 = 3.15 per 1M.
    assert_eq!(r.cost_text(), "0.00000315");
    // Details beyond their parent are clamped, never a negative cost.
    let answer = json!({"model":"gpt-4o-mini","choices":[],
        "usage":{"prompt_tokens":1000,"completion_tokens":10,"total_tokens":1010,
            "prompt_tokens_details":{"cached_tokens":5000,"audio_tokens":-3},
            "completion_tokens_details":{"reasoning_tokens":99}}});
    let r = metered(
        &app,
        &member,
        "/v1/chat/completions",
        ask("gpt-4o-mini"),
        Reply::json(200, answer),
    )
    .await;
    assert_eq!(tokens(&r), [1000, 1000, 0, 0, 10, 10, 0, 1010]);
    // 1000 cached × 0.075 + 10 × 0.60 = 81 per 1M.
    assert_eq!(r.cost_text(), "0.000081");
    let (status, _) = app.get("/1/usages", &root).await;
    assert_eq!(status, 200);
    let (status, _) = app.get("/1/me/usages", &member).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn failed_answers_cost_nothing_and_count_as_failed() {
    let app = spawn_app_with("[upstream]\nmax_attempts = 1").await;
    let (root, member) = app.with_team(1).await;
    app.mock.push(Reply::json(
        400,
        json!({"error": {"message": "bad", "type": "invalid_request_error"}}),
    ));
    let (status, _) = app
        .post("/v1/chat/completions", &member, ask("gpt-5"))
        .await;
    assert_eq!(status, 400);
    let r = app.usage_rows(1).await.pop().unwrap();
    assert_eq!(
        (r.usage_source.as_str(), r.cost_text(), r.total_tokens),
        ("none", "0".into(), 0)
    );
    let (_, rows) = app.get("/1/usages/detail?group_by=user", &root).await;
    assert_eq!(rows[0]["failedRequests"], 1);
    assert_eq!(rows[0]["requests"], 1);
}

#[tokio::test]
async fn a_priced_model_answered_without_tokens_is_unpriced_not_free() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    // gpt-4o-mini-tts is priced per token, but speech comes back as audio bytes: nothing to
    // count, so the record is unpriced rather than $0.
    let mut speech = Reply::json(200, Value::Null);
    speech.headers = vec![("content-type".into(), "audio/mpeg".into())];
    speech.parts = vec![Part::Bytes(bytes::Bytes::from_static(b"ID3 fake mp3"))];
    app.mock.push(speech);
    let body = json!({"model": "gpt-4o-mini-tts", "input": "hi", "voice": "alloy"});
    let (status, _) = app.post("/v1/audio/speech", &member, body).await;
    assert_eq!(status, 200);
    let r = app.usage_rows(1).await.pop().unwrap();
    assert_eq!(
        (r.model.as_str(), r.cost, r.total_tokens),
        ("gpt-4o-mini-tts", None, 0)
    );
}
