//! `/1/usages` (root: everyone's totals), `/1/me/usages` (the caller's own), and the detail
//! report `/1/usages/detail` / `/1/me/usages/detail` (grouped, JSON or CSV). All read the
//! rollups, so they answer in milliseconds over a year of records, after flushing the recorder:
//! every answer a client has received is in the report it asks for next.

use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;

use super::query_param;
use crate::auth::Caller;
use crate::body::{json, json_response, ResponseBody};
use crate::error::AdminError;
use crate::report::{self, Format, DEFAULT_GROUP_BY};
use crate::state::App;
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

fn row(t: UsageTotal) -> UsageRow {
    UsageRow {
        user_id: t.user_id,
        total_unit: t.total_tokens,
        cost: report::money(t.cost),
    }
}

/// `[from, to)` as `YYYY-MM-DD` days; both absent → the current UTC month.
pub fn window(from: Option<String>, to: Option<String>) -> Result<(String, String), String> {
    let from = from.filter(|v| !v.is_empty());
    let to = to.filter(|v| !v.is_empty());
    let (from, to) = match (from, to) {
        (None, None) => timestamp::current_month(),
        (Some(f), Some(t)) => {
            let parse = |name: &str, v: &str| {
                timestamp::parse_day(v)
                    .ok_or_else(|| format!("`{name}` must be a date like 2023-05-01"))
            };
            (parse("from", &f)?, parse("to", &t)?)
        }
        _ => return Err("give both `from` and `to`, or neither".into()),
    };
    if from > to {
        return Err("`from` is after `to`".into());
    }
    Ok((from.to_string(), to.to_string()))
}

fn query_window(query: &str) -> Result<(String, String), AdminError> {
    window(query_param(query, "from"), query_param(query, "to")).map_err(AdminError::BadRequest)
}

pub async fn all(app: &App, _root: Caller, query: &str) -> Answer {
    let (from, to) = query_window(query)?;
    app.settle_usage().await;
    let totals = app.store.usage_totals(&from, &to).await?;
    let rows: Vec<UsageRow> = totals.into_iter().map(row).collect();
    Ok(json(StatusCode::OK, &rows))
}

pub async fn mine(app: &App, caller: Caller, query: &str) -> Answer {
    let (from, to) = query_window(query)?;
    app.settle_usage().await;
    let total = app
        .store
        .user_usage_total(caller.user_id, &from, &to)
        .await?;
    Ok(json(StatusCode::OK, &[row(total)]))
}

/// The detail report for everyone (`only = None`, root) or for one user.
pub async fn detail(app: &App, only: Option<i64>, query: &str) -> Answer {
    let (from, to) = query_window(query)?;
    let dims = match query_param(query, "group_by") {
        None => DEFAULT_GROUP_BY.to_vec(),
        Some(text) => report::parse_group_by(&text).map_err(AdminError::BadRequest)?,
    };
    let format = match query_param(query, "format") {
        None => Format::Json,
        Some(text) => Format::parse(&text, false).map_err(AdminError::BadRequest)?,
    };
    app.settle_usage().await;
    let rows = app.store.usage_report(&from, &to, only, &dims).await?;
    Ok(match format {
        Format::Csv => {
            let text = report::to_csv(&rows, &dims);
            let mut resp = json_response(StatusCode::OK, text.into_bytes());
            let headers = resp.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!(
                "attachment; filename=\"catgate-usage-{from}-{to}.csv\""
            )) {
                headers.insert(header::CONTENT_DISPOSITION, v);
            }
            resp
        }
        Format::Json | Format::Table => json_response(StatusCode::OK, report::to_json(&rows)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    #[test]
    fn money_has_six_decimals_half_up() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(report::money(d("0.00011")), "0.000110");
        assert_eq!(report::money(d("0")), "0.000000");
        assert_eq!(report::money(d("0.0000005")), "0.000001");
        assert_eq!(report::money(d("0.0000004999")), "0.000000");
        assert_eq!(report::money(d("12.3456785")), "12.345679");
    }

    #[test]
    fn windows() {
        let w = |f: Option<&str>, t: Option<&str>| window(f.map(Into::into), t.map(Into::into));
        assert_eq!(
            w(Some("2026-11-01"), Some("2026-12-01")),
            Ok(("2026-11-01".into(), "2026-12-01".into()))
        );
        assert!(w(Some("2026-11-01"), None).is_err());
        assert!(w(Some("2026-13-01"), Some("2026-12-01")).is_err());
        assert!(w(Some("2026-12-02"), Some("2026-12-01")).is_err());
    }
}
