//! One `match` on the path: `/1/*` to the admin API, `/v1/*` to the proxy, a health probe, and
//! JSON 404s for everything else.

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;

use crate::body::{json as json_body, ResponseBody};
use crate::state::App;
use crate::{admin, proxy};

pub async fn route(app: App, req: Request<Incoming>) -> Response<ResponseBody> {
    let path = req.uri().path();
    if path == "/1" || path.starts_with("/1/") {
        admin::handle(app, req).await
    } else if path == "/v1" || path.starts_with("/v1/") {
        proxy::handle(app, req).await
    } else if path == "/healthz" {
        json_body(StatusCode::OK, &json!({ "status": "ok" }))
    } else if path == "/readyz" {
        readyz(&app).await
    } else {
        json_body(StatusCode::NOT_FOUND, &json!({ "error": "not found" }))
    }
}

#[derive(Debug)]
pub enum ReadError {
    TooLarge,
    Io(String),
}

/// Reads a whole request body of at most `limit` bytes. A body that arrives in one frame (the
/// common case for JSON requests) is returned without a copy.
pub async fn read_limited(mut body: Incoming, limit: usize) -> Result<Bytes, ReadError> {
    use http_body::Body;
    let hint = body.size_hint();
    if hint.lower() > limit as u64 {
        return Err(ReadError::TooLarge);
    }
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Io(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        // `rest`, once started, already holds `first`.
        let so_far = match (&first, &rest) {
            (_, Some(buf)) => buf.len(),
            (Some(f), None) => f.len(),
            (None, None) => 0,
        };
        if so_far + data.len() > limit {
            return Err(ReadError::TooLarge);
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let capacity = (hint.lower() as usize).clamp(f.len() + data.len(), limit);
                let mut buf = BytesMut::with_capacity(capacity);
                buf.extend_from_slice(f);
                buf.extend_from_slice(&data);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&data),
        }
    }
    Ok(match rest {
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    })
}

/// Ready when the database answers and the recorder is keeping up (nothing waiting in memory
/// or in the spool); else 503 with the reason.
async fn readyz(app: &App) -> Response<ResponseBody> {
    let store = app.store.clone();
    let db = tokio::task::spawn_blocking(move || store.ping()).await;
    let health = app.recorder.health();
    let reason = match db {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("database unavailable: {e}")),
        Err(_) => Some("database check failed".to_string()),
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
