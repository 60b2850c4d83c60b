//! Limits in SQLite: admission runs in an IMMEDIATE transaction (SQLite's single writer
//! serializes admissions of every process on the file), spend is kept by the usage insert.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use rust_decimal::Decimal;

use crate::store::limits::{gcra, periods_of, reservation, Admission, Refusal, Spend};
use crate::store::usage::UsageRecord;
use crate::store::StoreError;

fn decimal(text: Option<String>) -> Decimal {
    text.and_then(|t| t.parse().ok()).unwrap_or(Decimal::ZERO)
}

pub(super) fn admit(conn: &mut Connection, a: &Admission) -> Result<Option<Refusal>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let l = &a.limits;
    // Lapsed holds (their replica died before writing the record) no longer count.
    tx.execute(
        "DELETE FROM limit_holds WHERE user_id = ?1 AND expires_ms <= ?2",
        params![a.user_id, a.now_ms],
    )?;
    let mut next_tat = None;
    if let Some(rpm) = l.rpm {
        let tat: Option<i64> = tx
            .query_row(
                "SELECT tat_ms FROM limit_rate WHERE user_id = ?1",
                [a.user_id],
                |r| r.get(0),
            )
            .optional()?;
        match gcra(tat, a.now_ms, rpm) {
            Ok(t) => next_tat = Some(t),
            Err(retry_after_ms) => {
                return Ok(Some(Refusal::Rate {
                    rpm,
                    retry_after_ms,
                }))
            }
        }
    }
    if let Some(max) = l.max_concurrent {
        let open: i64 = tx.query_row(
            "SELECT count(*) FROM limit_holds WHERE user_id = ?1 AND open = 1",
            [a.user_id],
            |r| r.get(0),
        )?;
        if open >= i64::from(max) {
            return Ok(Some(Refusal::Concurrency(max)));
        }
    }
    let mut amount = Decimal::ZERO;
    if let (Some(estimate), true) = (a.reserve, l.has_budget()) {
        let spend = spend(&tx, a.user_id, &a.month, &a.day)?;
        // Reserved by this month's holds, and by today's among them (exact decimal sums).
        let (held_month, held_day): (String, String) = tx.query_row(
            "SELECT decimal_sum(amount), decimal_sum(CASE WHEN day = ?3 THEN amount END)
             FROM limit_holds WHERE user_id = ?1 AND month = ?2",
            params![a.user_id, a.month, a.day],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (held_month, held_day) = (decimal(Some(held_month)), decimal(Some(held_day)));
        match reservation(l, spend, held_month, held_day, estimate) {
            Ok(r) => amount = r,
            Err(refusal) => return Ok(Some(refusal)),
        }
    }
    if l.needs_hold() {
        tx.execute(
            "INSERT OR IGNORE INTO limit_holds
               (request_id, user_id, amount, month, day, open, expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)",
            params![
                a.request_id,
                a.user_id,
                amount.to_string(),
                a.month,
                a.day,
                a.expires_ms
            ],
        )?;
    }
    if let Some(tat) = next_tat {
        tx.execute(
            "INSERT INTO limit_rate (user_id, tat_ms) VALUES (?1, ?2)
             ON CONFLICT(user_id) DO UPDATE SET tat_ms = excluded.tat_ms",
            params![a.user_id, tat],
        )?;
    }
    tx.commit()?;
    Ok(None)
}

pub(super) fn release(conn: &Connection, request_id: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE limit_holds SET open = 0 WHERE request_id = ?1",
        [request_id],
    )?;
    Ok(())
}

pub(super) fn forget(conn: &Connection, request_id: &str) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM limit_holds WHERE request_id = ?1",
        [request_id],
    )?;
    Ok(())
}

/// A spend row: (cost, costliest record).
fn spend_row(
    conn: &Connection,
    user_id: i64,
    period: &str,
) -> Result<(Decimal, Option<Decimal>), StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT cost, max_cost FROM spend WHERE user_id = ?1 AND period = ?2")?;
    let row: Option<(String, Option<String>)> = stmt
        .query_row(params![user_id, period], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match row {
        Some((cost, max)) => (decimal(Some(cost)), max.and_then(|m| m.parse().ok())),
        None => (Decimal::ZERO, None),
    })
}

/// Settled spend of a member in `month` and `day` (also inside an admission's transaction).
pub(super) fn spend(
    conn: &Connection,
    user_id: i64,
    month: &str,
    day: &str,
) -> Result<Spend, StoreError> {
    let (month, month_max) = spend_row(conn, user_id, month)?;
    let (day, _) = spend_row(conn, user_id, day)?;
    Ok(Spend {
        month,
        day,
        month_max,
    })
}

/// Inside the usage insert: adds the new records' costs to their users' spend and settles the
/// holds of all `records` (new or replayed).
pub(super) fn settle(
    tx: &Transaction<'_>,
    records: &[UsageRecord],
    inserted: &[bool],
) -> Result<(), StoreError> {
    // (sum, costliest) of the batch's new records per user and period.
    let mut added: HashMap<(i64, &str), (Decimal, Decimal)> = HashMap::new();
    for (r, _) in records.iter().zip(inserted).filter(|(_, new)| **new) {
        let Some(cost) = r.cost.filter(|c| !c.is_zero()) else {
            continue;
        };
        let Some((month, day)) = periods_of(&r.created_at) else {
            continue;
        };
        for period in [month, day] {
            let (sum, max) = added.entry((r.user_id, period)).or_default();
            *sum = sum.saturating_add(cost);
            *max = (*max).max(cost);
        }
    }
    if !added.is_empty() {
        // One statement per user and period; the sums stay exact decimal text.
        let mut write = tx.prepare_cached(
            "INSERT INTO spend (user_id, period, cost, max_cost) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(user_id, period) DO UPDATE
               SET cost = decimal_add(cost, excluded.cost),
                   max_cost = decimal_max(max_cost, excluded.max_cost)",
        )?;
        for ((user_id, period), (sum, max)) in added {
            write.execute(params![user_id, period, sum.to_string(), max.to_string()])?;
        }
    }
    // Cheap when no member has limits: one indexed probe per record on an empty table.
    let any_hold: bool =
        tx.query_row("SELECT EXISTS(SELECT 1 FROM limit_holds)", [], |r| r.get(0))?;
    if any_hold {
        let mut delete = tx.prepare_cached("DELETE FROM limit_holds WHERE request_id = ?1")?;
        for r in records {
            delete.execute([&r.request_id])?;
        }
    }
    Ok(())
}

/// After a reprice: the spend of every period in months `[from_month, to_month)` again from
/// the records.
pub(super) fn rebuild_spend(
    tx: &Transaction<'_>,
    from_month: &str,
    to_month: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM spend WHERE period >= ?1 AND period < ?2",
        params![from_month, to_month],
    )?;
    // The costliest record is left unknown (NULL): SQLite has no exact decimal max, and the
    // next settled record sets it again.
    for width in [7, 10] {
        tx.execute(
            &format!(
                "INSERT INTO spend (user_id, period, cost)
                 SELECT user_id, substr(created_at, 1, {width}), decimal_sum(cost) FROM usage
                 WHERE created_at >= ?1 AND created_at < ?2 GROUP BY 1, 2"
            ),
            params![from_month, to_month],
        )?;
    }
    Ok(())
}
