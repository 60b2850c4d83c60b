//! Recorder write rate: batches of usage records inserted into SQLite on a temp file, one
//! transaction per batch, exactly as the recorder thread does it.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rust_decimal::Decimal;

use catgate::store::usage::{UsageRecord, UsageSource};
use catgate::store::Store;

fn record(i: u64) -> UsageRecord {
    UsageRecord {
        request_id: uuid::Uuid::now_v7().to_string(),
        user_id: 1 + (i % 20) as i64,
        key_id: Some(1 + (i % 3) as i64),
        model: "gpt-4o-mini-2024-07-18".into(),
        route: "/v1/chat/completions".into(),
        prompt_tokens: 1200,
        cached_tokens: 1024,
        cache_write_tokens: 0,
        audio_input_tokens: 0,
        completion_tokens: 300,
        reasoning_tokens: 128,
        audio_output_tokens: 0,
        total_tokens: 1500,
        service_tier: (i % 5 == 0).then(|| "flex".to_string()),
        usage_source: UsageSource::Upstream,
        cost: Some(Decimal::new(2079, 7)),
        stream: i % 2 == 0,
        status: 200,
        latency_ms: 850,
        attempts: 1,
        // Time order, as in production (records carry their request's start time).
        created_at: format!(
            "2026-11-27T{:02}:{:02}:{:02}.{:06}Z",
            i / 3_600_000_000 % 24,
            i / 60_000_000 % 60,
            i / 1_000_000 % 60,
            i % 1_000_000
        ),
    }
}

fn bench_inserts(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("bench.db")).expect("open store");
    // Users and keys the rows refer to (foreign keys are on).
    let conn = store.conn().expect("conn");
    for u in 1..=20 {
        conn.execute(
            "INSERT INTO users (id, name, token, created_at, updated_at) VALUES (?1, ?2, ?2, '', '')",
            rusqlite::params![u, format!("u{u}")],
        )
        .expect("user");
    }
    for k in 1..=3 {
        conn.execute(
            "INSERT INTO keys (id, key, name, api_type, created_at, updated_at) VALUES (?1, 'sk', ?2, 'openai', '', '')",
            rusqlite::params![k, format!("k{k}")],
        )
        .expect("key");
    }
    drop(conn);
    let mut group = c.benchmark_group("recorder");
    for batch in [64u64, 1024] {
        group.throughput(Throughput::Elements(batch));
        let mut next = 0u64;
        group.bench_function(format!("insert_batch_{batch}"), |b| {
            b.iter_batched(
                || {
                    let rows: Vec<UsageRecord> = (next..next + batch).map(record).collect();
                    next += batch;
                    rows
                },
                |rows| store.insert_usage(&rows).expect("insert"),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_inserts);
criterion_main!(benches);
