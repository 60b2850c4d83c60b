//! Noticing commits made elsewhere. `PRAGMA data_version` on one connection changes whenever
//! any *other* connection commits — another process (the CLI resetting a token) or this
//! process's own pool — so comparing it with the last value seen is a microsecond-cheap test
//! of whether cached users and keys may be stale.

use std::sync::Mutex;

use rusqlite::Connection;

use super::StoreError;

/// The dedicated connection (`data_version` is per connection, so pooled connections would
/// not compare) and the version it reported when the caches were last reloaded.
pub(super) struct ChangeWatch {
    state: Mutex<(Connection, i64)>,
}

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
}

impl ChangeWatch {
    pub(super) fn new(conn: Connection) -> Result<ChangeWatch, StoreError> {
        let version = data_version(&conn)?;
        Ok(ChangeWatch {
            state: Mutex::new((conn, version)),
        })
    }

    /// Runs `reload` if another connection committed since the last successful reload, and
    /// says whether it did. The lock is held across `reload`, so a concurrent caller waits
    /// for the fresh caches instead of going on with the stale ones.
    pub(super) fn reload_if_changed(
        &self,
        reload: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // Read before reloading: a commit during the reload shows up on the next call.
        let version = data_version(&state.0)?;
        if version == state.1 {
            return Ok(false);
        }
        reload()?;
        state.1 = version;
        Ok(true)
    }
}
