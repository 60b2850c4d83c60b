//! One `match` on the path: `/1/*` to the admin API, `/v1/*` to the proxy, a health probe, and
//! JSON 404s for everything else.

use http::{Request, Response, StatusCode};
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
    } else {
        json_body(StatusCode::NOT_FOUND, &json!({ "error": "not found" }))
    }
}
