//! `/v1` forwarding: auth, what goes upstream, what comes back, the usage row.

use serde_json::{json, Value};

use crate::helpers::*;

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hi"}]})
}

#[tokio::test]
async fn non_stream_chat_is_forwarded_verbatim_and_metered_exactly() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    let raw = r#"{"model":"gpt-4o-mini", "messages":[{"role":"user","content":"hi"}],"temperature":0.7,"extra_field":{"a":[1,2]}}"#;
    let resp = app
        .http
        .post(app.url("/v1/chat/completions?foo=bar"))
        .bearer_auth(&member)
        .header("content-type", "application/json")
        .header("openai-organization", "org-client")
        .header("x-custom", "kept")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.headers().contains_key("x-catgate-request-id"));
    let body: Value = resp.json_value().await;
    assert_eq!(
        body,
        chat_completion("gpt-4o-mini", "Hello there!", Some((9, 12)))
    );

    let got = &app.mock.received()[0];
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.query.as_deref(), Some("foo=bar"));
    assert_eq!(
        &got.body[..],
        raw.as_bytes(),
        "body forwarded byte for byte"
    );
    assert_eq!(got.header("authorization").as_deref(), Some("Bearer sk-1"));
    assert_eq!(got.header("x-custom").as_deref(), Some("kept"));
    assert_eq!(got.header("openai-organization"), None);
    assert!(
        !format!("{:?}", got.headers).contains(&member),
        "client token leaked upstream"
    );

    let rows = app.usage_rows(1).await;
    let r = &rows[0];
    assert_eq!(
        (r.prompt_tokens, r.completion_tokens, r.total_tokens),
        (9, 12, 21)
    );
    assert_eq!(r.model, "gpt-4o-mini");
    assert_eq!(r.cost_text(), "0.00000855");
    assert!(!r.estimated() && !r.stream);
    assert_eq!((r.status, r.attempts, r.user_id), (200, 1, 2));
    assert_eq!(r.route, "/v1/chat/completions");
}

/// Reads a JSON body into a Value (reqwest's json feature is off).
trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        serde_json::from_str(&self.text().await.unwrap()).unwrap()
    }
}

#[tokio::test]
async fn bad_tokens_get_openai_shaped_401() {
    let app = spawn_app().await;
    app.with_team(1).await;
    let expected_code = json!("invalid_api_key");
    for token in [None, Some("nope")] {
        let (status, body) = app
            .call("POST", "/v1/chat/completions", token, Some(chat("gpt-4o")))
            .await;
        assert_eq!(status, 401);
        assert_eq!(body["error"]["code"], expected_code);
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], Value::Null);
    }
    assert!(app.mock.received().is_empty());
}

#[tokio::test]
async fn azure_style_api_key_header_authenticates() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .header("api-key", &member)
        .body(chat("gpt-4o-mini").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(app.mock.received()[0].header("api-key"), None);
}

#[tokio::test]
async fn no_key_is_503_with_one_zero_cost_record_without_a_key() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(0).await;
    let (status, body) = app
        .post("/v1/chat/completions", &member, chat("gpt-4o"))
        .await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "no_upstream_key");
    // api.md: every request that passed auth writes one record; key null if none was tried.
    let rows = app.usage_rows(1).await;
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!((r.status, r.key_id, r.attempts), (503, None, 0));
    assert_eq!(
        (r.cost_text(), r.usage_source.as_str()),
        ("0".to_string(), "none")
    );
    assert!(app.mock.received().is_empty());
}

#[tokio::test]
async fn upstream_client_errors_pass_through_with_zero_cost_audit_row() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(2).await;
    let err = json!({"error":{"message":"bad model","type":"invalid_request_error","param":"model","code":"model_not_found"}});
    app.mock
        .push(Reply::json(404, err.clone()).with_header("x-request-id", "req-9"));
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&member)
        .body(chat("gpt-9").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-request-id"], "req-9");
    assert_eq!(resp.json_value().await, err);
    assert_eq!(
        app.mock.received().len(),
        1,
        "a 404 is the client's problem: no failover"
    );
    let rows = app.usage_rows(1).await;
    assert_eq!((rows[0].status, rows[0].total_tokens), (404, 0));
    assert_eq!(rows[0].cost_text(), "0");
    assert_eq!(rows[0].model, "gpt-9");
}

#[tokio::test]
async fn missing_usage_is_estimated_with_tiktoken() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    app.mock.push(Reply::json(
        200,
        chat_completion("gpt-3.5-turbo-0125", "Hello there!", None),
    ));
    let (status, _) = app
        .post("/v1/chat/completions", &member, chat("gpt-3.5-turbo"))
        .await;
    assert_eq!(status, 200);
    let r = &app.usage_rows(1).await[0];
    assert!(r.estimated());
    // cl100k_base: "user" = 1, "Say hi" = 2 → 3 + 1 + 2 + 3 (primer) = 9; "Hello there!" = 3.
    assert_eq!(
        (r.prompt_tokens, r.completion_tokens, r.total_tokens),
        (9, 3, 12)
    );
    assert_eq!(r.model, "gpt-3.5-turbo-0125");
    // gpt-3.5-turbo-0125 at $0.50 / $1.50 per 1M: (9 × 0.5 + 3 × 1.5) / 1M = 9 / 1M.
    assert_eq!(r.cost_text(), "0.000009");
    assert_eq!(r.usage_source.as_str(), "estimated");
}

#[tokio::test]
async fn embeddings_and_models_pass_through() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    app.mock.push(Reply::json(
        200,
        json!({"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1]}],
               "model":"text-embedding-3-small","usage":{"prompt_tokens":5,"total_tokens":5}}),
    ));
    let (status, _) = app
        .post(
            "/v1/embeddings",
            &member,
            json!({"model":"text-embedding-3-small","input":"hello"}),
        )
        .await;
    assert_eq!(status, 200);
    let r = &app.usage_rows(1).await[0];
    assert_eq!(
        (r.prompt_tokens, r.completion_tokens, r.total_tokens),
        (5, 0, 5)
    );
    assert_eq!(r.cost_text(), "0.0000001");

    let models = json!({"object":"list","data":[{"id":"gpt-4o","object":"model","created":1,"owned_by":"openai"}]});
    app.mock.push(Reply::json(200, models.clone()));
    let (status, body) = app.get("/v1/models", &member).await;
    assert_eq!((status, body), (200, models));
    let got = app.mock.received();
    assert_eq!(
        (got[1].method.as_str(), got[1].path.as_str()),
        ("GET", "/v1/models")
    );
    assert_eq!(
        got[1].header("authorization").as_deref(),
        Some("Bearer sk-1")
    );
}

#[tokio::test]
async fn multipart_and_binary_bodies_pass_untouched() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    let audio: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let mut speech = Reply::json(200, json!({}));
    speech.headers = vec![("content-type".into(), "audio/mpeg".into())];
    speech.parts = vec![Part::Bytes(audio.clone().into())];
    app.mock.push(speech);
    let resp = app
        .http
        .post(app.url("/v1/audio/speech"))
        .bearer_auth(&member)
        .body(json!({"model":"tts-1","input":"hi","voice":"alloy"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "audio/mpeg");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), audio);

    let multipart =
        b"--xyz\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--xyz--\r\n"
            .to_vec();
    app.mock.push(Reply::json(200, json!({"text":"hello"})));
    let resp = app
        .http
        .post(app.url("/v1/audio/transcriptions"))
        .bearer_auth(&member)
        .header("content-type", "multipart/form-data; boundary=xyz")
        .body(multipart.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = &app.mock.received()[1];
    assert_eq!(got.body.to_vec(), multipart);
    assert_eq!(
        got.header("content-type").as_deref(),
        Some("multipart/form-data; boundary=xyz")
    );
    let rows = app.usage_rows(2).await;
    assert!(rows.iter().all(|r| r.total_tokens == 0 && !r.estimated()));
}

#[tokio::test]
async fn oversized_request_is_413_in_openai_shape() {
    let app = spawn_app_with("[upstream]\nmax_request_bytes = 1000").await;
    let (_, member) = app.with_team(1).await;
    let big = json!({"model":"gpt-4o","messages":[{"role":"user","content":"x".repeat(2000)}]});
    let (status, body) = app.post("/v1/chat/completions", &member, big).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "request_too_large");
    assert!(app.mock.received().is_empty());
}

#[tokio::test]
async fn round_robin_is_exactly_even_over_three_keys() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(3).await;
    for _ in 0..30 {
        let (status, _) = app
            .post("/v1/chat/completions", &member, chat("gpt-4o-mini"))
            .await;
        assert_eq!(status, 200);
    }
    let mut counts = std::collections::BTreeMap::new();
    for r in app.mock.received() {
        *counts.entry(r.key()).or_insert(0) += 1;
    }
    let expected: std::collections::BTreeMap<String, i32> = [
        ("sk-1".to_string(), 10),
        ("sk-2".to_string(), 10),
        ("sk-3".to_string(), 10),
    ]
    .into();
    assert_eq!(counts, expected);
    assert_eq!(app.usage_rows(30).await.len(), 30);
}

#[tokio::test]
async fn keys_added_and_deleted_take_effect_immediately() {
    let app = spawn_app().await;
    let (root, member) = app.with_team(1).await;
    let k2 = app.add_key(&root, "key2", "sk-2").await;
    for _ in 0..2 {
        app.post("/v1/chat/completions", &member, chat("gpt-4o"))
            .await;
    }
    let (status, _) = app
        .call("DELETE", &format!("/1/keys/{k2}"), Some(&root), None)
        .await;
    assert_eq!(status, 200);
    for _ in 0..2 {
        app.post("/v1/chat/completions", &member, chat("gpt-4o"))
            .await;
    }
    let keys: Vec<String> = app.mock.received().iter().map(|r| r.key()).collect();
    assert_eq!(keys, ["sk-1", "sk-2", "sk-1", "sk-1"]);
}

/// A client that gives up on a non-streaming answer does not stop the upstream from finishing
/// (and billing) it: catgate reads the answer through and records its real usage — 9 prompt +
/// 12 completion tokens of gpt-4o-mini: 9 × 0.15/1M + 12 × 0.60/1M = $0.00000855.
#[tokio::test]
async fn client_leaving_before_a_plain_answer_is_billed_what_the_upstream_answered() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    app.mock
        .push(default_reply(&app.mock_req()).with_head_delay(std::time::Duration::from_secs(1)));
    let call = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&member)
        .timeout(std::time::Duration::from_millis(300))
        .body(chat("gpt-4o-mini").to_string())
        .send()
        .await;
    assert!(call.is_err(), "the client gave up");
    let rows = app.usage_rows(1).await;
    assert_eq!(
        (rows[0].status, rows[0].attempts, rows[0].total_tokens),
        (200, 1, 21)
    );
    assert_eq!(rows[0].cost.unwrap().to_string(), "0.00000855");
    assert_eq!(app.mock.received().len(), 1);
}

/// A stream is cut when its client leaves (the upstream stops generating too): one audit row,
/// status 499, nothing measured.
#[tokio::test]
async fn client_leaving_before_a_stream_starts_leaves_one_audit_row() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    app.mock.push(
        Reply::sse(
            &chat_stream("gpt-4o-mini", &["Hi"], Some((9, 1)))
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .with_head_delay(std::time::Duration::from_secs(2)),
    );
    let mut body = chat("gpt-4o-mini");
    body["stream"] = json!(true);
    let call = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&member)
        .timeout(std::time::Duration::from_millis(300))
        .body(body.to_string())
        .send()
        .await;
    assert!(call.is_err(), "the client gave up");
    let rows = app.usage_rows(1).await;
    assert_eq!(
        (rows[0].status, rows[0].attempts, rows[0].total_tokens),
        (499, 1, 0)
    );
    assert_eq!(
        app.mock.received().len(),
        1,
        "the upstream did see the request"
    );
}

#[tokio::test]
async fn paths_that_could_normalise_elsewhere_are_400_and_never_forwarded() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    let invalid_path = json!({"error": {
        "message": "Invalid request path: dot segments and backslashes are not allowed.",
        "type": "invalid_request_error", "param": null, "code": "invalid_path"}});
    for path in [
        "/v1/../x",
        "/v1/./models",
        "/v1/chat/..",
        "/v1/%2e%2e/x",
        "/v1/%2E./x",
        "/v1/.%2e/x",
        "/v1/%2e/models",
        "/v1/..%2fx",
        "/v1/x%2f..",
        "/v1/files/a%2f%2e%2e%2fb",
        "/v1/a\\b",
        "/v1/a%5cb",
        "/v1/a%5Cb",
    ] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: catgate\r\nauthorization: Bearer {member}\r\nconnection: close\r\n\r\n"
        );
        let resp = raw_request(app.addr, request.as_bytes()).await;
        assert_eq!((resp.status, &resp.body), (400, &invalid_path), "{path}");
    }
    assert!(app.mock.received().is_empty(), "{:?}", app.mock.received());

    // Dots inside a name and an encoded slash that makes no dot segment still pass.
    let request = format!(
        "GET /v1/models/gpt-4o..x%2fy HTTP/1.1\r\nhost: catgate\r\nauthorization: Bearer {member}\r\nconnection: close\r\n\r\n"
    );
    let resp = raw_request(app.addr, request.as_bytes()).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(app.mock.received()[0].path, "/v1/models/gpt-4o..x%2fy");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn compressed_answers_pass_through_intact_and_are_still_metered() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    let plain = chat_completion("gpt-4o-mini", "Hello there!", Some((9, 12))).to_string();
    let packed = gzip(plain.as_bytes());
    let mut reply = Reply::json(200, Value::Null).with_header("content-encoding", "gzip");
    reply.parts = vec![Part::Bytes(packed.clone().into())];
    app.mock.push(reply);
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&member)
        .body(chat("gpt-4o-mini").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    assert_eq!(
        resp.bytes().await.unwrap().to_vec(),
        packed,
        "bytes untouched"
    );
    assert!(app.mock.received()[0].header("accept-encoding").is_none());
    let r = &app.usage_rows(1).await[0];
    assert_eq!((r.prompt_tokens, r.completion_tokens), (9, 12));
    assert_eq!(r.usage_source.as_str(), "upstream");
    assert_eq!(r.cost_text(), "0.00000855");

    // A compressed stream, split mid-member: metered from the decompressed events.
    let events = chat_stream("gpt-4o-mini", &["Hel", "lo"], Some((9, 2))).concat();
    let packed = gzip(events.as_bytes());
    let (a, b) = packed.split_at(packed.len() / 2);
    let mut reply = Reply::sse(&[]).with_header("content-encoding", "gzip");
    reply.parts = vec![
        Part::Bytes(a.to_vec().into()),
        Part::Bytes(b.to_vec().into()),
    ];
    app.mock.push(reply);
    let mut req = chat("gpt-4o-mini");
    req["stream"] = json!(true);
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&member)
        .body(req.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.bytes().await.unwrap().to_vec(), packed);
    let r = &app.usage_rows(2).await[1];
    assert_eq!(
        (r.prompt_tokens, r.completion_tokens, r.stream),
        (9, 2, true)
    );
}
