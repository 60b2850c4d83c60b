//! The PostgreSQL backend: several catgate replicas on one database. An async pool
//! (deadpool-postgres over tokio-postgres), versioned migrations under an advisory lock (two
//! replicas starting together migrate once), cost as exact `NUMERIC`, and a one-row change
//! counter bumped by triggers that replicas poll to reload their caches.
//!
//! Conflicts are told apart by constraint name, refused data by SQLSTATE class 23; no error
//! message text is ever matched.

mod keys;
mod limits;
mod usage;
mod users;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::keys::{Disabled, HealthGuard, Key, NewKey, StoredKey};
use super::limits::{Admission, Limits, Refusal, Spend};
use super::report::{Dimension, ReportRow, Repriced};
use super::usage::UsageRecord;
use super::users::User;
use super::{Backend, PriceFn, StoreError};

/// Migrations in order; `catgate_schema.version` = number applied. Append, never edit.
const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("schema_v2.sql"),
    include_str!("key_health.sql"),
];

/// Any fixed number: the advisory lock that serializes migrations across replicas.
const MIGRATION_LOCK: i64 = 0x0063_6174_6761_7465; // "catgate"

const TIMEOUT: Duration = Duration::from_secs(5);

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        let refused = e.code().is_some_and(|c| c.code().starts_with("23"));
        let text = match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => e.to_string(),
        };
        match refused {
            true => StoreError::Refused(text),
            false => StoreError::Db(text),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> StoreError {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => StoreError::Db(format!("connection pool: {other}")),
        }
    }
}

/// The constraint a unique violation names, if that is what `e` is.
fn violated_constraint(e: &tokio_postgres::Error) -> Option<&str> {
    let db = e.as_db_error()?;
    (db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
        .then(|| db.constraint())
        .flatten()
}

/// `e` as a 409 with `message` when it violated `constraint`.
fn conflict(e: tokio_postgres::Error, constraint: &str, message: &'static str) -> StoreError {
    match violated_constraint(&e) == Some(constraint) {
        true => StoreError::Conflict(message),
        false => e.into(),
    }
}

/// The URL with its password replaced, for logs and errors.
pub(super) fn redacted(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

pub(super) struct PgStore {
    pool: Pool,
}

impl PgStore {
    pub(super) async fn open(url: &str) -> Result<PgStore, StoreError> {
        let open_error = |reason: String| StoreError::Open {
            target: redacted(url),
            reason,
        };
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| open_error(e.to_string()))?;
        config.connect_timeout(TIMEOUT);
        config.application_name("catgate");
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(TIMEOUT))
            .create_timeout(Some(TIMEOUT))
            .recycle_timeout(Some(TIMEOUT))
            .build()
            .map_err(|e| open_error(e.to_string()))?;
        let store = PgStore { pool };
        store
            .migrate()
            .await
            .map_err(|e| open_error(e.to_string()))?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS catgate_schema (version INTEGER NOT NULL);
             INSERT INTO catgate_schema SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM catgate_schema);",
        )
        .await?;
        let version: i32 = tx
            .query_one("SELECT version FROM catgate_schema", &[])
            .await?
            .get(0);
        let applied = usize::try_from(version).unwrap_or(0);
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
            tx.batch_execute(migration).await?;
            let v = i32::try_from(i + 1).unwrap_or(i32::MAX);
            tx.execute("UPDATE catgate_schema SET version = $1", &[&v])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }
}

/// Moves a table's id sequence past ids inserted explicitly (root, imports, copies).
async fn sync_sequence(
    c: &impl tokio_postgres::GenericClient,
    table: &str,
) -> Result<(), StoreError> {
    c.batch_execute(&format!(
        "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                       GREATEST((SELECT MAX(id) FROM {table}), 1))"
    ))
    .await?;
    Ok(())
}

#[async_trait]
impl Backend for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn shared(&self) -> bool {
        true
    }

    async fn init_root(&self) -> Result<Option<User>, StoreError> {
        users::init_root(&mut *self.client().await?).await
    }

    async fn user(&self, id: i64) -> Result<User, StoreError> {
        users::user(&*self.client().await?, id).await
    }

    async fn list_users(&self, include_deleted: bool) -> Result<Vec<User>, StoreError> {
        users::list_users(&*self.client().await?, include_deleted).await
    }

    async fn add_user(&self, name: &str) -> Result<User, StoreError> {
        users::add_user(&*self.client().await?, name).await
    }

    async fn delete_user(&self, id: i64) -> Result<(), StoreError> {
        users::delete_user(&*self.client().await?, id).await
    }

    async fn reset_token(&self, id: i64, token: Option<&str>) -> Result<User, StoreError> {
        users::reset_token(&*self.client().await?, id, token).await
    }

    async fn import_users(&self, list: &[User]) -> Result<usize, StoreError> {
        users::import_users(&mut *self.client().await?, list).await
    }

    async fn set_limits(&self, id: i64, l: &Limits) -> Result<User, StoreError> {
        users::set_limits(&*self.client().await?, id, l).await
    }

    async fn admit(&self, a: &Admission) -> Result<Option<Refusal>, StoreError> {
        limits::admit(&mut *self.client().await?, a).await
    }

    async fn release(&self, request_id: &str) -> Result<(), StoreError> {
        limits::release(&*self.client().await?, request_id).await
    }

    async fn forget_hold(&self, request_id: &str) -> Result<(), StoreError> {
        limits::forget(&*self.client().await?, request_id).await
    }

    async fn spend(&self, user_id: i64, month: &str, day: &str) -> Result<Spend, StoreError> {
        limits::spend(&*self.client().await?, user_id, month, day).await
    }

    async fn list_keys(&self) -> Result<Vec<Key>, StoreError> {
        keys::list_keys(&*self.client().await?).await
    }

    async fn all_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        keys::all_keys(&*self.client().await?).await
    }

    async fn add_key(&self, new: &NewKey<'_>) -> Result<Key, StoreError> {
        keys::add_key(&*self.client().await?, new).await
    }

    async fn delete_key(&self, id: i64) -> Result<(), StoreError> {
        keys::delete_key(&*self.client().await?, id).await
    }

    async fn import_keys(&self, list: &[StoredKey]) -> Result<usize, StoreError> {
        keys::import_keys(&mut *self.client().await?, list).await
    }

    async fn set_key_health(
        &self,
        id: i64,
        guard: HealthGuard,
        disabled: Option<&Disabled>,
    ) -> Result<bool, StoreError> {
        keys::set_key_health(&*self.client().await?, id, guard, disabled).await
    }

    async fn insert_usage(&self, records: &[UsageRecord]) -> Result<usize, StoreError> {
        usage::insert_usage(&*self.client().await?, records).await
    }

    async fn roll_up(&self) -> Result<usize, StoreError> {
        // Reports aggregate the records directly (indexed by time); nothing to fold.
        Ok(0)
    }

    async fn usage_page(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, UsageRecord)>, StoreError> {
        usage::usage_page(&*self.client().await?, after, limit).await
    }

    async fn usage_report(
        &self,
        from_day: &str,
        to_day: &str,
        user_id: Option<i64>,
        dims: &[Dimension],
    ) -> Result<Vec<ReportRow>, StoreError> {
        usage::usage_report(&*self.client().await?, from_day, to_day, user_id, dims).await
    }

    async fn reprice(
        &self,
        from: &str,
        to: &str,
        price: Arc<PriceFn>,
    ) -> Result<Repriced, StoreError> {
        usage::reprice(&mut *self.client().await?, from, to, price.as_ref()).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    async fn change_marker(&self) -> Result<i64, StoreError> {
        let row = self
            .client()
            .await?
            .query_one("SELECT version FROM catgate_changes WHERE id = 1", &[])
            .await?;
        Ok(row.get(0))
    }

    async fn close(&self) -> Result<(), StoreError> {
        // Nothing to flush: every commit is already on the server. The pool stays open for
        // whatever still holds the store (tests read after a shutdown).
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redacted("postgres://cat:s3cret@db:5432/catgate"),
            "postgres://cat:***@db:5432/catgate"
        );
        assert_eq!(
            redacted("postgresql://cat@db/catgate"),
            "postgresql://cat@db/catgate"
        );
        assert_eq!(
            redacted("postgres://cat:p@ss@db/x?sslmode=disable"),
            "postgres://cat:***@db/x?sslmode=disable"
        );
    }
}
