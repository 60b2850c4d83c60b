//! `/1/keys*`: the team's upstream credentials (root only).

use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::Caller;
use crate::body::{json, ResponseBody};
use crate::error::AdminError;
use crate::state::App;
use crate::store::keys::{ApiType, Key, NewKey};
use crate::store::StoreError;
use crate::upstream::Provider;

type Answer = Result<Response<ResponseBody>, AdminError>;

/// A key plus its live status (extension fields).
#[derive(Serialize)]
struct KeyView {
    #[serde(flatten)]
    key: Key,
    #[serde(rename = "cooldownSecs")]
    cooldown_secs: u64,
}

pub async fn list(app: &App, _root: Caller) -> Answer {
    let keys = app.store.list_keys().await?;
    let views: Vec<KeyView> = keys
        .into_iter()
        .map(|key| KeyView {
            cooldown_secs: app
                .keys
                .cooldown_left(key.id)
                .map_or(0, |d| d.as_secs_f64().ceil() as u64),
            key,
        })
        .collect();
    Ok(json(StatusCode::OK, &views))
}

#[derive(Deserialize)]
pub struct KeyInput {
    key: Option<String>,
    name: Option<String>,
    api_type: Option<String>,
    endpoint: Option<String>,
}

pub async fn add(app: &App, input: KeyInput) -> Answer {
    let secret = input.key.unwrap_or_default().trim().to_string();
    let name = input.name.unwrap_or_default().trim().to_string();
    if secret.is_empty() || name.is_empty() {
        return Err(AdminError::BadRequest(
            "`key` and `name` are required".into(),
        ));
    }
    let api_type = match input.api_type.as_deref().map(str::trim) {
        None | Some("") => ApiType::OpenAi,
        Some(t) => ApiType::parse(t).ok_or_else(|| {
            AdminError::BadRequest(format!(
                "api_type `{t}` is not one of openai, azure_openai, azure"
            ))
        })?,
    };
    let endpoint = Provider::from(api_type)
        .resolve_endpoint(&input.endpoint.unwrap_or_default(), &name)
        .map_err(|m| AdminError::BadRequest(m.to_string()))?;
    let key = app
        .write(app.store.add_key(&NewKey {
            key: &secret,
            name: &name,
            api_type,
            endpoint: &endpoint,
        }))
        .await?;
    Ok(json(
        StatusCode::OK,
        &KeyView {
            key,
            cooldown_secs: 0,
        },
    ))
}

pub async fn delete(app: &App, _root: Caller, id: i64) -> Answer {
    app.write(app.store.delete_key(id))
        .await
        .map_err(|e| match e {
            StoreError::NotFound => AdminError::NotFound("key not found".into()),
            other => other.into(),
        })?;
    Ok(json(StatusCode::OK, &json!({ "message": "ok" })))
}
