//! The detail report: `/1/usages/detail` (root) and `/1/me/usages/detail` (own records), by
//! user, model, key, day and tier, as JSON and CSV, with exact sums.

use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::helpers::*;

/// Today and tomorrow (UTC) as the report window.
fn today_window() -> (String, String) {
    let today = time::OffsetDateTime::now_utc().date();
    let tomorrow = today.next_day().unwrap();
    (today.to_string(), tomorrow.to_string())
}

/// The mock answers by model: gpt-5 (flex when asked) with cached and reasoning tokens,
/// gpt-4o-mini plain, anything else 50/5 (unpriced unless configured).
fn scripted(app: &TestApp) {
    app.mock.on(|req| {
        let body = req.json();
        let model = body["model"].as_str().unwrap_or("").to_string();
        let (name, usage, tier) = match (model.as_str(), body["service_tier"].as_str()) {
            ("gpt-5", Some("flex")) => (
                "gpt-5-2025-08-07".to_string(),
                json!({"prompt_tokens":1000,"completion_tokens":100,"total_tokens":1100}),
                "flex",
            ),
            ("gpt-5", _) => (
                "gpt-5-2025-08-07".to_string(),
                json!({"prompt_tokens":2000,"completion_tokens":300,"total_tokens":2300,
                    "prompt_tokens_details":{"cached_tokens":1500},
                    "completion_tokens_details":{"reasoning_tokens":256}}),
                "default",
            ),
            ("gpt-4o-mini", _) => (
                model.clone(),
                json!({"prompt_tokens":100,"completion_tokens":20,"total_tokens":120}),
                "default",
            ),
            _ => (
                model.clone(),
                json!({"prompt_tokens":50,"completion_tokens":5,"total_tokens":55}),
                "default",
            ),
        };
        Reply::json(
            200,
            json!({"model": name, "service_tier": tier, "choices": [], "usage": usage}),
        )
    });
}

async fn ask(app: &TestApp, token: &str, body: Value) {
    let (status, answer) = app.post("/v1/chat/completions", token, body).await;
    assert_eq!(status, 200, "{answer}");
}

/// root: one gpt-5 flex; alice: gpt-5 twice, gpt-4o-mini, mystery-model. One key.
async fn seeded() -> (TestApp, String, String) {
    let app = spawn_app().await;
    let (root, alice) = app.with_team(1).await;
    scripted(&app);
    let msg = json!([{"role": "user", "content": "hi"}]);
    ask(&app, &alice, json!({"model": "gpt-5", "messages": msg})).await;
    ask(&app, &alice, json!({"model": "gpt-5", "messages": msg})).await;
    ask(
        &app,
        &alice,
        json!({"model": "gpt-4o-mini", "messages": msg}),
    )
    .await;
    ask(
        &app,
        &alice,
        json!({"model": "mystery-model", "messages": msg}),
    )
    .await;
    let flex = json!({"model": "gpt-5", "service_tier": "flex", "messages": msg});
    ask(&app, &root, flex).await;
    app.usage_rows(5).await;
    (app, root, alice)
}

fn sums(requests: i64, tokens: [i64; 8], cost: &str, unpriced: i64) -> Value {
    json!({
        "requests": requests, "promptTokens": tokens[0], "cachedTokens": tokens[1],
        "cacheWriteTokens": tokens[2], "completionTokens": tokens[3],
        "reasoningTokens": tokens[4], "audioInputTokens": tokens[5],
        "audioOutputTokens": tokens[6], "totalTokens": tokens[7], "cost": cost,
        "estimatedRequests": 0, "unpricedRequests": unpriced, "failedRequests": 0,
    })
}

fn with(identity: Value, sums: Value) -> Value {
    let mut row = identity;
    for (k, v) in sums.as_object().unwrap() {
        row[k] = v.clone();
    }
    row
}

#[tokio::test]
async fn default_report_is_by_user_and_model_with_exact_sums() {
    let (app, root, _) = seeded().await;
    let (from, to) = today_window();
    // gpt-5 default (each): 500 × 1.25 + 1500 × 0.125 + 300 × 10 = 3812.5 per 1M; twice = 7625.
    // gpt-5 flex: 1000 × 0.625 + 100 × 5 = 1125. gpt-4o-mini: 100 × 0.15 + 20 × 0.60 = 27.
    let want = json!([
        with(
            json!({"userId": 1, "userName": "root", "model": "gpt-5-2025-08-07"}),
            sums(1, [1000, 0, 0, 100, 0, 0, 0, 1100], "0.001125", 0)
        ),
        with(
            json!({"userId": 2, "userName": "alice", "model": "gpt-4o-mini"}),
            sums(1, [100, 0, 0, 20, 0, 0, 0, 120], "0.000027", 0)
        ),
        with(
            json!({"userId": 2, "userName": "alice", "model": "gpt-5-2025-08-07"}),
            sums(2, [4000, 3000, 0, 600, 512, 0, 0, 4600], "0.007625", 0)
        ),
        with(
            json!({"userId": 2, "userName": "alice", "model": "mystery-model"}),
            sums(1, [50, 0, 0, 5, 0, 0, 0, 55], "0.000000", 1)
        ),
    ]);
    app.expect_get(
        &format!("/1/usages/detail?from={from}&to={to}"),
        &root,
        200,
        want.clone(),
    )
    .await;
    // The default window is the current month.
    let (_, month) = app.get("/1/usages/detail", &root).await;
    assert_eq!(month, want);
    // Field order is api.md's.
    let text = app
        .http
        .get(app.url("/1/usages/detail"))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.starts_with(r#"[{"userId":1,"userName":"root","model":"gpt-5-2025-08-07","requests":1,"promptTokens":1000,"cachedTokens":0,"cacheWriteTokens":0,"completionTokens":100,"reasoningTokens":0,"audioInputTokens":0,"audioOutputTokens":0,"totalTokens":1100,"cost":"0.001125","#), "{text}");
    // The per-user totals agree with the detail: 0.001125 and 0.007652.
    app.expect_get(
        "/1/usages",
        &root,
        200,
        json!([
            {"userId": 1, "totalUnit": 1100, "cost": "0.001125"},
            {"userId": 2, "totalUnit": 4775, "cost": "0.007652"},
        ]),
    )
    .await;
}

#[tokio::test]
async fn report_sums_equal_the_records() {
    let (app, root, _) = seeded().await;
    let records = app.usage_rows(5).await;
    let priced: Decimal = records.iter().filter_map(|r| r.cost).sum();
    let tokens: u64 = records.iter().map(|r| r.total_tokens).sum();
    let (_, rows) = app.get("/1/usages/detail?group_by=day", &root).await;
    let today = time::OffsetDateTime::now_utc().date().to_string();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["day"], today.as_str());
    assert_eq!(rows[0]["requests"], 5);
    assert_eq!(rows[0]["totalTokens"], tokens);
    assert_eq!(rows[0]["cost"], catgate::report::money(priced));
    assert_eq!(rows[0]["cost"], "0.008777");
}

#[tokio::test]
async fn csv_by_tier() {
    let (app, root, _) = seeded().await;
    let resp = app
        .http
        .get(app.url("/1/usages/detail?group_by=tier&format=csv"))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"catgate-usage-"));
    let header = "tier,requests,promptTokens,cachedTokens,cacheWriteTokens,completionTokens,\
        reasoningTokens,audioInputTokens,audioOutputTokens,totalTokens,cost,estimatedRequests,\
        unpricedRequests,failedRequests";
    // default: 4000 + 100 + 50 prompt, 600 + 20 + 5 completion, cost 0.007625 + 0.000027.
    let want = format!(
        "{header}\r\ndefault,4,4150,3000,0,625,512,0,0,4775,0.007652,0,1,0\r\n\
         flex,1,1000,0,0,100,0,0,0,1100,0.001125,0,0,0\r\n"
    );
    assert_eq!(resp.text().await.unwrap(), want);
}

#[tokio::test]
async fn members_see_only_their_own_records() {
    let (app, root, alice) = seeded().await;
    let (status, rows) = app
        .get("/1/me/usages/detail?group_by=user,model", &alice)
        .await;
    assert_eq!(status, 200);
    let models: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["userId"], 2);
            r["model"].as_str().unwrap()
        })
        .collect();
    assert_eq!(models, ["gpt-4o-mini", "gpt-5-2025-08-07", "mystery-model"]);
    let (_, mine) = app.get("/1/me/usages/detail?group_by=model", &root).await;
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(mine[0]["cost"], "0.001125");
    // The root report is root's only.
    let (status, body) = app.get("/1/usages/detail", &alice).await;
    assert_eq!(status, 403);
    assert_error(&body);
}

#[tokio::test]
async fn by_key_counts_each_key_and_names_it() {
    let app = spawn_app().await;
    let (root, alice) = app.with_team(2).await;
    scripted(&app);
    let msg = json!([{"role": "user", "content": "hi"}]);
    ask(
        &app,
        &alice,
        json!({"model": "gpt-4o-mini", "messages": msg}),
    )
    .await;
    ask(
        &app,
        &alice,
        json!({"model": "gpt-4o-mini", "messages": msg}),
    )
    .await;
    app.usage_rows(2).await;
    let one = sums(1, [100, 0, 0, 20, 0, 0, 0, 120], "0.000027", 0);
    app.expect_get(
        "/1/usages/detail?group_by=key",
        &root,
        200,
        json!([
            with(json!({"keyId": 1, "keyName": "key1"}), one.clone()),
            with(json!({"keyId": 2, "keyName": "key2"}), one),
        ]),
    )
    .await;
}

#[tokio::test]
async fn bad_report_queries_are_400() {
    let (app, root, _) = seeded().await;
    for query in [
        "group_by=users",
        "group_by=user,user",
        "group_by=",
        "format=xml",
        "format=table",
        "from=2026-13-01&to=2026-12-01",
        "from=2026-11-01",
        "from=2026-12-02&to=2026-12-01",
    ] {
        let (status, body) = app.get(&format!("/1/usages/detail?{query}"), &root).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_error(&body);
    }
    let (_, empty) = app
        .get("/1/usages/detail?from=2000-01-01&to=2000-01-02", &root)
        .await;
    assert_eq!(empty, json!([]));
}

#[tokio::test]
async fn windows_across_months_add_edges_and_whole_months_exactly() {
    let app = spawn_app().await;
    let root = app.init_root().await;
    let (alice, _) = app.add_user(&root, "alice").await;
    // Edges (Sep 30, Nov 1, Nov 2), a whole month (Oct), and records outside the window.
    for (day, total, cost) in [
        ("2026-09-29", 1000, "1"),
        ("2026-09-30", 1, "0.000001"),
        ("2026-10-01", 10, "0.00001"),
        ("2026-10-31", 100, "0.0001"),
        ("2026-11-01", 1_000, "0.001"),
        ("2026-11-02", 10_000, "0.01"),
        ("2026-11-03", 100_000, "0.1"),
    ] {
        insert_usage(&app, alice, &format!("{day}T12:00:00.000000Z"), total, cost).await;
    }
    let window = "from=2026-09-30&to=2026-11-03";
    app.expect_get(
        &format!("/1/usages?{window}"),
        &root,
        200,
        json!([{"userId": 2, "totalUnit": 11111, "cost": "0.011111"}]),
    )
    .await;
    let (_, by_key) = app
        .get(
            &format!("/1/usages/detail?{window}&group_by=key,tier"),
            &root,
        )
        .await;
    assert_eq!(by_key[0]["requests"], 5);
    assert_eq!(by_key[0]["totalTokens"], 11111);
    assert_eq!(by_key[0]["keyId"], Value::Null);
    assert_eq!(by_key[0]["tier"], "default");
    let (_, by_day) = app
        .get(&format!("/1/usages/detail?{window}&group_by=day"), &root)
        .await;
    let days: Vec<(&str, i64)> = by_day
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["day"].as_str().unwrap(),
                r["totalTokens"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        days,
        [
            ("2026-09-30", 1),
            ("2026-10-01", 10),
            ("2026-10-31", 100),
            ("2026-11-01", 1000),
            ("2026-11-02", 10000)
        ]
    );
}
