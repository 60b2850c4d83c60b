//! Reports over a year of traffic: builds (once, then reuses) a SQLite database of 10M usage
//! records written through the recorder's own insert path and folded into the rollups by the
//! same code as in production, then times every report shape.
//!
//! `cargo bench --bench reports` (set CATGATE_BENCH_RECORDS for a smaller run). The database is
//! kept at target/catgate-bench-<N>.db; delete it to rebuild.
//!
//! Traffic shape: 50 members over 365 days, 27.4k requests a day; each member uses 3 of 12
//! models (their own mix), round-robin over 4 keys; 80 % default tier, 10 % flex, 10 % priority;
//! 1 % failed answers, 0.5 % estimated, 0.2 % unknown model.

use std::path::PathBuf;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use rust_decimal::Decimal;

use catgate::store::keys::{ApiType, NewKey};
use catgate::store::report::Dimension;
use catgate::store::usage::{UsageRecord, UsageSource};
use catgate::store::{Database, OpenMode, Store};

const USERS: u64 = 50;
const KEYS: u64 = 4;
const DAYS: u64 = 365;
const MODELS: [&str; 12] = [
    "gpt-5-2025-08-07",
    "gpt-5-mini-2025-08-07",
    "gpt-5-nano-2025-08-07",
    "gpt-4.1-2025-04-14",
    "gpt-4.1-mini-2025-04-14",
    "gpt-4o-2024-11-20",
    "gpt-4o-mini-2024-07-18",
    "o3-2025-04-16",
    "o4-mini-2025-04-16",
    "text-embedding-3-small",
    "gpt-3.5-turbo-0125",
    "o1-2024-12-17",
];

fn records_wanted() -> u64 {
    std::env::var("CATGATE_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

fn day_name(day: u64) -> String {
    let start = time::macros::date!(2025 - 11 - 27);
    (start + time::Duration::days(day as i64)).to_string()
}

/// Record `i` of `n`, spread evenly over the year in time order.
fn record(i: u64, n: u64) -> UsageRecord {
    let per_day = n.div_ceil(DAYS);
    let day = i / per_day;
    let second = (i % per_day) * 86_400 / per_day;
    let user = 2 + (i * 7 + i / 13) % USERS;
    let model = MODELS[((user * 5 + (i % 3) * 4) % MODELS.len() as u64) as usize];
    let tier = match i % 10 {
        0 => Some("flex".to_string()),
        1 => Some("priority".to_string()),
        _ => Some("default".to_string()),
    };
    let failed = i % 100 == 50;
    let unpriced = i % 500 == 7;
    UsageRecord {
        request_id: uuid::Uuid::now_v7().to_string(),
        user_id: user as i64,
        key_id: Some((1 + i % KEYS) as i64),
        model: if unpriced {
            "mystery-model".into()
        } else {
            model.into()
        },
        route: "/v1/chat/completions".into(),
        prompt_tokens: if failed { 0 } else { 1200 + i % 800 },
        cached_tokens: if failed { 0 } else { 1024 },
        cache_write_tokens: 0,
        audio_input_tokens: 0,
        completion_tokens: if failed { 0 } else { 300 + i % 200 },
        reasoning_tokens: if failed { 0 } else { 128 },
        audio_output_tokens: 0,
        total_tokens: if failed { 0 } else { 1500 + i % 800 + i % 200 },
        service_tier: tier,
        usage_source: match (failed, i % 200 == 3) {
            (true, _) => UsageSource::None,
            (false, true) => UsageSource::Estimated,
            (false, false) => UsageSource::Upstream,
        },
        cost: match (failed, unpriced) {
            (true, _) => Some(Decimal::ZERO),
            (false, true) => None,
            (false, false) => Some(Decimal::new(2_079_375 + (i % 1000) as i64, 10)),
        },
        stream: i % 2 == 0,
        status: if failed { 502 } else { 200 },
        latency_ms: 850,
        attempts: 1,
        created_at: format!(
            "{}T{:02}:{:02}:{:02}.{:06}Z",
            day_name(day),
            second / 3600,
            second / 60 % 60,
            second % 60,
            i % 1_000_000
        ),
    }
}

/// Opens the benchmark database, building it first if it is missing or incomplete.
fn database(rt: &tokio::runtime::Runtime) -> Store {
    let n = records_wanted();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(format!("catgate-bench-{n}.db"));
    let database = Database::Sqlite(path.clone());
    if let Ok(store) = rt.block_on(Store::open(&database, OpenMode::Create)) {
        let have = rt
            .block_on(store.usage_report("0000-00-00", "9999-99-99", None, &[]))
            .ok()
            .and_then(|rows| rows.first().map(|r| r.requests));
        if have == Some(n as i64) {
            println!("reusing {} ({n} records)", path.display());
            return store;
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store = rt
        .block_on(Store::open(&database, OpenMode::Create))
        .expect("open bench database");
    rt.block_on(store.init_root()).expect("root");
    for u in 2..=USERS + 1 {
        rt.block_on(store.add_user(&format!("member{u}")))
            .expect("user");
    }
    for k in 1..=KEYS {
        let name = format!("team-{k}");
        let key = NewKey {
            key: "sk-bench",
            name: &name,
            api_type: ApiType::OpenAi,
            endpoint: "",
        };
        rt.block_on(store.add_key(&key)).expect("key");
    }
    let started = Instant::now();
    let batch = 4096;
    let mut i = 0;
    while i < n {
        let rows: Vec<UsageRecord> = (i..(i + batch).min(n)).map(|j| record(j, n)).collect();
        rt.block_on(store.insert_usage(&rows)).expect("insert");
        i += batch;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "inserted {n} records in {secs:.1} s ({:.0} records/s)",
        n as f64 / secs
    );
    let started = Instant::now();
    let folded = rt.block_on(store.roll_up()).expect("roll up");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "folded {folded} records into the rollups in {secs:.1} s ({:.0} records/s)",
        folded as f64 / secs
    );
    store
}

fn reports(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = database(&rt);
    let (from, to) = (day_name(0), day_name(DAYS));
    let shapes: [(&str, Option<i64>, &[Dimension]); 6] = [
        (
            "year/by_user_model",
            None,
            &[Dimension::User, Dimension::Model],
        ),
        ("year/by_day", None, &[Dimension::Day]),
        (
            "year/by_model_key_tier",
            None,
            &[Dimension::Model, Dimension::Key, Dimension::Tier],
        ),
        (
            "year/by_user_model_key_day_tier",
            None,
            &[
                Dimension::User,
                Dimension::Model,
                Dimension::Key,
                Dimension::Day,
                Dimension::Tier,
            ],
        ),
        ("year/one_member_by_model", Some(7), &[Dimension::Model]),
        (
            "month/by_user_model",
            None,
            &[Dimension::User, Dimension::Model],
        ),
    ];
    let mut group = c.benchmark_group("reports_10m");
    group.sample_size(10);
    for (name, user, dims) in shapes {
        let (from, to) = if name.starts_with("month") {
            (day_name(DAYS - 30), day_name(DAYS))
        } else {
            (from.clone(), to.clone())
        };
        let rows = rt
            .block_on(store.usage_report(&from, &to, user, dims))
            .expect("report");
        println!("{name}: {} rows", rows.len());
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(store.usage_report(&from, &to, user, dims))
                    .expect("report")
            })
        });
    }
    group.bench_function("year/usages_totals", |b| {
        b.iter(|| rt.block_on(store.usage_totals(&from, &to)).expect("totals"))
    });
    group.finish();
}

criterion_group!(benches, reports);
criterion_main!(benches);
