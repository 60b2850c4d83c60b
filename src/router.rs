//! One `match` on the path: `/1/*` to the admin API, `/v1/*` and Azure-style `/openai/*` to
//! the proxy, `/ui/*` to the embedded dashboard, a health probe, and JSON 404s for everything
//! else.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::body::{json as json_body, ResponseBody};
use crate::state::App;
use crate::{admin, proxy, ui};

pub async fn route(app: App, req: Request<Incoming>) -> Response<ResponseBody> {
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
