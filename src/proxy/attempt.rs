//! One try of a request on one key: the upstream request built by the key's provider (URL,
//! credential, whether `include_usage` may be spliced in), the client headers that may go
//! along, and the answer's head plus, for a 2xx, its first body frame (for a 429, the start
//! of its body, which tells an exhausted quota from a rate limit).
//!
//! A try that gets no answer logs its one warning line here, where the cause is known; a try
//! whose answer makes catgate fail over is logged by `failover`.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::request::{model_member, with_include_usage, with_model, Inspected};
use crate::error::ProxyError;
use crate::route::Route;
use crate::state::App;
use crate::upload::{RequestBody, UpstreamBody};
use crate::upstream::pool::PoolKey;
use crate::upstream::Call;

/// A request as read from the client, ready to be sent to any key.
pub struct Outbound {
    /// Catgate's id for this request (UUIDv7): the usage record's id and the
    /// `x-catgate-request-id` header.
    pub request_id: String,
    pub method: Method,
    pub path: String,
    pub route: Route,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: RequestBody,
    /// For a spooled JSON body: where `stream_options` would be spliced in.
    pub splice_at: Option<u64>,
    pub inspected: Inspected,
    /// Catgate wants usage in the stream and the client did not ask for it.
    pub inject_usage: bool,
    /// An Azure deployment request whose body names no model: the `model` a key that reads
    /// the model from the body (OpenAI) must be sent.
    pub add_model: Option<ModelSplice>,
}

/// A `model` member to add to a JSON object body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSplice {
    pub model: String,
    /// For a spooled body: the offset just after its opening `{`.
    pub at: Option<u64>,
}

/// Client headers that never go upstream: hop-by-hop ones, the client's credentials, and the
/// ones hyper sets itself (`host`, `content-length`). `accept-encoding` is dropped so bodies
/// arrive unencoded and can be metered.
const DROP_REQUEST: &[&str] = &[
    "host",
    "authorization",
    "api-key",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "accept-encoding",
    "openai-organization",
    "openai-project",
];

/// An upstream answer whose head arrived, with the first body frame already read for 2xx.
pub struct Upstream {
    pub parts: http::response::Parts,
    pub body: Incoming,
    pub first: Option<Frame<Bytes>>,
}

// One per request, moved a few times: not worth a box.
#[allow(clippy::large_enum_variant)]
pub(super) enum Attempt {
    Answer(Upstream),
    Failed(ProxyError),
}

/// One try on one key: the response head, or why there is none.
pub(super) async fn attempt(app: &App, key: &PoolKey, out: &Outbound) -> Attempt {
    let upstream = &app.config.upstream;
    let settings = crate::upstream::Settings::of(&app.config);
    let call = Call {
        route: out.route,
        path_and_query: &out.path_and_query,
        model: out.inspected.model.as_deref(),
    };
    let Some(url) = key.provider.url(&key.base_url, &call, &settings) else {
        // The pool only offers keys whose provider serves the call; kept as a safe answer.
        return Attempt::Failed(ProxyError::NoUpstreamKey);
    };
    let body = body_for(
        out,
        key.provider.takes_stream_options(&settings),
        key.provider.reads_model_from_body(),
    )
    .await;
    let mut headers = HeaderMap::with_capacity(out.headers.len() + 1);
    for (name, value) in &out.headers {
        if !DROP_REQUEST.contains(&name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    let (name, value) = key.auth_header();
    headers.insert(name, value);
    let Ok(uri) = url.parse::<http::Uri>() else {
        tracing::warn!(key_id = key.id, key_name = %key.name, request_id = %out.request_id,
            "key's endpoint does not form a valid URL; trying another key");
        return Attempt::Failed(ProxyError::UpstreamUnreachable(
            "invalid upstream URL".into(),
        ));
    };
    let body = match body {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the spooled request body");
            return Attempt::Failed(ProxyError::Internal(e.to_string()));
        }
    };
    let mut request = http::Request::new(body);
    *request.method_mut() = out.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    match tokio::time::timeout(upstream.first_byte_timeout, app.client.request(request)).await {
        Ok(Ok(resp)) => first_frame(app, key, resp, &out.request_id).await,
        Ok(Err(e)) => {
            // hyper-util's error names neither the URL nor a header, so no secret leaks.
            let cause = std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_default();
            tracing::warn!(key_id = key.id, key_name = %key.name, request_id = %out.request_id,
                error = %e, %cause, "upstream request failed (connect error)");
            Attempt::Failed(ProxyError::UpstreamUnreachable("connection failed".into()))
        }
        Err(_) => {
            tracing::warn!(key_id = key.id, key_name = %key.name, request_id = %out.request_id,
                "upstream sent no response headers in time (timeout)");
            Attempt::Failed(ProxyError::UpstreamTimeout)
        }
    }
}

/// A 2xx head is worth nothing until its body starts: wait for the first body frame, so that
/// an upstream failing right after its headers still fails over (or ends in a clean 502)
/// while the client has received nothing.
async fn first_frame(
    app: &App,
    key: &PoolKey,
    resp: http::Response<Incoming>,
    request_id: &str,
) -> Attempt {
    let (parts, mut body) = resp.into_parts();
    // The error's code tells a spent quota from a rate limit (429), and a model this project
    // may not use from a refused key (403).
    if parts.status == http::StatusCode::TOO_MANY_REQUESTS
        || parts.status == http::StatusCode::FORBIDDEN
    {
        let first = read_ahead(&mut body, app.config.upstream.idle_timeout).await;
        return Attempt::Answer(Upstream { parts, body, first });
    }
    if !parts.status.is_success() {
        return Attempt::Answer(Upstream {
            parts,
            body,
            first: None,
        });
    }
    match tokio::time::timeout(app.config.upstream.idle_timeout, body.frame()).await {
        Ok(Some(Ok(frame))) => Attempt::Answer(Upstream {
            parts,
            body,
            first: Some(frame),
        }),
        Ok(None) => Attempt::Answer(Upstream {
            parts,
            body,
            first: None,
        }),
        Ok(Some(Err(e))) => {
            tracing::warn!(key_id = key.id, key_name = %key.name, %request_id, error = %e,
                "upstream failed after its headers, before its body (connect error)");
            Attempt::Failed(ProxyError::UpstreamUnreachable(
                "the upstream failed before sending its answer".into(),
            ))
        }
        Err(_) => {
            tracing::warn!(key_id = key.id, key_name = %key.name, %request_id,
                "upstream sent headers but no body in time (timeout)");
            Attempt::Failed(ProxyError::UpstreamTimeout)
        }
    }
}

/// How much of a 429's or 403's body is read before deciding: OpenAI's error objects are far smaller.
const READ_AHEAD: usize = 16 * 1024;

/// The start of an error body as one frame (the rest, if any, stays in `body`). An upstream
/// that stalls here gets a few seconds, not the whole idle timeout: it already said 429.
async fn read_ahead(body: &mut Incoming, idle: Duration) -> Option<Frame<Bytes>> {
    let wait = idle.min(Duration::from_secs(5));
    let mut buf = BytesMut::new();
    while buf.len() < READ_AHEAD {
        match tokio::time::timeout(wait, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            _ => break,
        }
    }
    (!buf.is_empty()).then(|| Frame::data(buf.freeze()))
}

/// The upstream body for one attempt: the client's bytes, with `include_usage` spliced in
/// when catgate wants usage and the upstream takes `stream_options`, and `model` when the
/// request named it only in its Azure deployment path and the upstream reads it from the body.
async fn body_for(
    out: &Outbound,
    upstream_takes_stream_options: bool,
    upstream_reads_model: bool,
) -> std::io::Result<UpstreamBody> {
    let inject = out.inject_usage && upstream_takes_stream_options;
    let add_model = out.add_model.as_ref().filter(|_| upstream_reads_model);
    if let Some(bytes) = out.body.in_memory() {
        let mut body = bytes.clone();
        if let Some(spliced) = inject.then(|| with_include_usage(&body)).flatten() {
            body = spliced;
        }
        if let Some(spliced) = add_model.and_then(|m| with_model(&body, &m.model)) {
            body = spliced;
        }
        return Ok(UpstreamBody::Bytes(Some(body)));
    }
    let usage_at = out.splice_at.filter(|_| inject);
    let model_at = add_model.and_then(|m| m.at);
    // Both splice points are just after the body's opening `{`.
    let Some(at) = usage_at.or(model_at) else {
        return out.body.upstream(None, 0).await;
    };
    let mut prefix = b"{".to_vec();
    if let Some(m) = add_model.filter(|_| model_at.is_some()) {
        prefix.extend_from_slice(&model_member(&m.model));
        prefix.push(b',');
    }
    if usage_at.is_some() {
        prefix.extend_from_slice(br#""stream_options":{"include_usage":true},"#);
    }
    out.body.upstream(Some(Bytes::from(prefix)), at).await
}
