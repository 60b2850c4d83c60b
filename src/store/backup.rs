//! `catgate backup FILE`: a consistent copy of the live database, safe while `catgate serve`
//! writes to it. SQLite only; PostgreSQL has `pg_dump` for that.

use std::path::{Path, PathBuf};

use super::{sqlite, Database, StoreError};

/// What a backup holds, counted in the copy itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackedUp {
    pub users: u64,
    pub keys: u64,
    pub records: u64,
    pub bytes: u64,
}

/// Copies `database` to `target` (mode 0600), refusing an existing `target` unless `force`.
pub async fn backup(
    database: &Database,
    target: &Path,
    force: bool,
) -> Result<BackedUp, StoreError> {
    let source: PathBuf = match database {
        Database::Sqlite(path) => path.clone(),
        Database::Postgres(_) => {
            return Err(StoreError::Invalid(
                "`catgate backup` copies a SQLite database; back up PostgreSQL with pg_dump \
                 (e.g. `pg_dump --format=custom --file=catgate.dump \"$DATABASE_URL\"`)"
                    .into(),
            ))
        }
    };
    let target = target.to_path_buf();
    tokio::task::spawn_blocking(move || sqlite::backup::backup(&source, &target, force))
        .await
        .map_err(|_| StoreError::Join)?
}
