//! Reliability under crashes and a sick database: every answer a client received in full has
//! its usage row, whatever happens to the process or the disk.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

fn ask() -> serde_json::Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_no_completed_request() {
    let mock = Mock::start().await;
    mock.on(|req| {
        let stream = req.json()["stream"] == json!(true);
        let reply = match stream {
            true => Reply::sse(
                &chat_stream("gpt-4o-mini", &["Hel", "lo"], Some((9, 2)))
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            ),
            false => Reply::json(200, chat_completion("gpt-4o-mini", "Hello", Some((9, 2)))),
        };
        reply.with_head_delay(Duration::from_millis(2))
    });
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase = \"catgate.db\"\n[upstream]\nopenai_base_url = \"{}\"\n",
            mock.url()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("catgate.log")).unwrap();
    let mut child = serve(&config, log.into());
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;
    let init = http
        .post(format!("{base}/1/users/init"))
        .send()
        .await
        .unwrap();
    let root: serde_json::Value = serde_json::from_slice(&init.bytes().await.unwrap()).unwrap();
    let root = root["token"].as_str().unwrap().to_string();
    let key = json!({"key": "sk-1", "name": "k1", "endpoint": mock.url()});
    let added = http
        .post(format!("{base}/1/keys"))
        .bearer_auth(&root)
        .body(key.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200);

    let completed = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..32 {
        let (http, base, root) = (http.clone(), base.clone(), root.clone());
        let (completed, stop) = (completed.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let mut body = ask();
                body["stream"] = json!((t + n) % 2 == 0);
                let Ok(resp) = http
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(&root)
                    .body(body.to_string())
                    .send()
                    .await
                else {
                    continue;
                };
                let id = resp.headers().get("x-catgate-request-id").cloned();
                let ok = resp.status() == 200;
                // Completed = the whole body arrived (the end of a chunked body included).
                if resp.bytes().await.is_ok() && ok {
                    if let Some(id) = id.and_then(|v| v.to_str().ok().map(String::from)) {
                        completed.lock().unwrap().push(id);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let completed = completed.lock().unwrap().clone();
    assert!(completed.len() > 50, "too little load: {}", completed.len());
    // Start again: the journal is replayed into the database; then stop cleanly.
    let mut again = serve(&config, Stdio::null());
    wait_ready(&http, &base).await;
    let term = Command::new("kill")
        .args(["-TERM", &again.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    again.wait().unwrap();
    let store = open_sqlite(&dir.path().join("catgate.db")).await;
    let rows: HashSet<String> = store
        .usage_records(u32::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    let missing: Vec<&String> = completed.iter().filter(|id| !rows.contains(*id)).collect();
    println!(
        "kill -9: {} answers completed, {} rows on disk, {} completed without a row",
        completed.len(),
        rows.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "completed answers without a row: {missing:?}"
    );
}

#[tokio::test]
async fn a_locked_database_is_ridden_out_through_the_journal() {
    // A SQLite lock by another process; PostgreSQL outages are in postgres.rs.
    let app = spawn_app_with("database = \"catgate.db\"").await;
    let (root, member) = app.with_team(1).await;
    // Another process holds the write lock for longer than catgate's busy timeout (5 s).
    let lock = rusqlite::Connection::open(app.db_path()).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let started = Instant::now();
    let sends = (0..5).map(|_| app.post("/v1/chat/completions", &member, ask()));
    for (status, body) in futures_util::future::join_all(sends).await {
        assert_eq!(status, 200, "{body}");
    }
    // The answers do not wait for the database: their records are in the journal.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answers were held"
    );
    // Once the insert gives up (busy timeout), /readyz says the records wait.
    let mut ready = (200, Value::Null);
    for _ in 0..100 {
        ready = app.get("/readyz", &root).await;
        if ready.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready.0, 503, "{}", ready.1);
    assert!(
        ready.1["reason"].as_str().unwrap().contains("spool"),
        "{}",
        ready.1
    );
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    // Replayed from the spool within a few retries; exactly once each.
    let rows = app.usage_rows(5).await;
    let ids: HashSet<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!((rows.len(), ids.len()), (5, 5));
    for _ in 0..100 {
        if app.get("/readyz", &root).await.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.get("/readyz", &root).await,
        (200, json!({"status": "ready"}))
    );
}

/// Mounts a 1 MiB tmpfs at `dir`; `None` (with the reason) where the platform does not allow it.
fn small_disk(dir: &std::path::Path) -> Option<SmallDisk> {
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(dir)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(SmallDisk(dir.to_path_buf())),
        Ok(o) => {
            println!(
                "skipped: full-disk test needs a small tmpfs (mount as root): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            None
        }
        Err(e) => {
            println!("skipped: full-disk test needs the `mount` command: {e}");
            None
        }
    }
}

struct SmallDisk(std::path::PathBuf);

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros until the disk is full; returns the file.
fn fill(path: &std::path::Path) -> std::path::PathBuf {
    let file = path.join("filler");
    let mut f = std::fs::File::create(&file).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() && f.flush().is_ok() {}
    let _ = f.sync_all();
    file
}

#[tokio::test]
async fn a_full_disk_keeps_records_in_memory_until_space_returns() {
    let outer = tempfile::tempdir().unwrap();
    let disk_dir = outer.path().join("disk");
    std::fs::create_dir(&disk_dir).unwrap();
    let Some(_disk) = small_disk(&disk_dir) else {
        return;
    };
    let db = disk_dir.join("catgate.db");
    let app = spawn_app_with(&format!("database = \"{}\"", db.display())).await;
    let (root, member) = app.with_team(1).await;
    // Settle the schema and the first writes, then take every free byte.
    app.post("/v1/chat/completions", &member, ask()).await;
    app.usage_rows(1).await;
    let filler = fill(&disk_dir);
    let mut degraded = false;
    let mut sent = 1;
    for _ in 0..200 {
        let (status, body) = app.post("/v1/chat/completions", &member, ask()).await;
        assert_eq!(status, 200, "{body}");
        sent += 1;
        let (ready, _) = app.get("/readyz", &root).await;
        if ready == 503 {
            degraded = true;
            break;
        }
    }
    assert!(degraded, "the disk never filled up: /readyz stayed 200");
    let (_, ready) = app.get("/readyz", &root).await;
    assert!(
        ready["reason"].as_str().unwrap().contains("in memory"),
        "{ready}"
    );
    std::fs::remove_file(filler).unwrap();
    // Retried every second: every answered request gets exactly one row.
    let rows = app.usage_rows(sent).await;
    let ids: HashSet<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!((rows.len(), ids.len()), (sent, sent));
}

#[tokio::test]
async fn near_the_descriptor_limit_idle_connections_make_room_for_new_clients() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:{port}\"\ndatabase = \"catgate.db\"\n"),
    )
    .unwrap();
    // 64 descriptors in all, soft and hard, so catgate cannot raise its way out.
    let script = format!(
        "ulimit -Sn 64 && ulimit -Hn 64 && exec {} --config {}",
        env!("CARGO_BIN_EXE_catgate"),
        config.display()
    );
    let mut child = Killed(
        Command::new("sh")
            .args(["-c", &script])
            .env_remove("CATGATE_LISTEN")
            .env_remove("CATGATE_DATABASE")
            .env_remove("PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&http, &base).await;
    // Clients that connect and never send a request: more than the limit allows.
    let mut idle = Vec::new();
    for _ in 0..80 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        {
            idle.push(s);
        }
    }
    // New clients are still served, promptly.
    for i in 0..10 {
        let resp = tokio::time::timeout(
            Duration::from_secs(5),
            http.get(format!("{base}/healthz")).send(),
        )
        .await
        .unwrap_or_else(|_| panic!("request {i} not served within 5 s"))
        .unwrap();
        assert_eq!(resp.status(), 200);
    }
    drop(idle);
    child.kill().unwrap();
    child.wait().unwrap();
}
