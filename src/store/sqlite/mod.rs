//! The SQLite backend: a pool of connections (WAL, busy timeout, foreign keys), the schema with
//! `user_version` migrations, and the exact `decimal_sum`/`decimal_add` functions reports use.
//! Every call runs on the blocking pool (`run`), so callers stay async.

pub(super) mod backup;
mod keys;
mod limits;
mod report;
mod usage;
mod users;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rusqlite::{Connection, OpenFlags};
use rust_decimal::Decimal;

use super::keys::{Disabled, HealthGuard, Key, NewKey, StoredKey};
use super::limits::{Admission, Limits, Refusal, Spend};
use super::report::{Dimension, ReportRow, Repriced};
use super::usage::UsageRecord;
use super::users::User;
use super::{Backend, OpenMode, PriceFn, StoreError};

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Refused(e.to_string()),
            _ => StoreError::Db(e.to_string()),
        }
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> StoreError {
        StoreError::Db(format!("connection pool: {e}"))
    }
}

type Migration = fn(&rusqlite::Transaction<'_>) -> Result<(), StoreError>;

/// Migrations in order; `user_version` = number applied. Append, never edit.
const MIGRATIONS: &[Migration] = &[
    |tx| Ok(tx.execute_batch(include_str!("schema.sql"))?),
    |tx| {
        tx.execute_batch(include_str!("schema_v2.sql"))?;
        // The rollups of every existing record.
        usage::rebuild_rollups(tx, "0000-01", "9999-13")?;
        usage::mark_all_rolled_up(tx)
    },
    |tx| Ok(tx.execute_batch(include_str!("schema_v3.sql"))?),
    |tx| Ok(tx.execute_batch(include_str!("key_health.sql"))?),
];

pub(super) struct SqliteStore {
    pool: r2d2::Pool<SqliteConnectionManager>,
    watch: Arc<watch::ChangeWatch>,
}

impl SqliteStore {
    pub(super) async fn open(path: PathBuf, mode: OpenMode) -> Result<SqliteStore, StoreError> {
        blocking(move || SqliteStore::open_blocking(path, mode)).await
    }

    fn open_blocking(path: PathBuf, mode: OpenMode) -> Result<SqliteStore, StoreError> {
        let flags = match mode {
            OpenMode::Create => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    // A missing folder surfaces as SQLite's own "unable to open" error below.
                    let _ = std::fs::create_dir_all(dir);
                }
                OpenFlags::default()
            }
            OpenMode::Existing => OpenFlags::default() - OpenFlags::SQLITE_OPEN_CREATE,
        };
        // One connection first, migrated before the pool exists: an unusable path fails here
        // at once with one error (the pool would retry and log for its 30 s timeout), and no
        // pooled connection can race the switch to WAL on a fresh file ("database is locked").
        let mut first = Connection::open_with_flags(&path, flags)
            .and_then(|c| prepare(&c).map(|()| c))
            .map_err(|e| open_error(&path, mode, e))?;
        migrate(&mut first)?;
        let manager = SqliteConnectionManager::file(&path)
            .with_flags(flags)
            .with_init(|c| prepare(c));
        let pool = r2d2::Pool::builder().max_size(8).build(manager)?;
        let watch = Arc::new(watch::ChangeWatch::new(first));
        Ok(SqliteStore { pool, watch })
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        blocking(move || f(&mut *pool.get()?)).await
    }
}

/// Runs blocking SQLite work on the blocking pool, never on the runtime's workers.
async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| StoreError::Join)?
}

#[async_trait]
impl Backend for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn init_root(&self) -> Result<Option<User>, StoreError> {
        self.run(users::init_root).await
    }

    async fn user(&self, id: i64) -> Result<User, StoreError> {
        self.run(move |c| users::user(c, id)).await
    }

    async fn list_users(&self, include_deleted: bool) -> Result<Vec<User>, StoreError> {
        self.run(move |c| users::list_users(c, include_deleted))
            .await
    }

    async fn add_user(&self, name: &str) -> Result<User, StoreError> {
        let name = name.to_string();
        self.run(move |c| users::add_user(c, &name)).await
    }

    async fn delete_user(&self, id: i64) -> Result<(), StoreError> {
        self.run(move |c| users::delete_user(c, id)).await
    }

    async fn reset_token(&self, id: i64, token: Option<&str>) -> Result<User, StoreError> {
        let token = token.map(str::to_string);
        self.run(move |c| users::reset_token(c, id, token.as_deref()))
            .await
    }

    async fn import_users(&self, list: &[User]) -> Result<usize, StoreError> {
        let list = list.to_vec();
        self.run(move |c| users::import_users(c, &list)).await
    }

    async fn set_limits(&self, id: i64, l: &Limits) -> Result<User, StoreError> {
        let l = *l;
        self.run(move |c| users::set_limits(c, id, &l)).await
    }

    async fn admit(&self, a: &Admission) -> Result<Option<Refusal>, StoreError> {
        let a = a.clone();
        self.run(move |c| limits::admit(c, &a)).await
    }

    async fn release(&self, request_id: &str) -> Result<(), StoreError> {
        let id = request_id.to_string();
        self.run(move |c| limits::release(c, &id)).await
    }

    async fn forget_hold(&self, request_id: &str) -> Result<(), StoreError> {
        let id = request_id.to_string();
        self.run(move |c| limits::forget(c, &id)).await
    }

    async fn spend(&self, user_id: i64, month: &str, day: &str) -> Result<Spend, StoreError> {
        let (month, day) = (month.to_string(), day.to_string());
        self.run(move |c| limits::spend(c, user_id, &month, &day))
            .await
    }

    async fn list_keys(&self) -> Result<Vec<Key>, StoreError> {
        self.run(|c| keys::list_keys(c)).await
    }

    async fn all_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.run(|c| keys::all_keys(c)).await
    }

    async fn add_key(&self, new: &NewKey<'_>) -> Result<Key, StoreError> {
        let (key, name, endpoint) = (
            new.key.to_string(),
            new.name.to_string(),
            new.endpoint.to_string(),
        );
        let api_type = new.api_type;
        self.run(move |c| {
            keys::add_key(
                c,
                &NewKey {
                    key: &key,
                    name: &name,
                    api_type,
                    endpoint: &endpoint,
                },
            )
        })
        .await
    }

    async fn delete_key(&self, id: i64) -> Result<(), StoreError> {
        self.run(move |c| keys::delete_key(c, id)).await
    }

    async fn import_keys(&self, list: &[StoredKey]) -> Result<usize, StoreError> {
        let list = list.to_vec();
        self.run(move |c| keys::import_keys(c, &list)).await
    }

    async fn set_key_health(
        &self,
        id: i64,
        guard: HealthGuard,
        disabled: Option<&Disabled>,
    ) -> Result<bool, StoreError> {
        let disabled = disabled.cloned();
        self.run(move |c| keys::set_key_health(c, id, guard, disabled.as_ref()))
            .await
    }

    async fn insert_usage(&self, records: &[UsageRecord]) -> Result<usize, StoreError> {
        let records = records.to_vec();
        self.run(move |c| usage::insert_usage(c, &records)).await
    }

    async fn roll_up(&self) -> Result<usize, StoreError> {
        self.run(usage::roll_up_now).await
    }

    async fn usage_page(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, UsageRecord)>, StoreError> {
        self.run(move |c| usage::usage_page(c, after, limit)).await
    }

    async fn usage_report(
        &self,
        from_day: &str,
        to_day: &str,
        user_id: Option<i64>,
        dims: &[Dimension],
    ) -> Result<Vec<ReportRow>, StoreError> {
        let (from, to, dims) = (from_day.to_string(), to_day.to_string(), dims.to_vec());
        self.run(move |c| report::usage_report(c, &from, &to, user_id, &dims))
            .await
    }

    async fn reprice(
        &self,
        from: &str,
        to: &str,
        price: Arc<PriceFn>,
    ) -> Result<Repriced, StoreError> {
        let (from, to) = (from.to_string(), to.to_string());
        self.run(move |c| report::reprice(c, &from, &to, price.as_ref()))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn change_marker(&self) -> Result<i64, StoreError> {
        let watch = self.watch.clone();
        blocking(move || watch.data_version()).await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.run(|c| Ok(c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?))
            .await
    }
}

/// Per-connection settings: every connection, pooled or not, gets the same.
fn prepare(c: &Connection) -> rusqlite::Result<()> {
    c.busy_timeout(Duration::from_secs(5))?;
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")?;
    register_functions(c)
}

fn open_error(path: &Path, mode: OpenMode, e: rusqlite::Error) -> StoreError {
    let cannot_open = e.sqlite_error_code() == Some(rusqlite::ErrorCode::CannotOpen);
    if cannot_open && mode == OpenMode::Existing && !path.exists() {
        return StoreError::Missing(path.to_path_buf());
    }
    let reason = if path.is_dir() {
        "it is a directory".to_string()
    } else {
        e.to_string()
    };
    StoreError::Open {
        target: path.display().to_string(),
        reason,
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let version = usize::try_from(version).unwrap_or(0);
    for (i, migrate) in MIGRATIONS.iter().enumerate().skip(version) {
        migrate(&tx)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
    }
    tx.commit()?;
    Ok(())
}

fn register_functions(c: &rusqlite::Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    c.create_aggregate_function("decimal_sum", 1, flags, DecimalSum)?;
    c.create_scalar_function("decimal_add", 2, flags, |ctx| {
        Ok(decimal_arg(ctx, 0)
            .saturating_add(decimal_arg(ctx, 1))
            .to_string())
    })?;
    // The larger of two decimals; NULL (unknown) only when both are.
    c.create_scalar_function("decimal_max", 2, flags, |ctx| {
        let arg = |i| -> Option<Decimal> {
            ctx.get::<Option<String>>(i)
                .ok()
                .flatten()
                .and_then(|t| t.parse().ok())
        };
        Ok(match (arg(0), arg(1)) {
            (Some(a), Some(b)) => Some(a.max(b).to_string()),
            (a, b) => a.or(b).map(|d| d.to_string()),
        })
    })
}

/// A decimal argument; NULL (unpriced) and text that is not a decimal count as 0, so stored
/// data can never make a report fail.
fn decimal_arg(ctx: &Context<'_>, i: usize) -> Decimal {
    ctx.get::<Option<String>>(i)
        .ok()
        .flatten()
        .and_then(|t| t.parse().ok())
        .unwrap_or(Decimal::ZERO)
}

/// `decimal_sum(text)`: exact sum of decimal strings, so money never passes through a float.
/// Saturates instead of failing: a report must answer whatever is stored.
struct DecimalSum;

impl Aggregate<Decimal, String> for DecimalSum {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<Decimal> {
        Ok(Decimal::ZERO)
    }

    fn step(&self, ctx: &mut Context<'_>, acc: &mut Decimal) -> rusqlite::Result<()> {
        *acc = acc.saturating_add(decimal_arg(ctx, 0));
        Ok(())
    }

    fn finalize(&self, _: &mut Context<'_>, acc: Option<Decimal>) -> rusqlite::Result<String> {
        Ok(acc.unwrap_or(Decimal::ZERO).to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn unusable_paths_fail_at_once_with_one_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, "not a folder").unwrap();
        for path in [dir.path().to_path_buf(), file.join("catgate.db")] {
            let started = Instant::now();
            let e = SqliteStore::open_blocking(path.clone(), OpenMode::Create)
                .err()
                .expect("opened an unusable path");
            assert!(started.elapsed() < Duration::from_secs(1), "{e}");
            let text = e.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.starts_with("cannot open database"), "{text}");
        }
    }

    #[test]
    fn open_existing_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catgate.db");
        match SqliteStore::open_blocking(path.clone(), OpenMode::Existing) {
            Err(StoreError::Missing(p)) => assert_eq!(p, path),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened a missing database"),
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        SqliteStore::open_blocking(path.clone(), OpenMode::Create).unwrap();
        SqliteStore::open_blocking(path, OpenMode::Existing).unwrap();
    }
}
