//! `/1/users*` and `/1/me`.

use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::query_param;
use crate::auth::Caller;
use crate::body::{json, ResponseBody};
use crate::error::AdminError;
use crate::state::App;
use crate::store::limits::Limits;
use crate::store::users::ROOT_ID;
use rust_decimal::Decimal;

type Answer = Result<Response<ResponseBody>, AdminError>;

pub async fn init(app: &App) -> Answer {
    let created = app.write(app.store.init_root()).await?;
    match created {
        Some(root) => Ok(json(StatusCode::OK, &root)),
        None => Err(AdminError::Forbidden(
            "super user already exists, use cli to reset password".into(),
        )),
    }
}

/// The caller's user, only if it still holds the token presented: the index it was found in
/// may be a moment older than the database, and `/1/me` must never hand out another token.
pub async fn me(app: &App, caller: Caller, presented: String) -> Answer {
    let user = match app.store.user(caller.user_id).await {
        Ok(user) => user,
        Err(crate::store::StoreError::NotFound) => return Err(AdminError::Unauthorized),
        Err(e) => return Err(e.into()),
    };
    let same = bool::from(user.token.as_bytes().ct_eq(presented.as_bytes()));
    if user.is_delete || !same {
        return Err(AdminError::Unauthorized);
    }
    // Spend counts every answer the member already received.
    app.settle_usage().await;
    let mut shown = serde_json::to_value(&user).map_err(|e| AdminError::Internal(e.to_string()))?;
    let spend = crate::limits::spend_view(&app.store, user.id, &user.limits).await?;
    if let (Some(shown), serde_json::Value::Object(extra)) = (shown.as_object_mut(), spend) {
        shown.extend(extra);
    }
    Ok(json(StatusCode::OK, &shown))
}

/// `PUT /1/users/:id/limits`: every field may be absent or null (= no limit); budgets are USD
/// as a decimal string or number. Unknown fields are refused, so a misspelt limit is not
/// silently no limit.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsInput {
    #[serde(default)]
    monthly_budget: Option<serde_json::Value>,
    #[serde(default)]
    daily_budget: Option<serde_json::Value>,
    #[serde(default)]
    rpm: Option<serde_json::Value>,
    #[serde(default)]
    max_concurrent: Option<serde_json::Value>,
}

/// Largest budget accepted (USD); anything above is a typo, not a budget.
const MAX_BUDGET: i64 = 1_000_000_000;

fn budget(field: &str, v: Option<serde_json::Value>) -> Result<Option<Decimal>, AdminError> {
    let text = match v {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::String(t)) => t,
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(AdminError::BadRequest(format!(
                "`{field}` must be a decimal string like \"50.00\" or null, not {other}"
            )))
        }
    };
    let parsed =
        text.trim().parse::<Decimal>().ok().filter(|d| {
            !d.is_sign_negative() && *d <= Decimal::from(MAX_BUDGET) && d.scale() <= 10
        });
    parsed.map(Some).ok_or_else(|| {
        AdminError::BadRequest(format!(
            "`{field}` must be an amount of USD between 0 and {MAX_BUDGET} with at most 10 \
             decimals, not `{text}`"
        ))
    })
}

fn count(field: &str, v: Option<serde_json::Value>, max: u32) -> Result<Option<u32>, AdminError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=max).contains(n))
            .map(Some)
            .ok_or_else(|| {
                AdminError::BadRequest(format!(
                    "`{field}` must be a whole number from 1 to {max} or null, not {v}"
                ))
            }),
    }
}

pub async fn set_limits(app: &App, id: i64, input: LimitsInput) -> Answer {
    let limits = Limits {
        monthly_budget: budget("monthlyBudget", input.monthly_budget)?,
        daily_budget: budget("dailyBudget", input.daily_budget)?,
        rpm: count("rpm", input.rpm, 1_000_000)?,
        max_concurrent: count("maxConcurrent", input.max_concurrent, 100_000)?,
    };
    let user = app
        .write(app.store.set_limits(id, &limits))
        .await
        .map_err(user_not_found)?;
    Ok(json(StatusCode::OK, &user))
}

pub async fn list(app: &App, _root: Caller, query: &str) -> Answer {
    let all = match query_param(query, "all").as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(AdminError::BadRequest(format!(
                "`all` must be true or false, not `{other}`"
            )))
        }
    };
    let users = app.store.list_users(all).await?;
    Ok(json(StatusCode::OK, &users))
}

#[derive(Deserialize)]
pub struct NewUser {
    name: String,
}

pub async fn add(app: &App, new: NewUser) -> Answer {
    let name = new.name.trim().to_string();
    let len = name.chars().count();
    if len == 0 || len > 64 {
        return Err(AdminError::BadRequest(
            "name must be 1 to 64 characters".into(),
        ));
    }
    let user = app.write(app.store.add_user(&name)).await?;
    Ok(json(StatusCode::OK, &user))
}

pub async fn delete(app: &App, _root: Caller, id: i64) -> Answer {
    if id == ROOT_ID {
        return Err(AdminError::BadRequest("root cannot be deleted".into()));
    }
    app.write(app.store.delete_user(id))
        .await
        .map_err(user_not_found)?;
    Ok(json(StatusCode::OK, &json!({ "message": "ok" })))
}

pub async fn reset(app: &App, _root: Caller, id: i64, query: &str) -> Answer {
    let token = query_param(query, "token");
    if let Some(t) = &token {
        let visible = t.bytes().all(|b| b.is_ascii_graphic());
        if !(8..=128).contains(&t.len()) || !visible {
            return Err(AdminError::BadRequest(
                "token must be 8 to 128 visible ASCII characters".into(),
            ));
        }
    }
    let user = app
        .write(app.store.reset_token(id, token.as_deref()))
        .await
        .map_err(user_not_found)?;
    Ok(json(StatusCode::OK, &user))
}

fn user_not_found(e: crate::store::StoreError) -> AdminError {
    match e {
        crate::store::StoreError::NotFound => AdminError::NotFound("user not found".into()),
        other => other.into(),
    }
}
