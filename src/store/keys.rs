//! Upstream keys. Deletion is soft so usage rows keep a valid `key_id`; deleted keys are never
//! listed or used again and their name is freed.

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::{conflict_on_unique, Store, StoreError};
use crate::timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ApiType {
    #[serde(rename = "openai")]
    OpenAi,
    #[serde(rename = "azure_openai")]
    Azure,
}

impl ApiType {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiType::OpenAi => "openai",
            ApiType::Azure => "azure_openai",
        }
    }

    /// Accepts the contract's spellings; `azure` is an alias.
    pub fn parse(text: &str) -> Option<ApiType> {
        match text {
            "openai" => Some(ApiType::OpenAi),
            "azure_openai" | "azure" => Some(ApiType::Azure),
            _ => None,
        }
    }
}

/// A stored upstream credential, as the opencatd API shows it. `Debug` hides the secret.
#[derive(Clone, Serialize)]
pub struct Key {
    pub id: i64,
    pub key: String,
    pub name: String,
    #[serde(rename = "ApiType")]
    pub api_type: ApiType,
    pub endpoint: String,
    #[serde(rename = "createdAt")]
    pub created_at: String,
    #[serde(rename = "updatedAt")]
    pub updated_at: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .field("name", &self.name)
            .field("api_type", &self.api_type)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

const COLUMNS: &str = "id, key, name, api_type, endpoint, created_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Key> {
    let api: String = r.get(3)?;
    Ok(Key {
        id: r.get(0)?,
        key: r.get(1)?,
        name: r.get(2)?,
        api_type: ApiType::parse(&api).unwrap_or(ApiType::OpenAi),
        endpoint: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

/// A validated key to insert.
pub struct NewKey<'a> {
    pub key: &'a str,
    pub name: &'a str,
    pub api_type: ApiType,
    pub endpoint: &'a str,
}

impl Store {
    pub fn list_keys(&self) -> Result<Vec<Key>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM keys WHERE is_delete = 0 ORDER BY id"
        ))?;
        let keys = stmt.query_map([], from_row)?.collect::<Result<_, _>>()?;
        Ok(keys)
    }

    pub fn add_key(&self, new: &NewKey<'_>) -> Result<Key, StoreError> {
        let conn = self.conn()?;
        let now = timestamp::now();
        conn.execute(
            "INSERT INTO keys (key, name, api_type, endpoint, is_delete, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5)",
            params![new.key, new.name, new.api_type.as_str(), new.endpoint, now],
        )
        .map_err(|e| conflict_on_unique(e, "key name already exists"))?;
        let id = conn.last_insert_rowid();
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM keys WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()?
        .ok_or(StoreError::NotFound)
    }

    pub fn delete_key(&self, id: i64) -> Result<(), StoreError> {
        let n = self.conn()?.execute(
            "UPDATE keys SET is_delete = 1, updated_at = ?2 WHERE id = ?1 AND is_delete = 0",
            params![id, timestamp::now()],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
