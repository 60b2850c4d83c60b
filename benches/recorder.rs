//! Recorder write rate: batches of usage records inserted through the store, one transaction
//! (SQLite) or one statement (PostgreSQL) per batch, exactly as the recorder thread does it.
//! SQLite on a temp file by default; `CATGATE_BENCH_DATABASE=postgres://…` (an empty
//! database) measures PostgreSQL instead.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rust_decimal::Decimal;

use catgate::store::keys::{ApiType, Key, StoredKey};
use catgate::store::usage::{UsageRecord, UsageSource};
use catgate::store::users::User;
use catgate::store::{Database, OpenMode, Store};

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

/// The store under test, with the users and keys the rows refer to (foreign keys are on).
fn fixture(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> Store {
    let database = match std::env::var("CATGATE_BENCH_DATABASE") {
        Ok(url) if !url.is_empty() => Database::parse(&url),
        _ => Database::Sqlite(dir.join("bench.db")),
    };
    println!("recorder bench on {database}");
    let store = rt
        .block_on(Store::open(&database, OpenMode::Create))
        .expect("open store");
    let users: Vec<User> = (1..=20)
        .map(|u| User {
            id: u,
            name: format!("u{u}"),
            token: format!("token-{u}"),
            is_delete: false,
            created_at: String::new(),
            updated_at: String::new(),
            limits: Default::default(),
        })
        .collect();
    let keys: Vec<StoredKey> = (1..=3)
        .map(|k| StoredKey {
            key: Key {
                id: k,
                key: "sk".into(),
                name: format!("k{k}"),
                api_type: ApiType::OpenAi,
                endpoint: String::new(),
                created_at: String::new(),
                updated_at: String::new(),
                disabled: None,
            },
            is_delete: false,
        })
        .collect();
    rt.block_on(store.import_users(&users)).expect("users");
    rt.block_on(store.import_keys(&keys)).expect("keys");
    store
}

fn bench_inserts(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = fixture(&rt, dir.path());
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
                |rows| rt.block_on(store.insert_usage(&rows)).expect("insert"),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_inserts);
criterion_main!(benches);
