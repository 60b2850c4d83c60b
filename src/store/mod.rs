//! The only place with SQL. A pool of SQLite connections (WAL, busy timeout, foreign keys), the
//! schema with `user_version` migrations, and typed operations in `users`, `keys` and `usage`.
//!
//! Every method is blocking: async callers run them through `spawn_blocking`
//! (`AppState::blocking`), the recorder calls them from its own thread.

pub mod keys;
pub mod report;
pub mod usage;
pub mod users;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rusqlite::{Connection, OpenFlags};
use rust_decimal::Decimal;

pub type Conn = r2d2::PooledConnection<SqliteConnectionManager>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Conflict(&'static str),
    #[error("not found")]
    NotFound,
    #[error("no database at {}; start catgate with this config to create it", .0.display())]
    Missing(PathBuf),
    #[error("cannot open database {}: {reason}", path.display())]
    Open { path: PathBuf, reason: String },
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("database pool error: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("database task failed")]
    Join,
}

impl StoreError {
    /// The data itself was refused (a constraint, e.g. a record naming a user the database
    /// does not have): retrying the same write can never succeed, unlike a lock or a full disk.
    pub fn is_refused_data(&self) -> bool {
        matches!(self, StoreError::Db(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::ConstraintViolation)
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
];

/// What opening does when the database file does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create it (and its folder): the server, `users import`.
    Create,
    /// Fail with [`StoreError::Missing`]: commands that read or change existing users must not
    /// leave an empty database behind (a typo in `--config` would otherwise go unnoticed).
    Existing,
}

#[derive(Clone)]
pub struct Store {
    pool: r2d2::Pool<SqliteConnectionManager>,
    watch: Arc<watch::ChangeWatch>,
}

impl Store {
    /// Opens (creating if needed) the database file and brings the schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, OpenMode::Create)
    }

    /// Opens an existing database file; [`StoreError::Missing`] if there is none.
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, OpenMode::Existing)
    }

    pub fn open_with(path: &Path, mode: OpenMode) -> Result<Store, StoreError> {
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
        let mut first = Connection::open_with_flags(path, flags)
            .and_then(|c| prepare(&c).map(|()| c))
            .map_err(|e| open_error(path, mode, e))?;
        migrate(&mut first)?;
        let manager = SqliteConnectionManager::file(path)
            .with_flags(flags)
            .with_init(|c| prepare(c));
        let pool = r2d2::Pool::builder().max_size(8).build(manager)?;
        let watch = Arc::new(watch::ChangeWatch::new(first)?);
        Ok(Store { pool, watch })
    }

    pub fn conn(&self) -> Result<Conn, StoreError> {
        Ok(self.pool.get()?)
    }

    /// Runs `reload` if any other connection (another process, or this one's pool) committed
    /// since the last reload through this method; see `watch.rs`. Concurrent callers wait for
    /// the running reload.
    pub fn reload_if_changed(
        &self,
        reload: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        self.watch.reload_if_changed(reload)
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
        path: path.to_path_buf(),
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
            let e = Store::open(&path).err().expect("opened an unusable path");
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
        match Store::open_existing(&path) {
            Err(StoreError::Missing(p)) => assert_eq!(p, path),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened a missing database"),
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        Store::open(&path).unwrap();
        Store::open_existing(&path).unwrap();
    }
}
