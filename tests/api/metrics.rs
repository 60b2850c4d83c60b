//! Operations: `/metrics` counts what clients were sent, the access log has one line per
//! `/v1` request under the request's id, and every answer carries `x-catgate-request-id`.
//!
//! Expected numbers are worked by hand: gpt-4o-mini costs $0.15 per 1M prompt tokens and
//! $0.60 per 1M completion tokens, so the mock's default answer (9 prompt, 12 completion)
//! costs 9 × 0.15/1M + 12 × 0.60/1M = 0.00000135 + 0.0000072 = $0.00000855.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::helpers::*;

fn chat() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
}

fn server_error() -> Reply {
    Reply::json(
        500,
        json!({"error": {"message": "boom", "type": "server_error", "param": null, "code": null}}),
    )
}

/// One sample of a scrape: metric name and its labels (in any order).
#[derive(Debug, PartialEq)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// A small parser for the Prometheus text format as catgate writes it (no escapes in values).
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect(line);
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once("=\"").expect(line);
                    (k.to_string(), v.trim_end_matches('"').to_string())
                })
                .collect();
            Sample {
                name: name.to_string(),
                labels,
                value: value.parse().expect(line),
            }
        })
        .collect()
}

/// The value of the one sample with exactly these labels, if any.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: HashMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let hits: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && s.labels == want)
        .collect();
    assert!(hits.len() <= 1, "{name} {labels:?} twice: {hits:?}");
    hits.first().map(|s| s.value)
}

async fn scrape(app: &TestApp, token: Option<&str>) -> (u16, Option<String>, String) {
    let mut req = app.http.get(app.url("/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    (status, content_type, resp.text().await.unwrap())
}

#[tokio::test]
async fn metrics_count_every_answer_its_tokens_and_cost() {
    let app = spawn_app_with(
        "[metrics]\nenabled = true\ntoken = \"scrape-me\"\n\
         [upstream]\ncooldown_5xx_secs = 600",
    )
    .await;
    let (_root, member) = app.with_team(2).await;
    // Three plain successes, one attempt each.
    for _ in 0..3 {
        let (status, body) = app.post("/v1/chat/completions", &member, chat()).await;
        assert_eq!(status, 200, "{body}");
    }
    // The first key answers 500, the second succeeds: one failover.
    app.mock.push(server_error());
    let (status, body) = app.post("/v1/chat/completions", &member, chat()).await;
    assert_eq!(status, 200, "{body}");
    // Both keys answer 500: one more failover, and the client gets the 500.
    app.mock.push(server_error());
    app.mock.push(server_error());
    let (status, body) = app.post("/v1/chat/completions", &member, chat()).await;
    assert_eq!(status, 500, "{body}");
    // A bad token: answered by catgate, no record, counted with model "other".
    let (status, _) = app
        .post("/v1/chat/completions", "not-a-token", chat())
        .await;
    assert_eq!(status, 401);
    let rows = app.usage_rows(5).await;
    assert_eq!(rows.len(), 5);
    for r in rows.iter().filter(|r| r.status == 200) {
        assert_eq!(r.cost_text(), "0.00000855");
    }

    assert_eq!(scrape(&app, None).await.0, 401);
    assert_eq!(scrape(&app, Some("scrape-m")).await.0, 401);
    let (status, content_type, text) = scrape(&app, Some("scrape-me")).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        content_type.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let s = parse(&text);
    let requests = |status, model| {
        let labels = [
            ("route", "chat_completions"),
            ("status", status),
            ("model", model),
        ];
        value(&s, "catgate_requests_total", &labels)
    };
    assert_eq!(requests("200", "gpt-4o-mini"), Some(4.0), "{text}");
    assert_eq!(requests("500", "gpt-4o-mini"), Some(1.0), "{text}");
    assert_eq!(requests("401", "other"), Some(1.0), "{text}");
    let all: f64 = s
        .iter()
        .filter(|x| x.name == "catgate_requests_total")
        .map(|x| x.value)
        .sum();
    assert_eq!(all, 6.0, "{text}");
    let failovers = [("reason", "server_error")];
    assert_eq!(value(&s, "catgate_failovers_total", &failovers), Some(2.0));
    // Upstream answers: 3 + 2 + 2 heads; upstream-tried requests: 5.
    let chat_route = [("route", "chat_completions")];
    let first_byte = "catgate_upstream_first_byte_seconds_count";
    assert_eq!(value(&s, first_byte, &chat_route), Some(7.0), "{text}");
    let duration = "catgate_upstream_duration_seconds_count";
    assert_eq!(value(&s, duration, &chat_route), Some(5.0), "{text}");
    let tokens = |kind| {
        let labels = [("kind", kind), ("model", "gpt-4o-mini")];
        value(&s, "catgate_tokens_total", &labels)
    };
    assert_eq!(tokens("prompt"), Some(36.0), "4 × 9\n{text}");
    assert_eq!(tokens("completion"), Some(48.0), "4 × 12\n{text}");
    assert_eq!(tokens("reasoning"), None, "no reasoning tokens were sent");
    let cost = value(&s, "catgate_cost_usd_total", &[("model", "gpt-4o-mini")]).unwrap();
    assert!((cost - 4.0 * 0.00000855).abs() < 1e-12, "{cost}");
    // Both keys rest after their 500s (600 s).
    let keys = |status| value(&s, "catgate_keys", &[("status", status)]);
    assert_eq!(
        (keys("active"), keys("cooling"), keys("disabled")),
        (Some(0.0), Some(2.0), Some(0.0))
    );
    assert_eq!(value(&s, "catgate_recorder_queued_records", &[]), Some(0.0));
    assert_eq!(
        value(&s, "catgate_recorder_spooled_records", &[]),
        Some(0.0)
    );
    let version = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(value(&s, "catgate_build_info", &version), Some(1.0));
}

#[tokio::test]
async fn metrics_are_a_404_unless_enabled_and_open_without_a_token() {
    let app = spawn_app().await;
    let (status, body) = app.call("GET", "/metrics", None, None).await;
    assert_eq!((status, body), (404, json!({"error": "not found"})));

    let app = spawn_app_with("[metrics]\nenabled = true").await;
    let (status, _, text) = scrape(&app, None).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("catgate_build_info{"), "{text}");
}

#[tokio::test]
async fn every_answer_carries_a_fresh_request_id() {
    let app = spawn_app_with("[metrics]\nenabled = true").await;
    let (_root, member) = app.with_team(1).await;
    let mut ids = HashSet::new();
    for (method, path, token) in [
        ("GET", "/healthz", None),
        ("GET", "/readyz", None),
        ("GET", "/metrics", None),
        ("GET", "/ui/", None),
        ("GET", "/nowhere", None),
        ("GET", "/1/users", None),
        ("GET", "/1/me", Some(member.as_str())),
        ("POST", "/v1/chat/completions", Some("bad-token")),
    ] {
        let mut req = app.http.request(method.parse().unwrap(), app.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let id = resp
            .headers()
            .get("x-catgate-request-id")
            .unwrap_or_else(|| panic!("{method} {path}: no x-catgate-request-id"))
            .to_str()
            .unwrap()
            .to_string();
        let uuid = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(uuid.get_version_num(), 7, "{path}: {id}");
        assert!(ids.insert(id), "{path}: id reused");
    }
    // On /v1 it is the usage record's id.
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&member)
        .body(chat().to_string())
        .send()
        .await
        .unwrap();
    let id = resp.headers()["x-catgate-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(resp.status(), 200);
    let rows = app.usage_rows(1).await;
    assert_eq!(rows[0].request_id, id);
}

/// `key=value` fields of a text-format log line (ANSI colours stripped, quotes removed).
fn fields(line: &str) -> HashMap<String, String> {
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

#[tokio::test]
async fn one_access_line_per_request_under_its_request_id() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("config.toml");
    let toml = format!(
        "listen = \"127.0.0.1:{port}\"\ndatabase = \"catgate.db\"\n\
         [upstream]\nopenai_base_url = \"{}\"\n",
        mock.url()
    );
    std::fs::write(&config, toml).unwrap();
    let log_path = dir.path().join("catgate.log");
    let log = std::fs::File::create(&log_path).unwrap();
    // The access log is info level: whatever RUST_LOG the test runs under, ask for info.
    let child = Command::new(env!("CARGO_BIN_EXE_catgate"))
        .args(["--config", config.to_str().unwrap()])
        .env_remove("CATGATE_DATABASE")
        .env_remove("CATGATE_LISTEN")
        .env_remove("PORT")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;
    let call = |path: &str, token: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(token)
            .body(body.to_string())
            .send()
    };
    let root = json_of(call("/1/users/init", "", json!({})).await.unwrap()).await;
    let root = root["token"].as_str().unwrap().to_string();
    let member = json_of(
        call("/1/users", &root, json!({"name": "alice"}))
            .await
            .unwrap(),
    )
    .await;
    let (member_id, member) = (
        member["id"].as_i64().unwrap(),
        member["token"].as_str().unwrap().to_string(),
    );
    let key = json!({"key": "sk-1", "name": "k1", "endpoint": mock.url()});
    let key = json_of(call("/1/keys", &root, key).await.unwrap()).await;
    let key_id = key["id"].as_i64().unwrap();

    // A plain success, a stream (9 prompt, 2 completion), a bad token, an upstream 500.
    let stream_events = chat_stream("gpt-4o-mini", &["Hel", "lo"], Some((9, 2)));
    let stream_refs: Vec<&str> = stream_events.iter().map(String::as_str).collect();
    mock.push(Reply::json(
        200,
        chat_completion("gpt-4o-mini", "Hi", Some((9, 12))),
    ));
    mock.push(Reply::sse(&stream_refs));
    mock.push(server_error());
    let mut streamed = chat();
    streamed["stream"] = json!(true);
    let mut sent = Vec::new();
    for (token, body, want) in [
        (member.as_str(), chat(), 200),
        (member.as_str(), streamed, 200),
        ("not-a-token", chat(), 401),
        (member.as_str(), chat(), 500),
    ] {
        let resp = call("/v1/chat/completions", token, body).await.unwrap();
        assert_eq!(resp.status().as_u16(), want);
        let id = resp.headers()["x-catgate-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        resp.bytes().await.unwrap();
        sent.push(id);
    }
    // SIGTERM drains the recorder: every line is written when the process exits.
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(child.wait().unwrap().success());

    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<HashMap<String, String>> = log
        .lines()
        .filter(|l| l.contains("catgate::access"))
        .map(fields)
        .collect();
    assert_eq!(lines.len(), 4, "one line per /v1 request:\n{log}");
    let line = |id: &str| only(&lines, id, &log);
    let get = |l: &HashMap<String, String>, k: &str| l.get(k).cloned().unwrap_or_default();
    let user = member_id.to_string();
    let user = user.as_str();
    let key = key_id.to_string();
    let key = key.as_str();
    let summary = |l: &HashMap<String, String>| {
        [
            "user_id",
            "key_id",
            "route",
            "model",
            "status",
            "attempts",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "cost",
        ]
        .map(|k| get(l, k))
    };
    let route = "/v1/chat/completions";
    assert_eq!(
        summary(line(&sent[0])),
        [
            user,
            key,
            route,
            "gpt-4o-mini",
            "200",
            "1",
            "9",
            "12",
            "21",
            "0.00000855"
        ]
        .map(String::from)
    );
    // 9 × 0.15/1M + 2 × 0.60/1M = 0.00000135 + 0.0000012
    assert_eq!(
        summary(line(&sent[1])),
        [
            user,
            key,
            route,
            "gpt-4o-mini",
            "200",
            "1",
            "9",
            "2",
            "11",
            "0.00000255"
        ]
        .map(String::from)
    );
    assert_eq!(
        summary(line(&sent[3])),
        [
            user,
            key,
            route,
            "gpt-4o-mini",
            "500",
            "1",
            "0",
            "0",
            "0",
            "0"
        ]
        .map(String::from)
    );
    let rejected = line(&sent[2]);
    assert_eq!(
        (get(rejected, "status"), get(rejected, "route")),
        ("401".to_string(), route.to_string())
    );
    assert!(!rejected.contains_key("user_id"), "{rejected:?}");
    for l in &lines {
        assert!(l["latency_ms"].parse::<u64>().is_ok(), "{l:?}");
    }
    assert!(!log.contains("sk-1"), "the key's secret reached the log");

    // The lines' ids are the usage rows' ids; the rejected request has none.
    let store = open_sqlite(&dir.path().join("catgate.db")).await;
    let rows: HashSet<String> = store
        .usage_records(100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    let expected: HashSet<String> = [&sent[0], &sent[1], &sent[3]]
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(rows, expected);
}

/// The one access line of request `id`.
fn only<'a>(
    lines: &'a [HashMap<String, String>],
    id: &str,
    log: &str,
) -> &'a HashMap<String, String> {
    let hits: Vec<_> = lines
        .iter()
        .filter(|l| l.get("request_id").map(String::as_str) == Some(id))
        .collect();
    assert_eq!(hits.len(), 1, "{id}:\n{log}");
    hits[0]
}

async fn json_of(resp: reqwest::Response) -> Value {
    assert!(resp.status().is_success(), "{}", resp.status());
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}
