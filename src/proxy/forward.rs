//! Forwarding with failover: pick a key, build the upstream request, and retry on the next
//! key while nothing has reached the client (connect error, timeout before headers, 429, 5xx,
//! 401/403). The final answer's status, body and useful headers go back to the client.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::keys::PoolKey;
use super::request::{with_include_usage, Inspected};
use super::response::{respond, Upstream};
use crate::body::ResponseBody;
use crate::error::ProxyError;
use crate::metering::recorder::Recorder;
use crate::metering::settle::{Finished, Observed};
use crate::route::Route;
use crate::state::App;
use crate::upload::{RequestBody, UpstreamBody};
use crate::upstream::{Call, ProviderSet};

/// A request as read from the client, ready to be sent to any key.
pub struct Outbound {
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

// One per request, moved a few times: not worth a box.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    Answer(Upstream),
    Failed(ProxyError),
}

/// Sends `out` for `user_id`, failing over across keys; always writes one usage record once
/// an upstream was tried.
pub async fn send(
    app: &App,
    user_id: i64,
    out: Outbound,
) -> Result<Response<ResponseBody>, ProxyError> {
    let started = Instant::now();
    let created_at = std::time::SystemTime::now();
    let eligible = ProviderSet::serving(out.route, out.inspected.model.as_deref());
    let upstream = &app.config.upstream;
    // Built before the first attempt so that a client leaving while catgate waits for the
    // upstream (hyper then drops this future) still leaves its audit row.
    let mut in_flight = InFlight {
        recorder: &app.recorder,
        started,
        record: Some(Finished {
            request_id: uuid::Uuid::now_v7().to_string(),
            user_id,
            key_id: None,
            route: out.route,
            path: out.path.clone(),
            request_model: out.inspected.model.clone(),
            request_body: out.body.clone(),
            stream: out.inspected.stream,
            status: 0,
            attempts: 0,
            latency_ms: 0,
            created_at,
            observed: Observed::Nothing,
        }),
    };
    let mut tried: Vec<i64> = Vec::with_capacity(upstream.max_attempts as usize);
    let mut last: Option<(Attempt, std::sync::Arc<PoolKey>)> = None;
    while tried.len() < upstream.max_attempts as usize {
        let Some(key) = app.keys.next_for(eligible, &tried) else {
            break;
        };
        tried.push(key.id);
        if let Some(r) = in_flight.record.as_mut() {
            r.key_id = Some(key.id);
            r.attempts = tried.len() as u32;
        }
        let attempt = attempt(app, &key, &out).await;
        let retry_in = match &attempt {
            Attempt::Answer(r) => rest_after(app, &key, r.parts.status, &r.parts.headers),
            Attempt::Failed(_) => Some(upstream.cooldown_5xx),
        };
        match retry_in {
            None => {
                app.keys.mark_ok(&key);
                last = Some((attempt, key));
                break;
            }
            Some(rest) => {
                app.keys.cool_down(&key, rest);
                last = Some((attempt, key));
            }
        }
    }
    let Some(mut finished) = in_flight.record.take() else {
        return Err(ProxyError::NoUpstreamKey);
    };
    let Some((attempt, key)) = last else {
        // No key could serve it: still one record (api.md), with no key and status 503.
        finished.status = 503;
        finished.request_body = RequestBody::default();
        app.recorder.record_durable(finished).await;
        return Err(ProxyError::NoUpstreamKey);
    };
    match attempt {
        Attempt::Failed(e) => {
            finished.status = match e {
                ProxyError::UpstreamTimeout => 504,
                _ => 502,
            };
            finished.latency_ms = started.elapsed().as_millis() as u64;
            finished.request_body = RequestBody::default();
            // Like every answer, catgate's own error goes out once its row is durable.
            app.recorder.record_durable(finished).await;
            Err(e)
        }
        Attempt::Answer(resp) => Ok(respond(app, resp, finished, &out, started, &key)),
    }
}

/// The record of a request still waiting for its upstream answer. Dropped with the record
/// inside (the client went away; hyper cancels the handler), it writes a zero-cost row with
/// status 499, nginx's "client closed request": the upstream saw the request.
struct InFlight<'a> {
    recorder: &'a Recorder,
    started: Instant,
    record: Option<Finished>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take().filter(|r| r.attempts > 0) {
            record.status = 499;
            record.latency_ms = self.started.elapsed().as_millis() as u64;
            record.request_body = RequestBody::default();
            self.recorder.record(record);
        }
    }
}

/// One try on one key: the response head, or why there is none.
async fn attempt(app: &App, key: &PoolKey, out: &Outbound) -> Attempt {
    let upstream = &app.config.upstream;
    let settings = app.config.wire_settings();
    let call = Call {
        route: out.route,
        path_and_query: &out.path_and_query,
        model: out.inspected.model.as_deref(),
    };
    let Some(url) = key.provider.url(&key.base_url, &call, &settings) else {
        // The pool only offers keys whose provider serves the call; kept as a safe answer.
        return Attempt::Failed(ProxyError::NoUpstreamKey);
    };
    let body = body_for(out, key.provider.takes_stream_options(&settings)).await;
    let mut headers = HeaderMap::with_capacity(out.headers.len() + 1);
    for (name, value) in &out.headers {
        if !DROP_REQUEST.contains(&name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    let (name, value) = key.auth_header();
    headers.insert(name, value);
    let Ok(uri) = url.parse::<http::Uri>() else {
        tracing::warn!(key_id = key.id, key_name = %key.name, "key's endpoint does not form a valid URL");
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
        Ok(Ok(resp)) => first_frame(app, key, resp).await,
        Ok(Err(e)) => {
            // hyper-util's error names neither the URL nor a header, so no secret leaks.
            let cause = std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_default();
            tracing::warn!(key_id = key.id, key_name = %key.name, error = %e, %cause, "upstream request failed");
            Attempt::Failed(ProxyError::UpstreamUnreachable("connection failed".into()))
        }
        Err(_) => {
            tracing::warn!(key_id = key.id, key_name = %key.name, "upstream sent no response headers in time");
            Attempt::Failed(ProxyError::UpstreamTimeout)
        }
    }
}

/// A 2xx head is worth nothing until its body starts: wait for the first body frame, so that
/// an upstream failing right after its headers still fails over (or ends in a clean 502)
/// while the client has received nothing.
async fn first_frame(app: &App, key: &PoolKey, resp: http::Response<Incoming>) -> Attempt {
    let (parts, mut body) = resp.into_parts();
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
            tracing::warn!(key_id = key.id, key_name = %key.name, error = %e, "upstream failed after its headers, before its body");
            Attempt::Failed(ProxyError::UpstreamUnreachable(
                "the upstream failed before sending its answer".into(),
            ))
        }
        Err(_) => {
            tracing::warn!(key_id = key.id, key_name = %key.name, "upstream sent headers but no body in time");
            Attempt::Failed(ProxyError::UpstreamTimeout)
        }
    }
}

/// The upstream body for one attempt: the client's bytes, with `include_usage` spliced in
/// when catgate wants usage and the upstream takes `stream_options`.
async fn body_for(
    out: &Outbound,
    upstream_takes_stream_options: bool,
) -> std::io::Result<UpstreamBody> {
    let inject = out.inject_usage && upstream_takes_stream_options;
    if let Some(bytes) = out.body.in_memory() {
        let spliced = inject.then(|| with_include_usage(bytes)).flatten();
        return Ok(UpstreamBody::Bytes(Some(
            spliced.unwrap_or_else(|| bytes.clone()),
        )));
    }
    match out.splice_at.filter(|_| inject) {
        Some(at) => {
            let prefix = Bytes::from_static(br#"{"stream_options":{"include_usage":true},"#);
            out.body.upstream(Some(prefix), at).await
        }
        None => out.body.upstream(None, 0).await,
    }
}

/// How long to rest the key before another request may use it, if this answer should be
/// retried on another key; `None` when the answer goes to the client as is.
fn rest_after(
    app: &App,
    key: &PoolKey,
    status: http::StatusCode,
    headers: &HeaderMap,
) -> Option<Duration> {
    let upstream = &app.config.upstream;
    let hinted = retry_after(headers);
    match status.as_u16() {
        429 => Some(hinted.unwrap_or(upstream.cooldown_429)),
        500..=599 => Some(hinted.unwrap_or(upstream.cooldown_5xx)),
        401 | 403 => {
            tracing::warn!(key_id = key.id, key_name = %key.name, status = status.as_u16(),
                "upstream rejected the key; taking it out of rotation");
            Some(upstream.cooldown_auth)
        }
        _ => None,
    }
}

/// `retry-after-ms`, else `retry-after` in seconds; capped at an hour.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let num = |name: &str| -> Option<f64> {
        headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok()
    };
    let secs = num("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| num("retry-after"))?;
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        h.insert("retry-after-ms", HeaderValue::from_static("nope"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
    }
}
