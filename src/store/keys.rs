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
    /// Why the key is out of rotation, if it is (shown by the admin API as `status*`).
    #[serde(skip)]
    pub disabled: Option<Disabled>,
}

/// A key taken out of rotation, by an admin or because the upstream refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disabled {
    /// Human text, written by catgate (never the upstream's words, which may quote the key).
    pub reason: String,
    /// Stored-form timestamp.
    pub at: String,
    /// The probe schedule; `None` for a key an admin disabled, which is never probed.
    pub probe: Option<Probe>,
}

/// When an automatically disabled key is next checked, and the wait that led there (the next
/// wait after a failed probe doubles it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Stored-form timestamp: fixed width, so text order is time order.
    pub at: String,
    pub interval_secs: u64,
}

/// The four health columns as both backends store them: reason, since, next probe, wait (all
/// NULL for a key in rotation). Only the backends use it.
pub(crate) struct HealthColumns<S>(pub Option<S>, pub Option<S>, pub Option<S>, pub Option<i64>);

impl<'a> HealthColumns<&'a str> {
    pub(crate) fn of(d: Option<&'a Disabled>) -> HealthColumns<&'a str> {
        let probe = d.and_then(|d| d.probe.as_ref());
        HealthColumns(
            d.map(|d| d.reason.as_str()),
            d.map(|d| d.at.as_str()),
            probe.map(|p| p.at.as_str()),
            probe.map(|p| i64::try_from(p.interval_secs).unwrap_or(i64::MAX)),
        )
    }
}

impl HealthColumns<String> {
    /// A row without a reason is in rotation.
    pub(crate) fn disabled(self) -> Option<Disabled> {
        let HealthColumns(reason, at, probe_at, interval) = self;
        Some(Disabled {
            reason: reason?,
            at: at.unwrap_or_default(),
            probe: probe_at.map(|at| Probe {
                at,
                interval_secs: interval.and_then(|i| u64::try_from(i).ok()).unwrap_or(0),
            }),
        })
    }
}

/// Which keys a health change may touch, so that replicas racing on one key and an admin
/// acting meanwhile cannot undo each other: an automatic change never overrides an admin's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthGuard {
    /// Any live key (the admin's enable/disable).
    Any,
    /// Only a key in rotation (an upstream rejection; a second rejection keeps the schedule).
    Enabled,
    /// Only a key on a probe schedule (a probe's result).
    Probed,
}

impl HealthGuard {
    /// The guard as an extra `WHERE` condition; both backends spell it the same.
    pub(crate) fn condition(self) -> &'static str {
        match self {
            HealthGuard::Any => "",
            HealthGuard::Enabled => "AND disabled_reason IS NULL",
            HealthGuard::Probed => "AND probe_at IS NOT NULL",
        }
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .field("name", &self.name)
            .field("api_type", &self.api_type)
            .field("endpoint", &self.endpoint)
            .field("disabled", &self.disabled)
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
