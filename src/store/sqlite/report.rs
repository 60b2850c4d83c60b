//! The detail report (`/1/usages/detail`, `catgate report`) and `reprice`, over the rollups.
//!
//! A report groups rollup rows by a chosen list of dimensions and reads the coarsest rollup
//! that can answer it: without a `day` column, whole months come from `usage_monthly` and only
//! the partial months at the window's edges from a daily table; by day, from
//! `usage_daily_user_model` when only user and model are asked for, else `usage_daily`. The SQL
//! text is built only from fixed column names, never from input.

use rusqlite::params;
use rust_decimal::Decimal;

use rusqlite::Connection;

use super::usage::{
    rebuild_rollups, record_from_row, roll_up, roll_up_now, summed_select, Level, DAILY,
    DAILY_USER_MODEL, MONTHLY, SELECT_RECORD, SUM_COLUMNS,
};
use crate::store::limits::{month_after, month_of};
use crate::store::report::{Dimension, ReportRow, Repriced};
use crate::store::{PriceFn, StoreError};

/// A dimension's column in the rollup tables.
fn column(d: Dimension) -> &'static str {
    match d {
        Dimension::User => "user_id",
        Dimension::Model => "model",
        Dimension::Key => "key_id",
        Dimension::Day => "day",
        Dimension::Tier => "tier",
    }
}

fn decimal_text(text: String) -> Decimal {
    text.parse().unwrap_or(Decimal::ZERO)
}

/// Rows for `[from_day, to_day)` grouped by `dims` (in that order, which is also the sort
/// order), for every user or only `user_id`.
pub(super) fn usage_report(
    conn: &mut Connection,
    from_day: &str,
    to_day: &str,
    user_id: Option<i64>,
    dims: &[Dimension],
) -> Result<Vec<ReportRow>, StoreError> {
    let plan = Plan::new(from_day, to_day, dims);
    let cols: Vec<&str> = dims.iter().map(|d| column(*d)).collect();
    let group = if cols.is_empty() {
        String::new()
    } else {
        format!("GROUP BY {0} ORDER BY {0}", cols.join(", "))
    };
    let sql = format!(
        "SELECT user_id, model, key_id, day, tier, {} FROM ({}) {group}",
        summed_select(),
        plan.sources()
    );
    // Exact to the last committed record: fold what the recorder has not folded yet. A
    // database refusing writes still answers reads, from what is folded.
    if let Err(e) = roll_up_now(conn) {
        tracing::warn!(error = %e, "report read without folding pending usage");
    }
    let names = Names::load(conn)?;
    let mut stmt = conn.prepare_cached(&sql)?;
    let has = |d: Dimension| dims.contains(&d);
    let int = |r: &rusqlite::Row<'_>, i: usize| -> rusqlite::Result<i64> {
        Ok(r.get::<_, Option<i64>>(i)?.unwrap_or(0))
    };
    let params = params![from_day, to_day, plan.full_from, plan.full_to, user_id];
    let rows = stmt.query_map(params, |r| {
        let user: i64 = int(r, 0)?;
        let key_id = Some(int(r, 2)?).filter(|id| *id != 0);
        Ok(ReportRow {
            user: has(Dimension::User).then(|| (user, names.user(user))),
            model: has(Dimension::Model).then(|| r.get(1)).transpose()?,
            key: has(Dimension::Key).then(|| (key_id, key_id.and_then(|k| names.key(k)))),
            day: has(Dimension::Day).then(|| r.get(3)).transpose()?,
            tier: has(Dimension::Tier).then(|| r.get(4)).transpose()?,
            requests: int(r, 5)?,
            prompt_tokens: int(r, 6)?,
            cached_tokens: int(r, 7)?,
            cache_write_tokens: int(r, 8)?,
            audio_input_tokens: int(r, 9)?,
            completion_tokens: int(r, 10)?,
            reasoning_tokens: int(r, 11)?,
            audio_output_tokens: int(r, 12)?,
            total_tokens: int(r, 13)?,
            cost: decimal_text(r.get::<_, Option<String>>(14)?.unwrap_or_default()),
            estimated_requests: int(r, 15)?,
            unpriced_requests: int(r, 16)?,
            failed_requests: int(r, 17)?,
        })
    })?;
    let rows: Vec<ReportRow> = rows.collect::<Result<_, _>>()?;
    // Without grouping, an empty window still answers one row of zeros.
    Ok(rows
        .into_iter()
        .filter(|r| r.requests > 0 || dims.is_empty())
        .collect())
}

/// Recomputes the cost of every record in `[from, to)` (stored-form timestamps) with
/// `price`, and rebuilds the rollup of those days, in one transaction.
pub(super) fn reprice(
    conn: &mut Connection,
    from: &str,
    to: &str,
    price: &PriceFn,
) -> Result<Repriced, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Fold pending records first: the rebuild below covers them, and the watermark must
    // not fold them a second time afterwards.
    roll_up(&tx)?;
    let mut summary = Repriced::default();
    let mut changes: Vec<(String, Option<String>)> = Vec::new();
    {
        let mut stmt = tx.prepare(&format!(
            "{SELECT_RECORD} WHERE created_at >= ?1 AND created_at < ?2"
        ))?;
        let records = stmt.query_map(params![from, to], record_from_row)?;
        for record in records {
            let record = record?;
            let new = price(&record);
            if summary.count(record.cost, new) {
                changes.push((record.request_id, new.map(|c| c.to_string())));
            }
        }
    }
    {
        let mut update = tx.prepare("UPDATE usage SET cost = ?2 WHERE request_id = ?1")?;
        for (request_id, cost) in &changes {
            update.execute(params![request_id, cost])?;
        }
    }
    // Whole months: every rollup of every month the window touches is rebuilt.
    let (from_month, to_month) = (month_of(from), month_after(to));
    rebuild_rollups(&tx, &from_month, &to_month)?;
    super::limits::rebuild_spend(&tx, &from_month, &to_month)?;
    tx.commit()?;
    Ok(summary)
}

/// Where a report's rows come from; `?1`/`?2` are the window's days, `?3`/`?4` the whole
/// months inside it (`YYYY-MM`, empty range when there is none), `?5` the user or NULL.
struct Plan {
    monthly: bool,
    daily: Level,
    full_from: String,
    full_to: String,
}

impl Plan {
    fn new(from_day: &str, to_day: &str, dims: &[Dimension]) -> Plan {
        let user_model_only = dims
            .iter()
            .all(|d| matches!(d, Dimension::Day | Dimension::User | Dimension::Model));
        let daily = if user_model_only {
            DAILY_USER_MODEL
        } else {
            DAILY
        };
        // The first whole month starts at or after `from`; the last ends at or before `to`.
        let full_from = match from_day.get(8..10) {
            Some("01") => month_of(from_day),
            _ => month_after(from_day),
        };
        let full_to = month_of(to_day);
        Plan {
            monthly: !dims.contains(&Dimension::Day) && full_from < full_to,
            daily,
            full_from,
            full_to,
        }
    }

    /// The UNION of rollup rows that covers the window exactly once.
    fn sources(&self) -> String {
        let sums = SUM_COLUMNS.join(", ");
        let user = "(?5 IS NULL OR user_id = ?5)";
        let daily_cols = match self.daily.by_key_and_tier {
            true => "user_id, model, key_id, day, tier",
            false => "user_id, model, 0 AS key_id, day, '' AS tier",
        };
        let daily = self.daily.table;
        if !self.monthly {
            return format!(
                "SELECT {daily_cols}, {sums} FROM {daily} WHERE day >= ?1 AND day < ?2 AND {user}"
            );
        }
        format!(
            "SELECT user_id, model, key_id, '' AS day, tier, {sums} FROM {monthly}
               WHERE month >= ?3 AND month < ?4 AND {user}
             UNION ALL
             SELECT {daily_cols}, {sums} FROM {daily}
               WHERE ((day >= ?1 AND day < ?3 || '-01') OR (day >= ?4 || '-01' AND day < ?2))
                 AND {user}",
            monthly = MONTHLY.table,
        )
    }
}

/// User and key names, looked up once per report rather than once per rollup row.
struct Names {
    users: std::collections::HashMap<i64, String>,
    keys: std::collections::HashMap<i64, String>,
}

impl Names {
    fn load(conn: &rusqlite::Connection) -> Result<Names, StoreError> {
        let map = |sql: &str| -> Result<std::collections::HashMap<i64, String>, StoreError> {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        };
        Ok(Names {
            users: map("SELECT id, name FROM users")?,
            keys: map("SELECT id, name FROM keys")?,
        })
    }

    fn user(&self, id: i64) -> String {
        self.users.get(&id).cloned().unwrap_or_default()
    }

    fn key(&self, id: i64) -> Option<String> {
        self.keys.get(&id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        assert_eq!(month_after("2026-12-31"), "2027-01");
        assert_eq!(month_after("2026-11-01T00:00:00.000000Z"), "2026-12");
        assert_eq!(month_of("2026-11-27"), "2026-11");
        let p = Plan::new("2025-11-27", "2026-11-27", &[Dimension::User]);
        assert!(p.monthly);
        assert_eq!(
            (p.full_from.as_str(), p.full_to.as_str()),
            ("2025-12", "2026-11")
        );
        let p = Plan::new(
            "2026-11-01",
            "2026-12-01",
            &[Dimension::Model, Dimension::Key],
        );
        assert!(p.monthly);
        assert_eq!(p.daily, DAILY);
        assert_eq!(
            (p.full_from.as_str(), p.full_to.as_str()),
            ("2026-11", "2026-12")
        );
        let p = Plan::new("2026-11-02", "2026-11-30", &[Dimension::User]);
        assert!(!p.monthly);
        assert_eq!(p.daily, DAILY_USER_MODEL);
        assert!(!Plan::new("2026-01-01", "2026-12-01", &[Dimension::Day]).monthly);
    }
}
