//! Usage records: one row per proxied request, inserted in batches by the recorder, and the
//! per-user totals behind `/1/usages`.

use rusqlite::params;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// One metered request. `request_id` is unique, so inserting the same record twice is a no-op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub request_id: String,
    pub user_id: i64,
    pub key_id: Option<i64>,
    pub model: String,
    pub route: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub cost: Decimal,
    pub estimated: bool,
    pub stream: bool,
    pub status: u16,
    pub latency_ms: u64,
    pub attempts: u32,
    pub created_at: String,
}

/// Per-user totals over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageTotal {
    pub user_id: i64,
    pub total_tokens: i64,
    pub cost: Decimal,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Inserts all records in one transaction; already-present `request_id`s are skipped.
    /// Returns how many rows were new.
    pub fn insert_usage(&self, records: &[UsageRecord]) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut inserted = 0;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO usage (request_id, user_id, key_id, model, route,
                   prompt_tokens, completion_tokens, total_tokens, cost, estimated, stream,
                   status, latency_ms, attempts, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )?;
            for r in records {
                inserted += stmt.execute(params![
                    r.request_id,
                    r.user_id,
                    r.key_id,
                    r.model,
                    r.route,
                    to_i64(r.prompt_tokens),
                    to_i64(r.completion_tokens),
                    to_i64(r.total_tokens),
                    r.cost.to_string(),
                    r.estimated,
                    r.stream,
                    r.status,
                    to_i64(r.latency_ms),
                    r.attempts,
                    r.created_at,
                ])?;
            }
        }
        tx.commit()?;
        Ok(inserted)
    }

    /// Totals per user for `from <= created_at < to` (stored-form timestamps), ordered by user.
    pub fn usage_totals(&self, from: &str, to: &str) -> Result<Vec<UsageTotal>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT user_id, SUM(total_tokens), decimal_sum(cost) FROM usage
             WHERE created_at >= ?1 AND created_at < ?2 GROUP BY user_id ORDER BY user_id",
        )?;
        let rows = stmt.query_map(params![from, to], total_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One user's totals for the window (zeros when there are no records).
    pub fn user_usage_total(
        &self,
        user_id: i64,
        from: &str,
        to: &str,
    ) -> Result<UsageTotal, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT ?1, COALESCE(SUM(total_tokens), 0), COALESCE(decimal_sum(cost), '0')
             FROM usage WHERE user_id = ?1 AND created_at >= ?2 AND created_at < ?3",
        )?;
        Ok(stmt.query_row(params![user_id, from, to], total_from_row)?)
    }

    /// All records of a user, newest first (used by tests and audits).
    pub fn usage_records(&self, limit: u32) -> Result<Vec<UsageRecord>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT request_id, user_id, key_id, model, route, prompt_tokens, completion_tokens,
               total_tokens, cost, estimated, stream, status, latency_ms, attempts, created_at
             FROM usage ORDER BY id LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit], |r| {
            let cost: String = r.get(8)?;
            Ok(UsageRecord {
                request_id: r.get(0)?,
                user_id: r.get(1)?,
                key_id: r.get(2)?,
                model: r.get(3)?,
                route: r.get(4)?,
                prompt_tokens: r.get::<_, i64>(5)?.max(0) as u64,
                completion_tokens: r.get::<_, i64>(6)?.max(0) as u64,
                total_tokens: r.get::<_, i64>(7)?.max(0) as u64,
                cost: cost.parse().unwrap_or(Decimal::ZERO),
                estimated: r.get(9)?,
                stream: r.get(10)?,
                status: r.get(11)?,
                latency_ms: r.get::<_, i64>(12)?.max(0) as u64,
                attempts: r.get(13)?,
                created_at: r.get(14)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn total_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UsageTotal> {
    let cost: String = r.get(2)?;
    Ok(UsageTotal {
        user_id: r.get(0)?,
        total_tokens: r.get(1)?,
        cost: cost.parse().unwrap_or(Decimal::ZERO),
    })
}
