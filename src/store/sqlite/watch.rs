//! Noticing commits made elsewhere. `PRAGMA data_version` on one connection changes whenever
//! any *other* connection commits — another process (the CLI resetting a token) or this
//! process's own pool — so comparing it with the last value seen is a microsecond-cheap test
//! of whether cached users and keys may be stale.

use std::sync::Mutex;

use rusqlite::Connection;

use crate::store::StoreError;

/// The dedicated connection: `data_version` is per connection, so pooled connections would
/// not compare.
pub(super) struct ChangeWatch {
    conn: Mutex<Connection>,
}

impl ChangeWatch {
    pub(super) fn new(conn: Connection) -> ChangeWatch {
        ChangeWatch {
            conn: Mutex::new(conn),
        }
    }

    pub(super) fn data_version(&self) -> Result<i64, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(conn.query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }
}
