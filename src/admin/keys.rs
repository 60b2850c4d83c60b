//! `/1/keys*`: the team's upstream credentials (root only), with their health: the stored
//! disabled state plus this replica's cooldowns.

use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::Caller;
use crate::body::{json, ResponseBody};
use crate::error::AdminError;
use crate::state::App;
use crate::store::keys::{ApiType, Disabled, HealthGuard, Key, NewKey};
use crate::store::StoreError;
use crate::upstream::Provider;

type Answer = Result<Response<ResponseBody>, AdminError>;

/// The reason stored for a key an admin disabled.
const BY_ADMIN: &str = "disabled by admin";

/// A key plus its live status (extension fields).
#[derive(Serialize)]
struct KeyView {
    #[serde(flatten)]
    key: Key,
    #[serde(rename = "cooldownSecs")]
    cooldown_secs: u64,
    /// `active`, `cooling` or `disabled`.
    status: &'static str,
    #[serde(rename = "statusReason")]
    status_reason: Option<String>,
    /// Cooling: when it ends; disabled by the upstream: when the next probe is due.
    #[serde(rename = "statusUntil")]
    status_until: Option<String>,
}

impl KeyView {
    fn of(app: &App, key: Key) -> KeyView {
        let cooling = app.keys.cooling(key.id);
        let cooldown_secs = cooling.map_or(0, |(d, _)| d.as_secs_f64().ceil() as u64);
        let (status, status_reason, status_until) = match (&key.disabled, cooling) {
            (Some(d), _) => (
                "disabled",
                Some(d.reason.clone()),
                d.probe.as_ref().map(|p| p.at.clone()),
            ),
            (None, Some((left, why))) => (
                "cooling",
                Some(why.reason()),
                Some(crate::timestamp::format(
                    time::OffsetDateTime::now_utc() + left,
                )),
            ),
            (None, None) => ("active", None, None),
        };
        KeyView {
            key,
            cooldown_secs,
            status,
            status_reason,
            status_until,
        }
    }
}

pub async fn list(app: &App, _root: Caller) -> Answer {
    let keys = app.store.list_keys().await?;
    let views: Vec<KeyView> = keys.into_iter().map(|k| KeyView::of(app, k)).collect();
    Ok(json(StatusCode::OK, &views))
}

/// `POST /1/keys/:id/disable`: out of rotation until an admin enables it; never probed.
pub async fn disable(app: &App, _root: Caller, id: i64) -> Answer {
    let disabled = Disabled {
        reason: BY_ADMIN.into(),
        at: crate::timestamp::now(),
        probe: None,
    };
    switch(app, id, Some(&disabled)).await
}

/// `POST /1/keys/:id/enable`: back in rotation whatever took it out, cooldown included.
pub async fn enable(app: &App, _root: Caller, id: i64) -> Answer {
    switch(app, id, None).await
}

async fn switch(app: &App, id: i64, disabled: Option<&Disabled>) -> Answer {
    let changed = app
        .write(app.store.set_key_health(id, HealthGuard::Any, disabled))
        .await?;
    let key = match changed {
        true => app
            .store
            .list_keys()
            .await?
            .into_iter()
            .find(|k| k.id == id),
        false => None,
    };
    let key = key.ok_or_else(|| AdminError::NotFound("key not found".into()))?;
    if disabled.is_none() {
        app.keys.clear_cooldown(id);
    }
    Ok(json(StatusCode::OK, &KeyView::of(app, key)))
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
    Ok(json(StatusCode::OK, &KeyView::of(app, key)))
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
