//! Users: root is id 1; deletion is soft (the row and its usage stay, the name is freed).

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::{conflict_on_unique, Store, StoreError};
use crate::timestamp;

pub const ROOT_ID: i64 = 1;

/// A user as the opencatd API shows it (field names are part of the contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub token: String,
    #[serde(rename = "IsDelete")]
    pub is_delete: bool,
    #[serde(rename = "createdAt")]
    pub created_at: String,
    #[serde(rename = "updatedAt")]
    pub updated_at: String,
}

const COLUMNS: &str = "id, name, token, is_delete, created_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        token: r.get(2)?,
        is_delete: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

const NAME_TAKEN: &str = "user name already exists";
const TOKEN_TAKEN: &str = "token already in use";

fn unique(e: rusqlite::Error) -> StoreError {
    let is_token = e.to_string().contains("users.token");
    conflict_on_unique(e, if is_token { TOKEN_TAKEN } else { NAME_TAKEN })
}

pub fn new_token() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Store {
    /// Creates root (id 1) if the table is empty; `None` if any user exists already.
    pub fn init_root(&self) -> Result<Option<User>, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let any: bool = tx.query_row("SELECT EXISTS(SELECT 1 FROM users)", [], |r| r.get(0))?;
        if any {
            return Ok(None);
        }
        let now = timestamp::now();
        tx.execute(
            "INSERT INTO users (id, name, token, is_delete, created_at, updated_at)
             VALUES (?1, 'root', ?2, 0, ?3, ?3)",
            params![ROOT_ID, new_token(), now],
        )?;
        let user = tx.query_row(
            &format!("SELECT {COLUMNS} FROM users WHERE id = ?1"),
            [ROOT_ID],
            from_row,
        )?;
        tx.commit()?;
        Ok(Some(user))
    }

    pub fn user(&self, id: i64) -> Result<User, StoreError> {
        self.conn()?
            .query_row(
                &format!("SELECT {COLUMNS} FROM users WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()?
            .ok_or(StoreError::NotFound)
    }

    pub fn list_users(&self, include_deleted: bool) -> Result<Vec<User>, StoreError> {
        let conn = self.conn()?;
        let sql = if include_deleted {
            format!("SELECT {COLUMNS} FROM users ORDER BY id")
        } else {
            format!("SELECT {COLUMNS} FROM users WHERE is_delete = 0 ORDER BY id")
        };
        let mut stmt = conn.prepare(&sql)?;
        let users = stmt.query_map([], from_row)?.collect::<Result<_, _>>()?;
        Ok(users)
    }

    pub fn add_user(&self, name: &str) -> Result<User, StoreError> {
        let conn = self.conn()?;
        let now = timestamp::now();
        conn.execute(
            "INSERT INTO users (name, token, is_delete, created_at, updated_at)
             VALUES (?1, ?2, 0, ?3, ?3)",
            params![name, new_token(), now],
        )
        .map_err(unique)?;
        let id = conn.last_insert_rowid();
        drop(conn);
        self.user(id)
    }

    /// Soft-deletes a live user; `NotFound` if there is no live user with that id.
    pub fn delete_user(&self, id: i64) -> Result<(), StoreError> {
        let n = self.conn()?.execute(
            "UPDATE users SET is_delete = 1, updated_at = ?2 WHERE id = ?1 AND is_delete = 0",
            params![id, timestamp::now()],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Gives a live user a new token (fresh UUID unless `token` is given).
    pub fn reset_token(&self, id: i64, token: Option<&str>) -> Result<User, StoreError> {
        let token = token.map(str::to_string).unwrap_or_else(new_token);
        let n = self
            .conn()?
            .execute(
                "UPDATE users SET token = ?2, updated_at = ?3 WHERE id = ?1 AND is_delete = 0",
                params![id, token, timestamp::now()],
            )
            .map_err(unique)?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        self.user(id)
    }

    /// Inserts users as exported, keeping ids and tokens; existing ids are updated in place.
    pub fn import_users(&self, users: &[User]) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for u in users {
            tx.execute(
                "INSERT INTO users (id, name, token, is_delete, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET name = excluded.name, token = excluded.token,
                   is_delete = excluded.is_delete, updated_at = excluded.updated_at",
                params![
                    u.id,
                    u.name,
                    u.token,
                    u.is_delete,
                    u.created_at,
                    u.updated_at
                ],
            )
            .map_err(unique)?;
        }
        tx.commit()?;
        Ok(users.len())
    }
}
