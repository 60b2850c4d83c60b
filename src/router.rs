//! One `match` on the path: `/1/*` to the admin API, `/v1/*` and Azure-style `/openai/*` to
//! the proxy, `/ui/*` to the embedded dashboard, health probes, `/metrics` when enabled, and
//! JSON 404s for everything else. Every answer carries `x-catgate-request-id`: the proxy's
//! (= the usage record's id), else a fresh one.

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::auth::bearer_token;
use crate::body::{json as json_body, ResponseBody};
use crate::proxy::REQUEST_ID_HEADER;
use crate::state::App;
use crate::{admin, proxy, ui};

pub async fn route(app: App, req: Request<Incoming>) -> Response<ResponseBody> {
    let mut resp = dispatch(app, req).await;
    if !resp.headers().contains_key(REQUEST_ID_HEADER) {
        let id = uuid::Uuid::now_v7().to_string();
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
    }
    resp
}

async fn dispatch(app: App, req: Request<Incoming>) -> Response<ResponseBody> {
    let path = req.uri().path();
    if path == "/1" || path.starts_with("/1/") {
        admin::handle(app, req).await
    } else if path == "/v1" || path.starts_with("/v1/") || is_azure_style(path) {
        proxy::handle(app, req).await
    } else if path == "/ui" || path.starts_with("/ui/") {
        ui::serve(req.method(), path, req.headers())
    } else if path == "/healthz" {
        json_body(StatusCode::OK, &json!({ "status": "ok" }))
    } else if path == "/readyz" {
        readyz(&app).await
    } else if path == "/metrics" && app.config.metrics.enabled {
        metrics(&app, req.method(), req.headers())
    } else {
        json_body(StatusCode::NOT_FOUND, &json!({ "error": "not found" }))
    }
}

/// Paths of Azure OpenAI's API, which Azure SDK clients call (`proxy::inbound`).
fn is_azure_style(path: &str) -> bool {
    path == "/openai" || path.starts_with("/openai/")
}

/// Ready when the database answers and the recorder is keeping up (nothing waiting in memory
/// or in the spool); else 503 with the reason.
async fn readyz(app: &App) -> Response<ResponseBody> {
    let db = app.store.ping().await;
    let health = app.recorder.health();
    let reason = match db {
        Ok(()) => None,
        Err(e) => Some(format!("database unavailable: {e}")),
    }
    .or_else(|| {
        (health.queued > 0 || health.spooled > 0).then(|| {
            format!(
                "usage recorder behind: {} records in memory, {} in the spool ({})",
                health.queued,
                health.spooled,
                health.last_error.as_deref().unwrap_or("retrying")
            )
        })
    });
    match reason {
        None => json_body(StatusCode::OK, &json!({ "status": "ready" })),
        Some(reason) => json_body(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "status": "unavailable", "reason": reason }),
        ),
    }
}

/// The Prometheus scrape, behind the configured Bearer token if there is one (compared in
/// constant time, as member tokens are).
fn metrics(app: &App, method: &Method, headers: &HeaderMap) -> Response<ResponseBody> {
    if method != Method::GET && method != Method::HEAD {
        return json_body(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({ "error": "method not allowed" }),
        );
    }
    if let Some(expected) = &app.config.metrics.token {
        let given = bearer_token(headers).unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            let mut resp = json_body(
                StatusCode::UNAUTHORIZED,
                &json!({ "error": "Unauthorized" }),
            );
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    }
    let health = app.recorder.health();
    let text = app
        .metrics
        .render(&app.keys.status_counts(), health.queued, health.spooled);
    match text {
        Ok(text) => {
            let mut resp = Response::new(ResponseBody::from(bytes::Bytes::from(text)));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot render the metrics");
            json_body(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({ "error": "internal error" }),
            )
        }
    }
}
