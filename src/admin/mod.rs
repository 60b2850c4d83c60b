//! The `/1` admin API (opencatd's): users, keys and usage reports. Handlers are thin: parse,
//! authorize, call the store off the runtime, render.

pub mod keys;
pub mod usages;
pub mod users;

use bytes::Bytes;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use crate::auth::{bearer_token, Caller};
use crate::body::{read_limited, ResponseBody};
use crate::error::AdminError;
use crate::state::App;
use crate::upload::ReadError;

/// Largest admin request body.
const MAX_BODY: usize = 1024 * 1024;

/// Dispatches one `/1` request; `path` starts with `/1/`.
pub async fn handle(app: App, req: Request<Incoming>) -> Response<ResponseBody> {
    match dispatch(app, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn dispatch(app: App, req: Request<Incoming>) -> Result<Response<ResponseBody>, AdminError> {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let segments: Vec<&str> = path.split('/').skip(2).collect();
    // A token the CLI just reset must fail on the very next request, not a tick later.
    app.refresh(false).await?;
    if segments == ["users", "init"] {
        return match method {
            Method::POST => users::init(&app).await,
            _ => Err(AdminError::MethodNotAllowed),
        };
    }
    let caller = authenticate(&app, &req)?;
    let presented = bearer_token(req.headers()).unwrap_or_default().to_string();
    let body = req.into_body();
    match (method, segments.as_slice()) {
        (Method::GET, ["me"]) => users::me(&app, caller, presented).await,
        (Method::GET, ["me", "usages"]) => usages::mine(&app, caller, &query).await,
        (Method::GET, ["me", "usages", "detail"]) => {
            usages::detail(&app, Some(caller.user_id), &query).await
        }
        (Method::GET, ["users"]) => users::list(&app, root(caller)?, &query).await,
        (Method::POST, ["users"]) => {
            root(caller)?;
            users::add(&app, json_body(&app, body).await?).await
        }
        (Method::DELETE, ["users", id]) => users::delete(&app, root(caller)?, parse_id(id)?).await,
        (Method::POST, ["users", id, "reset"]) => {
            users::reset(&app, root(caller)?, parse_id(id)?, &query).await
        }
        (Method::PUT, ["users", id, "limits"]) => {
            root(caller)?;
            let id = parse_id(id)?;
            users::set_limits(&app, id, json_body(&app, body).await?).await
        }
        (Method::GET, ["keys"]) => keys::list(&app, root(caller)?).await,
        (Method::POST, ["keys"]) => {
            root(caller)?;
            keys::add(&app, json_body(&app, body).await?).await
        }
        (Method::DELETE, ["keys", id]) => keys::delete(&app, root(caller)?, parse_id(id)?).await,
        (Method::POST, ["keys", id, "disable"]) => {
            keys::disable(&app, root(caller)?, parse_id(id)?).await
        }
        (Method::POST, ["keys", id, "enable"]) => {
            keys::enable(&app, root(caller)?, parse_id(id)?).await
        }
        (Method::GET, ["usages"]) => usages::all(&app, root(caller)?, &query).await,
        (Method::GET, ["usages", "detail"]) => {
            root(caller)?;
            usages::detail(&app, None, &query).await
        }
        (_, ["me"] | ["me", "usages"] | ["me", "usages", "detail"] | ["users"] | ["users", _])
        | (
            _,
            ["users", _, "reset"]
            | ["users", _, "limits"]
            | ["keys"]
            | ["keys", _]
            | ["usages"]
            | ["usages", "detail"],
        )
        | (_, ["keys", _, "disable" | "enable"]) => Err(AdminError::MethodNotAllowed),
        _ => Err(AdminError::NotFound("not found".into())),
    }
}

fn authenticate(app: &App, req: &Request<Incoming>) -> Result<Caller, AdminError> {
    if !app.tokens.initialized() {
        return Err(AdminError::Unauthorized);
    }
    bearer_token(req.headers())
        .and_then(|t| app.tokens.lookup(t))
        .ok_or(AdminError::Unauthorized)
}

/// Only root passes; members get 403.
fn root(caller: Caller) -> Result<Caller, AdminError> {
    if caller.is_root() {
        Ok(caller)
    } else {
        Err(AdminError::Forbidden("only root may do this".into()))
    }
}

fn parse_id(text: &str) -> Result<i64, AdminError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| AdminError::BadRequest(format!("invalid id `{text}`")))
}

async fn json_body<T: DeserializeOwned>(app: &App, body: Incoming) -> Result<T, AdminError> {
    let deadline = app.config.upstream.body_read_timeout;
    let bytes: Bytes = read_limited(body, MAX_BODY, deadline)
        .await
        .map_err(|e| match e {
            ReadError::TooLarge => AdminError::PayloadTooLarge,
            ReadError::TimedOut => AdminError::RequestTimeout,
            ReadError::Io(e) => AdminError::BadRequest(format!("cannot read body: {e}")),
        })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))
}

/// The value of query parameter `name`, percent-decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
