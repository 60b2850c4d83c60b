//! Users in PostgreSQL. Name and token uniqueness are the database's (unique indexes), so two
//! replicas adding the same name at once get one user and one 409.

use tokio_postgres::{Client, Row};

use super::{conflict, sync_sequence};
use crate::store::users::{new_token, User, NAME_TAKEN, ROOT_ID, TOKEN_TAKEN};
use crate::store::StoreError;
use crate::timestamp;

const COLUMNS: &str = "id, name, token, is_delete, created_at, updated_at";

fn from_row(r: &Row) -> User {
    User {
        id: r.get(0),
        name: r.get(1),
        token: r.get(2),
        is_delete: r.get(3),
        created_at: r.get(4),
        updated_at: r.get(5),
    }
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
            "INSERT INTO users (id, name, token, is_delete, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, token = excluded.token,
               is_delete = excluded.is_delete, updated_at = excluded.updated_at",
            &[
                &u.id,
                &u.name,
                &u.token,
                &u.is_delete,
                &u.created_at,
                &u.updated_at,
            ],
        )
        .await
        .map_err(unique)?;
    }
    sync_sequence(&tx, "users").await?;
    tx.commit().await?;
    Ok(list.len())
}
