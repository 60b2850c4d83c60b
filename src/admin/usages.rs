//! `/1/usages` (root: everyone's totals) and `/1/me/usages` (the caller's own).

use http::{Response, StatusCode};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use super::query_param;
use crate::auth::Caller;
use crate::body::{json, ResponseBody};
use crate::error::AdminError;
use crate::state::{App, AppState};
use crate::store::usage::UsageTotal;
use crate::timestamp;

type Answer = Result<Response<ResponseBody>, AdminError>;

#[derive(Serialize)]
struct UsageRow {
    #[serde(rename = "userId")]
    user_id: i64,
    #[serde(rename = "totalUnit")]
    total_unit: i64,
    cost: String,
}

/// Exactly 6 decimals, half-up.
pub fn money(cost: Decimal) -> String {
    let mut rounded = cost.round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(6);
    rounded.to_string()
}

fn row(t: UsageTotal) -> UsageRow {
    UsageRow {
        user_id: t.user_id,
        total_unit: t.total_tokens,
        cost: money(t.cost),
    }
}

/// `[from 00:00, to 00:00)` in stored form; both absent → the current UTC month.
fn window(query: &str) -> Result<(String, String), AdminError> {
    let from = query_param(query, "from").filter(|v| !v.is_empty());
    let to = query_param(query, "to").filter(|v| !v.is_empty());
    let (from, to) = match (from, to) {
        (None, None) => timestamp::current_month(),
        (Some(f), Some(t)) => {
            let parse = |name: &str, v: &str| {
                timestamp::parse_day(v).ok_or_else(|| {
                    AdminError::BadRequest(format!("`{name}` must be a date like 2023-05-01"))
                })
            };
            (parse("from", &f)?, parse("to", &t)?)
        }
        _ => {
            return Err(AdminError::BadRequest(
                "give both `from` and `to`, or neither".into(),
            ))
        }
    };
    if from > to {
        return Err(AdminError::BadRequest("`from` is after `to`".into()));
    }
    Ok((timestamp::day_start(from), timestamp::day_start(to)))
}

pub async fn all(app: &App, _root: Caller, query: &str) -> Answer {
    let (from, to) = window(query)?;
    let totals = AppState::blocking(app, move |s| s.store.usage_totals(&from, &to)).await?;
    let rows: Vec<UsageRow> = totals.into_iter().map(row).collect();
    Ok(json(StatusCode::OK, &rows))
}

pub async fn mine(app: &App, caller: Caller, query: &str) -> Answer {
    let (from, to) = window(query)?;
    let total = AppState::blocking(app, move |s| {
        s.store.user_usage_total(caller.user_id, &from, &to)
    })
    .await?;
    Ok(json(StatusCode::OK, &[row(total)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_has_six_decimals_half_up() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(money(d("0.00011")), "0.000110");
        assert_eq!(money(d("0")), "0.000000");
        assert_eq!(money(d("0.0000005")), "0.000001");
        assert_eq!(money(d("0.0000004999")), "0.000000");
        assert_eq!(money(d("12.3456785")), "12.345679");
    }
}
