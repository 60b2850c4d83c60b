//! The `/v1` proxy: authenticate the member, read the body, forward with failover, meter.
//! Azure-style paths (`/openai/...`) enter here too, as the `/v1` request they stand for
//! (`inbound.rs`).

pub mod attempt;
pub mod cooldown;
pub mod decoded;
pub mod failover;
pub mod inbound;
pub mod json_keep;
pub mod key_health;
pub mod metered_body;
pub mod path;
pub mod request;
pub mod response;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::auth::bearer_token;
use crate::body::{json as json_body, ResponseBody};
use crate::error::ProxyError;
use crate::route::Route;
use crate::state::App;
use crate::upload::{self, ReadError, RequestBody};
use crate::upstream::ProviderSet;

/// Handles one `/v1` (or Azure-style `/openai/...`) request; errors catgate makes come back in
/// OpenAI's shape. Counted in the metrics once, as its head goes out; logged once (see
/// `access.rs`).
pub async fn handle(app: App, req: Request<Incoming>) -> Response<ResponseBody> {
    let request_id = uuid::Uuid::now_v7().to_string();
    let started = std::time::Instant::now();
    // A shared handle on the request's URI bytes (no copy), for the metrics and access line.
    let uri = req.uri().clone();
    let mut seen = Seen::default();
    let mut resp = match proxy(&app, req, &request_id, &mut seen).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    if let Ok(v) = http::HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    let status = resp.status().as_u16();
    let model = seen.model.unwrap_or_else(|| app.model_label(None));
    let route = seen.route.unwrap_or_else(|| Route::parse(uri.path()));
    app.metrics.request(route, status, model);
    if !seen.recorded {
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        crate::access::unrecorded(&request_id, seen.user_id, uri.path(), status, ms);
    }
    resp
}

/// What `handle` learns of a request on its way through, for its metrics and access line.
#[derive(Default)]
struct Seen {
    user_id: Option<i64>,
    route: Option<Route>,
    model: Option<crate::metrics::ModelLabel>,
    /// Handed to failover, which writes its usage record (whose settling logs the request).
    recorded: bool,
}

/// The response header naming catgate's id for a request (= its usage record's id).
pub const REQUEST_ID_HEADER: &str = "x-catgate-request-id";

async fn proxy(
    app: &App,
    req: Request<Incoming>,
    request_id: &str,
    seen: &mut Seen,
) -> Result<Response<ResponseBody>, ProxyError> {
    if !path::is_safe(req.uri().path()) {
        return Err(ProxyError::InvalidPath);
    }
    let caller = bearer_token(req.headers())
        .and_then(|t| app.tokens.lookup(t))
        .ok_or(ProxyError::InvalidApiKey)?;
    seen.user_id = Some(caller.user_id);
    let target = inbound::target(req.method(), req.uri(), &app.config.azure_deployments)?;
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
    let path = target.path;
    let route = Route::parse(&path);
    seen.route = Some(route);
    if parts.method == Method::GET && route == Route::Models && !can_list_models(app) {
        return Ok(local_models(app));
    }
    let (mut inspected, splice_at) = inspect(&body).await;
    let add_model = inbound::deployment_model(target.deployment_model, &body, &mut inspected).await;
    seen.model = Some(app.model_label(inspected.model.as_deref()));
    let inject_usage = inspected.stream
        && route.streams_usage()
        && inspected.include_usage != Some(true)
        && (body.in_memory().is_some() || splice_at.is_some());
    let ticket = crate::limits::admit(
        &app.store,
        &app.config.limits,
        &app.config.prices,
        caller,
        crate::limits::Ask {
            request_id,
            method: &parts.method,
            route,
            model: inspected.model.as_deref(),
            service_tier: inspected.service_tier.as_deref(),
            body_len: body.len(),
            max_tokens: inspected.max_tokens,
            n: inspected.n,
        },
    )
    .await?;
    let path_and_query = target.path_and_query;
    let out = attempt::Outbound {
        request_id: request_id.to_string(),
        method: parts.method,
        route,
        path,
        path_and_query,
        headers: parts.headers,
        body,
        splice_at,
        inspected,
        inject_usage,
        add_model,
    };
    // Rejections (limits) go before this line: from here on, a usage record is written.
    seen.recorded = true;
    let answer = match out.inspected.stream {
        true => failover::send(app, caller.user_id, out).await,
        false => finish_detached(app, caller.user_id, out).await,
    };
    Ok(match ticket {
        None => answer?,
        Some(ticket) => ticket.attach(answer.unwrap_or_else(ProxyError::into_response)),
    })
}

/// A non-streaming request runs in a task of its own: if its client leaves while the upstream
/// works, the upstream still finishes and bills the answer, so catgate reads it to its end and
/// records its real usage instead of a $0 row (which would also let a member slip past a
/// budget by timing out early). A stream is cut when its client leaves, as the upstream stops
/// generating too.
async fn finish_detached(
    app: &App,
    user_id: i64,
    out: attempt::Outbound,
) -> Result<Response<ResponseBody>, ProxyError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task_app = app.clone();
    app.spawn_detached(async move {
        let answer = failover::send(&task_app, user_id, out).await;
        if let Err(Ok(resp)) = tx.send(answer) {
            // Nobody to hand it to: read it through, which meters it.
            let mut body = resp.into_body();
            while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
                if frame.is_err() {
                    break;
                }
            }
        }
    });
    rx.await.unwrap_or_else(|_| {
        Err(ProxyError::Internal(
            "the request's task ended early".into(),
        ))
    })
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

/// Whether some key can answer `GET /v1/models` itself. With keys but none that can (only
/// Azure keys), catgate answers locally; with no key at all, the usual 503.
fn can_list_models(app: &App) -> bool {
    app.keys.is_empty()
        || app
            .keys
            .has_key_for(ProviderSet::serving(Route::Models, None))
}

/// With no key that serves `/v1/models` there is no upstream list; answer with the models
/// catgate knows how to price or route, in OpenAI's list shape.
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
