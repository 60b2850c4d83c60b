//! The `/v1` proxy: authenticate the member, read the body, forward with failover, meter.

pub mod client;
pub mod decoded;
pub mod endpoint;
pub mod forward;
pub mod json_keep;
pub mod keys;
pub mod mask;
pub mod metered_body;
pub mod path;
pub mod request;
pub mod response;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::auth::bearer_token;
use crate::body::{json as json_body, ReadError, ResponseBody};
use crate::error::ProxyError;
use crate::route::Route;
use crate::state::App;
use crate::store::keys::ApiType;
use crate::upload::{self, RequestBody};

/// Handles one `/v1` request; errors catgate makes come back in OpenAI's shape.
pub async fn handle(app: App, req: Request<Incoming>) -> Response<ResponseBody> {
    match proxy(&app, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn proxy(app: &App, req: Request<Incoming>) -> Result<Response<ResponseBody>, ProxyError> {
    if !path::is_safe(req.uri().path()) {
        return Err(ProxyError::InvalidPath);
    }
    let caller = bearer_token(req.headers())
        .and_then(|t| app.tokens.lookup(t))
        .ok_or(ProxyError::InvalidApiKey)?;
    let (parts, body) = req.into_parts();
    let limit = app.config.upstream.max_request_bytes;
    let deadline = app.config.upstream.body_read_timeout;
    let body = upload::read(body, limit, deadline)
        .await
        .map_err(|e| match e {
            ReadError::TooLarge => ProxyError::PayloadTooLarge(limit),
            ReadError::TimedOut => ProxyError::RequestTimeout,
            ReadError::Io(m) => {
                ProxyError::BadRequest(format!("Could not read the request body: {m}"))
            }
        })?;
    let path = parts.uri.path().to_string();
    let azure_only = !app.keys.has_key(ApiType::OpenAi) && app.keys.has_key(ApiType::Azure);
    if parts.method == Method::GET && path == "/v1/models" && azure_only {
        return Ok(local_models(app));
    }
    let (inspected, splice_at) = inspect(&body).await;
    let inject_usage = inspected.stream
        && Route::parse(&path).streams_usage()
        && inspected.include_usage != Some(true)
        && (body.in_memory().is_some() || splice_at.is_some());
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| path.clone(), |pq| pq.as_str().to_string());
    let out = forward::Outbound {
        method: parts.method,
        route: Route::parse(&path),
        path,
        path_and_query,
        headers: parts.headers,
        body,
        splice_at,
        inspected,
        inject_usage,
    };
    forward::send(app, caller.user_id, out).await
}

/// What routing and metering need from the body; for a spooled body, also where an
/// include_usage splice would go. Large bodies are parsed from their file off the runtime.
async fn inspect(body: &RequestBody) -> (request::Inspected, Option<u64>) {
    if let Some(bytes) = body.in_memory() {
        return (request::inspect(bytes), None);
    }
    let body = body.clone();
    tokio::task::spawn_blocking(move || {
        let head = body.head_blocking(64);
        if upload::splice_point(&head, false).is_none() {
            return (request::Inspected::default(), None);
        }
        let Some(reader) = body.reader_blocking() else {
            return (request::Inspected::default(), None);
        };
        let (inspected, has_options) = request::inspect_reader(reader);
        (inspected, upload::splice_point(&head, has_options))
    })
    .await
    .unwrap_or_default()
}

/// With only Azure keys there is no upstream `/v1/models`; answer with the models catgate
/// knows how to price or route, in OpenAI's list shape.
fn local_models(app: &App) -> Response<ResponseBody> {
    let mut ids: Vec<&str> = app
        .config
        .prices
        .models()
        .chain(app.config.azure_deployments.keys().map(String::as_str))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let data: Vec<_> = ids
        .into_iter()
        .map(|id| json!({ "id": id, "object": "model", "created": 0, "owned_by": "catgate" }))
        .collect();
    json_body(StatusCode::OK, &json!({ "object": "list", "data": data }))
}
