//! Test harness: the real server on 127.0.0.1:0 with a temp database, and a hyper mock
//! upstream whose answers each test scripts.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use catgate::config::Config;
use catgate::store::usage::UsageRecord;
use catgate::store::{Database, OpenMode, Store, StoreError};
use catgate::{App, AppState};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, Notify};

// ---------------------------------------------------------------------------------------------
// Mock upstream

/// A request as the mock upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The key the proxy used: `Authorization: Bearer K` or Azure's `api-key: K`.
    pub fn key(&self) -> String {
        self.header("authorization")
            .map(|a| a.trim_start_matches("Bearer ").to_string())
            .or_else(|| self.header("api-key"))
            .unwrap_or_default()
    }
}

/// One part of a scripted answer body.
#[derive(Debug, Clone)]
pub enum Part {
    Bytes(Bytes),
    /// Pause before the next part.
    Sleep(Duration),
    /// Wait until the test calls `Mock::release()`.
    WaitRelease,
    /// Never send anything more (a stalled upstream).
    Stall,
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Delay before the response head (slow first byte).
    pub head_delay: Duration,
    pub parts: Vec<Part>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            head_delay: Duration::ZERO,
            parts: vec![Part::Bytes(Bytes::from(body.to_string()))],
        }
    }

    /// An SSE answer; each string is sent as its own chunk.
    pub fn sse(chunks: &[&str]) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            head_delay: Duration::ZERO,
            parts: chunks
                .iter()
                .map(|c| Part::Bytes(Bytes::from(c.to_string())))
                .collect(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_head_delay(mut self, d: Duration) -> Reply {
        self.head_delay = d;
        self
    }
}

type Handler = Box<dyn Fn(&Received) -> Reply + Send + Sync>;

struct MockInner {
    queue: VecDeque<Reply>,
    handler: Option<Handler>,
    received: Vec<Received>,
}

#[derive(Clone)]
pub struct Mock {
    pub addr: SocketAddr,
    inner: Arc<Mutex<MockInner>>,
    release: Arc<Notify>,
}

impl Mock {
    pub async fn start() -> Mock {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mock = Mock {
            addr,
            inner: Arc::new(Mutex::new(MockInner {
                queue: VecDeque::new(),
                handler: None,
                received: Vec::new(),
            })),
            release: Arc::new(Notify::new()),
        };
        let m = mock.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let m = m.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let m = m.clone();
                        async move { Ok::<_, Infallible>(m.answer(req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        mock
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues answers, used in order before the handler.
    pub fn push(&self, reply: Reply) {
        self.inner.lock().unwrap().queue.push_back(reply);
    }

    /// Sets the answer for requests with nothing queued.
    pub fn on(&self, f: impl Fn(&Received) -> Reply + Send + Sync + 'static) {
        self.inner.lock().unwrap().handler = Some(Box::new(f));
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Lets every `Part::WaitRelease` continue.
    pub fn release(&self) {
        self.release.notify_waiters();
        self.release.notify_one();
    }

    async fn answer(
        &self,
        req: http::Request<hyper::body::Incoming>,
    ) -> http::Response<ChannelBody> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let received = Received {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers,
            body,
        };
        let reply = {
            let mut inner = self.inner.lock().unwrap();
            inner.received.push(received.clone());
            match inner.queue.pop_front() {
                Some(r) => r,
                None => match &inner.handler {
                    Some(h) => h(&received),
                    None => default_reply(&received),
                },
            }
        };
        tokio::time::sleep(reply.head_delay).await;
        let (tx, rx) = mpsc::channel(16);
        let release = self.release.clone();
        tokio::spawn(async move {
            for part in reply.parts {
                match part {
                    Part::Bytes(b) => {
                        if tx.send(b).await.is_err() {
                            return;
                        }
                    }
                    Part::Sleep(d) => tokio::time::sleep(d).await,
                    Part::WaitRelease => release.notified().await,
                    Part::Stall => {
                        tx.closed().await;
                        return;
                    }
                }
            }
        });
        let mut resp = http::Response::new(ChannelBody(rx));
        *resp.status_mut() = http::StatusCode::from_u16(reply.status).unwrap();
        for (k, v) in reply.headers {
            resp.headers_mut().append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        resp
    }
}

/// A body fed by the mock's writer task, one frame per part.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// Default: a chat completion with usage 9/12/21 for the requested model.
pub fn default_reply(req: &Received) -> Reply {
    let model = req.json()["model"]
        .as_str()
        .unwrap_or("gpt-4o-mini")
        .to_string();
    Reply::json(200, chat_completion(&model, "Hello there!", Some((9, 12))))
}

pub fn chat_completion(model: &str, text: &str, usage: Option<(u64, u64)>) -> Value {
    let mut v = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    });
    if let Some((p, c)) = usage {
        v["usage"] = json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c});
    }
    v
}

/// SSE events of a chat stream saying `words`, then (if `usage`) the usage-only chunk, then [DONE].
pub fn chat_stream(model: &str, words: &[&str], usage: Option<(u64, u64)>) -> Vec<String> {
    let mut events = Vec::new();
    for w in words {
        let chunk = json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":model,
            "choices":[{"index":0,"delta":{"content":w},"finish_reason":null}], "usage": null});
        events.push(format!("data: {chunk}\n\n"));
    }
    if let Some((p, c)) = usage {
        let chunk = json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":model,
            "choices":[], "usage":{"prompt_tokens":p,"completion_tokens":c,"total_tokens":p+c}});
        events.push(format!("data: {chunk}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_string());
    events
}

// ---------------------------------------------------------------------------------------------
// Databases

/// The PostgreSQL server the whole suite runs on, if `CATGATE_TEST_POSTGRES` names one.
pub fn suite_postgres() -> Option<String> {
    std::env::var("CATGATE_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())
}

/// Creates an empty database on `server` (a URL ending in `/postgres`), returns its URL.
pub async fn fresh_database(server: &str) -> String {
    let (client, conn) = tokio_postgres::connect(server, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL server: {e}"));
    tokio::spawn(conn);
    let name = format!("catgate_t_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (base, query) = server.split_once('?').unwrap_or((server, ""));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        "" => format!("{base}/{name}"),
        q => format!("{base}/{name}?{q}"),
    }
}

/// Opens (creating) a SQLite store at `path`, from an async test.
pub async fn open_sqlite(path: &Path) -> Store {
    Store::open(&Database::Sqlite(path.to_path_buf()), OpenMode::Create)
        .await
        .unwrap()
}

/// A SQLite store for plain `#[test]`s: its own runtime waits for each call.
pub struct TestStore {
    rt: tokio::runtime::Runtime,
    store: Store,
}

impl TestStore {
    pub fn sqlite(path: &Path) -> TestStore {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = rt.block_on(open_sqlite(path));
        TestStore { rt, store }
    }

    pub fn wait<T>(&self, call: impl std::future::Future<Output = Result<T, StoreError>>) -> T {
        self.rt.block_on(call).unwrap()
    }
}

impl std::ops::Deref for TestStore {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

// ---------------------------------------------------------------------------------------------
// catgate as a child process

/// A free loopback port (bound and released; the child binds it right after).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A child process that is killed when dropped, so a failing test leaves nothing running.
pub struct Killed(pub std::process::Child);

impl std::ops::Deref for Killed {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Killed {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `catgate --config CONFIG` as a child process (env overrides removed), stderr to `log`.
pub fn serve(config: &std::path::Path, log: std::process::Stdio) -> Killed {
    Killed(
        std::process::Command::new(env!("CARGO_BIN_EXE_catgate"))
            .args(["--config", config.to_str().unwrap()])
            .env_remove("CATGATE_DATABASE")
            .env_remove("CATGATE_LISTEN")
            .env_remove("PORT")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// Waits until `base` answers `/healthz` (20 s at most).
pub async fn wait_ready(http: &reqwest::Client, base: &str) {
    let started = std::time::Instant::now();
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "catgate did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The app under test

pub struct TestApp {
    pub addr: SocketAddr,
    pub app: App,
    pub mock: Mock,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// The `database` the app runs on, as the config names it.
    pub database: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// Starts catgate (default config + `extra_toml`) with a fresh mock upstream, on the suite's
/// backend: SQLite in a temp folder, or a fresh PostgreSQL database when
/// `CATGATE_TEST_POSTGRES` names a server (see `postgres.rs`).
pub async fn spawn_app_with(extra_toml: &str) -> TestApp {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A test may place the database itself (e.g. on a small disk): then it is SQLite.
    let database = match (extra_toml.contains("database ="), suite_postgres()) {
        (true, _) => String::new(),
        (false, Some(server)) => format!("database = \"{}\"\n", fresh_database(&server).await),
        (false, None) => "database = \"catgate.db\"\n".to_string(),
    };
    let toml = format!("listen = \"127.0.0.1:0\"\n{database}{extra_toml}\n");
    let toml = if extra_toml.contains("[upstream]") {
        toml.replace(
            "[upstream]",
            &format!("[upstream]\nopenai_base_url = \"{}\"", mock.url()),
        )
    } else {
        format!("{toml}\n[upstream]\nopenai_base_url = \"{}\"\n", mock.url())
    };
    let config = Config::from_toml(&toml, dir.path(), &Default::default()).unwrap();
    let database = match &config.database {
        Database::Sqlite(path) => path.display().to_string(),
        Database::Postgres(url) => url.clone(),
    };
    let app = AppState::start(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(catgate::serve(listener, app.clone(), async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        app,
        mock,
        http: reqwest::Client::new(),
        dir,
        database,
        shutdown: Some(tx),
        server: Some(server),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with("").await
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A stand-in received request, for building default replies ahead of time.
    pub fn mock_req(&self) -> Received {
        Received {
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            query: None,
            headers: http::HeaderMap::new(),
            body: Bytes::from_static(br#"{"model":"gpt-4o-mini"}"#),
        }
    }

    pub fn db_path(&self) -> std::path::PathBuf {
        self.dir.path().join("catgate.db")
    }

    /// Sends a request; returns (status, JSON body or Null).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method.parse().unwrap(), self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call("GET", path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(token), Some(body)).await
    }

    /// GET `path` as `token` and assert the exact status and JSON body.
    pub async fn expect_get(&self, path: &str, token: &str, status: u16, body: Value) {
        let (got_status, got_body) = self.get(path, token).await;
        assert_eq!((got_status, &got_body), (status, &body), "GET {path}");
    }

    /// POST /1/users/init → root token.
    pub async fn init_root(&self) -> String {
        let (status, body) = self.call("POST", "/1/users/init", None, None).await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    pub async fn add_user(&self, root: &str, name: &str) -> (i64, String) {
        let (status, body) = self.post("/1/users", root, json!({ "name": name })).await;
        assert_eq!(status, 200, "{body}");
        (
            body["id"].as_i64().unwrap(),
            body["token"].as_str().unwrap().to_string(),
        )
    }

    /// Adds an openai key pointing at the mock.
    pub async fn add_key(&self, root: &str, name: &str, secret: &str) -> i64 {
        let body =
            json!({"key": secret, "name": name, "api_type": "openai", "endpoint": self.mock.url()});
        let (status, body) = self.post("/1/keys", root, body).await;
        assert_eq!(status, 200, "{body}");
        body["id"].as_i64().unwrap()
    }

    /// Root, one member and `keys` openai keys (`sk-1`…); returns (root token, member token).
    pub async fn with_team(&self, keys: usize) -> (String, String) {
        let root = self.init_root().await;
        let (_, member) = self.add_user(&root, "alice").await;
        for i in 1..=keys {
            self.add_key(&root, &format!("key{i}"), &format!("sk-{i}"))
                .await;
        }
        (root, member)
    }

    /// Waits until `n` usage rows exist (records are written asynchronously), returns them.
    pub async fn usage_rows(&self, n: usize) -> Vec<UsageRecord> {
        for _ in 0..500 {
            self.app.recorder.flush().await;
            let rows = self.app.store.usage_records(10_000).await.unwrap();
            if rows.len() >= n {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let rows = self.app.store.usage_records(10_000).await.unwrap();
        panic!("expected {n} usage rows, found {}: {rows:#?}", rows.len());
    }

    /// Stops the server the way SIGTERM does and waits for the drain.
    pub async fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
    }
}

/// The current UTC month and day, and when each resets, as api.md prints them.
pub fn periods() -> (String, String, String, String) {
    let now = time::OffsetDateTime::now_utc();
    let today = now.date();
    let ymd = |d: time::Date| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day());
    let (y, m) = (today.year(), u8::from(today.month()));
    let next_month = if m == 12 {
        format!("{:04}-01-01", y + 1)
    } else {
        format!("{y:04}-{:02}-01", m + 1)
    };
    (
        ymd(today)[..7].to_string(),
        ymd(today),
        format!("{next_month}T00:00:00Z"),
        format!("{}T00:00:00Z", ymd(today.next_day().unwrap())),
    )
}

/// The user object inside a `GET /1/me` answer (which adds `spend`, `remaining` and
/// `resetsAt` to it).
pub fn user_of_me(me: &Value) -> Value {
    let mut user = me.clone();
    let Some(fields) = user.as_object_mut() else {
        panic!("not a user: {me}");
    };
    for extra in ["spend", "remaining", "resetsAt"] {
        assert!(fields.remove(extra).is_some(), "{extra} missing in {me}");
    }
    user
}

/// Inserts a usage row directly (for admin report tests).
pub async fn insert_usage(app: &TestApp, user_id: i64, created_at: &str, total: u64, cost: &str) {
    let record = UsageRecord {
        request_id: uuid::Uuid::new_v4().to_string(),
        user_id,
        key_id: None,
        model: "gpt-4o-mini".into(),
        route: "/v1/chat/completions".into(),
        prompt_tokens: total,
        cached_tokens: 0,
        cache_write_tokens: 0,
        audio_input_tokens: 0,
        completion_tokens: 0,
        reasoning_tokens: 0,
        audio_output_tokens: 0,
        total_tokens: total,
        service_tier: None,
        usage_source: catgate::store::usage::UsageSource::Upstream,
        cost: Some(cost.parse().unwrap()),
        stream: false,
        status: 200,
        latency_ms: 1,
        attempts: 1,
        created_at: created_at.into(),
    };
    app.app.store.insert_usage(&[record]).await.unwrap();
}

/// Asserts a `/1` error body: exactly one non-empty string field `error`.
pub fn assert_error(body: &Value) {
    let obj = body
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"));
    assert_eq!(obj.len(), 1, "{body}");
    assert!(
        obj["error"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

pub fn assert_uuid(token: &str) {
    let parsed = uuid::Uuid::parse_str(token).unwrap();
    assert_eq!(parsed.get_version_num(), 4, "{token}");
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// A response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Status line and headers, lowercased.
    pub head: String,
    pub body: Value,
}

/// Writes `request` byte for byte on a fresh connection (reqwest would normalise the path or
/// finish the body) and reads until the server closes it; panics if that takes over 10 s.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
        .await
        .expect("the server did not close the connection within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    RawResponse {
        status,
        head: head.to_lowercase(),
        body: serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    }
}
