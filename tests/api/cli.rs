//! The `catgate` binary's admin subcommands, run as a separate process on a temp database.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use catgate::store::users::User;
use serde_json::{json, Value};

use crate::helpers::*;

pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs the binary with `args` (env overrides removed); kills it if it takes over 30 s.
pub fn run(args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_catgate"))
        .args(args)
        .env_remove("CATGATE_CONFIG")
        .env_remove("CATGATE_DATABASE")
        .env_remove("CATGATE_LISTEN")
        .env_remove("CATGATE_LOG_FORMAT")
        .env_remove("PORT")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("catgate {args:?} did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Writes `dir/config.toml` with `database = "catgate.db"` (+ `extra`), returns its path.
pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!("listen = \"127.0.0.1:0\"\ndatabase = \"catgate.db\"\n{extra}"),
    )
    .unwrap();
    path
}

/// Writes a config for the CLI that names `app`'s database (SQLite file or PostgreSQL).
fn write_app_config(app: &TestApp, extra: &str) -> PathBuf {
    let path = app.dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\n{extra}",
            app.database
        ),
    )
    .unwrap();
    path
}

pub fn cli(config: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    run(&all)
}

/// The single printed line of a successful run.
pub fn printed(r: &Run) -> String {
    assert!(
        r.ok(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        r.code,
        r.stdout,
        r.stderr
    );
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout: {:?}", r.stdout);
    lines[0].trim().to_string()
}

#[test]
fn root_token_before_init_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    TestStore::sqlite(&dir.path().join("catgate.db"));
    let r = cli(&config, &["root-token"]);
    assert!(!r.ok(), "exit {:?}", r.code);
    assert!(r.code.is_some(), "killed by a signal: {}", r.stderr);
    assert_eq!(r.stdout, "", "nothing on stdout");
    let err = r.stderr.to_lowercase();
    assert!(err.contains("root"), "stderr: {}", r.stderr);
    assert!(err.contains("/1/users/init"), "stderr: {}", r.stderr);
    assert!(!err.contains("panicked"), "stderr: {}", r.stderr);

    let r = cli(&config, &["reset-root"]);
    assert!(!r.ok(), "exit {:?}", r.code);
    assert_eq!(r.stdout, "");
    assert!(r.stderr.to_lowercase().contains("root"), "{}", r.stderr);
    // Neither command created a user.
    let store = TestStore::sqlite(&dir.path().join("catgate.db"));
    assert!(store.wait(store.list_users(true)).is_empty());
}

#[test]
fn root_token_prints_roots_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let store = TestStore::sqlite(&dir.path().join("catgate.db"));
    let root = store.wait(store.init_root()).unwrap();
    store.wait(store.add_user("alice"));
    assert_eq!(printed(&cli(&config, &["root-token"])), root.token);
    // Asking twice changes nothing.
    assert_eq!(printed(&cli(&config, &["root-token"])), root.token);
    assert_eq!(store.wait(store.user(1)), root);
}

#[tokio::test]
async fn root_token_reads_a_running_servers_database() {
    let app = spawn_app().await;
    let root = app.init_root().await;
    let config = write_app_config(&app, "");
    let out = tokio::task::spawn_blocking(move || printed(&cli(&config, &["root-token"])))
        .await
        .unwrap();
    assert_eq!(out, root);
}

#[test]
fn reset_root_prints_a_new_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let store = TestStore::sqlite(&dir.path().join("catgate.db"));
    let old = store.wait(store.init_root()).unwrap();
    let alice = store.wait(store.add_user("alice"));

    let new = printed(&cli(&config, &["reset-root"]));
    assert_uuid(&new);
    assert_ne!(new, old.token);
    let root = store.wait(store.user(1));
    assert_eq!(root.token, new);
    assert_eq!(root.name, "root");
    assert_eq!(root.created_at, old.created_at);
    assert!(!root.is_delete);
    // The old token belongs to nobody now; other users are untouched.
    let users = store.wait(store.list_users(true));
    assert!(users.iter().all(|u| u.token != old.token), "{users:?}");
    assert_eq!(store.wait(store.user(2)), alice);
    assert_eq!(printed(&cli(&config, &["root-token"])), new);

    // Again: another fresh token.
    let newer = printed(&cli(&config, &["reset-root"]));
    assert_uuid(&newer);
    assert_ne!(newer, new);
    assert_eq!(store.wait(store.user(1)).token, newer);
}

#[tokio::test]
async fn export_then_import_keeps_ids_and_tokens() {
    let src = tempfile::tempdir().unwrap();
    let src_config = write_config(src.path(), "");
    let store = open_sqlite(&src.path().join("catgate.db")).await;
    store.init_root().await.unwrap().unwrap();
    store.add_user("alice").await.unwrap();
    let bob = store.add_user("bob").await.unwrap();
    store.add_user("carol").await.unwrap();
    store.delete_user(bob.id).await.unwrap();
    store
        .reset_token(4, Some("carol-custom-token"))
        .await
        .unwrap();
    let users = store.list_users(true).await.unwrap();
    assert_eq!(users.len(), 4);

    let file = src.path().join("users.json");
    let file_arg = file.to_str().unwrap().to_string();
    let (config, arg) = (src_config.clone(), file_arg.clone());
    let r = tokio::task::spawn_blocking(move || cli(&config, &["users", "export", &arg]))
        .await
        .unwrap();
    assert!(r.ok(), "exit {:?}: {}", r.code, r.stderr);
    let exported: Vec<User> =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(exported, users);

    let dst = tempfile::tempdir().unwrap();
    let dst_config = write_config(dst.path(), "");
    let (config, arg) = (dst_config.clone(), file_arg.clone());
    let r = tokio::task::spawn_blocking(move || cli(&config, &["users", "import", &arg]))
        .await
        .unwrap();
    assert!(r.ok(), "exit {:?}: {}", r.code, r.stderr);
    let dst_store = open_sqlite(&dst.path().join("catgate.db")).await;
    assert_eq!(dst_store.list_users(true).await.unwrap(), users);
    let config = dst_config.clone();
    let root_token = tokio::task::spawn_blocking(move || printed(&cli(&config, &["root-token"])))
        .await
        .unwrap();
    assert_eq!(root_token, users[0].token);
    // Ids are never reused: the next user comes after the imported ones.
    let dave = dst_store.add_user("dave").await.unwrap();
    assert_eq!(dave.id, 5);
    drop(dst_store);

    // A server on the imported database accepts the imported tokens (and not the deleted one).
    let cfg = catgate::config::Config::from_toml(
        "listen = \"127.0.0.1:0\"\ndatabase = \"catgate.db\"\n",
        dst.path(),
        &Default::default(),
    )
    .unwrap();
    let app = catgate::AppState::start(cfg).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(catgate::serve(listener, app, std::future::pending::<()>()));
    let http = reqwest::Client::new();
    let me = |token: String| {
        let http = http.clone();
        async move {
            let resp = http
                .get(format!("http://{addr}/1/me"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (
                status,
                serde_json::from_str::<Value>(&resp.text().await.unwrap()).unwrap(),
            )
        }
    };
    for u in users.iter().filter(|u| !u.is_delete) {
        let (status, body) = me(u.token.clone()).await;
        assert_eq!(status, 200, "{}: {body}", u.name);
        assert_eq!(user_of_me(&body), serde_json::to_value(u).unwrap());
    }
    let (status, body) = me(bob.token.clone()).await;
    assert_eq!(status, 401);
    assert_eq!(body, json!({"error": "Unauthorized"}));
}

#[test]
fn unknown_config_key_is_named() {
    for (extra, key) in [
        ("lisen = \"127.0.0.1:9\"\n", "lisen"),
        ("[upstream]\nfirst_byte_timeout = 3\n", "first_byte_timeout"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), extra);
        // Both an admin command and the server itself refuse to start.
        for args in [&["root-token"][..], &[][..], &["serve"][..]] {
            let r = cli(&config, args);
            assert!(!r.ok(), "{args:?} with {extra:?}: exit {:?}", r.code);
            assert!(r.code.is_some(), "killed by a signal: {}", r.stderr);
            assert!(
                r.stderr.lines().any(|l| l.contains(key)),
                "{args:?}: no stderr line names `{key}`: {}",
                r.stderr
            );
            assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        }
    }
}

#[test]
fn help_exits_zero() {
    for args in [&["--help"][..], &["-h"][..], &["help"][..]] {
        let r = run(args);
        assert!(r.ok(), "{args:?}: exit {:?}: {}", r.code, r.stderr);
        assert!(r.stdout.to_lowercase().contains("usage"), "{}", r.stdout);
        for command in [
            "serve",
            "root-token",
            "reset-root",
            "users",
            "report",
            "reprice",
            "copy",
            "backup",
            "health",
        ] {
            assert!(
                r.stdout.contains(&format!("\n  {command} ")),
                "help lacks {command}: {}",
                r.stdout
            );
        }
        assert!(r.stdout.contains("CATGATE_CONFIG"), "{}", r.stdout);
    }
    let users = run(&["users", "--help"]);
    assert!(users.ok(), "{}", users.stderr);
    assert!(
        users.stdout.contains("Usage: catgate users"),
        "{}",
        users.stdout
    );
    for command in ["export", "import"] {
        assert!(users.stdout.contains(command), "{}", users.stdout);
    }
    // Help needs no config file.
    let r = run(&["--config", "/nonexistent/catgate/config.toml", "--help"]);
    assert!(r.ok(), "exit {:?}: {}", r.code, r.stderr);
}

#[test]
fn every_command_has_its_own_help() {
    for command in [
        "serve",
        "root-token",
        "reset-root",
        "users",
        "report",
        "reprice",
        "copy",
        "backup",
        "health",
    ] {
        let r = run(&[command, "--help"]);
        assert!(r.ok(), "{command}: exit {:?}: {}", r.code, r.stderr);
        let usage = format!("Usage: catgate {command}");
        assert!(r.stdout.contains(&usage), "{command}: {}", r.stdout);
    }
    // `serve --help` lists what the environment can override.
    let serve = run(&["serve", "--help"]).stdout;
    for var in [
        "CATGATE_LISTEN",
        "CATGATE_DATABASE",
        "PORT",
        "CATGATE_LOG_FORMAT",
        "CATGATE_CONFIG",
        "NO_COLOR",
    ] {
        assert!(serve.contains(var), "serve --help lacks {var}: {serve}");
    }
    let report = run(&["report", "--help"]).stdout;
    for option in ["--from", "--to", "--by", "--format"] {
        assert!(report.contains(option), "{report}");
    }
}

#[test]
fn version_prints_the_crate_version() {
    for flag in ["--version", "-V"] {
        let r = run(&[flag]);
        assert!(r.ok(), "{}", r.stderr);
        assert_eq!(r.stdout, format!("catgate {}\n", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn bad_usage_exits_2_with_a_message_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    for args in [
        &["frobnicate"][..],
        &["--nope"],
        &["users", "delete"],
        &["report", "--from", "2026-11-01"],
        &["copy"],
        &["backup"],
        &["root-token", "extra"],
    ] {
        let r = cli(&config, args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert_eq!(r.stdout, "", "{args:?}");
        assert!(r.stderr.starts_with("error: "), "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("Usage: catgate"),
            "{args:?}: {}",
            r.stderr
        );
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "only config.toml: {left:?}");
}

#[test]
fn the_config_path_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let store = TestStore::sqlite(&dir.path().join("catgate.db"));
    let root = store.wait(store.init_root()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_catgate"))
        .arg("root-token")
        .env("CATGATE_CONFIG", &config)
        .env_remove("CATGATE_DATABASE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\n", root.token)
    );
    // Named by the environment, a missing file is an error, as with --config.
    let out = Command::new(env!("CARGO_BIN_EXE_catgate"))
        .arg("root-token")
        .env("CATGATE_CONFIG", dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read config file") && err.contains("missing.toml"),
        "{err}"
    );
}

/// One gpt-4o-mini request (1000 prompt, 1000 completion tokens) metered by a server on `dir`.
async fn one_metered_request(extra_config: &str) -> TestApp {
    let app = spawn_app_with(extra_config).await;
    let (_, member) = app.with_team(1).await;
    app.mock.push(Reply::json(
        200,
        chat_completion("team-model", "Hi", Some((1000, 1000))),
    ));
    let body = json!({"model": "team-model", "messages": []});
    let (status, _) = app.post("/v1/chat/completions", &member, body).await;
    assert_eq!(status, 200);
    app.usage_rows(1).await;
    app
}

#[tokio::test]
async fn report_prints_a_table_csv_and_json() {
    let priced = "[pricing.models.\"team-model\"]\ninput = \"1\"\noutput = \"2\"\n";
    let app = one_metered_request(priced).await;
    let config = write_app_config(&app, priced);
    let (c1, c2, c3) = (config.clone(), config.clone(), config.clone());
    let table = tokio::task::spawn_blocking(move || cli(&c1, &["report"]))
        .await
        .unwrap();
    assert!(table.ok(), "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    // (1000 × 1 + 1000 × 2) / 1M = 0.003.
    assert_eq!(lines.len(), 2, "{}", table.stdout);
    assert!(
        lines[0].starts_with("userId  userName  model       requests"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("     2  alice     team-model         1"),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains(" 0.003000 "), "{}", lines[1]);
    let csv = tokio::task::spawn_blocking(move || {
        cli(&c2, &["report", "--by", "model", "--format", "csv"])
    })
    .await
    .unwrap();
    assert_eq!(
        csv.stdout,
        "model,requests,promptTokens,cachedTokens,cacheWriteTokens,completionTokens,\
         reasoningTokens,audioInputTokens,audioOutputTokens,totalTokens,cost,estimatedRequests,\
         unpricedRequests,failedRequests\r\nteam-model,1,1000,0,0,1000,0,0,0,2000,0.003000,0,0,0\r\n"
    );
    let json_out = tokio::task::spawn_blocking(move || {
        cli(&c3, &["report", "--by", "user", "--format", "json"])
    })
    .await
    .unwrap();
    let rows: Value = serde_json::from_str(&json_out.stdout).unwrap();
    assert_eq!(rows[0]["userName"], "alice");
    assert_eq!(rows[0]["cost"], "0.003000");
    let bad = cli(&config, &["report", "--by", "color"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(bad.stderr.contains("color"), "{}", bad.stderr);
}

#[tokio::test]
async fn reprice_recomputes_costs_after_a_price_fix() {
    // Metered at 1/2 per 1M: 0.003. Unknown at first for the second model: unpriced.
    let app =
        one_metered_request("[pricing.models.\"team-model\"]\ninput = \"1\"\noutput = \"2\"\n")
            .await;
    let fixed = "[pricing.models.\"team-model\"]\ninput = \"2\"\noutput = \"4\"\n";
    let config = write_app_config(&app, fixed);
    let today = time::OffsetDateTime::now_utc().date();
    let (from, to) = (today.to_string(), today.next_day().unwrap().to_string());
    let args = ["reprice", "--from", &from, "--to", &to].map(String::from);
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        printed(&cli(&config, &args))
    })
    .await
    .unwrap();
    // (1000 × 2 + 1000 × 4) / 1M = 0.006.
    assert_eq!(
        out,
        format!(
            "repriced {from} to {to}: 1 records, 1 changed; total 0.003000 -> 0.006000 (+0.003000)"
        )
    );
    let record = &app.app.store.usage_records(10).await.unwrap()[0];
    assert_eq!(record.cost_text(), "0.006");
    // The rollup was rebuilt: reports show the new cost.
    let root = app.app.store.user(1).await.unwrap().token;
    app.expect_get(
        "/1/usages",
        &root,
        200,
        json!([{"userId": 2, "totalUnit": 2000, "cost": "0.006000"}]),
    )
    .await;
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn users_export_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let store = TestStore::sqlite(&dir.path().join("catgate.db"));
    store.wait(store.init_root()).unwrap();
    let fresh = dir.path().join("fresh.json");
    // An existing world-readable file is tightened, not just written into.
    let existing = dir.path().join("existing.json");
    std::fs::write(&existing, "old").unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o644)).unwrap();
    for file in [&fresh, &existing] {
        let r = cli(&config, &["users", "export", file.to_str().unwrap()]);
        assert!(r.ok(), "exit {:?}: {}", r.code, r.stderr);
        assert_eq!(mode(file), 0o600, "{}", file.display());
        let users: Vec<User> =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        assert_eq!(users.len(), 1);
    }
}

#[test]
fn the_server_creates_its_database_files_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_catgate"))
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env_remove("CATGATE_DATABASE")
        .env_remove("CATGATE_LISTEN")
        .env_remove("PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let files = ["catgate.db", "catgate.db-wal", "catgate.db-shm"].map(|f| dir.path().join(f));
    let started = Instant::now();
    while !files.iter().all(|f| f.exists()) && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let modes: Vec<(String, u32)> = files
        .iter()
        .filter(|f| f.exists())
        .map(|f| (f.display().to_string(), mode(f)))
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(modes.len(), 3, "{modes:?}");
    assert!(modes.iter().all(|(_, m)| *m == 0o600), "{modes:?}");
}

#[test]
fn commands_on_existing_users_never_create_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let db = dir.path().join("catgate.db");
    let export = dir.path().join("users.json");
    let backup = dir.path().join("backup.db");
    for args in [
        &["root-token"][..],
        &["reset-root"][..],
        &["users", "export", export.to_str().unwrap()][..],
        &["backup", backup.to_str().unwrap()][..],
    ] {
        let r = cli(&config, args);
        assert!(!r.ok(), "{args:?}: exit {:?}", r.code);
        assert!(r.code.is_some(), "killed by a signal: {}", r.stderr);
        assert_eq!(r.stdout, "", "{args:?}");
        let want = format!("no database at {}", db.display());
        assert!(r.stderr.contains(&want), "{args:?}: {}", r.stderr);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["config.toml"], "{args:?}");
    }
}

#[test]
fn an_unusable_database_path_stops_the_server_at_once_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a-folder")).unwrap();
    let config = write_config(dir.path(), "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("catgate.db", "a-folder");
    std::fs::write(&config, text).unwrap();
    let started = Instant::now();
    let r = cli(&config, &["serve"]);
    let took = started.elapsed();
    assert!(!r.ok(), "exit {:?}", r.code);
    assert!(r.code.is_some(), "killed by a signal: {}", r.stderr);
    assert!(took < Duration::from_secs(3), "took {took:?}: {}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(lines[0].contains("cannot open database"), "{}", lines[0]);
    assert!(lines[0].contains("a-folder"), "{}", lines[0]);
}

#[tokio::test]
async fn a_token_reset_by_the_cli_applies_before_the_next_request() {
    let app = spawn_app().await;
    let first = app.init_root().await;
    app.add_key(&first, "key1", "sk-1").await;
    let config = write_app_config(&app, "");
    let reset = || {
        let config = config.clone();
        tokio::task::spawn_blocking(move || printed(&cli(&config, &["reset-root"])))
    };
    let chat = |token: String| {
        let req = app
            .http
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(token)
            .body(r#"{"model":"gpt-4o-mini","messages":[]}"#);
        async move { req.send().await.unwrap().status().as_u16() }
    };

    // /1 checks the database on every request: the very next one sees the reset.
    let second = reset().await.unwrap();
    app.expect_get("/1/me", &first, 401, json!({"error": "Unauthorized"}))
        .await;
    let (status, me) = app.get("/1/me", &second).await;
    assert_eq!((status, me["token"].as_str()), (200, Some(second.as_str())));

    // /v1 checks every 100 ms, without any /1 request in between.
    let third = reset().await.unwrap();
    tokio::time::sleep(catgate::state::REFRESH_EVERY * 3).await;
    assert_eq!(chat(second.clone()).await, 401);
    assert_eq!(chat(third.clone()).await, 200);
    let (status, me) = app.get("/1/me", &third).await;
    assert_eq!((status, me["token"].as_str()), (200, Some(third.as_str())));
}
