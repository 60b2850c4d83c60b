//! The only place with SQL. A pool of SQLite connections (WAL, busy timeout, foreign keys), the
//! schema with `user_version` migrations, and typed operations in `users`, `keys` and `usage`.
//!
//! Every method is blocking: async callers run them through `spawn_blocking`
//! (`AppState::blocking`), the recorder calls them from its own thread.

pub mod keys;
pub mod report;
pub mod usage;
pub mod users;

use std::path::Path;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rust_decimal::Decimal;

pub type Conn = r2d2::PooledConnection<SqliteConnectionManager>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Conflict(&'static str),
    #[error("not found")]
    NotFound,
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("database pool error: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("database task failed")]
    Join,
}

type Migration = fn(&rusqlite::Transaction<'_>) -> Result<(), StoreError>;

/// Migrations in order; `user_version` = number applied. Append, never edit.
const MIGRATIONS: &[Migration] = &[
    |tx| Ok(tx.execute_batch(include_str!("schema.sql"))?),
    |tx| {
        tx.execute_batch(include_str!("schema_v2.sql"))?;
        // The rollups of every existing record.
        usage::rebuild_rollups(tx, "0000-01", "9999-13")
    },
];

#[derive(Clone)]
pub struct Store {
    pool: r2d2::Pool<SqliteConnectionManager>,
}

impl Store {
    /// Opens (creating if needed) the database file and brings the schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // A missing folder surfaces as SQLite's own "unable to open" error below.
            let _ = std::fs::create_dir_all(dir);
        }
        let manager = SqliteConnectionManager::file(path).with_init(|c| {
            c.busy_timeout(Duration::from_secs(5))?;
            c.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
            )?;
            register_functions(c)
        });
        let pool = r2d2::Pool::builder().max_size(8).build(manager)?;
        let store = Store { pool };
        store.migrate()?;
        Ok(store)
    }

    pub fn conn(&self) -> Result<Conn, StoreError> {
        Ok(self.pool.get()?)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
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

    /// Whether the database answers a query (`/readyz`).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn()?.query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    /// Checkpoints the WAL into the main file; called once on shutdown.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.conn()?
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }
}

/// Maps a unique-constraint violation to a conflict with `message`.
fn conflict_on_unique(e: rusqlite::Error, message: &'static str) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            StoreError::Conflict(message)
        }
        other => StoreError::Db(other),
    }
}

fn register_functions(c: &rusqlite::Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    c.create_aggregate_function("decimal_sum", 1, flags, DecimalSum)?;
    c.create_scalar_function("decimal_add", 2, flags, |ctx| {
        Ok(decimal_arg(ctx, 0)
            .saturating_add(decimal_arg(ctx, 1))
            .to_string())
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
