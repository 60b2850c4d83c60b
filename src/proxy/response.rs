//! The answer that goes back to the client: status, the upstream headers worth keeping (with
//! the key's secret masked), `x-catgate-request-id`, and the body wrapped for metering.

use std::time::Instant;

use http::{header, HeaderMap, HeaderName, HeaderValue, Response};

use super::attempt::{Outbound, Upstream};
use super::decoded::Decoded;
use super::metered_body::{MeteredBody, Mode};
use crate::body::ResponseBody;
use crate::metering::settle::Finished;
use crate::metering::stream_meter::StreamMeter;
use crate::state::App;
use crate::upstream::mask::{self, MaskedBody};
use crate::upstream::pool::PoolKey;

pub(super) fn keep_response_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    matches!(
        n,
        "content-type"
            | "content-disposition"
            | "content-encoding"
            | "cache-control"
            | "retry-after"
            | "retry-after-ms"
            | "x-request-id"
            | "apim-request-id"
    ) || n.starts_with("openai-")
        || n.starts_with("x-ratelimit-")
        || n.starts_with("x-ms-")
}

pub(super) fn respond(
    app: &App,
    upstream: Upstream,
    mut finished: Finished,
    out: &Outbound,
    started: Instant,
    key: &PoolKey,
) -> Response<ResponseBody> {
    let Upstream { parts, body, first } = upstream;
    let status = parts.status;
    finished.status = status.as_u16();
    let request_id = finished.request_id.clone();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let encoding = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .filter(|e| !e.eq_ignore_ascii_case("identity"));
    let sse = content_type.starts_with("text/event-stream");
    let mode = if !status.is_success() {
        Mode::Plain
    } else if let Some(encoding) = encoding {
        // catgate asks for identity; an upstream that compresses anyway is passed through.
        finished.stream |= sse;
        let metered = sse || content_type.starts_with("application/json");
        match Decoded::new(encoding, sse, app.config.max_tokens_per_request) {
            Some(decoded) if metered => Mode::Decoded(Box::new(decoded)),
            Some(_) => Mode::Plain,
            None => {
                tracing::warn!(%encoding, "answer in an encoding catgate cannot decode; unmetered");
                Mode::Plain
            }
        }
    } else if sse {
        finished.stream = true;
        let meter =
            StreamMeter::new(out.inject_usage).with_token_bound(app.config.max_tokens_per_request);
        Mode::Sse(Box::new(meter))
    } else if content_type.starts_with("application/json") {
        Mode::json(app.config.max_tokens_per_request)
    } else {
        Mode::Plain
    };
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        if keep_response_header(name) {
            if let Some(value) = mask::header(value, key.secret()) {
                headers.append(name.clone(), value);
            }
        }
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(HeaderName::from_static("x-catgate-request-id"), v);
    }
    let body = MeteredBody::new(
        body,
        first,
        mode,
        finished,
        app.recorder.clone(),
        started,
        app.config.upstream.idle_timeout,
    );
    // Upstream error bodies quote the rejected key.
    let body = if status.is_success() {
        ResponseBody::stream(body)
    } else {
        ResponseBody::stream(MaskedBody::new(body, key.secret().clone()))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
