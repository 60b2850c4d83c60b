//! Graceful shutdown: requests in flight finish and every usage record is written.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn shutdown_with_streams_in_flight_loses_no_record() {
    let mut app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    let events = chat_stream("gpt-4o", &["a", "b"], Some((3, 2)));
    app.mock.on(move |_| {
        let mut reply = Reply::sse(&[events[0].as_str()]);
        reply.parts.push(Part::Sleep(Duration::from_millis(300)));
        for e in &events[1..] {
            reply.parts.push(Part::Bytes(e.clone().into()));
        }
        reply
    });
    let mut clients = Vec::new();
    for _ in 0..5 {
        let http = app.http.clone();
        let url = app.url("/v1/chat/completions");
        let member = member.clone();
        clients.push(tokio::spawn(async move {
            let resp = http
                .post(url)
                .bearer_auth(member)
                .body(json!({"model":"gpt-4o","stream":true,"messages":[]}).to_string())
                .send()
                .await
                .unwrap();
            resp.text().await.unwrap()
        }));
    }
    // Let every request reach the upstream, then shut down mid-stream.
    while app.mock.received().len() < 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.shutdown().await;
    for c in clients {
        assert!(
            c.await.unwrap().ends_with("data: [DONE]\n\n"),
            "in-flight stream completed"
        );
    }
    // After serve() returned, the recorder is drained: rows are already in the database.
    let rows = app.app.store.usage_records(100).await.unwrap();
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r.total_tokens == 5 && !r.estimated()));
}
