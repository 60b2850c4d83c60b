//! Edge errors. `/1` answers `{"error": "..."}`; `/v1` answers in OpenAI's error shape so SDKs
//! raise their typed exceptions. Each maps to a status in exactly one place.
//!
//! This module imports no other HTTP module of catgate (responses are built for any body made
//! from bytes), so everything may use [`BoxError`] and the error types without a cycle.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;

use crate::store::StoreError;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("request body not received in time")]
    RequestTimeout,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("internal error")]
    Internal(String),
}

impl AdminError {
    pub fn into_response<B: From<Bytes>>(self) -> Response<B> {
        let status = match &self {
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::Forbidden(_) => StatusCode::FORBIDDEN,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            AdminError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AdminError::Internal(detail) => {
                // The detail goes to the log only; the client sees no internals.
                tracing::error!(%detail, "admin request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        close_if_timed_out(json_body(status, &json!({ "error": self.to_string() })))
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => AdminError::Conflict(m.to_string()),
            StoreError::NotFound => AdminError::NotFound("not found".into()),
            other => AdminError::Internal(other.to_string()),
        }
    }
}

/// The header the OpenAI SDKs read before their own retry rules (`"false"`: do not retry).
pub const SHOULD_RETRY: &str = "x-should-retry";

/// Errors catgate itself answers on `/v1` (upstream errors pass through verbatim instead).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("Incorrect API key provided. Use your catgate token as the API key.")]
    InvalidApiKey,
    #[error("{0}")]
    BadRequest(String),
    #[error("Invalid request path: dot segments and backslashes are not allowed.")]
    InvalidPath,
    #[error("Request body is larger than {0} bytes.")]
    PayloadTooLarge(usize),
    #[error("The request body was not received in time.")]
    RequestTimeout,
    #[error("Unknown route {0}.")]
    NotFound(String),
    #[error("No upstream key can serve this request; ask your admin to add one.")]
    NoUpstreamKey,
    /// Every key tried was refused by the upstream (or every key that could serve is
    /// disabled). Never the upstream's own 401: SDKs would show it as the member's bad token.
    #[error("The upstream rejected catgate's API keys for this request (revoked, unpaid or out of quota). This is not about your token; ask your admin to check the upstream keys.")]
    UpstreamKeyRejected,
    #[error("The upstream did not answer in time.")]
    UpstreamTimeout,
    #[error("Could not reach the upstream: {0}")]
    UpstreamUnreachable(String),
    /// A member's budget is used up (api.md's exact message).
    #[error("{0}")]
    QuotaExceeded(String),
    /// A member's `rpm` or `maxConcurrent` is reached; `retry_after` in whole seconds.
    #[error("{message}")]
    RateLimited { message: String, retry_after: u64 },
    /// A member with a budget asked for a model catgate cannot price.
    #[error("{0}")]
    ModelNotPriced(String),
    /// A member with a budget asked for a costly route catgate does not meter.
    #[error("{0}")]
    NotMetered(String),
    /// The database that holds the member's limits did not answer.
    #[error("Your usage limits cannot be checked right now; try again shortly.")]
    LimitsUnavailable,
    #[error("Internal error.")]
    Internal(String),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        self.shape().0
    }

    pub fn into_response<B: From<Bytes>>(self) -> Response<B> {
        if let ProxyError::Internal(detail) = &self {
            tracing::error!(%detail, "proxy request failed");
        }
        let (status, kind, code) = self.shape();
        let mut resp = close_if_timed_out(json_body(
            status,
            &openai_error(&self.to_string(), kind, code),
        ));
        if self.retry_is_futile() {
            resp.headers_mut()
                .insert(SHOULD_RETRY, HeaderValue::from_static("false"));
        }
        if let ProxyError::RateLimited { retry_after, .. } = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        resp
    }

    /// A 429 or 5xx that the same request cannot escape by retrying within seconds: a used-up
    /// budget waits for the next period, a refused key for an admin or a probe minutes away.
    /// The OpenAI SDKs retry 429 and 5xx twice by default; `x-should-retry: false` stops them,
    /// so the member sees the answer at once and catgate does not serve three requests.
    fn retry_is_futile(&self) -> bool {
        matches!(
            self,
            ProxyError::QuotaExceeded(_) | ProxyError::UpstreamKeyRejected
        )
    }

    /// Status, OpenAI `type` and `code`: the one place each error gets them.
    fn shape(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ProxyError::InvalidApiKey => (
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "invalid_api_key",
            ),
            ProxyError::BadRequest(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request",
            ),
            ProxyError::InvalidPath => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_path",
            ),
            ProxyError::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "request_too_large",
            ),
            ProxyError::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                "request_timeout",
            ),
            ProxyError::NotFound(_) => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "unknown_url",
            ),
            ProxyError::NoUpstreamKey => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "no_upstream_key",
            ),
            ProxyError::UpstreamKeyRejected => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "upstream_key_rejected",
            ),
            ProxyError::UpstreamTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "server_error",
                "upstream_timeout",
            ),
            ProxyError::UpstreamUnreachable(_) => {
                (StatusCode::BAD_GATEWAY, "server_error", "upstream_error")
            }
            ProxyError::QuotaExceeded(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                "insufficient_quota",
            ),
            ProxyError::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "requests",
                "rate_limit_exceeded",
            ),
            ProxyError::ModelNotPriced(_) => (
                StatusCode::FORBIDDEN,
                "invalid_request_error",
                "model_not_priced",
            ),
            ProxyError::NotMetered(_) => (
                StatusCode::FORBIDDEN,
                "invalid_request_error",
                "route_not_metered",
            ),
            ProxyError::LimitsUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "limits_unavailable",
            ),
            ProxyError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal_error",
            ),
        }
    }
}

/// A 408 closes the connection: the rest of the stalled body would otherwise be read as the
/// next request.
fn close_if_timed_out<B>(mut resp: Response<B>) -> Response<B> {
    if resp.status() == StatusCode::REQUEST_TIMEOUT {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A JSON response; a `Value` always serializes, so there is no failure path.
fn json_body<B: From<Bytes>>(status: StatusCode, value: &serde_json::Value) -> Response<B> {
    let mut resp = Response::new(B::from(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// OpenAI's error body.
pub fn openai_error(message: &str, kind: &str, code: &str) -> serde_json::Value {
    json!({ "error": { "message": message, "type": kind, "param": null, "code": code } })
}
