//! Failover before the first byte, cooldowns, timeouts.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

fn chat() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
}

fn rate_limited() -> Reply {
    Reply::json(
        429,
        json!({"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}),
    )
}

async fn key_cooldowns(app: &TestApp, root: &str) -> Vec<(String, u64)> {
    let (_, keys) = app.get("/1/keys", root).await;
    keys.as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["name"].as_str().unwrap().to_string(),
                k["cooldownSecs"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn rate_limited_key_fails_over_and_rests_for_retry_after() {
    let app = spawn_app().await;
    let (root, member) = app.with_team(3).await;
    app.mock.on(|r| {
        if r.key() == "sk-1" {
            rate_limited().with_header("retry-after", "120")
        } else {
            default_reply(r)
        }
    });
    let (status, body) = app.post("/v1/chat/completions", &member, chat()).await;
    assert_eq!(status, 200, "{body}");
    let keys: Vec<String> = app.mock.received().iter().map(|r| r.key()).collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], "sk-1");
    assert_ne!(keys[1], "sk-1");
    let cooldowns = key_cooldowns(&app, &root).await;
    assert_eq!(cooldowns[0].0, "key1");
    assert!((119..=120).contains(&cooldowns[0].1), "{cooldowns:?}");
    assert_eq!((cooldowns[1].1, cooldowns[2].1), (0, 0));

    // While key1 rests, traffic goes to the others only.
    for _ in 0..4 {
        app.post("/v1/chat/completions", &member, chat()).await;
    }
    let later: Vec<String> = app.mock.received()[2..].iter().map(|r| r.key()).collect();
    assert!(later.iter().all(|k| k != "sk-1"), "{later:?}");

    let rows = app.usage_rows(5).await;
    assert_eq!(
        (rows[0].attempts, rows[0].status, rows[0].total_tokens),
        (2, 200, 21)
    );
    assert_eq!(
        rows.len(),
        5,
        "one record per client request, not per attempt"
    );
}

#[tokio::test]
async fn revoked_key_leaves_rotation_and_is_not_logged_in_clear() {
    let app = spawn_app().await;
    let (root, member) = app.with_team(2).await;
    app.mock.on(|r| {
        if r.key() == "sk-1" {
            Reply::json(401, json!({"error":{"message":"Incorrect API key","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}))
        } else {
            default_reply(r)
        }
    });
    for _ in 0..3 {
        let (status, _) = app.post("/v1/chat/completions", &member, chat()).await;
        assert_eq!(status, 200);
    }
    let keys: Vec<String> = app.mock.received().iter().map(|r| r.key()).collect();
    assert_eq!(keys, ["sk-1", "sk-2", "sk-2", "sk-2"]);
    let (_, listed) = app.get("/1/keys", &root).await;
    assert_eq!(listed[0]["status"], "disabled", "{listed}");
}

#[tokio::test]
async fn all_keys_failing_returns_the_last_upstream_answer() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(3).await;
    app.mock.on(|_| {
        Reply::json(
            500,
            json!({"error":{"message":"boom","type":"server_error","param":null,"code":null}}),
        )
    });
    let (status, body) = app.post("/v1/chat/completions", &member, chat()).await;
    assert_eq!(status, 500);
    assert_eq!(body["error"]["message"], "boom");
    assert_eq!(app.mock.received().len(), 3, "max_attempts = 3");
    let r = &app.usage_rows(1).await[0];
    assert_eq!((r.status, r.attempts, r.total_tokens), (500, 3, 0));
    assert_eq!(r.cost_text(), "0");
}

#[tokio::test]
async fn attempts_are_bounded_by_config() {
    let app = spawn_app_with("[upstream]\nmax_attempts = 2").await;
    let (_, member) = app.with_team(3).await;
    app.mock.on(|_| rate_limited());
    let (status, body) = app.post("/v1/chat/completions", &member, chat()).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(app.mock.received().len(), 2);
}

#[tokio::test]
async fn slow_first_byte_times_out_and_fails_over() {
    let app = spawn_app_with("[upstream]\nfirst_byte_timeout_secs = 0.3").await;
    let (_, member) = app.with_team(2).await;
    app.mock.on(|r| {
        if r.key() == "sk-1" {
            default_reply(r).with_head_delay(Duration::from_secs(3))
        } else {
            default_reply(r)
        }
    });
    let (status, _) = app.post("/v1/chat/completions", &member, chat()).await;
    assert_eq!(status, 200);
    assert_eq!(app.usage_rows(1).await[0].attempts, 2);
}

#[tokio::test]
async fn timeout_on_every_key_is_504_in_openai_shape() {
    let app = spawn_app_with("[upstream]\nfirst_byte_timeout_secs = 0.2").await;
    let (_, member) = app.with_team(1).await;
    app.mock
        .on(|r| default_reply(r).with_head_delay(Duration::from_secs(3)));
    let (status, body) = app.post("/v1/chat/completions", &member, chat()).await;
    assert_eq!(status, 504);
    assert_eq!(body["error"]["code"], "upstream_timeout");
    let r = &app.usage_rows(1).await[0];
    assert_eq!((r.status, r.total_tokens), (504, 0));
}

#[tokio::test]
async fn unreachable_upstream_is_502_and_fails_over() {
    let app = spawn_app().await;
    let root = app.init_root().await;
    let (_, member) = app.add_user(&root, "bob").await;
    // A port nobody listens on: bind, note it, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let body = json!({"key":"sk-dead","name":"dead","endpoint": format!("http://{dead}")});
    assert_eq!(app.post("/1/keys", &root, body).await.0, 200);
    let (status, body) = app.post("/v1/chat/completions", &member, chat()).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["code"], "upstream_error");
    assert!(!body.to_string().contains("sk-dead"));
    app.add_key(&root, "live", "sk-live").await;
    let (status, _) = app.post("/v1/chat/completions", &member, chat()).await;
    assert_eq!(status, 200);
}

/// A 200 head that promises a body and then drops the connection before sending a byte.
fn dies_after_headers() -> Reply {
    let mut reply = Reply::json(200, json!(null)).with_header("content-length", "500");
    reply.parts = vec![];
    reply
}

#[tokio::test]
async fn an_upstream_dying_after_its_headers_fails_over_before_the_client_sees_anything() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(2).await;
    app.mock.push(dies_after_headers());
    let (status, body) = app.post("/v1/chat/completions", &member, chat()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        chat_completion("gpt-4o-mini", "Hello there!", Some((9, 12)))
    );
    let r = &app.usage_rows(1).await[0];
    assert_eq!((r.status, r.attempts), (200, 2));
}

#[tokio::test]
async fn an_upstream_dying_after_its_headers_on_the_last_key_is_a_clean_502() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    app.mock.push(dies_after_headers());
    let (status, body) = app.post("/v1/chat/completions", &member, chat()).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "upstream_error", "{body}");
    let r = &app.usage_rows(1).await[0];
    assert_eq!((r.status, r.cost_text()), (502, "0".to_string()));
}
