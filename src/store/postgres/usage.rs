//! Usage in PostgreSQL: one `INSERT … SELECT FROM UNNEST(arrays)` per batch (one statement
//! and one round trip for a whole batch), and reports aggregated straight from the records
//! with the same sums, caps and order as SQLite's rollups.

use rust_decimal::Decimal;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use crate::store::limits::{month_after, month_of};
use crate::store::report::{Dimension, ReportRow, Repriced};
use crate::store::usage::{UsageRecord, UsageSource, ROLLUP_CAP};
use crate::store::{PriceFn, StoreError};

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn count(r: &Row, i: usize) -> u64 {
    u64::try_from(r.get::<_, i64>(i)).unwrap_or(0)
}

/// The insert, the spend of the new records and the settling of every record's hold, as one
/// statement (atomic, one round trip). Spend rows are upserted in key order, so two replicas'
/// batches lock them in the same order and cannot deadlock.
const INSERT_AND_SETTLE: &str = "WITH ins AS (
  INSERT INTO usage (request_id, user_id, key_id, model, route,
    prompt_tokens, cached_tokens, cache_write_tokens, audio_input_tokens, completion_tokens,
    reasoning_tokens, audio_output_tokens, total_tokens, service_tier, usage_source, cost,
    stream, status, latency_ms, attempts, created_at)
  SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::int8[],
    $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int8[], $13::int8[],
    $14::text[], $15::text[], $16::numeric[], $17::bool[], $18::int4[], $19::int8[],
    $20::int4[], $21::text[])
  ON CONFLICT (request_id) DO NOTHING
  RETURNING user_id, cost, created_at
), added AS (
  INSERT INTO spend (user_id, period, cost, max_cost)
  SELECT user_id, p.period, sum(cost), max(cost) FROM ins,
    LATERAL (VALUES (substr(created_at, 1, 7)), (substr(created_at, 1, 10))) AS p(period)
  WHERE cost IS NOT NULL AND cost <> 0
  GROUP BY 1, 2 ORDER BY 1, 2
  ON CONFLICT (user_id, period) DO UPDATE SET cost = spend.cost + excluded.cost,
    max_cost = GREATEST(spend.max_cost, excluded.max_cost)
  RETURNING 1
), settled AS (
  DELETE FROM limit_holds WHERE request_id = ANY($1::text[]) RETURNING 1
)
SELECT count(*) FROM ins";

pub(super) async fn insert_usage(c: &Client, records: &[UsageRecord]) -> Result<usize, StoreError> {
    if records.is_empty() {
        return Ok(0);
    }
    let col = |f: fn(&UsageRecord) -> i64| records.iter().map(f).collect::<Vec<i64>>();
    let text = |f: fn(&UsageRecord) -> &str| records.iter().map(f).collect::<Vec<&str>>();
    let request_id = text(|r| &r.request_id);
    let user_id = col(|r| r.user_id);
    let key_id: Vec<Option<i64>> = records.iter().map(|r| r.key_id).collect();
    let model = text(|r| &r.model);
    let route = text(|r| &r.route);
    let prompt = col(|r| to_i64(r.prompt_tokens));
    let cached = col(|r| to_i64(r.cached_tokens));
    let cache_write = col(|r| to_i64(r.cache_write_tokens));
    let audio_in = col(|r| to_i64(r.audio_input_tokens));
    let completion = col(|r| to_i64(r.completion_tokens));
    let reasoning = col(|r| to_i64(r.reasoning_tokens));
    let audio_out = col(|r| to_i64(r.audio_output_tokens));
    let total = col(|r| to_i64(r.total_tokens));
    let tier: Vec<Option<&str>> = records.iter().map(|r| r.service_tier.as_deref()).collect();
    let source = text(|r| r.usage_source.as_str());
    let cost: Vec<Option<Decimal>> = records.iter().map(|r| r.cost).collect();
    let stream: Vec<bool> = records.iter().map(|r| r.stream).collect();
    let status: Vec<i32> = records.iter().map(|r| i32::from(r.status)).collect();
    let latency = col(|r| to_i64(r.latency_ms));
    let attempts: Vec<i32> = records
        .iter()
        .map(|r| i32::try_from(r.attempts).unwrap_or(i32::MAX))
        .collect();
    let created = text(|r| &r.created_at);
    let params: [&(dyn ToSql + Sync); 21] = [
        &request_id,
        &user_id,
        &key_id,
        &model,
        &route,
        &prompt,
        &cached,
        &cache_write,
        &audio_in,
        &completion,
        &reasoning,
        &audio_out,
        &total,
        &tier,
        &source,
        &cost,
        &stream,
        &status,
        &latency,
        &attempts,
        &created,
    ];
    let n: i64 = c.query_one(INSERT_AND_SETTLE, &params).await?.get(0);
    Ok(usize::try_from(n).unwrap_or(0))
}

const SELECT_RECORD: &str = "SELECT request_id, user_id, key_id, model, route,
    prompt_tokens, cached_tokens, cache_write_tokens, audio_input_tokens, completion_tokens,
    reasoning_tokens, audio_output_tokens, total_tokens, service_tier, usage_source, cost,
    stream, status, latency_ms, attempts, created_at, id FROM usage";

fn record_from_row(r: &Row) -> UsageRecord {
    let source: String = r.get(14);
    UsageRecord {
        request_id: r.get(0),
        user_id: r.get(1),
        key_id: r.get(2),
        model: r.get(3),
        route: r.get(4),
        prompt_tokens: count(r, 5),
        cached_tokens: count(r, 6),
        cache_write_tokens: count(r, 7),
        audio_input_tokens: count(r, 8),
        completion_tokens: count(r, 9),
        reasoning_tokens: count(r, 10),
        audio_output_tokens: count(r, 11),
        total_tokens: count(r, 12),
        service_tier: r.get(13),
        usage_source: UsageSource::parse(&source),
        cost: r.get(15),
        stream: r.get(16),
        status: u16::try_from(r.get::<_, i32>(17)).unwrap_or(0),
        latency_ms: count(r, 18),
        attempts: u32::try_from(r.get::<_, i32>(19)).unwrap_or(0),
        created_at: r.get(20),
    }
}

pub(super) async fn usage_page(
    c: &Client,
    after: i64,
    limit: u32,
) -> Result<Vec<(i64, UsageRecord)>, StoreError> {
    let rows = c
        .query(
            &format!("{SELECT_RECORD} WHERE id > $1 ORDER BY id LIMIT $2"),
            &[&after, &i64::from(limit)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, i64>(21), record_from_row(r)))
        .collect())
}

/// A dimension's expression over `usage`, as SQLite's rollups define it.
fn expression(d: Dimension) -> &'static str {
    match d {
        Dimension::User => "user_id",
        Dimension::Model => "model",
        Dimension::Key => "COALESCE(key_id, 0)",
        Dimension::Day => "substr(created_at, 1, 10)",
        Dimension::Tier => "COALESCE(NULLIF(service_tier, ''), 'default')",
    }
}

/// The sums, capped per record like the rollups (`ROLLUP_CAP`).
fn sums() -> String {
    let capped = [
        "prompt_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "audio_input_tokens",
        "completion_tokens",
        "reasoning_tokens",
        "audio_output_tokens",
        "total_tokens",
    ]
    .map(|c| format!("COALESCE(SUM(LEAST(GREATEST({c}, 0), {ROLLUP_CAP})), 0)::int8"))
    .join(", ");
    format!(
        "COUNT(*)::int8, {capped}, COALESCE(SUM(cost), 0),
         COUNT(*) FILTER (WHERE usage_source = 'estimated')::int8,
         COUNT(*) FILTER (WHERE cost IS NULL)::int8,
         COUNT(*) FILTER (WHERE status < 200 OR status > 299)::int8"
    )
}

pub(super) async fn usage_report(
    c: &Client,
    from_day: &str,
    to_day: &str,
    user_id: Option<i64>,
    dims: &[Dimension],
) -> Result<Vec<ReportRow>, StoreError> {
    let mut select: Vec<String> = dims.iter().map(|d| expression(*d).to_string()).collect();
    select.push(sums());
    let positions: Vec<String> = (1..=dims.len()).map(|i| i.to_string()).collect();
    let group = match dims.is_empty() {
        true => String::new(),
        false => format!("GROUP BY {0} ORDER BY {0}", positions.join(", ")),
    };
    let sql = format!(
        "SELECT {} FROM usage WHERE created_at >= $1 AND created_at < $2
           AND ($3::int8 IS NULL OR user_id = $3) {group}",
        select.join(", ")
    );
    let rows = c.query(&sql, &[&from_day, &to_day, &user_id]).await?;
    let names = Names::load(c).await?;
    let n = dims.len();
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut row = ReportRow::default();
        for (i, d) in dims.iter().enumerate() {
            match d {
                Dimension::User => {
                    let id: i64 = r.get(i);
                    row.user = Some((id, names.user(id)));
                }
                Dimension::Model => row.model = Some(r.get(i)),
                Dimension::Key => {
                    let id = Some(r.get::<_, i64>(i)).filter(|id| *id != 0);
                    row.key = Some((id, id.and_then(|k| names.key(k))));
                }
                Dimension::Day => row.day = Some(r.get(i)),
                Dimension::Tier => row.tier = Some(r.get(i)),
            }
        }
        row.requests = r.get(n);
        row.prompt_tokens = r.get(n + 1);
        row.cached_tokens = r.get(n + 2);
        row.cache_write_tokens = r.get(n + 3);
        row.audio_input_tokens = r.get(n + 4);
        row.completion_tokens = r.get(n + 5);
        row.reasoning_tokens = r.get(n + 6);
        row.audio_output_tokens = r.get(n + 7);
        row.total_tokens = r.get(n + 8);
        row.cost = r.get(n + 9);
        row.estimated_requests = r.get(n + 10);
        row.unpriced_requests = r.get(n + 11);
        row.failed_requests = r.get(n + 12);
        if row.requests > 0 || dims.is_empty() {
            out.push(row);
        }
    }
    Ok(out)
}

/// User and key names, looked up once per report.
struct Names {
    users: std::collections::HashMap<i64, String>,
    keys: std::collections::HashMap<i64, String>,
}

impl Names {
    async fn load(c: &Client) -> Result<Names, StoreError> {
        let pairs = |rows: Vec<Row>| rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(Names {
            users: pairs(c.query("SELECT id, name FROM users", &[]).await?),
            keys: pairs(c.query("SELECT id, name FROM keys", &[]).await?),
        })
    }

    fn user(&self, id: i64) -> String {
        self.users.get(&id).cloned().unwrap_or_default()
    }

    fn key(&self, id: i64) -> Option<String> {
        self.keys.get(&id).cloned()
    }
}

pub(super) async fn reprice(
    c: &mut Client,
    from: &str,
    to: &str,
    price: &PriceFn,
) -> Result<Repriced, StoreError> {
    let tx = c.transaction().await?;
    let rows = tx
        .query(
            &format!("{SELECT_RECORD} WHERE created_at >= $1 AND created_at < $2 FOR UPDATE"),
            &[&from, &to],
        )
        .await?;
    let mut summary = Repriced::default();
    let mut ids: Vec<String> = Vec::new();
    let mut costs: Vec<Option<Decimal>> = Vec::new();
    for row in &rows {
        let record = record_from_row(row);
        let new = price(&record);
        if summary.count(record.cost, new) {
            ids.push(record.request_id);
            costs.push(new);
        }
    }
    tx.execute(
        "UPDATE usage SET cost = u.cost FROM UNNEST($1::text[], $2::numeric[]) AS u(id, cost)
         WHERE usage.request_id = u.id",
        &[&ids, &costs],
    )
    .await?;
    super::limits::rebuild_spend(&tx, &month_of(from), &month_after(to)).await?;
    tx.commit().await?;
    Ok(summary)
}
