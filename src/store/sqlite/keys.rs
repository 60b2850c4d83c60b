//! Upstream keys in SQLite.

use rusqlite::{params, Connection, Row, TransactionBehavior};

use crate::store::keys::{
    ApiType, Disabled, HealthColumns, HealthGuard, Key, NewKey, StoredKey, KEY_NAME_TAKEN,
};
use crate::store::StoreError;
use crate::timestamp;

const COLUMNS: &str = "id, key, name, api_type, endpoint, created_at, updated_at, is_delete, \
    disabled_reason, disabled_at, probe_at, probe_interval_secs";

fn from_row(r: &Row<'_>) -> rusqlite::Result<StoredKey> {
    let api: String = r.get(3)?;
    Ok(StoredKey {
        key: Key {
            id: r.get(0)?,
            key: r.get(1)?,
            name: r.get(2)?,
            api_type: ApiType::parse(&api).unwrap_or(ApiType::OpenAi),
            endpoint: r.get(4)?,
            created_at: r.get(5)?,
            updated_at: r.get(6)?,
            disabled: HealthColumns(r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?).disabled(),
        },
        is_delete: r.get(7)?,
    })
}

/// Sets (or with `None` clears) the health of live key `id` when `guard` allows.
pub(super) fn set_key_health(
    conn: &Connection,
    id: i64,
    guard: HealthGuard,
    disabled: Option<&Disabled>,
) -> Result<bool, StoreError> {
    let only = guard.condition();
    let HealthColumns(reason, at, probe_at, interval) = HealthColumns::of(disabled);
    let n = conn.execute(
        &format!(
            "UPDATE keys SET disabled_reason = ?2, disabled_at = ?3, probe_at = ?4,
               probe_interval_secs = ?5
             WHERE id = ?1 AND is_delete = 0 {only}"
        ),
        params![id, reason, at, probe_at, interval],
    )?;
    Ok(n > 0)
}

/// Every key, deleted ones too, ordered by id.
pub(super) fn all_keys(conn: &Connection) -> Result<Vec<StoredKey>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM keys ORDER BY id"))?;
    let keys = stmt.query_map([], from_row)?.collect::<Result<_, _>>()?;
    Ok(keys)
}

pub(super) fn list_keys(conn: &Connection) -> Result<Vec<Key>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM keys WHERE is_delete = 0 ORDER BY id"
    ))?;
    let keys = stmt
        .query_map([], |r| from_row(r).map(|k| k.key))?
        .collect::<Result<_, _>>()?;
    Ok(keys)
}

pub(super) fn add_key(conn: &mut Connection, new: &NewKey<'_>) -> Result<Key, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let taken: bool = tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM keys WHERE name = ?1 AND is_delete = 0)",
        [new.name],
        |r| r.get(0),
    )?;
    if taken {
        return Err(StoreError::Conflict(KEY_NAME_TAKEN));
    }
    let now = timestamp::now();
    tx.execute(
        "INSERT INTO keys (key, name, api_type, endpoint, is_delete, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5)",
        params![new.key, new.name, new.api_type.as_str(), new.endpoint, now],
    )?;
    let key = tx.query_row(
        &format!("SELECT {COLUMNS} FROM keys WHERE id = ?1"),
        [tx.last_insert_rowid()],
        from_row,
    )?;
    tx.commit()?;
    Ok(key.key)
}

pub(super) fn delete_key(conn: &Connection, id: i64) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE keys SET is_delete = 1, updated_at = ?2 WHERE id = ?1 AND is_delete = 0",
        params![id, timestamp::now()],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Inserts keys with their ids (`catgate copy`); the target must hold none.
pub(super) fn import_keys(conn: &mut Connection, keys: &[StoredKey]) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for k in keys {
        let key = &k.key;
        let HealthColumns(reason, at, probe_at, interval) =
            HealthColumns::of(key.disabled.as_ref());
        tx.execute(
            "INSERT INTO keys (id, key, name, api_type, endpoint, is_delete, created_at, updated_at,
               disabled_reason, disabled_at, probe_at, probe_interval_secs)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT(id) DO UPDATE SET key = excluded.key, name = excluded.name,
               api_type = excluded.api_type, endpoint = excluded.endpoint,
               is_delete = excluded.is_delete, updated_at = excluded.updated_at,
               disabled_reason = excluded.disabled_reason, disabled_at = excluded.disabled_at,
               probe_at = excluded.probe_at, probe_interval_secs = excluded.probe_interval_secs",
            params![
                key.id,
                key.key,
                key.name,
                key.api_type.as_str(),
                key.endpoint,
                k.is_delete,
                key.created_at,
                key.updated_at,
                reason,
                at,
                probe_at,
                interval
            ],
        )?;
    }
    tx.commit()?;
    Ok(keys.len())
}
