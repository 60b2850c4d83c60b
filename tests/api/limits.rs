//! Budgets and rate limits per member (api.md "Team controls"): PUT /1/users/:id/limits,
//! spend on /1/me, reservation at the door and settlement at the record, the exact 429s.
//! Every cost below is worked out by hand from the list prices in `prices.toml` (USD per 1M
//! tokens; gpt-4o-mini: $0.15 input, $0.60 output).

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

async fn set_limits(app: &TestApp, root: &str, id: i64, limits: Value) -> (u16, Value) {
    app.call(
        "PUT",
        &format!("/1/users/{id}/limits"),
        Some(root),
        Some(limits),
    )
    .await
}

/// Root, member alice (id 2) with `limits`, one key; returns (root, alice's token).
async fn limited_team(app: &TestApp, limits: Value) -> (String, String) {
    let (root, member) = app.with_team(1).await;
    let (status, body) = set_limits(app, &root, 2, limits).await;
    assert_eq!(status, 200, "{body}");
    (root, member)
}

async fn chat(app: &TestApp, token: &str, model: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(token)
        .body(json!({"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}).to_string())
        .send()
        .await
        .unwrap()
}

fn quota_body(message: &str) -> Value {
    json!({"error": {"type": "insufficient_quota", "code": "insufficient_quota",
        "message": message, "param": null}})
}

#[tokio::test]
async fn limits_are_set_shown_on_users_and_me_and_validated() {
    let app = spawn_app().await;
    let (root, member) = app.with_team(1).await;
    let limits =
        json!({"monthlyBudget": "50.00", "dailyBudget": "5.00", "rpm": 60, "maxConcurrent": 4});
    let (status, user) = set_limits(&app, &root, 2, limits.clone()).await;
    assert_eq!((status, &user["limits"]), (200, &limits));
    assert_eq!(user["name"], "alice");
    let (_, users) = app.get("/1/users", &root).await;
    assert_eq!(users[1]["limits"], limits);
    // Root has none: every field null.
    assert_eq!(
        users[0]["limits"],
        json!({"monthlyBudget": null, "dailyBudget": null, "rpm": null, "maxConcurrent": null})
    );

    let (month_resets, day_resets) = (periods().2, periods().3);
    let (status, me) = app.get("/1/me", &member).await;
    assert_eq!(status, 200);
    assert_eq!(me["limits"], limits);
    assert_eq!(me["spend"], json!({"month": "0", "day": "0"}));
    assert_eq!(me["remaining"], json!({"month": "50.00", "day": "5.00"}));
    assert_eq!(
        me["resetsAt"],
        json!({"month": month_resets, "day": day_resets})
    );

    // Numbers are accepted for budgets; absent fields mean no limit.
    let (status, user) = set_limits(&app, &root, 2, json!({"monthlyBudget": 12.5})).await;
    assert_eq!(status, 200);
    assert_eq!(
        user["limits"],
        json!({"monthlyBudget": "12.5", "dailyBudget": null, "rpm": null, "maxConcurrent": null})
    );

    for bad in [
        json!({"monthlyBudget": "-1"}),
        json!({"monthlyBudget": "ten"}),
        json!({"dailyBudget": true}),
        json!({"rpm": 0}),
        json!({"rpm": 1.5}),
        json!({"maxConcurrent": -2}),
        json!({"monthly_budget": "5"}),
    ] {
        let (status, body) = set_limits(&app, &root, 2, bad.clone()).await;
        assert_eq!(status, 400, "{bad} → {body}");
        assert_error(&body);
    }
    let (status, _) = set_limits(&app, &member, 2, json!({})).await;
    assert_eq!(status, 403);
    let (status, _) = set_limits(&app, &root, 99, json!({})).await;
    assert_eq!(status, 404);
    let (status, _) = app
        .call("GET", "/1/users/2/limits", Some(&root), None)
        .await;
    assert_eq!(status, 405);
    // The failed attempts changed nothing.
    let (_, me) = app.get("/1/me", &member).await;
    assert_eq!(me["limits"]["monthlyBudget"], "12.5");
}

/// 32 members' requests at once against a $0.01 budget. Each answer reports 10,000 prompt and
/// 2,000 completion tokens: 10000 × 0.15/1M + 2000 × 0.60/1M = 0.0015 + 0.0012 = $0.0027,
/// far above the worst case the small request bounds (82 bytes × 0.15/1M + 50 × 0.60/1M =
/// $0.0000423), as an upstream may report.
/// The first request goes alone (no history this month); after it settles every reservation
/// is $0.0027, so admissions stop when settled + reserved reaches $0.01: 4 answers, $0.0108,
/// over the budget by less than one request. The other 28 get api.md's 429.
#[tokio::test]
async fn a_budget_holds_under_32_concurrent_requests() {
    let app = spawn_app().await;
    let (_root, member) = limited_team(&app, json!({"monthlyBudget": "0.01"})).await;
    app.mock.on(|_| {
        Reply::json(
            200,
            chat_completion("gpt-4o-mini", "hello", Some((10_000, 2_000))),
        )
    });
    let sends = (0..32).map(|_| {
        let app = &app;
        let member = member.clone();
        async move {
            let resp = chat(app, &member, "gpt-4o-mini").await;
            let status = resp.status().as_u16();
            let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
            (status, body)
        }
    });
    let answers = futures_util::future::join_all(sends).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 4, "{answers:?}");
    let expected = quota_body(&format!(
        "Monthly budget of $0.01 reached; resets {}",
        periods().2
    ));
    for (status, body) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!((*status, body), (429, &expected));
    }
    // Rejected requests leave no record; the four answers do, at $0.0027 each.
    let rows = app.usage_rows(4).await;
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(r.cost.unwrap().to_string(), "0.0027");
    }
    let (_, me) = app.get("/1/me", &member).await;
    assert_eq!(me["spend"], json!({"month": "0.0108", "day": "0.0108"}));
    assert_eq!(me["remaining"]["month"], "0");
    // A later request is refused at once, by settled spend.
    let resp = chat(&app, &member, "gpt-4o-mini").await;
    assert_eq!(resp.status(), 429);
    assert_eq!(app.mock.received().len(), 4);
}

#[tokio::test]
async fn a_zero_budget_blocks_priced_models_but_never_free_ones() {
    let app =
        spawn_app_with("[pricing.models.\"house-model\"]\ninput = \"0\"\noutput = \"0\"\n").await;
    let (_root, member) = limited_team(&app, json!({"monthlyBudget": "0"})).await;
    app.mock.on(|req| {
        let model = req.json()["model"].as_str().unwrap_or("").to_string();
        Reply::json(200, chat_completion(&model, "hi", Some((5, 5))))
    });
    let resp = chat(&app, &member, "gpt-4o-mini").await;
    assert_eq!(resp.status(), 429);
    // The budget will not come back in seconds: the SDKs must not retry (they do on 429).
    assert_eq!(resp.headers()["x-should-retry"], "false");
    assert!(resp.headers().get("retry-after").is_none());
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(
        body,
        quota_body(&format!(
            "Monthly budget of $0.00 reached; resets {}",
            periods().2
        ))
    );
    // A model that costs nothing, and a route that is not billed, pass.
    assert_eq!(chat(&app, &member, "house-model").await.status(), 200);
    let (status, _) = app.get("/v1/models", &member).await;
    assert_eq!(status, 200);
    // A model catgate cannot price cannot be charged to a budget.
    let resp = chat(&app, &member, "mystery-model").await;
    assert_eq!(resp.status(), 403);
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "model_not_priced");
    // A costly endpoint catgate does not meter is closed to a budget; reading it is not.
    let (status, body) = app
        .post("/v1/batches", &member, json!({"input_file_id": "file-1"}))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "route_not_metered");
    let (status, _) = app.get("/v1/batches", &member).await;
    assert_eq!(status, 200);
    assert_eq!(app.mock.received().len(), 3);
}

#[tokio::test]
async fn daily_budget_counts_today_only_and_the_month_window_is_computed() {
    let app = spawn_app().await;
    let (_root, member) = limited_team(
        &app,
        json!({"monthlyBudget": "1.00", "dailyBudget": "0.001"}),
    )
    .await;
    app.mock
        .on(|_| Reply::json(200, chat_completion("gpt-4o-mini", "hi", Some((10, 10)))));
    // $5 spent last year: another month, so it does not count.
    insert_usage(&app, 2, "2025-01-15T10:00:00.000000Z", 10, "5").await;
    assert_eq!(chat(&app, &member, "gpt-4o-mini").await.status(), 200);
    // Today: $0.002 more (a direct insert settles spend like the recorder does).
    let now = catgate::timestamp::now();
    insert_usage(&app, 2, &now, 10, "0.002").await;
    let resp = chat(&app, &member, "gpt-4o-mini").await;
    assert_eq!(resp.status(), 429);
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(
        body,
        quota_body(&format!(
            "Daily budget of $0.001 reached; resets {}",
            periods().3
        ))
    );
    // 10 + 10 tokens: 10 × 0.15/1M + 10 × 0.60/1M = 0.0000075; plus 0.002.
    let (_, me) = app.get("/1/me", &member).await;
    assert_eq!(
        me["spend"],
        json!({"month": "0.0020075", "day": "0.0020075"})
    );
    assert_eq!(me["remaining"], json!({"month": "0.9979925", "day": "0"}));
}

#[tokio::test]
async fn rpm_answers_429_with_retry_after() {
    let app = spawn_app().await;
    let (root, member) = limited_team(&app, json!({"rpm": 2})).await;
    app.mock
        .on(|_| Reply::json(200, chat_completion("gpt-4o-mini", "hi", Some((1, 1)))));
    assert_eq!(chat(&app, &member, "gpt-4o-mini").await.status(), 200);
    assert_eq!(chat(&app, &member, "gpt-4o-mini").await.status(), 200);
    let resp = chat(&app, &member, "gpt-4o-mini").await;
    assert_eq!(resp.status(), 429);
    // A rate limit passes: SDKs may retry after Retry-After.
    assert!(resp.headers().get("x-should-retry").is_none());
    // Two at once, then one every 30 s: the third fits 30 s after the first.
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["type"], "requests");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(
        body["error"]["message"],
        format!("Rate limit of 2 requests per minute reached; retry in {retry} s.")
    );
    assert_eq!(app.usage_rows(2).await.len(), 2);
    assert_eq!(app.mock.received().len(), 2);
    // Root has no limits and is not slowed by alice's.
    for _ in 0..3 {
        assert_eq!(chat(&app, &root, "gpt-4o-mini").await.status(), 200);
    }
}

#[tokio::test]
async fn max_concurrent_refuses_the_extra_request_and_frees_the_slot_at_the_end() {
    let app = spawn_app().await;
    let (_root, member) = limited_team(&app, json!({"maxConcurrent": 1})).await;
    let mut slow = Reply::json(200, chat_completion("gpt-4o-mini", "hi", Some((1, 1))));
    slow.parts.insert(0, Part::WaitRelease);
    app.mock.push(slow);
    app.mock
        .on(|_| Reply::json(200, chat_completion("gpt-4o-mini", "hi", Some((1, 1)))));
    let first = {
        let (app, member) = (&app, member.clone());
        async move { chat(app, &member, "gpt-4o-mini").await }
    };
    let second = async {
        // Until the mock has the first request, the slot may still be free.
        while app.mock.received().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let resp = chat(&app, &member, "gpt-4o-mini").await;
        app.mock.release();
        resp
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(second.status(), 429);
    assert_eq!(second.headers()["retry-after"], "1");
    let body: Value = serde_json::from_slice(&second.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(first.status(), 200);
    first.bytes().await.unwrap();
    // The slot was freed before the answer's last byte: back-to-back requests all pass.
    for _ in 0..5 {
        let resp = chat(&app, &member, "gpt-4o-mini").await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    assert_eq!(app.usage_rows(6).await.len(), 6);
}
