//! PostgreSQL only: two replicas on one database, a database outage, and `catgate copy`. Each
//! test runs its own throwaway cluster (`.ci/postgres.sh`), so it can also stop it. Without
//! PostgreSQL installed they say "skipped: PostgreSQL not installed"; with
//! `CATGATE_REQUIRE_POSTGRES=1` (CI) that is a failure instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

/// A cluster owned by one test, stopped and deleted when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    url: String,
}

fn script(cmd: &str, dir: &Path) -> std::process::Output {
    Command::new("bash")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/postgres.sh"))
        .args([cmd, dir.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

impl Cluster {
    /// `None` (after saying so) when PostgreSQL is not installed.
    fn start(test: &str) -> Option<Cluster> {
        let dir = tempfile::tempdir().unwrap();
        let out = script("start", dir.path());
        if out.status.code() == Some(3) {
            let required = std::env::var("CATGATE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "PostgreSQL is required (CATGATE_REQUIRE_POSTGRES=1) but not installed"
            );
            eprintln!("skipped: PostgreSQL not installed ({test})");
            return None;
        }
        assert!(
            out.status.success(),
            "cannot start PostgreSQL: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Some(Cluster { dir, url })
    }

    /// Stops the server and keeps its data: an outage.
    fn halt(&self) {
        assert!(script("halt", self.dir.path()).status.success());
    }

    fn resume(&self) {
        assert!(script("start", self.dir.path()).status.success());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = script("stop", self.dir.path());
    }
}

fn ask() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
}

/// A replica: its own folder (config, journal) on the shared database.
fn replica(dir: &Path, port: u16, database: &str, upstream: &str) -> Killed {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase = \"{database}\"\n\
             [upstream]\nopenai_base_url = \"{upstream}\"\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("catgate.log")).unwrap();
    serve(&config, Stdio::from(log))
}

async fn send(
    http: &reqwest::Client,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let req = match body {
        Some(b) => http
            .post(url)
            .header("content-type", "application/json")
            .body(b.to_string()),
        None => http.get(url),
    };
    let resp = req.bearer_auth(token).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The member's row of the detail report by user, as `base` answers it.
async fn alice_row(http: &reqwest::Client, base: &str, root: &str) -> Value {
    let (status, body) = send(
        http,
        format!("{base}/1/usages/detail?group_by=user"),
        root,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .find(|r| r["userName"] == "alice")
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_admin_changes_and_usage_and_survive_a_kill() {
    let Some(pg) = Cluster::start("two replicas") else {
        return;
    };
    let database = fresh_database(&pg.url).await;
    let mock = Mock::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port_a, port_b) = (free_port(), free_port());
    let (a_url, b_url) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    let mut a = replica(dir_a.path(), port_a, &database, &mock.url());
    let _b = replica(dir_b.path(), port_b, &database, &mock.url());
    let http = reqwest::Client::new();
    wait_ready(&http, &a_url).await;
    wait_ready(&http, &b_url).await;

    // Admin changes on A...
    let (status, root) = send(&http, format!("{a_url}/1/users/init"), "", Some(json!({}))).await;
    assert_eq!(status, 200, "{root}");
    let root = root["token"].as_str().unwrap().to_string();
    let (_, alice) = send(
        &http,
        format!("{a_url}/1/users"),
        &root,
        Some(json!({"name": "alice"})),
    )
    .await;
    let alice = alice["token"].as_str().unwrap().to_string();
    let key = json!({"key": "sk-1", "name": "k1", "endpoint": mock.url()});
    assert_eq!(
        send(&http, format!("{a_url}/1/keys"), &root, Some(key))
            .await
            .0,
        200
    );
    // ...serve on B within a second.
    let changed = Instant::now();
    let mut sent = 0;
    loop {
        let (status, _) = send(
            &http,
            format!("{b_url}/v1/chat/completions"),
            &alice,
            Some(ask()),
        )
        .await;
        if status == 200 {
            sent += 1;
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "B did not see A's user and key within 1 s: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Usage from both replicas.
    for base in [&a_url, &b_url, &a_url, &b_url, &a_url] {
        let (status, body) = send(
            &http,
            format!("{base}/v1/chat/completions"),
            &alice,
            Some(ask()),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        sent += 1;
    }
    assert_eq!(sent, 6);
    // 6 × (9 × 0.15 + 12 × 0.60) / 1M = 6 × 0.00000855 = 0.0000513 → 0.000051.
    for base in [&a_url, &b_url] {
        let row = alice_row(&http, base, &root).await;
        assert_eq!(
            (
                row["requests"].clone(),
                row["totalTokens"].clone(),
                row["cost"].clone()
            ),
            (json!(6), json!(126), json!("0.000051")),
            "{base}: {row}"
        );
    }

    // A is killed; B keeps serving, and A comes back with nothing lost or doubled.
    a.kill().unwrap();
    a.wait().unwrap();
    let (status, _) = send(
        &http,
        format!("{b_url}/v1/chat/completions"),
        &alice,
        Some(ask()),
    )
    .await;
    assert_eq!(status, 200);
    let _a = replica(dir_a.path(), port_a, &database, &mock.url());
    wait_ready(&http, &a_url).await;
    // 7 × 0.00000855 = 0.00005985 → 0.000060.
    let row = alice_row(&http, &a_url, &root).await;
    assert_eq!(
        (row["requests"].clone(), row["cost"].clone()),
        (json!(7), json!("0.000060")),
        "{row}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_served_from_caches_and_the_journal() {
    let Some(pg) = Cluster::start("database outage") else {
        return;
    };
    let database = fresh_database(&pg.url).await;
    let app = spawn_app_with(&format!("database = \"{database}\"")).await;
    let (root, member) = app.with_team(1).await;
    assert_eq!(
        app.post("/v1/chat/completions", &member, ask()).await.0,
        200
    );

    pg.halt();
    // Known members keep being served; their records wait in the local journal.
    for _ in 0..3 {
        let (status, body) = app.post("/v1/chat/completions", &member, ask()).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = app.call("GET", "/readyz", None, None).await;
    assert_eq!(status, 503, "{body}");

    pg.resume();
    let back = Instant::now();
    loop {
        let (status, _) = app.call("GET", "/readyz", None, None).await;
        if status == 200 {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(20), "never caught up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Exactly once: four requests, four records, four distinct ids.
    let rows = app.usage_rows(4).await;
    let ids: std::collections::HashSet<_> = rows.iter().map(|r| r.request_id.clone()).collect();
    assert_eq!((rows.len(), ids.len()), (4, 4));
    let (status, totals) = app.get("/1/usages", &root).await;
    assert_eq!(status, 200);
    // 4 × 21 tokens; 4 × 0.00000855 = 0.0000342.
    assert_eq!(
        totals,
        json!([{"userId": 2, "totalUnit": 84, "cost": "0.000034"}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_moves_a_sqlite_database_with_identical_reports() {
    let Some(pg) = Cluster::start("catgate copy") else {
        return;
    };
    let sqlite = spawn_app_with("database = \"catgate.db\"").await;
    let (root, _) = sqlite.with_team(2).await;
    let (bob, _) = sqlite.add_user(&root, "bob").await;
    for (user, day, total, cost) in [
        (2, "2026-10-31T23:59:59.999999Z", 1000, "0.00015"),
        (2, "2026-11-01T00:00:00.000000Z", 21, "0.00000855"),
        (bob, "2026-11-15T08:00:00.000000Z", 5, "12.3456780"),
        (1, "2026-11-20T12:00:00.000000Z", 7, "0.0000001"),
    ] {
        insert_usage(&sqlite, user, day, total, cost).await;
    }
    assert_eq!(
        sqlite
            .call("DELETE", &format!("/1/users/{bob}"), Some(&root), None)
            .await
            .0,
        200
    );
    assert_eq!(
        sqlite
            .call("DELETE", "/1/keys/2", Some(&root), None)
            .await
            .0,
        200
    );
    let reads = [
        "/1/users?all=true",
        "/1/keys",
        "/1/usages?from=2026-10-01&to=2026-12-01",
        "/1/usages/detail?from=2026-10-01&to=2026-12-01&group_by=user,model,key,day,tier",
        "/1/usages/detail?from=2026-10-01&to=2026-12-01&group_by=model&format=csv",
    ];
    let mut before = Vec::new();
    for path in reads {
        before.push(sqlite.get(path, &root).await);
    }

    let target = fresh_database(&pg.url).await;
    let config = sqlite.dir.path().join("copy.toml");
    std::fs::write(&config, format!("database = \"{}\"\n", sqlite.database)).unwrap();
    let copy = || {
        Command::new(env!("CARGO_BIN_EXE_catgate"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "copy",
                "--to",
                &target,
            ])
            .env_remove("CATGATE_DATABASE")
            .output()
            .unwrap()
    };
    let out = copy();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("3 users, 2 keys, 4 usage records (4 new)"),
        "{stdout}"
    );
    // 0.00015 + 0.00000855 + 12.3456780 + 0.0000001 = 12.34583665.
    assert!(stdout.contains("cost 12.34583665"), "{stdout}");
    // A second copy onto the now non-empty target is refused.
    let again = copy();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    let postgres = spawn_app_with(&format!("database = \"{target}\"")).await;
    for (path, expected) in reads.iter().zip(&before) {
        assert_eq!(&postgres.get(path, &root).await, expected, "{path}");
    }
    // Ids go on after the copied ones.
    assert_eq!(postgres.add_user(&root, "carol").await.0, 4);
}

/// Budgets and rpm hold across two replicas on one database: each replica admits through the
/// same rows. 32 requests at once, half on each replica, against a $0.01 monthly budget; every
/// answer reports 10,000 prompt + 2,000 completion tokens of gpt-4o-mini:
/// 10000 × 0.15/1M + 2000 × 0.60/1M = $0.0027. The first goes alone; after it, each
/// reservation is $0.0027, so exactly 4 are admitted ($0.0108, less than one request over)
/// and 28 get the 429 — the same as on one replica. Then `rpm: 2` allows two requests over
/// both replicas together, and the third, on either, waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budgets_and_rpm_hold_across_two_replicas() {
    let Some(pg) = Cluster::start("limits across replicas") else {
        return;
    };
    let database = fresh_database(&pg.url).await;
    let a = spawn_app_with(&format!("database = \"{database}\"\n")).await;
    let b = spawn_app_with(&format!("database = \"{database}\"\n")).await;
    let (root, alice) = a.with_team(1).await;
    a.mock.on(|_| {
        Reply::json(
            200,
            chat_completion("gpt-4o-mini", "hello", Some((10_000, 2_000))),
        )
    });
    let (status, _) = a
        .call(
            "PUT",
            "/1/users/2/limits",
            Some(&root),
            Some(json!({"monthlyBudget": "0.01"})),
        )
        .await;
    assert_eq!(status, 200);
    // B's /1 requests reload its caches: it now knows alice, her limits and the key.
    let (status, me) = b.get("/1/me", &alice).await;
    assert_eq!(
        (status, &me["limits"]["monthlyBudget"]),
        (200, &json!("0.01"))
    );

    let chat = |app: &TestApp| {
        let (http, url, alice) = (
            app.http.clone(),
            app.url("/v1/chat/completions"),
            alice.clone(),
        );
        async move {
            let body = json!({"model": "gpt-4o-mini", "max_tokens": 50,
                "messages": [{"role": "user", "content": "hi"}]});
            send(&http, url, &alice, Some(body)).await
        }
    };
    let sends = (0..32).map(|i| chat(if i % 2 == 0 { &a } else { &b }));
    let answers = futures_util::future::join_all(sends).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 4, "{answers:?}");
    let month_resets = periods().2;
    let refused = json!({"error": {"type": "insufficient_quota", "code": "insufficient_quota",
        "message": format!("Monthly budget of $0.01 reached; resets {month_resets}"),
        "param": null}});
    for (status, body) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!((*status, body), (429, &refused));
    }
    for app in [&a, &b] {
        let (_, me) = app.get("/1/me", &alice).await;
        assert_eq!(me["spend"]["month"], "0.0108");
    }
    assert_eq!(a.mock.received().len(), 4);

    let (status, _) = a
        .call(
            "PUT",
            "/1/users/2/limits",
            Some(&root),
            Some(json!({"rpm": 2})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = b.get("/1/me", &alice).await;
    assert_eq!(status, 200);
    assert_eq!(chat(&a).await.0, 200);
    assert_eq!(chat(&b).await.0, 200);
    for app in [&a, &b] {
        let (status, body) = chat(app).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    }
    assert_eq!(a.mock.received().len(), 6);
}
