//! Large request bodies are spooled to a temp file and streamed upstream (memory stays
//! bounded), byte for byte, also when failover resends them.

use serde_json::{json, Value};

use crate::helpers::*;

/// 5 MiB of multipart upload, well past the in-memory limit.
fn big_multipart() -> Vec<u8> {
    let mut body = b"--xyz\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\n\r\n".to_vec();
    body.extend((0..5 * 1024 * 1024).map(|i: u32| (i * 31 % 251) as u8));
    body.extend_from_slice(b"\r\n--xyz--\r\n");
    body
}

async fn upload(app: &TestApp, member: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = app
        .http
        .post(app.url("/v1/audio/transcriptions"))
        .bearer_auth(member)
        .header("content-type", "multipart/form-data; boundary=xyz")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_large_upload_is_streamed_upstream_byte_for_byte_and_resent_on_failover() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(2).await;
    let body = big_multipart();
    app.mock
        .push(Reply::json(500, json!({"error": {"message": "busy"}})));
    app.mock.push(Reply::json(200, json!({"text": "hello"})));
    let (status, answer) = upload(&app, &member, body.clone()).await;
    assert_eq!((status, answer), (200, json!({"text": "hello"})));
    let got = app.mock.received();
    assert_eq!(got.len(), 2, "failed over once");
    for attempt in &got {
        assert_eq!(attempt.body.len(), body.len());
        assert!(attempt.body[..] == body[..], "bytes changed");
        assert_eq!(
            attempt.header("content-type").as_deref(),
            Some("multipart/form-data; boundary=xyz")
        );
    }
    let r = &app.usage_rows(1).await[0];
    assert_eq!((r.status, r.attempts), (200, 2));
}

#[tokio::test]
async fn a_large_streaming_chat_body_still_gets_include_usage() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    let long = "word ".repeat(400_000); // 2 MB of prompt
    let req = json!({"model": "gpt-4o-mini", "stream": true,
        "messages": [{"role": "user", "content": long}]});
    let raw = req.to_string();
    let events = chat_stream("gpt-4o-mini", &["Hi"], Some((400_008, 1)));
    app.mock.push(Reply::sse(
        &events.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&member)
        .body(raw.clone())
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains("\"usage\":{"),
        "the injected usage chunk is hidden"
    );
    let sent = &app.mock.received()[0].body;
    let prefix = br#"{"stream_options":{"include_usage":true},"#;
    assert_eq!(&sent[..prefix.len()], prefix);
    assert_eq!(
        &sent[prefix.len()..],
        &raw.as_bytes()[1..],
        "the rest as sent"
    );
    let r = &app.usage_rows(1).await[0];
    assert_eq!((r.prompt_tokens, r.completion_tokens), (400_008, 1));
    assert_eq!(r.usage_source.as_str(), "upstream");
}

#[tokio::test]
async fn uploads_over_the_limit_are_413_even_when_spooled() {
    let app = spawn_app_with("[upstream]\nmax_request_bytes = 3000000").await;
    let (_, member) = app.with_team(1).await;
    let (status, body) = upload(&app, &member, big_multipart()).await;
    assert_eq!(status, 413, "{body}");
    assert!(app.mock.received().is_empty());
}
