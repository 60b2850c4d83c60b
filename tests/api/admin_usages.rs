//! `/1/usages` and `/1/me/usages`: windows, per-user totals, exact 6-decimal costs.

use crate::helpers::*;
use serde_json::json;
use time::{Date, Month, OffsetDateTime};

/// Root plus members alice (2), bob (3), carol (4), dave (5); returns (root, alice) tokens.
async fn team(app: &TestApp) -> (String, String) {
    let root = app.init_root().await;
    let (_, alice) = app.add_user(&root, "alice").await;
    for name in ["bob", "carol", "dave"] {
        app.add_user(&root, name).await;
    }
    (root, alice)
}

/// `YYYY-MM-DDT00:00:00.000000Z` of `d`.
fn midnight(d: Date) -> String {
    format!("{d}T00:00:00.000000Z")
}

/// The first day of the current UTC month and of the next one, computed here independently.
fn this_month() -> (Date, Date) {
    let today = OffsetDateTime::now_utc().date();
    let first = Date::from_calendar_date(today.year(), today.month(), 1).unwrap();
    let next = if today.month() == Month::December {
        Date::from_calendar_date(today.year() + 1, Month::January, 1).unwrap()
    } else {
        Date::from_calendar_date(today.year(), today.month().next(), 1).unwrap()
    };
    (first, next)
}

fn now() -> String {
    let t = OffsetDateTime::now_utc();
    format!(
        "{}T{:02}:{:02}:{:02}.{:06}Z",
        t.date(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

#[tokio::test]
async fn window_bounds_and_exact_totals() {
    let app = spawn_app().await;
    let (root, _) = team(&app).await;

    // carol (4) first, so the answer's order comes from userId, not insertion.
    // Several small exact decimals: 0.6000005 → half-up → 0.600001.
    for (t, total, cost) in [
        ("2024-03-10T08:00:00.000000Z", 100, "0.1"),
        ("2024-03-11T08:00:00.000000Z", 200, "0.2"),
        ("2024-03-12T08:00:00.000000Z", 300, "0.3"),
        ("2024-03-13T08:00:00.000000Z", 4, "0.00000049"),
        ("2024-03-14T08:00:00.000000Z", 5, "0.00000001"),
    ] {
        insert_usage(&app, 4, t, total, cost).await;
    }
    // alice (2): exactly at `from` counts, just before `to` counts, exactly at `to` doesn't,
    // just before `from` doesn't. 0.0000002 + 0.0000003 = 0.0000005 → "0.000001".
    insert_usage(&app, 2, "2024-03-01T00:00:00.000000Z", 10, "0.0000002").await;
    insert_usage(&app, 2, "2024-03-31T23:59:59.999999Z", 5, "0.0000003").await;
    insert_usage(&app, 2, "2024-04-01T00:00:00.000000Z", 1000, "1").await;
    insert_usage(&app, 2, "2024-02-29T23:59:59.999999Z", 2000, "2").await;
    // bob (3): 0.0000010 + 0.0000015 = 0.0000025 → half-up "0.000003" (not banker's 0.000002).
    insert_usage(&app, 3, "2024-03-15T12:00:00.000000Z", 7, "0.0000010").await;
    insert_usage(&app, 3, "2024-03-16T12:00:00.000000Z", 8, "0.0000015").await;
    // dave (5): only outside the window → absent. Root has no records → absent.
    insert_usage(&app, 5, "2024-04-01T00:00:00.000000Z", 50, "0.5").await;
    insert_usage(&app, 5, "2024-01-31T10:00:00.000000Z", 60, "0.6").await;

    app.expect_get(
        "/1/usages?from=2024-03-01&to=2024-04-01",
        &root,
        200,
        json!([
            {"userId": 2, "totalUnit": 15, "cost": "0.000001"},
            {"userId": 3, "totalUnit": 15, "cost": "0.000003"},
            {"userId": 4, "totalUnit": 609, "cost": "0.600001"},
        ]),
    )
    .await;

    // A one-day window at the `to` edge picks up exactly the two records at 04-01 00:00.
    app.expect_get(
        "/1/usages?from=2024-04-01&to=2024-04-02",
        &root,
        200,
        json!([
            {"userId": 2, "totalUnit": 1000, "cost": "1.000000"},
            {"userId": 5, "totalUnit": 50, "cost": "0.500000"},
        ]),
    )
    .await;

    // A wide window sums everything.
    app.expect_get(
        "/1/usages?from=2000-01-01&to=2100-01-01",
        &root,
        200,
        json!([
            {"userId": 2, "totalUnit": 3015, "cost": "3.000001"},
            {"userId": 3, "totalUnit": 15, "cost": "0.000003"},
            {"userId": 4, "totalUnit": 609, "cost": "0.600001"},
            {"userId": 5, "totalUnit": 110, "cost": "1.100000"},
        ]),
    )
    .await;

    // Nothing in the window → [].
    app.expect_get(
        "/1/usages?from=2023-01-01&to=2023-12-31",
        &root,
        200,
        json!([]),
    )
    .await;
}

#[tokio::test]
async fn rounding_is_half_up_to_six_decimals() {
    let app = spawn_app().await;
    let (root, _) = team(&app).await;
    let day = "2024-06-10T00:00:00.000000Z";
    // alice: just below half → rounds down.
    insert_usage(&app, 2, day, 1, "0.0000004999").await;
    // bob: 12.3456785 → 12.345679.
    insert_usage(&app, 3, day, 1, "12.3456780").await;
    insert_usage(&app, 3, day, 1, "0.0000005").await;
    // carol: zero cost shows six zeros; large token counts stay integers.
    insert_usage(&app, 4, day, 3_000_000_000, "0").await;
    insert_usage(&app, 4, day, 3_000_000_000, "0").await;
    // dave: many tiny exact amounts (100 × 0.00000001 = 0.000001), no float drift.
    for _ in 0..100 {
        insert_usage(&app, 5, day, 1, "0.00000001").await;
    }
    app.expect_get(
        "/1/usages?from=2024-06-01&to=2024-07-01",
        &root,
        200,
        json!([
            {"userId": 2, "totalUnit": 1, "cost": "0.000000"},
            {"userId": 3, "totalUnit": 2, "cost": "12.345679"},
            {"userId": 4, "totalUnit": 6_000_000_000_i64, "cost": "0.000000"},
            {"userId": 5, "totalUnit": 100, "cost": "0.000001"},
        ]),
    )
    .await;
}

#[tokio::test]
async fn default_window_is_the_current_month() {
    let app = spawn_app().await;
    let (root, _) = team(&app).await;
    let (first, next) = this_month();
    let last_month_end = first.previous_day().unwrap();
    insert_usage(&app, 2, &now(), 11, "0.000011").await;
    insert_usage(&app, 2, &midnight(first), 1, "0.000001").await;
    insert_usage(&app, 3, &midnight(next), 500, "0.5").await;
    insert_usage(
        &app,
        3,
        &format!("{last_month_end}T23:59:59.999999Z"),
        600,
        "0.6",
    )
    .await;
    insert_usage(&app, 4, "2020-01-15T10:00:00.000000Z", 700, "0.7").await;

    let expected = json!([{"userId": 2, "totalUnit": 12, "cost": "0.000012"}]);
    let (status, body) = app.get("/1/usages", &root).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, expected);
    // The same as asking for the month explicitly.
    let (status, body) = app
        .get(&format!("/1/usages?from={first}&to={next}"), &root)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, expected);
    // And /1/me/usages uses the same default.
    app.expect_get(
        "/1/me/usages",
        &root,
        200,
        json!([{"userId": 1, "totalUnit": 0, "cost": "0.000000"}]),
    )
    .await;
}

#[tokio::test]
async fn bad_windows_are_rejected() {
    let app = spawn_app().await;
    let (root, alice) = team(&app).await;
    insert_usage(&app, 2, "2024-03-05T00:00:00.000000Z", 10, "0.01").await;
    for query in [
        "from=2024-03-01",
        "to=2024-04-01",
        "from=2024-13-01&to=2024-14-01",
        "from=2024-03-01&to=2024-02-30",
        "from=yesterday&to=2024-04-01",
        "from=2024/03/01&to=2024/04/01",
        "from=2024-3-1&to=2024-4-1",
        "from=2024-03-01T00:00:00Z&to=2024-04-01",
        "from=2024-04-01&to=2024-03-01",
        "from=2024-03-02&to=2024-03-01",
    ] {
        for (path, token) in [("/1/usages", &root), ("/1/me/usages", &alice)] {
            let (status, body) = app.get(&format!("{path}?{query}"), token).await;
            assert_eq!(status, 400, "{path}?{query}: {body}");
            assert_error(&body);
        }
    }
    // from == to is an empty window, not an error.
    app.expect_get(
        "/1/usages?from=2024-03-05&to=2024-03-05",
        &root,
        200,
        json!([]),
    )
    .await;
    app.expect_get(
        "/1/me/usages?from=2024-03-05&to=2024-03-05",
        &alice,
        200,
        json!([{"userId": 2, "totalUnit": 0, "cost": "0.000000"}]),
    )
    .await;
}

#[tokio::test]
async fn members_see_only_their_own_usage() {
    let app = spawn_app().await;
    let (root, alice) = team(&app).await;
    let (status, body) = app.get("/1/usages", &alice).await;
    assert_eq!(status, 403, "{body}");
    assert_error(&body);
    let (status, body) = app
        .get("/1/usages?from=2024-03-01&to=2024-04-01", &alice)
        .await;
    assert_eq!(status, 403, "{body}");
    assert_error(&body);

    // No rows yet: zeros.
    app.expect_get(
        "/1/me/usages",
        &alice,
        200,
        json!([{"userId": 2, "totalUnit": 0, "cost": "0.000000"}]),
    )
    .await;

    insert_usage(&app, 2, &now(), 20, "0.0000004").await;
    insert_usage(&app, 2, &now(), 22, "0.0000001").await;
    insert_usage(&app, 2, "2024-03-10T00:00:00.000000Z", 5, "0.25").await;
    insert_usage(&app, 3, &now(), 99, "9.99").await;
    insert_usage(&app, 1, &now(), 77, "7.77").await;

    app.expect_get(
        "/1/me/usages",
        &alice,
        200,
        json!([{"userId": 2, "totalUnit": 42, "cost": "0.000001"}]),
    )
    .await;
    app.expect_get(
        "/1/me/usages?from=2024-03-01&to=2024-04-01",
        &alice,
        200,
        json!([{"userId": 2, "totalUnit": 5, "cost": "0.250000"}]),
    )
    .await;
    app.expect_get(
        "/1/me/usages",
        &root,
        200,
        json!([{"userId": 1, "totalUnit": 77, "cost": "7.770000"}]),
    )
    .await;

    // Root's report shows everyone for the month.
    app.expect_get(
        "/1/usages",
        &root,
        200,
        json!([
            {"userId": 1, "totalUnit": 77, "cost": "7.770000"},
            {"userId": 2, "totalUnit": 42, "cost": "0.000001"},
            {"userId": 3, "totalUnit": 99, "cost": "9.990000"},
        ]),
    )
    .await;
}

#[tokio::test]
async fn deleted_users_usage_is_kept() {
    let app = spawn_app().await;
    let (root, _) = team(&app).await;
    insert_usage(&app, 3, "2024-03-10T00:00:00.000000Z", 30, "0.03").await;
    let (status, _) = app.call("DELETE", "/1/users/3", Some(&root), None).await;
    assert_eq!(status, 200);
    app.expect_get(
        "/1/usages?from=2024-03-01&to=2024-04-01",
        &root,
        200,
        json!([{"userId": 3, "totalUnit": 30, "cost": "0.030000"}]),
    )
    .await;
}
