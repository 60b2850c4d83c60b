//! The storage boundary. Callers see one async, backend-neutral [`Store`] and domain types
//! (`users::User`, `keys::Key`, `usage::UsageRecord`, `report::ReportRow`); SQL, driver types
//! and database functions stay inside the backend folders `sqlite/` (embedded default) and
//! `postgres/` (several replicas on one server). A backend is one folder implementing
//! [`Backend`] plus one arm in [`Store::open`].

pub mod backup;
pub mod copy;
pub mod keys;
pub mod limits;
mod postgres;
pub mod report;
mod sqlite;
pub mod usage;
pub mod users;

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use rust_decimal::Decimal;

use keys::{Disabled, HealthGuard, Key, NewKey, StoredKey};
use limits::{Admission, Limits, Refusal, Spend};
use report::{Dimension, ReportRow, Repriced};
use usage::{UsageRecord, UsageTotal};
use users::User;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Conflict(&'static str),
    #[error("not found")]
    NotFound,
    #[error("no database at {}; start catgate with this config to create it", .0.display())]
    Missing(PathBuf),
    #[error("cannot open database {target}: {reason}")]
    Open { target: String, reason: String },
    /// The database refused the data itself (a constraint): retrying the same write can never
    /// succeed, unlike a lock, a full disk or a lost connection.
    #[error("database refused the data: {0}")]
    Refused(String),
    #[error("database error: {0}")]
    Db(String),
    #[error("{0}")]
    Invalid(String),
    #[error("database task failed")]
    Join,
}

impl StoreError {
    pub fn is_refused_data(&self) -> bool {
        matches!(self, StoreError::Refused(_))
    }
}

/// Where the data lives (`database` in the config).
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    /// A `postgres://` URL; it may hold a password, so `Debug`/`Display` hide it.
    Postgres(String),
}

impl Database {
    /// `postgres://` and `postgresql://` URLs select PostgreSQL; anything else is a file path.
    pub fn parse(text: &str) -> Database {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Database::Postgres(text.to_string())
        } else {
            Database::Sqlite(PathBuf::from(text))
        }
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "{}", p.display()),
            Database::Postgres(url) => f.write_str(&postgres::redacted(url)),
        }
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Database({self})")
    }
}

/// What opening does when the database does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create it (SQLite: and its folder): the server, `users import`.
    Create,
    /// Fail with [`StoreError::Missing`]: commands that read or change existing users must not
    /// leave an empty database behind (a typo in `--config` would otherwise go unnoticed).
    Existing,
}

/// Prices a stored record again (`catgate reprice`).
pub type PriceFn = dyn Fn(&UsageRecord) -> Option<Decimal> + Send + Sync;

/// What every backend does. Methods are async; blocking drivers hop to the blocking pool
/// inside their backend, never in a caller.
#[async_trait]
pub trait Backend: Send + Sync {
    /// `sqlite` or `postgres`, for the start-up log.
    fn kind(&self) -> &'static str;

    /// Whether other processes write usage to this database too (replicas), so that a report
    /// must also allow for their recorders' batching.
    fn shared(&self) -> bool {
        false
    }

    async fn init_root(&self) -> Result<Option<User>, StoreError>;
    async fn user(&self, id: i64) -> Result<User, StoreError>;
    async fn list_users(&self, include_deleted: bool) -> Result<Vec<User>, StoreError>;
    async fn add_user(&self, name: &str) -> Result<User, StoreError>;
    /// Soft-deletes a live user; `NotFound` if there is no live user with that id.
    async fn delete_user(&self, id: i64) -> Result<(), StoreError>;
    /// Gives a live user a new token (fresh UUID unless `token` is given).
    async fn reset_token(&self, id: i64, token: Option<&str>) -> Result<User, StoreError>;
    /// Inserts users as exported, keeping ids and tokens; existing ids are updated in place.
    async fn import_users(&self, users: &[User]) -> Result<usize, StoreError>;
    /// Replaces a live user's limits; `NotFound` if there is no live user with that id.
    async fn set_limits(&self, id: i64, limits: &Limits) -> Result<User, StoreError>;

    /// Checks a limited member's request against its limits and, if it may start, records its
    /// hold (reservation and concurrency slot) and rate step, all in one transaction.
    async fn admit(&self, a: &Admission) -> Result<Option<Refusal>, StoreError>;
    /// The answer of request `request_id` ended: its concurrency slot is free (its reservation
    /// stays until its record is written).
    async fn release(&self, request_id: &str) -> Result<(), StoreError>;
    /// Drops the hold of a request that was admitted but will never write a record (its
    /// admission outlived the wait, or the client left during it).
    async fn forget_hold(&self, request_id: &str) -> Result<(), StoreError>;
    /// Settled spend of `user_id` in `month` (`YYYY-MM`) and `day` (`YYYY-MM-DD`).
    async fn spend(&self, user_id: i64, month: &str, day: &str) -> Result<Spend, StoreError>;

    /// Live keys ordered by id.
    async fn list_keys(&self) -> Result<Vec<Key>, StoreError>;
    /// Every key, deleted ones too, ordered by id.
    async fn all_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    async fn add_key(&self, new: &NewKey<'_>) -> Result<Key, StoreError>;
    async fn delete_key(&self, id: i64) -> Result<(), StoreError>;
    /// Inserts keys keeping their ids (`catgate copy`).
    async fn import_keys(&self, keys: &[StoredKey]) -> Result<usize, StoreError>;
    /// Takes live key `id` out of rotation (`Some`) or puts it back (`None`) if `guard`
    /// allows; returns whether a key changed (`false`: no such live key, or the guard held).
    async fn set_key_health(
        &self,
        id: i64,
        guard: HealthGuard,
        disabled: Option<&Disabled>,
    ) -> Result<bool, StoreError>;

    /// Inserts all records in one transaction; already-present `request_id`s are skipped (a
    /// replay never charges twice). In the same transaction each new record's cost is added to
    /// its user's spend and every record's hold is settled (deleted). Returns how many were new.
    async fn insert_usage(&self, records: &[UsageRecord]) -> Result<usize, StoreError>;
    /// Brings report aggregates up to date; returns how many records were folded.
    async fn roll_up(&self) -> Result<usize, StoreError>;
    /// Records after position `after` in insertion order, at most `limit`, with positions.
    async fn usage_page(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, UsageRecord)>, StoreError>;
    /// Rows for `[from_day, to_day)` grouped by `dims` (in that order, also the sort order),
    /// for every user or only `user_id`.
    async fn usage_report(
        &self,
        from_day: &str,
        to_day: &str,
        user_id: Option<i64>,
        dims: &[Dimension],
    ) -> Result<Vec<ReportRow>, StoreError>;
    /// Recomputes the cost of every record in `[from, to)` (stored-form timestamps).
    async fn reprice(
        &self,
        from: &str,
        to: &str,
        price: Arc<PriceFn>,
    ) -> Result<Repriced, StoreError>;

    /// Whether the database answers (`/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// A number that changes whenever users or keys may have changed, through any process.
    async fn change_marker(&self) -> Result<i64, StoreError>;
    /// Called once on shutdown (SQLite checkpoints its WAL).
    async fn close(&self) -> Result<(), StoreError>;
}

/// The store handle every part of catgate holds: cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        self.backend.as_ref()
    }
}

impl Store {
    /// Opens the database (creating it if `mode` allows) and brings its schema up to date.
    pub async fn open(database: &Database, mode: OpenMode) -> Result<Store, StoreError> {
        let backend: Arc<dyn Backend> = match database {
            Database::Sqlite(path) => {
                Arc::new(sqlite::SqliteStore::open(path.clone(), mode).await?)
            }
            Database::Postgres(url) => Arc::new(postgres::PgStore::open(url).await?),
        };
        Ok(Store { backend })
    }

    /// Totals per user for `[from_day, to_day)` (`YYYY-MM-DD`), ordered by user.
    pub async fn usage_totals(
        &self,
        from_day: &str,
        to_day: &str,
    ) -> Result<Vec<UsageTotal>, StoreError> {
        let rows = self
            .usage_report(from_day, to_day, None, &[Dimension::User])
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| UsageTotal {
                user_id: r.user.map_or(0, |(id, _)| id),
                total_tokens: r.total_tokens,
                cost: r.cost,
            })
            .collect())
    }

    /// One user's totals for the window (zeros when there are no records).
    pub async fn user_usage_total(
        &self,
        user_id: i64,
        from_day: &str,
        to_day: &str,
    ) -> Result<UsageTotal, StoreError> {
        let rows = self
            .usage_report(from_day, to_day, Some(user_id), &[])
            .await?;
        let (total_tokens, cost) = rows
            .first()
            .map_or((0, Decimal::ZERO), |r| (r.total_tokens, r.cost));
        Ok(UsageTotal {
            user_id,
            total_tokens,
            cost,
        })
    }

    /// The first `limit` records in insertion order (tests and audits).
    pub async fn usage_records(&self, limit: u32) -> Result<Vec<UsageRecord>, StoreError> {
        Ok(self
            .usage_page(0, limit)
            .await?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// A handle for threads outside the runtime (the recorder's writer): each call waits for
    /// the async one on `runtime`.
    pub fn blocking(&self, runtime: tokio::runtime::Handle) -> BlockingStore {
        BlockingStore {
            store: self.clone(),
            runtime,
        }
    }
}

/// [`Store`] for a plain thread. Never use it from a runtime thread (it would block it).
#[derive(Clone)]
pub struct BlockingStore {
    store: Store,
    runtime: tokio::runtime::Handle,
}

impl BlockingStore {
    pub fn insert_usage(&self, records: &[UsageRecord]) -> Result<usize, StoreError> {
        self.runtime.block_on(self.store.insert_usage(records))
    }

    pub fn roll_up(&self) -> Result<usize, StoreError> {
        self.runtime.block_on(self.store.roll_up())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}
