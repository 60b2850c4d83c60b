//! A client that stops sending its request body gets a 408 and loses the connection.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

/// Headers announcing 100 body bytes, then only 10 of them.
fn stalled(path: &str, token: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: catgate\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"model\":\""
    )
    .into_bytes()
}

#[tokio::test]
async fn stalled_bodies_get_408_after_the_timeout_and_the_connection_closes() {
    let app = spawn_app_with("[upstream]\nbody_read_timeout_secs = 1").await;
    let (root, member) = app.with_team(1).await;
    let proxy_timeout = json!({"error": {
        "message": "The request body was not received in time.",
        "type": "invalid_request_error", "param": null, "code": "request_timeout"}});
    let admin_timeout = json!({"error": "request body not received in time"});
    for (path, token, body) in [
        ("/v1/chat/completions", &member, &proxy_timeout),
        ("/1/users", &root, &admin_timeout),
    ] {
        let started = Instant::now();
        // Returns only once catgate closed the connection.
        let resp = raw_request(app.addr, &stalled(path, token)).await;
        let waited = started.elapsed();
        assert_eq!((resp.status, &resp.body), (408, body), "{path}");
        assert!(
            resp.head.contains("connection: close"),
            "{path}: {}",
            resp.head
        );
        assert!(
            waited >= Duration::from_millis(950) && waited < Duration::from_secs(5),
            "{path}: answered after {waited:?}"
        );
    }
    assert!(app.mock.received().is_empty());
    let (status, users) = app.get("/1/users", &root).await;
    assert_eq!(status, 200);
    assert_eq!(users.as_array().map(Vec::len), Some(2), "{users}");
}
