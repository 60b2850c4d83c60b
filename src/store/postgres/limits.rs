//! Limits in PostgreSQL, shared by every replica: an admission locks the member's
//! `limit_rate` row (`INSERT … ON CONFLICT DO UPDATE` takes the row lock and returns the
//! stored arrival time in one statement), reads spend, holds and open slots in one statement
//! (one snapshot, so a record settling meanwhile is counted exactly once), then records its
//! hold. Two replicas admitting the same member queue on that row lock.

use rust_decimal::Decimal;
use tokio_postgres::Client;

use crate::store::limits::{gcra, reservation, Admission, Refusal, Spend};
use crate::store::StoreError;

pub(super) async fn admit(c: &mut Client, a: &Admission) -> Result<Option<Refusal>, StoreError> {
    let l = &a.limits;
    let tx = c.transaction().await?;
    let tat: i64 = tx
        .query_one(
            "INSERT INTO limit_rate (user_id, tat_ms) VALUES ($1, 0)
             ON CONFLICT (user_id) DO UPDATE SET tat_ms = limit_rate.tat_ms
             RETURNING tat_ms",
            &[&a.user_id],
        )
        .await?
        .get(0);
    let mut next_tat = None;
    if let Some(rpm) = l.rpm {
        match gcra(Some(tat), a.now_ms, rpm) {
            Ok(t) => next_tat = Some(t),
            Err(retry_after_ms) => {
                return Ok(Some(Refusal::Rate {
                    rpm,
                    retry_after_ms,
                }))
            }
        }
    }
    if l.needs_hold() {
        let row = tx
            .query_one(
                "SELECT
                   (SELECT count(*) FROM limit_holds
                      WHERE user_id = $1 AND open AND expires_ms > $4),
                   (SELECT coalesce(sum(cost), 0) FROM spend WHERE user_id = $1 AND period = $2),
                   (SELECT coalesce(sum(cost), 0) FROM spend WHERE user_id = $1 AND period = $3),
                   (SELECT coalesce(sum(amount), 0) FROM limit_holds
                      WHERE user_id = $1 AND month = $2 AND expires_ms > $4),
                   (SELECT coalesce(sum(amount), 0) FROM limit_holds
                      WHERE user_id = $1 AND day = $3 AND expires_ms > $4),
                   (SELECT max_cost FROM spend WHERE user_id = $1 AND period = $2)",
                &[&a.user_id, &a.month, &a.day, &a.now_ms],
            )
            .await?;
        let open: i64 = row.get(0);
        if let Some(max) = l.max_concurrent {
            if open >= i64::from(max) {
                return Ok(Some(Refusal::Concurrency(max)));
            }
        }
        let mut amount = Decimal::ZERO;
        if let (Some(estimate), true) = (a.reserve, l.has_budget()) {
            let spend = Spend {
                month: row.get(1),
                day: row.get(2),
                month_max: row.get(5),
            };
            let (held_month, held_day): (Decimal, Decimal) = (row.get(3), row.get(4));
            match reservation(l, spend, held_month, held_day, estimate) {
                Ok(r) => amount = r,
                Err(refusal) => return Ok(Some(refusal)),
            }
        }
        // SKIP LOCKED: a usage insert settling one of these rows right now must not wait on
        // this transaction while it waits on that one (a deadlock).
        tx.execute(
            "DELETE FROM limit_holds WHERE request_id IN (
               SELECT request_id FROM limit_holds WHERE user_id = $1 AND expires_ms <= $2
               FOR UPDATE SKIP LOCKED)",
            &[&a.user_id, &a.now_ms],
        )
        .await?;
        tx.execute(
            "INSERT INTO limit_holds (request_id, user_id, amount, month, day, open, expires_ms)
             VALUES ($1, $2, $3, $4, $5, true, $6) ON CONFLICT (request_id) DO NOTHING",
            &[
                &a.request_id,
                &a.user_id,
                &amount,
                &a.month,
                &a.day,
                &a.expires_ms,
            ],
        )
        .await?;
    }
    if let Some(tat) = next_tat {
        tx.execute(
            "UPDATE limit_rate SET tat_ms = $2 WHERE user_id = $1",
            &[&a.user_id, &tat],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(None)
}

pub(super) async fn release(c: &Client, request_id: &str) -> Result<(), StoreError> {
    c.execute(
        "UPDATE limit_holds SET open = false WHERE request_id = $1",
        &[&request_id],
    )
    .await?;
    Ok(())
}

pub(super) async fn forget(c: &Client, request_id: &str) -> Result<(), StoreError> {
    c.execute(
        "DELETE FROM limit_holds WHERE request_id = $1",
        &[&request_id],
    )
    .await?;
    Ok(())
}

pub(super) async fn spend(
    c: &Client,
    user_id: i64,
    month: &str,
    day: &str,
) -> Result<Spend, StoreError> {
    let row = c
        .query_one(
            "SELECT
               (SELECT coalesce(sum(cost), 0) FROM spend WHERE user_id = $1 AND period = $2),
               (SELECT coalesce(sum(cost), 0) FROM spend WHERE user_id = $1 AND period = $3),
               (SELECT max_cost FROM spend WHERE user_id = $1 AND period = $2)",
            &[&user_id, &month, &day],
        )
        .await?;
    Ok(Spend {
        month: row.get(0),
        day: row.get(1),
        month_max: row.get(2),
    })
}

/// After a reprice inside `tx`: the spend of every period in months `[from_month, to_month)`
/// again from the records.
pub(super) async fn rebuild_spend(
    tx: &tokio_postgres::Transaction<'_>,
    from_month: &str,
    to_month: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM spend WHERE period >= $1 AND period < $2",
        &[&from_month, &to_month],
    )
    .await?;
    tx.execute(
        "INSERT INTO spend (user_id, period, cost, max_cost)
         SELECT user_id, p.period, sum(cost), max(cost) FROM usage,
           LATERAL (VALUES (substr(created_at, 1, 7)), (substr(created_at, 1, 10))) AS p(period)
         WHERE created_at >= $1 AND created_at < $2 AND cost IS NOT NULL
         GROUP BY 1, 2
         ON CONFLICT (user_id, period) DO UPDATE
           SET cost = excluded.cost, max_cost = excluded.max_cost",
        &[&from_month, &to_month],
    )
    .await?;
    Ok(())
}
