//! Key health: keys the upstream refuses are disabled (persisted) and probed back, rate limits
//! cool a key for the upstream's Retry-After, admins switch keys by hand, and a member whose
//! request found only refused keys gets catgate's 502, never the upstream's 401.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::admin_users::assert_time;
use crate::helpers::*;

/// Probes after 1 s, then 2 s: a probe is due within seconds in these tests.
const FAST_PROBES: &str = "[upstream]\nkey_probe_first_secs = 1\nkey_probe_max_secs = 2";

const REJECTED_MESSAGE: &str = "The upstream rejected catgate's API keys for this request \
    (revoked, unpaid or out of quota). This is not about your token; ask your admin to check \
    the upstream keys.";

fn chat() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
}

fn rejected_body() -> Value {
    json!({"error": {"message": REJECTED_MESSAGE, "type": "upstream_error",
        "code": "upstream_key_rejected", "param": null}})
}

/// OpenAI's answer to a revoked key; like the real one, it quotes the key.
fn unauthorized(secret: &str) -> Reply {
    Reply::json(
        401,
        json!({"error":{"message":format!("Incorrect API key provided: {secret}."),
            "type":"invalid_request_error","param":null,"code":"invalid_api_key"}}),
    )
}

fn rate_limited() -> Reply {
    Reply::json(
        429,
        json!({"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}),
    )
}

/// The key named `name` as GET /1/keys shows it.
async fn key(app: &TestApp, root: &str, name: &str) -> Value {
    let (status, keys) = app.get("/1/keys", root).await;
    assert_eq!(status, 200, "{keys}");
    keys.as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("no key {name} in {keys}"))
        .clone()
}

/// `(status, statusReason)` of a key object.
fn health(k: &Value) -> (&str, &str) {
    (
        k["status"].as_str().unwrap_or("<none>"),
        k["statusReason"].as_str().unwrap_or("<null>"),
    )
}

/// Seconds from now until the RFC 3339 time `t`.
fn secs_until(t: &Value) -> f64 {
    assert_time(t);
    let at = OffsetDateTime::parse(t.as_str().unwrap(), &Rfc3339).unwrap();
    (at - OffsetDateTime::now_utc()).as_seconds_f64()
}

/// Requests the mock received on `path` with `secret`.
fn hits(app: &TestApp, path: &str, secret: &str) -> usize {
    app.mock
        .received()
        .iter()
        .filter(|r| r.path == path && r.key() == secret)
        .count()
}

/// Polls GET /1/keys until key `name` has `status` (60 s at most: a bound, not a speed test).
async fn wait_status(app: &TestApp, root: &str, name: &str, status: &str) -> Value {
    for _ in 0..600 {
        let k = key(app, root, name).await;
        if k["status"] == status {
            return k;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "key {name} never became {status}: {}",
        key(app, root, name).await
    );
}

#[tokio::test]
async fn a_revoked_key_is_disabled_the_member_gets_502_and_a_probe_brings_it_back() {
    let app = spawn_app_with(FAST_PROBES).await;
    let (root, member) = app.with_team(1).await;
    let accepted = Arc::new(AtomicBool::new(false));
    let flag = accepted.clone();
    app.mock.on(move |r| {
        if r.key() == "sk-1" && !flag.load(Ordering::SeqCst) {
            unauthorized(&r.key())
        } else if r.path == "/v1/models" {
            Reply::json(200, json!({"object":"list","data":[]}))
        } else {
            default_reply(r)
        }
    });

    let (status, body) = app.post("/v1/chat/completions", &member, chat()).await;
    assert_eq!((status, &body), (502, &rejected_body()));
    let rows = app.usage_rows(1).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].status, rows[0].key_id, rows[0].attempts),
        (502, Some(1), 1)
    );
    assert_eq!(rows[0].cost_text(), "0");

    let k1 = key(&app, &root, "key1").await;
    assert_eq!(
        health(&k1),
        ("disabled", "the upstream rejected the key (401)")
    );
    // The first probe is due a second after the rejection (or, if one already failed, two
    // seconds after that one).
    let until = secs_until(&k1["statusUntil"]);
    assert!((-5.0..=3.0).contains(&until), "{k1}");
    assert_eq!(k1["cooldownSecs"], 0);

    // Every key that could serve is disabled: 502 again, the upstream is not even asked.
    let (status, body) = app.post("/v1/chat/completions", &member, chat()).await;
    assert_eq!((status, &body), (502, &rejected_body()));
    assert_eq!(hits(&app, "/v1/chat/completions", "sk-1"), 1);
    let rows = app.usage_rows(2).await;
    assert_eq!(
        (rows[1].status, rows[1].key_id, rows[1].attempts),
        (502, None, 0)
    );

    // A second key keeps the team served.
    app.add_key(&root, "key2", "sk-2").await;
    for _ in 0..3 {
        let (status, body) = app.post("/v1/chat/completions", &member, chat()).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(hits(&app, "/v1/chat/completions", "sk-1"), 1);
    assert_eq!(hits(&app, "/v1/chat/completions", "sk-2"), 3);

    // The upstream takes the key again: a probe notices and puts it back in rotation.
    accepted.store(true, Ordering::SeqCst);
    let k1 = wait_status(&app, &root, "key1", "active").await;
    assert_eq!(
        (&k1["statusReason"], &k1["statusUntil"]),
        (&Value::Null, &Value::Null)
    );
    let probe = app
        .mock
        .received()
        .into_iter()
        .rfind(|r| r.path == "/v1/models")
        .unwrap();
    assert_eq!(
        (probe.method.as_str(), probe.key().as_str()),
        ("GET", "sk-1")
    );
    for _ in 0..4 {
        let (status, _) = app.post("/v1/chat/completions", &member, chat()).await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        hits(&app, "/v1/chat/completions", "sk-1"),
        3,
        "back in rotation"
    );
}

#[tokio::test]
async fn an_upstream_without_the_models_route_gets_its_key_back_too() {
    // Many OpenAI-compatible upstreams serve chat only: the probe's GET /v1/models is a 404
    // once the key is accepted, which says the key got past authentication.
    let app = spawn_app_with(FAST_PROBES).await;
    let (root, member) = app.with_team(1).await;
    let accepted = Arc::new(AtomicBool::new(false));
    let flag = accepted.clone();
    app.mock.on(move |r| {
        if !flag.load(Ordering::SeqCst) {
            unauthorized(&r.key())
        } else if r.path == "/v1/models" {
            Reply::json(404, json!({"detail": "Not Found"}))
        } else {
            default_reply(r)
        }
    });
    let (status, body) = app.post("/v1/chat/completions", &member, chat()).await;
    assert_eq!((status, &body), (502, &rejected_body()));
    assert_eq!(key(&app, &root, "key1").await["status"], "disabled");
    accepted.store(true, Ordering::SeqCst);
    wait_status(&app, &root, "key1", "active").await;
    assert!(hits(&app, "/v1/models", "sk-1") >= 1);
    let (status, body) = app.post("/v1/chat/completions", &member, chat()).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_disabled_state_survives_a_restart() {
    let mut app = spawn_app().await;
    let (root, member) = app.with_team(1).await;
    app.mock.on(|r| unauthorized(&r.key()));
    let (status, _) = app.post("/v1/chat/completions", &member, chat()).await;
    assert_eq!(status, 502);
    let before = key(&app, &root, "key1").await;
    assert_eq!(
        health(&before),
        ("disabled", "the upstream rejected the key (401)")
    );
    // Default schedule: the first probe a minute after the rejection.
    let until = secs_until(&before["statusUntil"]);
    assert!((50.0..=60.0).contains(&until), "{before}");
    app.shutdown().await;

    let toml = format!(
        "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\n[upstream]\nopenai_base_url = \"{}\"\n",
        app.database,
        app.mock.url()
    );
    let config =
        catgate::config::Config::from_toml(&toml, app.dir.path(), &Default::default()).unwrap();
    let restarted = catgate::AppState::start(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(catgate::serve(listener, restarted, async move {
        let _ = stopped.await;
    }));
    let keys = app
        .http
        .get(format!("{base}/1/keys"))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let keys: Value = serde_json::from_str(&keys).unwrap();
    assert_eq!(keys, json!([before]), "same status, reason and next probe");
    let resp = app
        .http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&member)
        .header("content-type", "application/json")
        .body(chat().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(
        hits(&app, "/v1/chat/completions", "sk-1"),
        1,
        "the restarted server knows the key is disabled"
    );
    let _ = stop.send(());
    server.await.unwrap();
}

#[tokio::test]
async fn a_hand_disabled_key_is_never_probed_and_enable_brings_it_back() {
    let app = spawn_app_with(FAST_PROBES).await;
    let (root, member) = app.with_team(2).await;
    let (status, k1) = app.post("/1/keys/1/disable", &root, json!({})).await;
    assert_eq!(status, 200, "{k1}");
    assert_time(&k1["createdAt"]);
    assert_eq!(
        k1,
        json!({"id": 1, "key": "sk-1", "name": "key1", "ApiType": "openai",
            "endpoint": app.mock.url(), "createdAt": k1["createdAt"], "updatedAt": k1["updatedAt"],
            "cooldownSecs": 0, "status": "disabled", "statusReason": "disabled by admin",
            "statusUntil": null})
    );
    assert_eq!(key(&app, &root, "key1").await, k1);

    for _ in 0..3 {
        let (status, _) = app.post("/v1/chat/completions", &member, chat()).await;
        assert_eq!(status, 200);
    }
    assert_eq!(hits(&app, "/v1/chat/completions", "sk-1"), 0);
    // Several probe periods pass: a key an admin disabled is never probed.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(hits(&app, "/v1/models", "sk-1"), 0);

    let (status, k1) = app.post("/1/keys/1/enable", &root, json!({})).await;
    assert_eq!(status, 200, "{k1}");
    assert_eq!(
        (&k1["status"], &k1["statusReason"], &k1["statusUntil"]),
        (&json!("active"), &Value::Null, &Value::Null)
    );
    for _ in 0..4 {
        let (status, _) = app.post("/v1/chat/completions", &member, chat()).await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        hits(&app, "/v1/chat/completions", "sk-1"),
        2,
        "in rotation again"
    );

    // Enabling an active key is fine; unknown and deleted ids are 404; members get 403.
    assert_eq!(app.post("/1/keys/1/enable", &root, json!({})).await.0, 200);
    for path in ["/1/keys/99/disable", "/1/keys/99/enable"] {
        let (status, body) = app.post(path, &root, json!({})).await;
        assert_eq!(status, 404, "{path}");
        assert_error(&body);
    }
    assert_eq!(
        app.call("DELETE", "/1/keys/2", Some(&root), None).await.0,
        200
    );
    assert_eq!(app.post("/1/keys/2/disable", &root, json!({})).await.0, 404);
    let (_, member_token) = app.add_user(&root, "bob").await;
    assert_eq!(
        app.post("/1/keys/1/disable", &member_token, json!({}))
            .await
            .0,
        403
    );
    assert_eq!(app.get("/1/keys/1/disable", &root).await.0, 405);
}

#[tokio::test]
async fn an_enabled_key_loses_its_cooldown_too() {
    let app = spawn_app().await;
    let (root, member) = app.with_team(2).await;
    app.mock.on(|r| match r.key().as_str() {
        "sk-1" => rate_limited().with_header("retry-after", "600"),
        _ => default_reply(r),
    });
    assert_eq!(
        app.post("/v1/chat/completions", &member, chat()).await.0,
        200
    );
    assert_eq!(key(&app, &root, "key1").await["status"], "cooling");
    let (status, k1) = app.post("/1/keys/1/enable", &root, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&k1["status"], &k1["cooldownSecs"]),
        (&json!("active"), &json!(0))
    );
}

#[tokio::test]
async fn a_rate_limit_cools_the_key_for_retry_after_in_seconds_or_as_a_date() {
    let in_seven = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(7));
    for retry_after in ["7", in_seven.as_str()] {
        let app = spawn_app().await;
        let (root, member) = app.with_team(2).await;
        let hint = retry_after.to_string();
        app.mock.on(move |r| match r.key().as_str() {
            "sk-1" => rate_limited().with_header("retry-after", &hint),
            _ => default_reply(r),
        });
        let (status, body) = app.post("/v1/chat/completions", &member, chat()).await;
        assert_eq!(status, 200, "{body}");
        let k1 = key(&app, &root, "key1").await;
        assert_eq!(
            health(&k1),
            ("cooling", "rate limited by the upstream (429)"),
            "{retry_after}"
        );
        let until = secs_until(&k1["statusUntil"]);
        assert!((5.0..=8.0).contains(&until), "{retry_after}: {k1}");
        assert_eq!(
            health(&key(&app, &root, "key2").await),
            ("active", "<null>")
        );
    }
}

#[tokio::test]
async fn refusals_disable_the_key_and_the_request_fails_over() {
    let quota = |body: Value| Reply::json(429, json!({ "error": body }));
    let cases = [
        (
            quota(
                json!({"message":"You exceeded your current quota","type":"insufficient_quota",
                "param":null,"code":"insufficient_quota"}),
            ),
            "the key's upstream quota is used up (insufficient_quota)",
        ),
        (
            quota(json!({"message":"quota","type":"insufficient_quota","param":null,"code":null})),
            "the key's upstream quota is used up (insufficient_quota)",
        ),
        (
            Reply::json(
                402,
                json!({"error":{"message":"pay","type":"billing","param":null,"code":null}}),
            ),
            "the upstream wants payment for the key (402)",
        ),
        (
            Reply::json(
                403,
                json!({"error":{"message":"no","type":"invalid_request_error","param":null,"code":null}}),
            ),
            "the upstream refused the key (403)",
        ),
    ];
    for (reply, reason) in cases {
        let app = spawn_app().await;
        let (root, member) = app.with_team(2).await;
        app.mock.on(move |r| match r.key().as_str() {
            "sk-1" => reply.clone(),
            _ => default_reply(r),
        });
        let (status, body) = app.post("/v1/chat/completions", &member, chat()).await;
        assert_eq!(status, 200, "{reason}: {body}");
        let k1 = key(&app, &root, "key1").await;
        assert_eq!(health(&k1), ("disabled", reason));
        let rows = app.usage_rows(1).await;
        assert_eq!(
            (rows[0].status, rows[0].attempts, rows[0].key_id),
            (200, 2, Some(2))
        );
    }
}

#[tokio::test]
async fn every_key_refused_is_one_502_record_with_the_last_key() {
    let app = spawn_app().await;
    let (root, member) = app.with_team(2).await;
    app.mock.on(|r| unauthorized(&r.key()));
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&member)
        .body(chat().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    // SDKs retry a 5xx twice by default; refused keys stay refused for minutes.
    assert_eq!(resp.headers()["x-should-retry"], "false");
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body, rejected_body());
    assert!(!body.to_string().contains("sk-"), "{body}");
    let rows = app.usage_rows(1).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].status, rows[0].attempts, rows[0].key_id),
        (502, 2, Some(2))
    );
    for name in ["key1", "key2"] {
        assert_eq!(key(&app, &root, name).await["status"], "disabled");
    }
}

#[tokio::test]
async fn mixed_failures_pass_the_last_real_answer_through() {
    let app = spawn_app().await;
    let (root, member) = app.with_team(2).await;
    app.mock.on(|r| match r.key().as_str() {
        "sk-1" => rate_limited(),
        _ => unauthorized(&r.key()),
    });
    let (status, body) = app.post("/v1/chat/completions", &member, chat()).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(health(&key(&app, &root, "key1").await).0, "cooling");
    assert_eq!(health(&key(&app, &root, "key2").await).0, "disabled");
    let rows = app.usage_rows(1).await;
    assert_eq!(
        (rows[0].status, rows[0].attempts, rows[0].key_id),
        (429, 2, Some(1)),
        "the key whose answer the member got"
    );
}

#[tokio::test]
async fn another_replica_on_the_same_database_stops_using_the_key_too() {
    let app = spawn_app().await;
    let (root, member) = app.with_team(2).await;
    let toml = format!(
        "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\n[upstream]\nopenai_base_url = \"{}\"\n",
        app.database,
        app.mock.url()
    );
    let config =
        catgate::config::Config::from_toml(&toml, app.dir.path(), &Default::default()).unwrap();
    let replica = catgate::AppState::start(config).await.unwrap();
    let refresh = catgate::AppState::spawn_refresh(&replica);
    assert_eq!(
        replica.keys.status_counts(),
        [("active", 2), ("cooling", 0), ("disabled", 0)]
    );
    app.mock.on(|r| match r.key().as_str() {
        "sk-1" => unauthorized("sk-1"),
        _ => default_reply(r),
    });
    assert_eq!(
        app.post("/v1/chat/completions", &member, chat()).await.0,
        200
    );
    assert_eq!(
        app.app.keys.status_counts(),
        [("active", 1), ("cooling", 0), ("disabled", 1)]
    );
    // The replica reloads on the change marker (every 100 ms); 10 s is only a bound.
    let mut counts = replica.keys.status_counts();
    for _ in 0..100 {
        if counts[2].1 == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        counts = replica.keys.status_counts();
    }
    assert_eq!(counts, [("active", 1), ("cooling", 0), ("disabled", 1)]);
    refresh.abort();
    assert_eq!(key(&app, &root, "key1").await["status"], "disabled");
}

/// Refusals about the request, not the key, go to the member and leave every key in rotation:
/// a 403 `model_not_found` (the project may not use that model) and a 401 on a pass-through
/// route (an admin endpoint the key has no scope for). Otherwise one member's request could
/// take the whole team's keys out.
#[tokio::test]
async fn refusals_of_the_request_leave_the_keys_alone() {
    let app = spawn_app().await;
    let (root, member) = app.with_team(2).await;
    let no_model = json!({"error":{"message":"The model `gpt-9` does not exist or you do not have access to it.",
        "type":"invalid_request_error","param":null,"code":"model_not_found"}});
    let no_scope = json!({"error":{"message":"You have insufficient permissions for this operation.",
        "type":"invalid_request_error","param":null,"code":null}});
    let (m, s) = (no_model.clone(), no_scope.clone());
    app.mock.on(move |r| match r.path.as_str() {
        "/v1/chat/completions" => Reply::json(403, m.clone()),
        _ => Reply::json(401, s.clone()),
    });
    let (status, body) = app
        .post(
            "/v1/chat/completions",
            &member,
            json!({"model": "gpt-9", "messages": []}),
        )
        .await;
    assert_eq!((status, body), (403, no_model));
    let (status, body) = app.get("/v1/organization/projects", &member).await;
    assert_eq!((status, body), (401, no_scope));
    for name in ["key1", "key2"] {
        assert_eq!(health(&key(&app, &root, name).await), ("active", "<null>"));
    }
    // One attempt each: nothing to fail over from.
    let rows = app.usage_rows(2).await;
    assert_eq!(
        rows.iter()
            .map(|r| (r.status, r.attempts))
            .collect::<Vec<_>>(),
        [(403, 1), (401, 1)]
    );
}
