//! A fast, fixed-answer OpenAI upstream for load tests and latency measurements.
//!
//! ```text
//! cargo run --release --example mock_upstream -- --listen 127.0.0.1:9100 \
//!     [--chunks 20] [--stream-completion-tokens N] [--first-byte-delay-ms 0] \
//!     [--chunk-interval-ms 0] [--threads 1]
//! ```
//!
//! Routes (everything else is a 404 in OpenAI's error shape):
//! - `POST /v1/chat/completions` and `POST /openai/deployments/{d}/chat/completions?api-version=…`:
//!   with `"stream": true` an SSE stream of `--chunks` `chat.completion.chunk` events, then — if
//!   `stream_options.include_usage` is true — one usage-only chunk (`"choices":[]`), then
//!   `data: [DONE]`. Without it, one `chat.completion` with usage {prompt 9, completion 12,
//!   total 21}. A stream's usage is {prompt 9, completion `--chunks`, total 9 + `--chunks`}, or
//!   completion `--stream-completion-tokens` when set (costly answers for budget checks).
//! - `POST /v1/embeddings` (and the Azure deployment form): a fixed embedding with usage.
//! - `GET /v1/models`: a small model list.
//! - `POST /v1/responses`: a Responses API answer for `gpt-5-2025-08-07` with modern usage
//!   (input 2000 of which 1500 cached, output 300 of which 256 reasoning) in the service tier the
//!   request names (`flex`, `priority`; else `default`); with `"stream": true` the events
//!   `response.created`, `response.output_text.delta`, `response.completed`.
//! - `POST /v1/large` (with `--large-mb N`): an embeddings-shaped JSON answer of about N MB with
//!   its usage at the end, for memory tests of big answers.
//! - `POST /v1/audio/transcriptions`: reads and discards a body of any size, then answers
//!   `{"text":…}` with the byte count, for memory tests of big uploads.
//! - `POST /__mock/keys` `{"reject":["sk-…"]}` (from a loopback peer only): from now on, every
//!   request whose `Authorization: Bearer` or `api-key` is one of those keys gets OpenAI's 401
//!   `invalid_api_key`, as a revoked key does; `{"reject":[]}` accepts them all again. For the
//!   key-health checks of tests/sdk.
//!
//! Every answer is built once at start-up and served as shared `Bytes`, so a request costs one
//! small JSON parse plus the HTTP work. Non-stream bodies carry `Content-Length`; a stream is
//! chunked and each SSE event is its own body frame, `--chunk-interval-ms` apart when set.
//! `--first-byte-delay-ms` delays the response head of every route. The runtime has
//! `--threads` workers (default 1) so that the process can be pinned to one core with `taskset`.

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};

const MODEL: &str = "gpt-4o-mini-2024-07-18";
const EMBEDDING_MODEL: &str = "text-embedding-3-small";
const CREATED: u64 = 1_721_000_000;
/// Request bodies above this are refused with 413; real chat requests are far smaller.
const MAX_REQUEST_BODY: usize = 16 << 20;

const USAGE: &str = "\
usage: mock_upstream --listen ADDR [--chunks N] [--first-byte-delay-ms MS] \
[--chunk-interval-ms MS] [--threads N] [--large-mb N] [--stream-completion-tokens N]";

type MockBody = Either<Full<Bytes>, SseBody>;

/// Command-line settings.
#[derive(Debug, Clone)]
struct Args {
    listen: SocketAddr,
    chunks: usize,
    first_byte_delay: Duration,
    chunk_interval: Duration,
    threads: usize,
    large_mb: usize,
    /// The completion tokens a stream's usage reports (default: `chunks`).
    stream_completion_tokens: Option<usize>,
}

impl Args {
    fn parse(mut argv: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut listen = None;
        let mut chunks = 20;
        let mut first_byte_delay_ms = 0;
        let mut chunk_interval_ms = 0;
        let mut threads = 1;
        let mut large_mb = 0;
        let mut stream_completion_tokens = None;
        while let Some(flag) = argv.next() {
            match flag.as_str() {
                "-h" | "--help" => return Err(String::new()),
                "--listen" => listen = Some(flag_value(&flag, argv.next())?),
                "--chunks" => chunks = flag_value(&flag, argv.next())?,
                "--first-byte-delay-ms" => first_byte_delay_ms = flag_value(&flag, argv.next())?,
                "--chunk-interval-ms" => chunk_interval_ms = flag_value(&flag, argv.next())?,
                "--threads" => threads = flag_value(&flag, argv.next())?,
                "--large-mb" => large_mb = flag_value(&flag, argv.next())?,
                "--stream-completion-tokens" => {
                    stream_completion_tokens = Some(flag_value(&flag, argv.next())?)
                }
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        if threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        Ok(Args {
            listen: listen.ok_or("--listen is required")?,
            chunks,
            first_byte_delay: Duration::from_millis(first_byte_delay_ms),
            chunk_interval: Duration::from_millis(chunk_interval_ms),
            threads,
            large_mb,
            stream_completion_tokens,
        })
    }
}

fn flag_value<T>(flag: &str, value: Option<String>) -> Result<T, String>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    value.parse().map_err(|e| format!("{flag} {value}: {e}"))
}

/// The precomputed answers, shared by every connection.
struct Mock {
    args: Args,
    completion: Bytes,
    embeddings: Bytes,
    models: Bytes,
    /// The `--large-mb` answer.
    large: Bytes,
    /// Stream events when the client did not ask for usage.
    stream_plain: Arc<[Bytes]>,
    /// Stream events with `"usage":null` on each chunk and the usage-only chunk before `[DONE]`.
    stream_with_usage: Arc<[Bytes]>,
    request_ids: AtomicU64,
    /// Keys answered with 401 (`POST /__mock/keys`).
    rejected: Mutex<HashSet<String>>,
}

impl Mock {
    fn new(args: Args) -> Self {
        let completion = json!({
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! This is the catgate mock upstream answering.",
                    "refusal": null
                },
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
            "system_fingerprint": "fp_mock"
        });
        let embeddings = json!({
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0023, -0.0093, 0.0158, -0.0071]}],
            "model": EMBEDDING_MODEL,
            "usage": {"prompt_tokens": 5, "total_tokens": 5}
        });
        let models = json!({
            "object": "list",
            "data": [
                {"id": "gpt-4o-mini", "object": "model", "created": CREATED, "owned_by": "system"},
                {"id": "gpt-4o", "object": "model", "created": CREATED, "owned_by": "system"},
                {"id": EMBEDDING_MODEL, "object": "model", "created": CREATED, "owned_by": "system"}
            ]
        });
        let large = format!(
            r#"{{"object":"list","model":"{EMBEDDING_MODEL}","data":[{{"object":"embedding","index":0,"embedding":"{}"}}],"usage":{{"prompt_tokens":5,"total_tokens":5}}}}"#,
            "A".repeat(args.large_mb << 20)
        );
        Mock {
            large: Bytes::from(large),
            completion: Bytes::from(completion.to_string()),
            embeddings: Bytes::from(embeddings.to_string()),
            models: Bytes::from(models.to_string()),
            stream_plain: stream_events(&args, false).into(),
            stream_with_usage: stream_events(&args, true).into(),
            request_ids: AtomicU64::new(1),
            rejected: Mutex::new(HashSet::new()),
            args,
        }
    }

    fn request_id(&self) -> HeaderValue {
        let n = self.request_ids.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from(n)
    }
}

/// The SSE events of one streamed chat completion, each ending with its blank line.
fn stream_events(args: &Args, include_usage: bool) -> Vec<Bytes> {
    let chunks = args.chunks;
    let completion_tokens = args.stream_completion_tokens.unwrap_or(chunks);
    let usage_field = include_usage.then_some(serde_json::Value::Null);
    let mut events = Vec::with_capacity(chunks + 2);
    for i in 0..chunks {
        let delta = if i == 0 {
            json!({"role": "assistant", "content": "", "refusal": null})
        } else {
            json!({"content": format!(" tok{i}")})
        };
        let finish = if i + 1 == chunks {
            json!("stop")
        } else {
            json!(null)
        };
        let mut chunk = json!({
            "id": "chatcmpl-mock",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        });
        if let (Some(usage), Some(obj)) = (&usage_field, chunk.as_object_mut()) {
            obj.insert("usage".into(), usage.clone());
        }
        events.push(Bytes::from(format!("data: {chunk}\n\n")));
    }
    if include_usage {
        let usage = json!({
            "id": "chatcmpl-mock",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "system_fingerprint": "fp_mock",
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": completion_tokens,
                "total_tokens": 9 + completion_tokens}
        });
        events.push(Bytes::from(format!("data: {usage}\n\n")));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

/// A chunked SSE body that yields one precomputed event per frame, `interval` apart.
struct SseBody {
    events: Arc<[Bytes]>,
    next: usize,
    interval: Duration,
    sleep: Pin<Box<Sleep>>,
    waiting: bool,
}

impl SseBody {
    fn new(events: Arc<[Bytes]>, interval: Duration) -> Self {
        SseBody {
            events,
            next: 0,
            interval,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            waiting: false,
        }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.waiting {
            ready!(this.sleep.as_mut().poll(cx));
            this.waiting = false;
        }
        let Some(event) = this.events.get(this.next).cloned() else {
            return Poll::Ready(None);
        };
        this.next += 1;
        if !this.interval.is_zero() && this.next < this.events.len() {
            this.sleep.as_mut().reset(Instant::now() + this.interval);
            this.waiting = true;
        }
        Poll::Ready(Some(Ok(Frame::data(event))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.events.len()
    }
}

/// The only part of a chat request the mock looks at.
#[derive(Deserialize)]
struct ChatRequest {
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

enum Route {
    Chat,
    Embeddings,
    Models,
    Large,
    Upload,
    Responses,
    RejectKeys,
    NotFound,
}

fn route(method: &Method, path: &str) -> Route {
    let azure_tail = path
        .strip_prefix("/openai/deployments/")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(deployment, _)| !deployment.is_empty())
        .map(|(_, tail)| tail);
    match (method, path, azure_tail) {
        (&Method::POST, "/v1/chat/completions", _) => Route::Chat,
        (&Method::POST, _, Some("chat/completions")) => Route::Chat,
        (&Method::POST, "/v1/embeddings", _) => Route::Embeddings,
        (&Method::POST, _, Some("embeddings")) => Route::Embeddings,
        (&Method::GET, "/v1/models", _) => Route::Models,
        (&Method::POST, "/v1/large", _) => Route::Large,
        (&Method::POST, "/v1/responses", _) => Route::Responses,
        (&Method::POST, "/v1/audio/transcriptions", _) => Route::Upload,
        (&Method::POST, "/__mock/keys", _) => Route::RejectKeys,
        _ => Route::NotFound,
    }
}

async fn handle(
    mock: Arc<Mock>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    let (head, body) = req.into_parts();
    let route = route(&head.method, head.uri.path());
    if matches!(route, Route::RejectKeys) {
        return Ok(reject_keys(&mock, peer, body).await);
    }
    if mock.rejects(&head.headers) {
        return Ok(invalid_api_key());
    }
    let body = match route {
        Route::Chat | Route::Embeddings | Route::Responses => {
            match Limited::new(body, MAX_REQUEST_BODY).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    return Ok(error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request body unreadable or too large",
                    ))
                }
            }
        }
        Route::Upload => {
            // Drain without keeping: only the byte count matters.
            let mut body = body;
            let mut bytes = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                bytes += frame.data_ref().map_or(0, Bytes::len);
            }
            Bytes::from(json!({"text": format!("{bytes} bytes")}).to_string())
        }
        Route::Models | Route::Large | Route::RejectKeys | Route::NotFound => Bytes::new(),
    };
    if !mock.args.first_byte_delay.is_zero() {
        tokio::time::sleep(mock.args.first_byte_delay).await;
    }
    let mut response = match route {
        Route::Chat => chat(&mock, &body),
        Route::Embeddings => json_response(mock.embeddings.clone()),
        Route::Models => json_response(mock.models.clone()),
        Route::Large => json_response(mock.large.clone()),
        Route::Responses => responses(&mock, &body),
        Route::Upload => json_response(body),
        Route::RejectKeys | Route::NotFound => {
            let message = format!("Unknown request URL: {} {}", head.method, head.uri.path());
            error(StatusCode::NOT_FOUND, &message)
        }
    };
    response
        .headers_mut()
        .insert("x-request-id", mock.request_id());
    Ok(response)
}

impl Mock {
    /// Whether the request's key is one `POST /__mock/keys` said to refuse.
    fn rejects(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let api_key = headers.get("api-key").and_then(|v| v.to_str().ok());
        let Ok(rejected) = self.rejected.lock() else {
            return false;
        };
        [bearer, api_key]
            .into_iter()
            .flatten()
            .any(|k| rejected.contains(k))
    }
}

#[derive(Deserialize)]
struct RejectKeys {
    reject: Vec<String>,
}

/// `POST /__mock/keys`: replaces the set of refused keys. Loopback peers only, so a mock
/// listening on a wider address cannot be steered from elsewhere.
async fn reject_keys(mock: &Mock, peer: SocketAddr, body: Incoming) -> Response<MockBody> {
    if !peer.ip().is_loopback() {
        return error(
            StatusCode::FORBIDDEN,
            "the control route is for loopback peers",
        );
    }
    let parsed = match Limited::new(body, 1 << 16).collect().await {
        Ok(collected) => serde_json::from_slice::<RejectKeys>(&collected.to_bytes()).ok(),
        Err(_) => None,
    };
    let Some(RejectKeys { reject }) = parsed else {
        return error(StatusCode::BAD_REQUEST, r#"expected {"reject":["key",…]}"#);
    };
    let count = reject.len();
    match mock.rejected.lock() {
        Ok(mut rejected) => *rejected = reject.into_iter().collect(),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "lock poisoned"),
    }
    json_response(Bytes::from(json!({"rejecting": count}).to_string()))
}

/// OpenAI's answer to a revoked or unknown key.
fn invalid_api_key() -> Response<MockBody> {
    let body = json!({"error": {
        "message": "Incorrect API key provided: sk-mock***. You can find your API key at https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error", "param": null, "code": "invalid_api_key"
    }});
    let mut response = json_response(Bytes::from(body.to_string()));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response
}

fn chat(mock: &Mock, body: &[u8]) -> Response<MockBody> {
    let request: ChatRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => {
            let message = format!("We could not parse the JSON body of your request: {e}");
            return error(StatusCode::BAD_REQUEST, &message);
        }
    };
    if request.stream != Some(true) {
        return json_response(mock.completion.clone());
    }
    let include_usage = request
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let events = if include_usage {
        mock.stream_with_usage.clone()
    } else {
        mock.stream_plain.clone()
    };
    let mut response = Response::new(Either::Right(SseBody::new(
        events,
        mock.args.chunk_interval,
    )));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

#[derive(Deserialize)]
struct ResponsesRequest {
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    service_tier: Option<String>,
}

/// A Responses API answer with cached and reasoning tokens, in the requested tier.
fn responses(mock: &Mock, body: &[u8]) -> Response<MockBody> {
    let request: ResponsesRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => {
            let message = format!("We could not parse the JSON body of your request: {e}");
            return error(StatusCode::BAD_REQUEST, &message);
        }
    };
    let tier = match request.service_tier.as_deref() {
        Some(t @ ("flex" | "priority")) => t.to_string(),
        _ => "default".to_string(),
    };
    let response = |status: &str, with_usage: bool| {
        let usage = with_usage.then(|| {
            json!({"input_tokens": 2000, "input_tokens_details": {"cached_tokens": 1500},
                "output_tokens": 300, "output_tokens_details": {"reasoning_tokens": 256},
                "total_tokens": 2300})
        });
        json!({"id": "resp_mock", "object": "response", "created_at": CREATED, "status": status,
            "model": "gpt-5-2025-08-07", "service_tier": tier,
            "output": [{"type": "message", "id": "msg_mock", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello", "annotations": []}]}],
            "usage": usage})
    };
    if request.stream != Some(true) {
        return json_response(Bytes::from(response("completed", true).to_string()));
    }
    let events: Vec<Bytes> = [
        (
            "response.created",
            json!({"type": "response.created", "sequence_number": 0,
            "response": response("in_progress", false)}),
        ),
        (
            "response.output_text.delta",
            json!({"type": "response.output_text.delta",
            "sequence_number": 1, "item_id": "msg_mock", "output_index": 0, "content_index": 0,
            "delta": "Hello"}),
        ),
        (
            "response.completed",
            json!({"type": "response.completed", "sequence_number": 2,
            "response": response("completed", true)}),
        ),
    ]
    .into_iter()
    .map(|(name, data)| Bytes::from(format!("event: {name}\ndata: {data}\n\n")))
    .collect();
    let mut response = Response::new(Either::Right(SseBody::new(
        events.into(),
        mock.args.chunk_interval,
    )));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response
}

fn json_response(body: Bytes) -> Response<MockBody> {
    let mut response = Response::new(Either::Left(Full::new(body)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An error in OpenAI's shape; the mock only makes `invalid_request_error`s.
fn error(status: StatusCode, message: &str) -> Response<MockBody> {
    let body = json!({
        "error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}
    });
    let mut response = json_response(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    response
}

async fn serve(mock: Arc<Mock>) -> std::io::Result<()> {
    let listener = TcpListener::bind(mock.args.listen).await?;
    eprintln!(
        "mock_upstream listening on {} ({} chunks, first-byte delay {:?}, chunk interval {:?}, {} threads)",
        listener.local_addr()?,
        mock.args.chunks,
        mock.args.first_byte_delay,
        mock.args.chunk_interval,
        mock.args.threads
    );
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically EMFILE under a connection storm: back off instead of spinning.
                eprintln!("mock_upstream: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Small SSE frames must leave at once, not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let mock = mock.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(mock.clone(), peer, req));
            // Peers resetting or closing mid-response are routine under load; nothing to do.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn main() {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("mock_upstream: {message}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build();
    let result = runtime.and_then(|rt| rt.block_on(serve(Arc::new(Mock::new(args)))));
    if let Err(e) = result {
        eprintln!("mock_upstream: {e}");
        std::process::exit(1);
    }
}
