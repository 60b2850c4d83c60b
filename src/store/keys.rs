//! Upstream keys. Deletion is soft so usage rows keep a valid `key_id`; deleted keys are never
//! listed or used again and their name is freed.

use serde::Serialize;

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

/// A validated key to insert.
pub struct NewKey<'a> {
    pub key: &'a str,
    pub name: &'a str,
    pub api_type: ApiType,
    pub endpoint: &'a str,
}

/// A key as stored, deleted ones too (`catgate copy` moves them all, so usage keeps its ids).
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub key: Key,
    pub is_delete: bool,
}

pub const KEY_NAME_TAKEN: &str = "key name already exists";
