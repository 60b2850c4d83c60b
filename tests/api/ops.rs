//! Operations: `catgate backup` of a live SQLite database, `catgate health` against `/readyz`,
//! and the log format of a real `catgate serve` process.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use catgate::store::{Database, OpenMode, Store};
use serde_json::{json, Value};

use crate::cli::{cli, printed, run, write_config};
use crate::helpers::*;

/// A SQLite app (also when the suite runs on PostgreSQL: backup is SQLite's) and a config
/// naming its database.
async fn sqlite_app() -> (TestApp, PathBuf) {
    let app = spawn_app_with("database = \"catgate.db\"\n").await;
    let config = app.dir.path().join("cli.toml");
    std::fs::write(&config, format!("database = \"{}\"\n", app.database)).unwrap();
    (app, config)
}

async fn backup(config: &Path, file: &Path, force: bool) -> crate::cli::Run {
    let (config, file) = (config.to_path_buf(), file.to_str().unwrap().to_string());
    tokio::task::spawn_blocking(move || {
        let mut args = vec!["backup", file.as_str()];
        if force {
            args.push("--force");
        }
        cli(&config, &args)
    })
    .await
    .unwrap()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn open_existing(path: &Path) -> Store {
    Store::open(&Database::Sqlite(path.to_path_buf()), OpenMode::Existing)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_backup_of_the_live_database_holds_the_same_users_keys_and_usage() {
    let (app, config) = sqlite_app().await;
    let (root, member) = app.with_team(2).await;
    let (bob, _) = app.add_user(&root, "bob").await;
    let (status, _) = app
        .call("DELETE", &format!("/1/users/{bob}"), Some(&root), None)
        .await;
    assert_eq!(status, 200);
    for (prompt, completion) in [(1000, 10), (20, 300), (7, 7)] {
        app.mock.push(Reply::json(
            200,
            chat_completion("gpt-4o-mini", "Hi", Some((prompt, completion))),
        ));
        let body = json!({"model": "gpt-4o-mini", "messages": []});
        let (status, _) = app.post("/v1/chat/completions", &member, body).await;
        assert_eq!(status, 200);
    }
    let records = app.usage_rows(3).await;

    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("catgate-backup.db");
    let r = backup(&config, &file, false).await;
    let line = printed(&r);
    // root, alice and the deleted bob; key1 and key2; three answers.
    let want = format!(
        "backed up {} to {}: 3 users, 2 keys, 3 usage records (",
        app.database,
        file.display()
    );
    assert!(line.starts_with(&want), "{line}");
    let bytes = std::fs::metadata(&file).unwrap().len();
    assert!(line.ends_with(&format!("({bytes} bytes)")), "{line}");
    assert_eq!(mode(&file), 0o600);
    // One self-contained file: no journal, no temp file left beside it.
    assert_eq!(names_in(out.path()), ["catgate-backup.db"]);

    let copy = open_existing(&file).await;
    let source = &app.app.store;
    assert_eq!(
        copy.list_users(true).await.unwrap(),
        source.list_users(true).await.unwrap()
    );
    // Keys with their secrets: a restore must be able to call upstream.
    let keys = |list: Vec<catgate::store::keys::StoredKey>| {
        list.into_iter()
            .map(|k| {
                (
                    serde_json::to_value(&k.key).unwrap(),
                    k.key.key,
                    k.is_delete,
                )
            })
            .collect::<Vec<_>>()
    };
    let copied_keys = keys(copy.all_keys().await.unwrap());
    assert_eq!(copied_keys.len(), 2);
    assert_eq!(copied_keys, keys(source.all_keys().await.unwrap()));
    assert_eq!(copy.usage_records(100).await.unwrap(), records);
    // Reports read the rollups, copied too: 1010 + 320 + 14 tokens.
    let total = |rows: Vec<catgate::store::report::ReportRow>| {
        rows.first().map(|r| (r.requests, r.total_tokens, r.cost))
    };
    let all = ("0000-01-01", "9999-12-31");
    let copied = copy.usage_report(all.0, all.1, None, &[]).await.unwrap();
    let live = source.usage_report(all.0, all.1, None, &[]).await.unwrap();
    assert_eq!(total(copied.clone()).map(|t| (t.0, t.1)), Some((3, 1344)));
    assert_eq!(total(copied), total(live));
}

#[tokio::test]
async fn a_backup_taken_while_the_server_writes_is_a_consistent_prefix() {
    let (app, config) = sqlite_app().await;
    let root = app.init_root().await;
    let (alice, _) = app.add_user(&root, "alice").await;
    for i in 0..50 {
        insert_usage(
            &app,
            alice,
            &format!("2026-11-01T00:00:{i:02}.000000Z"),
            1,
            "0.1",
        )
        .await;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, stop) = (app.app.store.clone(), stop.clone());
        let template = app.app.store.usage_records(1).await.unwrap().remove(0);
        tokio::spawn(async move {
            let mut written = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut r = template.clone();
                r.request_id = uuid::Uuid::now_v7().to_string();
                store.insert_usage(&[r]).await.unwrap();
                written += 1;
            }
            written
        })
    };
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("b.db");
    let r = backup(&config, &file, false).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(r.ok(), "{}", r.stderr);

    let source = app.app.store.usage_records(1_000_000).await.unwrap();
    assert_eq!(source.len() as u64, 50 + written);
    let copied = open_existing(&file)
        .await
        .usage_records(1_000_000)
        .await
        .unwrap();
    // Every insert is one transaction: the copy is the source as of one moment.
    assert!(copied.len() >= 50, "{}", copied.len());
    assert_eq!(copied[..], source[..copied.len()]);
}

#[tokio::test]
async fn backup_never_overwrites_a_file_unless_forced() {
    use std::os::unix::fs::PermissionsExt;
    let (app, config) = sqlite_app().await;
    app.init_root().await;
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("old.db");
    std::fs::write(&file, "an older backup").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();

    let r = backup(&config, &file, false).await;
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(r.stdout, "");
    let want = format!(
        "catgate: {} exists; pass --force to replace it\n",
        file.display()
    );
    assert_eq!(r.stderr, want);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "an older backup");

    let r = backup(&config, &file, true).await;
    assert!(
        printed(&r).contains(": 1 users, 0 keys, 0 usage records"),
        "{}",
        r.stdout
    );
    assert_eq!(mode(&file), 0o600);
    assert_eq!(names_in(out.path()), ["old.db"]);
    let copy = open_existing(&file).await;
    assert_eq!(
        copy.user(1).await.unwrap(),
        app.app.store.user(1).await.unwrap()
    );
}

#[test]
fn backup_of_a_postgres_database_points_to_pg_dump() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    // Nothing listens on port 1: the command must refuse before connecting.
    let url = "postgres://catgate:hunter2@127.0.0.1:1/catgate";
    std::fs::write(&config, format!("database = \"{url}\"\n")).unwrap();
    let file = dir.path().join("b.db");
    let r = cli(&config, &["backup", file.to_str().unwrap()]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("pg_dump"), "{}", r.stderr);
    assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
    assert_eq!(names_in(dir.path()), ["config.toml"]);
}

#[tokio::test]
async fn health_answers_zero_when_ready_and_probes_loopback_for_a_wildcard_listen() {
    let app = spawn_app().await;
    let port = app.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    // The server's own config would say 0.0.0.0: the probe goes to 127.0.0.1.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("127.0.0.1:0", &format!("0.0.0.0:{port}"));
    std::fs::write(&config, text).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let runs = tokio::task::spawn_blocking(move || {
        [
            cli(&config, &["health"]),
            run(&["health", "--url", &base]),
            run(&["health", "--url", &format!("{base}/healthz")]),
        ]
    })
    .await
    .unwrap();
    let want = [
        format!("ready: http://127.0.0.1:{port}/readyz"),
        format!("ready: http://127.0.0.1:{port}/readyz"),
        format!("ready: http://127.0.0.1:{port}/healthz"),
    ];
    for (r, want) in runs.iter().zip(want) {
        assert_eq!(printed(r), want);
    }
}

/// A one-connection server that reads a request and answers `answer` (or nothing: `None`).
fn fake_server(answer: Option<&'static str>) -> (u16, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "the probe closed before its request ended");
            request.extend_from_slice(&buf[..n]);
        }
        match answer {
            Some(a) => conn.write_all(a.as_bytes()).unwrap(),
            // Hold the connection open until the probe gives up and closes it.
            None => while conn.read(&mut buf).map(|n| n > 0).unwrap_or(false) {},
        }
        String::from_utf8(request).unwrap()
    });
    (port, thread)
}

#[test]
fn health_fails_with_the_reason_readyz_gives() {
    let body = r#"{"status":"unavailable","reason":"database unavailable: disk I/O error"}"#;
    let answer: &'static str = Box::leak(
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_boxed_str(),
    );
    let (port, server) = fake_server(Some(answer));
    let r = run(&["health", "--url", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert_eq!(
        r.stderr,
        format!(
            "catgate: not ready: http://127.0.0.1:{port}/readyz: 503 Service Unavailable: \
             database unavailable: disk I/O error\n"
        )
    );
    let request = server.join().unwrap();
    assert!(
        request.starts_with(&format!(
            "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        )),
        "{request}"
    );
}

#[test]
fn health_fails_when_nothing_listens_or_nothing_answers() {
    let port = free_port();
    let r = run(&["health", "--url", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let want = format!("catgate: not ready: http://127.0.0.1:{port}/readyz: cannot connect to");
    assert!(r.stderr.starts_with(&want), "{}", r.stderr);

    // A server that accepts but never answers: the probe gives up on its own.
    let (port, server) = fake_server(None);
    let r = run(&["health", "--url", &format!("http://127.0.0.1:{port}/")]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(
        r.stderr,
        format!("catgate: not ready: http://127.0.0.1:{port}/readyz: no answer within 5 s\n")
    );
    server.join().unwrap();
}

/// `catgate serve` with `extra` config and `env`, one request, then SIGTERM: its stderr.
async fn serve_and_stop(extra: &str, env: &[(&str, &str)]) -> (String, u16) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:{port}\"\ndatabase = \"catgate.db\"\n{extra}"),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_catgate"));
    command
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env_remove("CATGATE_LISTEN")
        .env_remove("CATGATE_DATABASE")
        .env_remove("CATGATE_LOG_FORMAT")
        .env_remove("PORT")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = Killed(command.spawn().unwrap());
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&http, &base).await;
    let status = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let pid = rustix::process::Pid::from_child(&child.0);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let started = Instant::now();
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
    (std::fs::read_to_string(&log).unwrap(), port)
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let (log, port) = serve_and_stop("log_format = \"json\"\n", &[]).await;
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| { l.is_object() && l["timestamp"].is_string() && l["level"].is_string() }),
        "{log}"
    );
    let listening = lines
        .iter()
        .find(|l| l["message"] == "catgate listening")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(listening["level"], "INFO");
    // Fields sit beside the message, not under a nested object.
    assert_eq!(listening["addr"], format!("127.0.0.1:{port}"));
    assert_eq!(listening["database"], "sqlite");
    let last = lines.last().unwrap();
    assert_eq!(last["message"], "usage recorder drained; bye", "{log}");
    assert!(!log.contains('\x1b'), "{log}");
}

#[tokio::test]
async fn text_logs_into_a_file_carry_no_colour_codes() {
    // The environment wins over the config file.
    let (log, port) =
        serve_and_stop("log_format = \"json\"\n", &[("CATGATE_LOG_FORMAT", "text")]).await;
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 2, "{log}");
    assert!(!log.as_bytes().windows(2).any(|w| w == b"\x1b["), "{log:?}");
    let listening = lines
        .iter()
        .find(|l| l.contains("catgate listening"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(listening.contains(" INFO "), "{listening}");
    assert!(
        listening.contains(&format!("addr=127.0.0.1:{port}")),
        "{listening}"
    );
    assert!(
        lines
            .iter()
            .all(|l| serde_json::from_str::<Value>(l).is_err()),
        "{log}"
    );
}

#[test]
fn a_bad_log_format_is_a_config_error_on_one_plain_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "log_format = \"yaml\"\n");
    let r = cli(&config, &["serve"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "catgate: invalid value for `log_format`: `yaml` is not a log format; use \"text\" or \"json\"\n"
    );
}
