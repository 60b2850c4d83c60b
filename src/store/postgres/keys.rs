//! Upstream keys in PostgreSQL.

use tokio_postgres::{Client, Row};

use super::{conflict, sync_sequence};
use crate::store::keys::{
    ApiType, Disabled, HealthColumns, HealthGuard, Key, NewKey, StoredKey, KEY_NAME_TAKEN,
};
use crate::store::StoreError;
use crate::timestamp;

const COLUMNS: &str = "id, key, name, api_type, endpoint, created_at, updated_at, is_delete, \
    disabled_reason, disabled_at, probe_at, probe_interval_secs";

fn from_row(r: &Row) -> StoredKey {
    let api: String = r.get(3);
    StoredKey {
        key: Key {
            id: r.get(0),
            key: r.get(1),
            name: r.get(2),
            api_type: ApiType::parse(&api).unwrap_or(ApiType::OpenAi),
            endpoint: r.get(4),
            created_at: r.get(5),
            updated_at: r.get(6),
            disabled: HealthColumns(r.get(8), r.get(9), r.get(10), r.get(11)).disabled(),
        },
        is_delete: r.get(7),
    }
}

/// Sets (or with `None` clears) the health of live key `id` when `guard` allows.
pub(super) async fn set_key_health(
    c: &Client,
    id: i64,
    guard: HealthGuard,
    disabled: Option<&Disabled>,
) -> Result<bool, StoreError> {
    let only = guard.condition();
    let HealthColumns(reason, at, probe_at, interval) = HealthColumns::of(disabled);
    let n = c
        .execute(
            &format!(
                "UPDATE keys SET disabled_reason = $2, disabled_at = $3, probe_at = $4,
                   probe_interval_secs = $5
                 WHERE id = $1 AND NOT is_delete {only}"
            ),
            &[&id, &reason, &at, &probe_at, &interval],
        )
        .await?;
    Ok(n > 0)
}

pub(super) async fn all_keys(c: &Client) -> Result<Vec<StoredKey>, StoreError> {
    let rows = c
        .query(&format!("SELECT {COLUMNS} FROM keys ORDER BY id"), &[])
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

pub(super) async fn list_keys(c: &Client) -> Result<Vec<Key>, StoreError> {
    let rows = c
        .query(
            &format!("SELECT {COLUMNS} FROM keys WHERE NOT is_delete ORDER BY id"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| from_row(r).key).collect())
}

pub(super) async fn add_key(c: &Client, new: &NewKey<'_>) -> Result<Key, StoreError> {
    // As for users: a refused name must not use up an id.
    let taken: bool = c
        .query_one(
            "SELECT EXISTS(SELECT 1 FROM keys WHERE name = $1 AND NOT is_delete)",
            &[&new.name],
        )
        .await?
        .get(0);
    if taken {
        return Err(StoreError::Conflict(KEY_NAME_TAKEN));
    }
    let now = timestamp::now();
    let row = c
        .query_one(
            &format!(
                "INSERT INTO keys (key, name, api_type, endpoint, is_delete, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, false, $5, $5) RETURNING {COLUMNS}"
            ),
            &[
                &new.key,
                &new.name,
                &new.api_type.as_str(),
                &new.endpoint,
                &now,
            ],
        )
        .await
        .map_err(|e| conflict(e, "keys_live_name", KEY_NAME_TAKEN))?;
    Ok(from_row(&row).key)
}

pub(super) async fn delete_key(c: &Client, id: i64) -> Result<(), StoreError> {
    let n = c
        .execute(
            "UPDATE keys SET is_delete = true, updated_at = $2 WHERE id = $1 AND NOT is_delete",
            &[&id, &timestamp::now()],
        )
        .await?;
    match n {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

pub(super) async fn import_keys(c: &mut Client, list: &[StoredKey]) -> Result<usize, StoreError> {
    let tx = c.transaction().await?;
    for k in list {
        let key = &k.key;
        let HealthColumns(reason, at, probe_at, interval) =
            HealthColumns::of(key.disabled.as_ref());
        tx.execute(
            "INSERT INTO keys (id, key, name, api_type, endpoint, is_delete, created_at, updated_at,
               disabled_reason, disabled_at, probe_at, probe_interval_secs)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (id) DO UPDATE SET key = excluded.key, name = excluded.name,
               api_type = excluded.api_type, endpoint = excluded.endpoint,
               is_delete = excluded.is_delete, updated_at = excluded.updated_at,
               disabled_reason = excluded.disabled_reason, disabled_at = excluded.disabled_at,
               probe_at = excluded.probe_at, probe_interval_secs = excluded.probe_interval_secs",
            &[
                &key.id,
                &key.key,
                &key.name,
                &key.api_type.as_str(),
                &key.endpoint,
                &k.is_delete,
                &key.created_at,
                &key.updated_at,
                &reason,
                &at,
                &probe_at,
                &interval,
            ],
        )
        .await
        .map_err(|e| conflict(e, "keys_live_name", KEY_NAME_TAKEN))?;
    }
    sync_sequence(&tx, "keys").await?;
    tx.commit().await?;
    Ok(list.len())
}
