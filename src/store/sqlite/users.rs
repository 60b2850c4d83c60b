//! Users in SQLite. Conflicts are found by a check inside the write's transaction, never by
//! reading an error message.

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::store::limits::Limits;
use crate::store::users::{new_token, User, NAME_TAKEN, ROOT_ID, TOKEN_TAKEN};
use crate::store::StoreError;
use crate::timestamp;

const COLUMNS: &str = "id, name, token, is_delete, created_at, updated_at,
    monthly_budget, daily_budget, rpm, max_concurrent";

fn from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    let money = |i: usize| -> rusqlite::Result<_> {
        Ok(r.get::<_, Option<String>>(i)?.and_then(|t| t.parse().ok()))
    };
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        token: r.get(2)?,
        is_delete: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
        limits: Limits {
            monthly_budget: money(6)?,
            daily_budget: money(7)?,
            rpm: r.get(8)?,
            max_concurrent: r.get(9)?,
        },
    })
}

/// Replaces a live user's limits.
pub(super) fn set_limits(conn: &mut Connection, id: i64, l: &Limits) -> Result<User, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = tx.execute(
        "UPDATE users SET monthly_budget = ?2, daily_budget = ?3, rpm = ?4, max_concurrent = ?5,
           updated_at = ?6 WHERE id = ?1 AND is_delete = 0",
        params![
            id,
            l.monthly_budget.map(|d| d.to_string()),
            l.daily_budget.map(|d| d.to_string()),
            l.rpm,
            l.max_concurrent,
            timestamp::now()
        ],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    let user = user(&tx, id)?;
    tx.commit()?;
    Ok(user)
}

fn name_taken(c: &Connection, name: &str) -> Result<bool, StoreError> {
    Ok(c.query_row(
        "SELECT EXISTS(SELECT 1 FROM users WHERE name = ?1 AND is_delete = 0)",
        [name],
        |r| r.get(0),
    )?)
}

/// Tokens are unique across deleted users too (a revived token must not log anyone in).
fn token_taken(c: &Connection, token: &str, except: i64) -> Result<bool, StoreError> {
    Ok(c.query_row(
        "SELECT EXISTS(SELECT 1 FROM users WHERE token = ?1 AND id <> ?2)",
        params![token, except],
        |r| r.get(0),
    )?)
}

/// Creates root (id 1) if the table is empty; `None` if any user exists already.
pub(super) fn init_root(conn: &mut Connection) -> Result<Option<User>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
    let user = user(&tx, ROOT_ID)?;
    tx.commit()?;
    Ok(Some(user))
}

pub(super) fn user(conn: &Connection, id: i64) -> Result<User, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM users WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()?
    .ok_or(StoreError::NotFound)
}

pub(super) fn list_users(
    conn: &Connection,
    include_deleted: bool,
) -> Result<Vec<User>, StoreError> {
    let sql = if include_deleted {
        format!("SELECT {COLUMNS} FROM users ORDER BY id")
    } else {
        format!("SELECT {COLUMNS} FROM users WHERE is_delete = 0 ORDER BY id")
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let users = stmt.query_map([], from_row)?.collect::<Result<_, _>>()?;
    Ok(users)
}

pub(super) fn add_user(conn: &mut Connection, name: &str) -> Result<User, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if name_taken(&tx, name)? {
        return Err(StoreError::Conflict(NAME_TAKEN));
    }
    let now = timestamp::now();
    tx.execute(
        "INSERT INTO users (name, token, is_delete, created_at, updated_at)
         VALUES (?1, ?2, 0, ?3, ?3)",
        params![name, new_token(), now],
    )?;
    let user = user(&tx, tx.last_insert_rowid())?;
    tx.commit()?;
    Ok(user)
}

/// Soft-deletes a live user; `NotFound` if there is no live user with that id.
pub(super) fn delete_user(conn: &Connection, id: i64) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE users SET is_delete = 1, updated_at = ?2 WHERE id = ?1 AND is_delete = 0",
        params![id, timestamp::now()],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Gives a live user a new token (fresh UUID unless `token` is given).
pub(super) fn reset_token(
    conn: &mut Connection,
    id: i64,
    token: Option<&str>,
) -> Result<User, StoreError> {
    let token = token.map(str::to_string).unwrap_or_else(new_token);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if token_taken(&tx, &token, id)? {
        return Err(StoreError::Conflict(TOKEN_TAKEN));
    }
    let n = tx.execute(
        "UPDATE users SET token = ?2, updated_at = ?3 WHERE id = ?1 AND is_delete = 0",
        params![id, token, timestamp::now()],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    let user = user(&tx, id)?;
    tx.commit()?;
    Ok(user)
}

/// Inserts users as exported, keeping ids and tokens; existing ids are updated in place.
pub(super) fn import_users(conn: &mut Connection, users: &[User]) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for u in users {
        if token_taken(&tx, &u.token, u.id)? {
            return Err(StoreError::Conflict(TOKEN_TAKEN));
        }
        let other_live: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM users WHERE name = ?1 AND is_delete = 0 AND id <> ?2)",
            params![u.name, u.id],
            |r| r.get(0),
        )?;
        if other_live && !u.is_delete {
            return Err(StoreError::Conflict(NAME_TAKEN));
        }
        tx.execute(
            "INSERT INTO users (id, name, token, is_delete, created_at, updated_at,
               monthly_budget, daily_budget, rpm, max_concurrent)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT(id) DO UPDATE SET name = excluded.name, token = excluded.token,
               is_delete = excluded.is_delete, updated_at = excluded.updated_at,
               monthly_budget = excluded.monthly_budget, daily_budget = excluded.daily_budget,
               rpm = excluded.rpm, max_concurrent = excluded.max_concurrent",
            params![
                u.id,
                u.name,
                u.token,
                u.is_delete,
                u.created_at,
                u.updated_at,
                u.limits.monthly_budget.map(|d| d.to_string()),
                u.limits.daily_budget.map(|d| d.to_string()),
                u.limits.rpm,
                u.limits.max_concurrent,
            ],
        )?;
    }
    tx.commit()?;
    Ok(users.len())
}
