//! Usage records: one row per proxied request, inserted in batches by the recorder together
//! with the daily rollup (`usage_daily`) that every report reads.
//!
//! Invariant: the rollup is exactly the sum of the records, by (day, user, model, key, tier).
//! Both change only inside one transaction: a batch insert adds each *new* record to its rollup
//! row (a replayed `request_id` is ignored for both), and a reprice rebuilds the rollup of the
//! days it touched from the records.

use std::collections::HashMap;

use rusqlite::{params, Connection, Transaction};
use rust_decimal::Decimal;

use crate::store::usage::{tier_of, UsageRecord, UsageSource, ROLLUP_CAP};
use crate::store::StoreError;

/// A record's count as stored (SQLite integers are signed).
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The rollup tables, finest first. Each sums the same columns; they differ in the period
/// (day or month) and in whether key and tier are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Level {
    pub table: &'static str,
    /// `day` (YYYY-MM-DD) or `month` (YYYY-MM).
    pub period: &'static str,
    /// Whether the table keeps `key_id` and `tier`.
    pub by_key_and_tier: bool,
}

pub(super) const DAILY: Level = Level {
    table: "usage_daily",
    period: "day",
    by_key_and_tier: true,
};
pub(super) const MONTHLY: Level = Level {
    table: "usage_monthly",
    period: "month",
    by_key_and_tier: true,
};
pub(super) const DAILY_USER_MODEL: Level = Level {
    table: "usage_daily_user_model",
    period: "day",
    by_key_and_tier: false,
};
const LEVELS: [Level; 3] = [DAILY, MONTHLY, DAILY_USER_MODEL];

/// The summed columns, in table order after the grouping columns.
pub(super) const SUM_COLUMNS: [&str; 13] = [
    "requests",
    "prompt_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "audio_input_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "audio_output_tokens",
    "total_tokens",
    "cost",
    "estimated_requests",
    "unpriced_requests",
    "failed_requests",
];

impl Level {
    /// The grouping columns of this table.
    pub(super) fn group_columns(self) -> &'static [&'static str] {
        match (self.period, self.by_key_and_tier) {
            ("month", _) => &["month", "user_id", "model", "key_id", "tier"],
            (_, true) => &["day", "user_id", "model", "key_id", "tier"],
            (_, false) => &["day", "user_id", "model"],
        }
    }

    /// Adds each summed column of `excluded` (SQLite's upsert row) to the stored one.
    fn upsert_sql(self) -> String {
        let groups = self.group_columns();
        let cols: Vec<&str> = groups.iter().chain(SUM_COLUMNS.iter()).copied().collect();
        let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
        let updates: Vec<String> = SUM_COLUMNS
            .iter()
            .map(|c| match *c {
                "cost" => "cost = decimal_add(cost, excluded.cost)".to_string(),
                c => format!("{c} = {c} + excluded.{c}"),
            })
            .collect();
        format!(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}",
            self.table,
            cols.join(", "),
            marks.join(", "),
            groups.join(", "),
            updates.join(", ")
        )
    }

    fn key(self, r: &UsageRecord) -> RollupKey {
        let period = match self.period {
            "month" => r.day().get(..7).unwrap_or(r.day()),
            _ => r.day(),
        };
        RollupKey {
            period: period.to_string(),
            user_id: r.user_id,
            model: r.model.clone(),
            key_id: if self.by_key_and_tier {
                r.key_id.unwrap_or(0)
            } else {
                0
            },
            tier: if self.by_key_and_tier {
                tier_of(r.service_tier.as_deref()).to_string()
            } else {
                String::new()
            },
        }
    }
}

/// The rollup row a record adds to (key and tier unused where the table has none).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RollupKey {
    period: String,
    user_id: i64,
    model: String,
    key_id: i64,
    tier: String,
}

#[derive(Debug, Default)]
struct Sums {
    requests: i64,
    tokens: [i64; 8],
    cost: Decimal,
    estimated: i64,
    unpriced: i64,
    failed: i64,
}

impl Sums {
    fn add(&mut self, r: &UsageRecord) {
        self.requests += 1;
        let counts = [
            r.prompt_tokens,
            r.cached_tokens,
            r.cache_write_tokens,
            r.audio_input_tokens,
            r.completion_tokens,
            r.reasoning_tokens,
            r.audio_output_tokens,
            r.total_tokens,
        ];
        for (sum, count) in self.tokens.iter_mut().zip(counts) {
            *sum = sum.saturating_add(to_i64(count.min(ROLLUP_CAP)));
        }
        match r.cost {
            Some(c) => self.cost = self.cost.saturating_add(c),
            None => self.unpriced += 1,
        }
        self.estimated += i64::from(r.usage_source == UsageSource::Estimated);
        self.failed += i64::from(!r.succeeded());
    }
}

const INSERT_RECORD: &str = "INSERT OR IGNORE INTO usage (request_id, user_id, key_id, model,
    route, prompt_tokens, cached_tokens, cache_write_tokens, audio_input_tokens,
    completion_tokens, reasoning_tokens, audio_output_tokens, total_tokens, service_tier,
    usage_source, cost, stream, status, latency_ms, attempts, created_at)
  VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
    ?20, ?21)";

/// Rebuilds the daily rollup of `[?1, ?2)` (stored-form timestamps) from the records. Mirrors
/// [`Sums::add`] in SQL.
const REBUILD_DAILY: &str = "INSERT INTO usage_daily
  SELECT substr(created_at, 1, 10), user_id, model, COALESCE(key_id, 0),
    COALESCE(NULLIF(service_tier, ''), 'default'), COUNT(*),
    SUM(MIN(MAX(prompt_tokens, 0), 1000000000000)),
    SUM(MIN(MAX(cached_tokens, 0), 1000000000000)),
    SUM(MIN(MAX(cache_write_tokens, 0), 1000000000000)),
    SUM(MIN(MAX(audio_input_tokens, 0), 1000000000000)),
    SUM(MIN(MAX(completion_tokens, 0), 1000000000000)),
    SUM(MIN(MAX(reasoning_tokens, 0), 1000000000000)),
    SUM(MIN(MAX(audio_output_tokens, 0), 1000000000000)),
    SUM(MIN(MAX(total_tokens, 0), 1000000000000)),
    decimal_sum(cost), SUM(usage_source = 'estimated'), SUM(cost IS NULL),
    SUM(status NOT BETWEEN 200 AND 299)
  FROM usage WHERE created_at >= ?1 AND created_at < ?2
  GROUP BY 1, 2, 3, 4, 5";

/// The summed columns as SQL aggregates (`SUM(...)`, `decimal_sum(cost)`), in table order.
pub(super) fn summed_select() -> String {
    SUM_COLUMNS
        .iter()
        .map(|c| match *c {
            "cost" => "decimal_sum(cost)".to_string(),
            c => format!("SUM({c})"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rebuilds every rollup for the whole months `[from_month, to_month)` (`YYYY-MM`): the daily
/// one from the records, the coarser ones from the daily one.
pub(super) fn rebuild_rollups(
    tx: &Transaction<'_>,
    from_month: &str,
    to_month: &str,
) -> Result<(), StoreError> {
    let (from_day, to_day) = (format!("{from_month}-01"), format!("{to_month}-01"));
    for level in LEVELS {
        let (lo, hi) = match level.period {
            "month" => (from_month, to_month),
            _ => (from_day.as_str(), to_day.as_str()),
        };
        tx.execute(
            &format!(
                "DELETE FROM {} WHERE {} >= ?1 AND {} < ?2",
                level.table, level.period, level.period
            ),
            params![lo, hi],
        )?;
    }
    tx.execute(
        REBUILD_DAILY,
        params![
            format!("{from_day}T00:00:00.000000Z"),
            format!("{to_day}T00:00:00.000000Z")
        ],
    )?;
    let sums = summed_select();
    tx.execute(
        &format!(
            "INSERT INTO usage_monthly SELECT substr(day, 1, 7), user_id, model, key_id, tier, {sums}
             FROM usage_daily WHERE day >= ?1 AND day < ?2 GROUP BY 1, 2, 3, 4, 5"
        ),
        params![from_day, to_day],
    )?;
    tx.execute(
        &format!(
            "INSERT INTO usage_daily_user_model SELECT day, user_id, model, {sums}
             FROM usage_daily WHERE day >= ?1 AND day < ?2 GROUP BY 1, 2, 3"
        ),
        params![from_day, to_day],
    )?;
    Ok(())
}

/// After a rebuild from every record (the migration), nothing is pending.
pub(super) fn mark_all_rolled_up(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE rollup_state SET through_id = (SELECT COALESCE(MAX(id), 0) FROM usage) WHERE id = 1",
        [],
    )?;
    Ok(())
}

/// Inserts all records in one transaction (the durable write a response waits for);
/// already-present `request_id`s are skipped. Returns how many rows were new.
pub(super) fn insert_usage(
    conn: &mut Connection,
    records: &[UsageRecord],
) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let new = insert_records(&tx, records)?;
    super::limits::settle(&tx, records, &new)?;
    tx.commit()?;
    Ok(new.iter().filter(|n| **n).count())
}

/// Folds records not yet in the rollups into them (the recorder does this every ~100 ms;
/// reports do it before they read). Returns how many records were folded.
pub(super) fn roll_up_now(conn: &mut Connection) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Nothing pending is the common case: a read, no write lock held for long.
    let n = roll_up(&tx)?;
    tx.commit()?;
    Ok(n)
}

/// Records after row `after` in insertion order, at most `limit`, with their row ids.
pub(super) fn usage_page(
    conn: &Connection,
    after: i64,
    limit: u32,
) -> Result<Vec<(i64, UsageRecord)>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT_RECORD_WITH_ID} WHERE id > ?1 ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![after, limit], |r| {
        Ok((r.get::<_, i64>(21)?, record_from_row(r)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Inserts `records` inside `tx`; already-present `request_id`s are skipped. Says for each
/// record whether it was new. The rollups pick the new rows up in [`roll_up`].
pub(super) fn insert_records(
    tx: &Transaction<'_>,
    records: &[UsageRecord],
) -> Result<Vec<bool>, StoreError> {
    let mut stmt = tx.prepare_cached(INSERT_RECORD)?;
    let mut inserted = Vec::with_capacity(records.len());
    for r in records {
        let n = stmt.execute(params![
            r.request_id,
            r.user_id,
            r.key_id,
            r.model,
            r.route,
            to_i64(r.prompt_tokens),
            to_i64(r.cached_tokens),
            to_i64(r.cache_write_tokens),
            to_i64(r.audio_input_tokens),
            to_i64(r.completion_tokens),
            to_i64(r.reasoning_tokens),
            to_i64(r.audio_output_tokens),
            to_i64(r.total_tokens),
            r.service_tier,
            r.usage_source.as_str(),
            r.cost.map(|c| c.to_string()),
            r.stream,
            r.status,
            to_i64(r.latency_ms),
            r.attempts,
            r.created_at,
        ])?;
        inserted.push(n > 0);
    }
    Ok(inserted)
}

/// Records folded per statement round, so a long backlog does not hold every row in memory.
const ROLL_UP_CHUNK: i64 = 50_000;

/// Folds every record not yet in the rollups into all three, and moves the watermark, inside
/// `tx`. Returns how many records were folded.
pub(super) fn roll_up(tx: &Transaction<'_>) -> Result<usize, StoreError> {
    let mut through: i64 = tx.query_row(
        "SELECT through_id FROM rollup_state WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    let mut folded = 0;
    loop {
        let mut groups: [HashMap<RollupKey, Sums>; 3] = Default::default();
        let mut last = through;
        {
            let mut stmt = tx.prepare_cached(&format!(
                "{SELECT_RECORD_WITH_ID} WHERE id > ?1 ORDER BY id LIMIT ?2"
            ))?;
            let mut rows = stmt.query(params![through, ROLL_UP_CHUNK])?;
            while let Some(row) = rows.next()? {
                last = row.get(21)?;
                let r = record_from_row(row)?;
                for (level, map) in LEVELS.iter().zip(groups.iter_mut()) {
                    map.entry(level.key(&r)).or_default().add(&r);
                }
                folded += 1;
            }
        }
        if last == through {
            break;
        }
        upsert_groups(tx, groups)?;
        through = last;
        tx.execute(
            "UPDATE rollup_state SET through_id = ?1 WHERE id = 1",
            [through],
        )?;
    }
    Ok(folded)
}

fn upsert_groups(
    tx: &Transaction<'_>,
    groups: [HashMap<RollupKey, Sums>; 3],
) -> Result<(), StoreError> {
    for (level, map) in LEVELS.iter().zip(groups) {
        let mut upsert = tx.prepare_cached(&level.upsert_sql())?;
        for (k, s) in map {
            let t = s.tokens;
            let mut values: Vec<rusqlite::types::Value> =
                vec![k.period.into(), k.user_id.into(), k.model.into()];
            if level.by_key_and_tier {
                values.push(k.key_id.into());
                values.push(k.tier.into());
            }
            values.push(s.requests.into());
            values.extend([t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]].map(Into::into));
            values.push(s.cost.to_string().into());
            values.extend([s.estimated, s.unpriced, s.failed].map(Into::into));
            upsert.execute(rusqlite::params_from_iter(values))?;
        }
    }
    Ok(())
}

pub(super) const SELECT_RECORD: &str = "SELECT request_id, user_id, key_id, model, route,
    prompt_tokens, cached_tokens, cache_write_tokens, audio_input_tokens, completion_tokens,
    reasoning_tokens, audio_output_tokens, total_tokens, service_tier, usage_source, cost,
    stream, status, latency_ms, attempts, created_at FROM usage";
/// [`SELECT_RECORD`] with the row id as column 21.
const SELECT_RECORD_WITH_ID: &str = "SELECT request_id, user_id, key_id, model, route,
    prompt_tokens, cached_tokens, cache_write_tokens, audio_input_tokens, completion_tokens,
    reasoning_tokens, audio_output_tokens, total_tokens, service_tier, usage_source, cost,
    stream, status, latency_ms, attempts, created_at, id FROM usage";

/// A stored count back as u64; negative or non-integer stored data reads as 0.
fn count(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
    Ok(r.get::<_, Option<i64>>(i)
        .unwrap_or(None)
        .unwrap_or(0)
        .max(0) as u64)
}

pub(super) fn record_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UsageRecord> {
    let cost: Option<String> = r.get(15)?;
    let source: String = r.get(14)?;
    Ok(UsageRecord {
        request_id: r.get(0)?,
        user_id: r.get(1)?,
        key_id: r.get(2)?,
        model: r.get(3)?,
        route: r.get(4)?,
        prompt_tokens: count(r, 5)?,
        cached_tokens: count(r, 6)?,
        cache_write_tokens: count(r, 7)?,
        audio_input_tokens: count(r, 8)?,
        completion_tokens: count(r, 9)?,
        reasoning_tokens: count(r, 10)?,
        audio_output_tokens: count(r, 11)?,
        total_tokens: count(r, 12)?,
        service_tier: r.get(13)?,
        usage_source: UsageSource::parse(&source),
        cost: cost.and_then(|c| c.parse().ok()),
        stream: r.get(16)?,
        status: r.get(17)?,
        latency_ms: count(r, 18)?,
        attempts: r.get(19)?,
        created_at: r.get(20)?,
    })
}
