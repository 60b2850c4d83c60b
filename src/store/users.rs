//! Users: root is id 1; deletion is soft (the row and its usage stay, the name is freed).

use serde::{Deserialize, Serialize};

use super::limits::Limits;

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
    /// Extension: budgets and rate limits (`null` each = none). Older exports lack it.
    #[serde(default)]
    pub limits: Limits,
}

pub fn new_token() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Conflict messages (the `/1` API shows them as 409 bodies).
pub const NAME_TAKEN: &str = "user name already exists";
pub const TOKEN_TAKEN: &str = "token already in use";
