//! The detail report (`/1/usages/detail`, `catgate report`) and `reprice`, both over the daily
//! rollup. A report groups rollup rows by a chosen list of dimensions; the SQL text is built
//! only from the fixed column names of [`Dimension`], never from input.

use rusqlite::params;
use rust_decimal::Decimal;

use super::usage::{record_from_row, UsageRecord, REBUILD_DAYS, SELECT_RECORD};
use super::{Store, StoreError};

/// What a report can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    User,
    Model,
    Key,
    Day,
    Tier,
}

impl Dimension {
    pub const ALL: [Dimension; 5] = [
        Dimension::User,
        Dimension::Model,
        Dimension::Key,
        Dimension::Day,
        Dimension::Tier,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dimension::User => "user",
            Dimension::Model => "model",
            Dimension::Key => "key",
            Dimension::Day => "day",
            Dimension::Tier => "tier",
        }
    }

    pub fn parse(text: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.name() == text)
    }

    fn column(self) -> &'static str {
        match self {
            Dimension::User => "d.user_id",
            Dimension::Model => "d.model",
            Dimension::Key => "d.key_id",
            Dimension::Day => "d.day",
            Dimension::Tier => "d.tier",
        }
    }
}

/// One report row: the grouped identity (unset dimensions are `None`) and the sums.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportRow {
    pub user: Option<(i64, String)>,
    pub model: Option<String>,
    /// `Some((None, None))` for records that never reached a key.
    pub key: Option<(Option<i64>, Option<String>)>,
    pub day: Option<String>,
    pub tier: Option<String>,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub cached_tokens: i64,
    pub cache_write_tokens: i64,
    pub completion_tokens: i64,
    pub reasoning_tokens: i64,
    pub audio_input_tokens: i64,
    pub audio_output_tokens: i64,
    pub total_tokens: i64,
    pub cost: Decimal,
    pub estimated_requests: i64,
    pub unpriced_requests: i64,
    pub failed_requests: i64,
}

/// What `reprice` changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Repriced {
    pub records: u64,
    pub changed: u64,
    pub total_before: Decimal,
    pub total_after: Decimal,
}

fn decimal_text(text: String) -> Decimal {
    text.parse().unwrap_or(Decimal::ZERO)
}

impl Store {
    /// Rows for `[from_day, to_day)` grouped by `dims` (in that order, which is also the sort
    /// order), for every user or only `user_id`.
    pub fn usage_report(
        &self,
        from_day: &str,
        to_day: &str,
        user_id: Option<i64>,
        dims: &[Dimension],
    ) -> Result<Vec<ReportRow>, StoreError> {
        let cols: Vec<&str> = dims.iter().map(|d| d.column()).collect();
        let group = if cols.is_empty() {
            String::new()
        } else {
            format!("GROUP BY {0} ORDER BY {0}", cols.join(", "))
        };
        let sql = format!(
            "SELECT d.user_id, (SELECT name FROM users WHERE id = d.user_id), d.model, d.key_id,
               (SELECT name FROM keys WHERE id = d.key_id), d.day, d.tier,
               SUM(d.requests), SUM(d.prompt_tokens), SUM(d.cached_tokens),
               SUM(d.cache_write_tokens), SUM(d.completion_tokens), SUM(d.reasoning_tokens),
               SUM(d.audio_input_tokens), SUM(d.audio_output_tokens), SUM(d.total_tokens),
               decimal_sum(d.cost), SUM(d.estimated_requests), SUM(d.unpriced_requests),
               SUM(d.failed_requests)
             FROM usage_daily d
             WHERE d.day >= ?1 AND d.day < ?2 AND (?3 IS NULL OR d.user_id = ?3)
             {group}"
        );
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(&sql)?;
        let has = |d: Dimension| dims.contains(&d);
        let rows = stmt.query_map(params![from_day, to_day, user_id], |r| {
            let requests: Option<i64> = r.get(7)?;
            let key_id: Option<i64> = r.get(3)?;
            let key_id = key_id.filter(|id| *id != 0);
            Ok(ReportRow {
                user: match has(Dimension::User) {
                    true => Some((
                        r.get(0)?,
                        r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    )),
                    false => None,
                },
                model: has(Dimension::Model).then(|| r.get(2)).transpose()?,
                key: match has(Dimension::Key) {
                    true => Some((key_id, key_id.map(|_| r.get(4)).transpose()?.flatten())),
                    false => None,
                },
                day: has(Dimension::Day).then(|| r.get(5)).transpose()?,
                tier: has(Dimension::Tier).then(|| r.get(6)).transpose()?,
                requests: requests.unwrap_or(0),
                prompt_tokens: r.get::<_, Option<i64>>(8)?.unwrap_or(0),
                cached_tokens: r.get::<_, Option<i64>>(9)?.unwrap_or(0),
                cache_write_tokens: r.get::<_, Option<i64>>(10)?.unwrap_or(0),
                completion_tokens: r.get::<_, Option<i64>>(11)?.unwrap_or(0),
                reasoning_tokens: r.get::<_, Option<i64>>(12)?.unwrap_or(0),
                audio_input_tokens: r.get::<_, Option<i64>>(13)?.unwrap_or(0),
                audio_output_tokens: r.get::<_, Option<i64>>(14)?.unwrap_or(0),
                total_tokens: r.get::<_, Option<i64>>(15)?.unwrap_or(0),
                cost: decimal_text(r.get::<_, Option<String>>(16)?.unwrap_or_default()),
                estimated_requests: r.get::<_, Option<i64>>(17)?.unwrap_or(0),
                unpriced_requests: r.get::<_, Option<i64>>(18)?.unwrap_or(0),
                failed_requests: r.get::<_, Option<i64>>(19)?.unwrap_or(0),
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
    pub fn reprice(
        &self,
        from: &str,
        to: &str,
        price: impl Fn(&UsageRecord) -> Option<Decimal>,
    ) -> Result<Repriced, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut summary = Repriced {
            records: 0,
            changed: 0,
            total_before: Decimal::ZERO,
            total_after: Decimal::ZERO,
        };
        let mut changes: Vec<(String, Option<String>)> = Vec::new();
        {
            let mut stmt = tx.prepare(&format!(
                "{SELECT_RECORD} WHERE created_at >= ?1 AND created_at < ?2"
            ))?;
            let records = stmt.query_map(params![from, to], record_from_row)?;
            for record in records {
                let record = record?;
                let new = price(&record);
                summary.records += 1;
                summary.total_before = summary
                    .total_before
                    .saturating_add(record.cost.unwrap_or_default());
                summary.total_after = summary.total_after.saturating_add(new.unwrap_or_default());
                if new != record.cost {
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
        summary.changed = changes.len() as u64;
        // Whole days: the rollup of every day the window touches is rebuilt from its records.
        let (from_day, to_day) = (day_floor(from), day_ceil(to));
        tx.execute(
            "DELETE FROM usage_daily WHERE day >= ?1 AND day < ?2",
            params![from_day, to_day],
        )?;
        tx.execute(REBUILD_DAYS, params![from_day, day_start_text(&to_day)])?;
        tx.commit()?;
        Ok(summary)
    }
}

/// The day of a stored timestamp.
fn day_floor(ts: &str) -> String {
    ts.get(..10).unwrap_or(ts).to_string()
}

/// The first day not touched by `[.., ts)`: `ts`'s day if `ts` is midnight, else the next.
fn day_ceil(ts: &str) -> String {
    let day = day_floor(ts);
    if ts.get(10..).is_none_or(|rest| rest == "T00:00:00.000000Z") {
        return day;
    }
    crate::timestamp::parse_day(&day)
        .and_then(|d| d.next_day())
        .map(|d| d.to_string())
        .unwrap_or(day)
}

fn day_start_text(day: &str) -> String {
    format!("{day}T00:00:00.000000Z")
}
