//! Users in PostgreSQL. Name and token uniqueness are the database's (unique indexes), so two
//! replicas adding the same name at once get one user and one 409.

use tokio_postgres::{Client, Row};

use super::{conflict, sync_sequence};
use crate::store::limits::Limits;
use crate::store::users::{new_token, User, NAME_TAKEN, ROOT_ID, TOKEN_TAKEN};
use crate::store::StoreError;
use crate::timestamp;

const COLUMNS: &str = "id, name, token, is_delete, created_at, updated_at,
    monthly_budget, daily_budget, rpm, max_concurrent";

fn from_row(r: &Row) -> User {
    User {
        id: r.get(0),
        name: r.get(1),
        token: r.get(2),
        is_delete: r.get(3),
        created_at: r.get(4),
        updated_at: r.get(5),
        limits: Limits {
            monthly_budget: r.get(6),
            daily_budget: r.get(7),
            rpm: r
                .get::<_, Option<i32>>(8)
                .and_then(|v| u32::try_from(v).ok()),
            max_concurrent: r
                .get::<_, Option<i32>>(9)
                .and_then(|v| u32::try_from(v).ok()),
        },
    }
}

/// A limit as stored (INTEGER); limits are validated far below `i32::MAX`.
fn int(v: Option<u32>) -> Option<i32> {
    v.map(|v| i32::try_from(v).unwrap_or(i32::MAX))
}

pub(super) async fn set_limits(c: &Client, id: i64, l: &Limits) -> Result<User, StoreError> {
    c.query_opt(
        &format!(
            "UPDATE users SET monthly_budget = $2, daily_budget = $3, rpm = $4,
               max_concurrent = $5, updated_at = $6
             WHERE id = $1 AND NOT is_delete RETURNING {COLUMNS}"
        ),
        &[
            &id,
            &l.monthly_budget,
            &l.daily_budget,
            &int(l.rpm),
            &int(l.max_concurrent),
            &timestamp::now(),
        ],
    )
    .await?
    .as_ref()
    .map(from_row)
    .ok_or(StoreError::NotFound)
}

/// A write that may hit either unique constraint on users.
fn unique(e: tokio_postgres::Error) -> StoreError {
    match super::violated_constraint(&e) {
        Some("users_token_key") => StoreError::Conflict(TOKEN_TAKEN),
        _ => conflict(e, "users_live_name", NAME_TAKEN),
    }
}

pub(super) async fn init_root(c: &mut Client) -> Result<Option<User>, StoreError> {
    let tx = c.transaction().await?;
    let now = timestamp::now();
    let row = tx
        .query_opt(
            &format!(
                "INSERT INTO users (id, name, token, is_delete, created_at, updated_at)
                 SELECT $1, 'root', $2, false, $3, $3 WHERE NOT EXISTS (SELECT 1 FROM users)
                 ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
            ),
            &[&ROOT_ID, &new_token(), &now],
        )
        .await?;
    sync_sequence(&tx, "users").await?;
    tx.commit().await?;
    Ok(row.as_ref().map(from_row))
}

pub(super) async fn user(c: &Client, id: i64) -> Result<User, StoreError> {
    c.query_opt(
        &format!("SELECT {COLUMNS} FROM users WHERE id = $1"),
        &[&id],
    )
    .await?
    .as_ref()
    .map(from_row)
    .ok_or(StoreError::NotFound)
}

pub(super) async fn list_users(c: &Client, include_deleted: bool) -> Result<Vec<User>, StoreError> {
    let sql = match include_deleted {
        true => format!("SELECT {COLUMNS} FROM users ORDER BY id"),
        false => format!("SELECT {COLUMNS} FROM users WHERE NOT is_delete ORDER BY id"),
    };
    Ok(c.query(&sql, &[]).await?.iter().map(from_row).collect())
}

pub(super) async fn add_user(c: &Client, name: &str) -> Result<User, StoreError> {
    // Checked first so that a refused name does not use up an id (ids stay as SQLite's); the
    // unique index still decides a race between replicas.
    let taken: bool = c
        .query_one(
            "SELECT EXISTS(SELECT 1 FROM users WHERE name = $1 AND NOT is_delete)",
            &[&name],
        )
        .await?
        .get(0);
    if taken {
        return Err(StoreError::Conflict(NAME_TAKEN));
    }
    let now = timestamp::now();
    let row = c
        .query_one(
            &format!(
                "INSERT INTO users (name, token, is_delete, created_at, updated_at)
                 VALUES ($1, $2, false, $3, $3) RETURNING {COLUMNS}"
            ),
            &[&name, &new_token(), &now],
        )
        .await
        .map_err(unique)?;
    Ok(from_row(&row))
}

pub(super) async fn delete_user(c: &Client, id: i64) -> Result<(), StoreError> {
    let n = c
        .execute(
            "UPDATE users SET is_delete = true, updated_at = $2 WHERE id = $1 AND NOT is_delete",
            &[&id, &timestamp::now()],
        )
        .await?;
    match n {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

pub(super) async fn reset_token(
    c: &Client,
    id: i64,
    token: Option<&str>,
) -> Result<User, StoreError> {
    let token = token.map(str::to_string).unwrap_or_else(new_token);
    c.query_opt(
        &format!(
            "UPDATE users SET token = $2, updated_at = $3 WHERE id = $1 AND NOT is_delete
             RETURNING {COLUMNS}"
        ),
        &[&id, &token, &timestamp::now()],
    )
    .await
    .map_err(unique)?
    .as_ref()
    .map(from_row)
    .ok_or(StoreError::NotFound)
}

pub(super) async fn import_users(c: &mut Client, list: &[User]) -> Result<usize, StoreError> {
    let tx = c.transaction().await?;
    for u in list {
        tx.execute(
            "INSERT INTO users (id, name, token, is_delete, created_at, updated_at,
               monthly_budget, daily_budget, rpm, max_concurrent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, token = excluded.token,
               is_delete = excluded.is_delete, updated_at = excluded.updated_at,
               monthly_budget = excluded.monthly_budget, daily_budget = excluded.daily_budget,
               rpm = excluded.rpm, max_concurrent = excluded.max_concurrent",
            &[
                &u.id,
                &u.name,
                &u.token,
                &u.is_delete,
                &u.created_at,
                &u.updated_at,
                &u.limits.monthly_budget,
                &u.limits.daily_budget,
                &int(u.limits.rpm),
                &int(u.limits.max_concurrent),
            ],
        )
        .await
        .map_err(unique)?;
    }
    sync_sequence(&tx, "users").await?;
    tx.commit().await?;
    Ok(list.len())
}
