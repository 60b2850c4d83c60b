//! SSE streaming: event-by-event delivery, the injected usage chunk, disconnects, stalls.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

fn stream_req(model: &str, include_usage: Option<bool>) -> Value {
    let mut v = json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "Say hi"}]});
    if let Some(u) = include_usage {
        v["stream_options"] = json!({"include_usage": u});
    }
    v
}

async fn open_stream(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    resp
}

/// Streams the mock's answer: the usage chunk only when the request asked for it.
fn openai_like_stream(r: &Received) -> Reply {
    let wants = r.json()["stream_options"]["include_usage"] == json!(true);
    let events = chat_stream(
        "gpt-4o-mini-2024-07-18",
        &["Hel", "lo", "!"],
        wants.then_some((11, 3)),
    );
    Reply::sse(&events.iter().map(String::as_str).collect::<Vec<_>>())
}

#[tokio::test]
async fn injected_usage_chunk_is_metered_and_hidden_from_the_client() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    app.mock.on(openai_like_stream);
    let text = open_stream(&app, &member, stream_req("gpt-4o-mini", None))
        .await
        .text()
        .await
        .unwrap();
    let expected = chat_stream("gpt-4o-mini-2024-07-18", &["Hel", "lo", "!"], None).concat();
    assert_eq!(
        text, expected,
        "client sees exactly the stream it asked for"
    );
    assert_eq!(
        app.mock.received()[0].json()["stream_options"],
        json!({"include_usage": true})
    );

    let r = &app.usage_rows(1).await[0];
    assert_eq!(
        (r.prompt_tokens, r.completion_tokens, r.total_tokens),
        (11, 3, 14)
    );
    assert!(r.stream && !r.estimated());
    assert_eq!(r.model, "gpt-4o-mini-2024-07-18");
    // 11 × 0.00015/1000 + 3 × 0.0006/1000
    assert_eq!(r.cost_text(), "0.00000345");
}

#[tokio::test]
async fn client_that_asked_for_usage_keeps_the_usage_chunk() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    app.mock.on(openai_like_stream);
    let req = stream_req("gpt-4o-mini", Some(true));
    let text = open_stream(&app, &member, req.clone())
        .await
        .text()
        .await
        .unwrap();
    let expected =
        chat_stream("gpt-4o-mini-2024-07-18", &["Hel", "lo", "!"], Some((11, 3))).concat();
    assert_eq!(text, expected);
    assert_eq!(app.mock.received()[0].json(), req, "nothing rewritten");
    assert_eq!(app.usage_rows(1).await[0].total_tokens, 14);
}

#[tokio::test]
async fn first_event_arrives_before_upstream_sends_the_last() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    let events = chat_stream("gpt-4o", &["one", "two"], Some((5, 2)));
    let mut reply = Reply::sse(&[events[0].as_str()]);
    reply.parts.push(Part::WaitRelease);
    for e in &events[1..] {
        reply.parts.push(Part::Bytes(e.clone().into()));
    }
    app.mock.push(reply);
    let mut resp = open_stream(&app, &member, stream_req("gpt-4o", None)).await;
    let first = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .expect("first event was held back")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], events[0].as_bytes());
    app.mock.release();
    let mut rest = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert_eq!(
        String::from_utf8(rest).unwrap(),
        format!("{}{}", events[1], events[3])
    );
    let r = &app.usage_rows(1).await[0];
    assert_eq!((r.prompt_tokens, r.completion_tokens), (5, 2));
}

#[tokio::test]
async fn events_split_across_reads_crlf_and_comments_are_handled() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    let usage = r#"{"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":1,"total_tokens":8}}"#;
    let stream = format!(
        ": keep-alive\r\n\r\ndata: {{\"id\":\"c\",\"model\":\"gpt-4o\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"Hi\"}}}}]}}\r\n\r\ndata: {usage}\r\n\r\ndata: [DONE]\r\n\r\n"
    );
    // Cut the stream into 7-byte pieces so events and even "\r\n" pairs straddle reads.
    let pieces: Vec<String> = stream
        .as_bytes()
        .chunks(7)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    app.mock.push(Reply::sse(
        &pieces.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let text = open_stream(&app, &member, stream_req("gpt-4o", None))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(text, stream.replace(&format!("data: {usage}\r\n\r\n"), ""));
    let r = &app.usage_rows(1).await[0];
    assert_eq!(
        (r.prompt_tokens, r.completion_tokens, r.total_tokens),
        (7, 1, 8)
    );
}

#[tokio::test]
async fn stream_without_usage_is_estimated_from_the_streamed_text() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    // An upstream that ignores stream_options (as some compatible servers do).
    let events = chat_stream("gpt-3.5-turbo", &["Hello", " there", "!"], None);
    app.mock.push(Reply::sse(
        &events.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let text = open_stream(&app, &member, stream_req("gpt-3.5-turbo", None))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(text, events.concat());
    let r = &app.usage_rows(1).await[0];
    assert!(r.estimated());
    // Prompt as in proxy.rs (9); "Hello there!" = 3 cl100k tokens.
    assert_eq!((r.prompt_tokens, r.completion_tokens), (9, 3));
}

#[tokio::test]
async fn malformed_sse_is_forwarded_and_estimated() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    let raw = "data: {not json\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"ok\"}}]}\n\nevent: x\n\ndata: [DONE]\n\n";
    app.mock.push(Reply::sse(&[raw]));
    let text = open_stream(&app, &member, stream_req("gpt-4o", None))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(text, raw);
    let r = &app.usage_rows(1).await[0];
    assert!(r.estimated());
    assert_eq!(r.completion_tokens, 1, "\"ok\" is one o200k token");
}

#[tokio::test]
async fn last_usage_wins_never_a_sum() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    let u1 = r#"data: {"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"a"}}],"usage":{"prompt_tokens":4,"completion_tokens":1,"total_tokens":5}}"#;
    let u2 = r#"data: {"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}"#;
    app.mock.push(Reply::sse(&[
        &format!("{u1}\n\n"),
        &format!("{u2}\n\n"),
        "data: [DONE]\n\n",
    ]));
    open_stream(&app, &member, stream_req("gpt-4o", Some(true)))
        .await
        .text()
        .await
        .unwrap();
    let r = &app.usage_rows(1).await[0];
    assert_eq!(
        (r.prompt_tokens, r.completion_tokens, r.total_tokens),
        (4, 2, 6)
    );
}

#[tokio::test]
async fn client_disconnect_mid_stream_writes_one_record() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    let events = chat_stream("gpt-4o", &["Hello", " world"], Some((6, 2)));
    let mut reply = Reply::sse(&[events[0].as_str()]);
    reply.parts.push(Part::Stall);
    app.mock.push(reply);
    let mut resp = open_stream(&app, &member, stream_req("gpt-4o", None)).await;
    let first = resp.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], events[0].as_bytes());
    drop(resp);
    let rows = app.usage_rows(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        app.app.store.usage_records(10).await.unwrap().len(),
        1,
        "exactly one record"
    );
    let r = &rows[0];
    assert!(r.estimated() && r.stream);
    assert_eq!(r.completion_tokens, 1, "\"Hello\" streamed so far");
    assert_eq!(r.prompt_tokens, 9, "o200k: 3 + user(1) + Say hi(2) + 3");
}

#[tokio::test]
async fn stalled_upstream_stream_ends_after_idle_timeout_and_is_recorded() {
    let app = spawn_app_with("[upstream]\nidle_timeout_secs = 0.3").await;
    let (_, member) = app.with_team(1).await;
    let events = chat_stream("gpt-4o", &["Hi"], None);
    let mut reply = Reply::sse(&[events[0].as_str()]);
    reply.parts.push(Part::Stall);
    app.mock.push(reply);
    let resp = open_stream(&app, &member, stream_req("gpt-4o", None)).await;
    let result = tokio::time::timeout(Duration::from_secs(5), resp.text())
        .await
        .unwrap();
    assert!(
        result.is_err(),
        "the client sees the stream break, not a clean end"
    );
    let r = &app.usage_rows(1).await[0];
    assert!(r.estimated());
    assert_eq!(r.completion_tokens, 1);
}
