//! Usage records: one per proxied request, and the totals reports read.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Where a record's token numbers came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageSource {
    /// Reported by the upstream.
    #[default]
    Upstream,
    /// Counted by catgate with tiktoken.
    Estimated,
    /// No upstream answer, a non-2xx answer, or nothing measurable.
    None,
}

impl UsageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Upstream => "upstream",
            UsageSource::Estimated => "estimated",
            UsageSource::None => "none",
        }
    }

    pub fn parse(text: &str) -> UsageSource {
        match text {
            "upstream" => UsageSource::Upstream,
            "estimated" => UsageSource::Estimated,
            _ => UsageSource::None,
        }
    }
}

/// One metered request. `request_id` is unique, so inserting the same record twice is a no-op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub request_id: String,
    pub user_id: i64,
    pub key_id: Option<i64>,
    pub model: String,
    pub route: String,
    pub prompt_tokens: u64,
    #[serde(default)]
    pub cached_tokens: u64,
    #[serde(default)]
    pub cache_write_tokens: u64,
    #[serde(default)]
    pub audio_input_tokens: u64,
    pub completion_tokens: u64,
    #[serde(default)]
    pub reasoning_tokens: u64,
    #[serde(default)]
    pub audio_output_tokens: u64,
    pub total_tokens: u64,
    #[serde(default)]
    pub service_tier: Option<String>,
    #[serde(default)]
    pub usage_source: UsageSource,
    /// Exact cost in USD; `None` = unpriced (unknown model).
    pub cost: Option<Decimal>,
    pub stream: bool,
    pub status: u16,
    pub latency_ms: u64,
    pub attempts: u32,
    pub created_at: String,
}

impl UsageRecord {
    /// The record's UTC day, `YYYY-MM-DD` (the stored time is fixed-width RFC 3339).
    pub fn day(&self) -> &str {
        self.created_at.get(..10).unwrap_or(&self.created_at)
    }

    pub fn estimated(&self) -> bool {
        self.usage_source == UsageSource::Estimated
    }

    /// The cost as text, `NULL` when unpriced (for logs and tests).
    pub fn cost_text(&self) -> String {
        self.cost
            .map_or_else(|| "NULL".to_string(), |c| c.to_string())
    }

    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Per-user totals over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageTotal {
    pub user_id: i64,
    pub total_tokens: i64,
    pub cost: Decimal,
}

/// A record's count as the rollup adds it: capped (far above the plausibility bound, which
/// settled records never exceed) so that no sum can overflow an i64 however odd the stored
/// data — millions of records at the cap still fit.
pub const ROLLUP_CAP: u64 = 1_000_000_000_000;
/// The highest plausibility bound `[metering] max_tokens_per_request` may be set to.
pub const MAX_PLAUSIBLE_TOKENS: u64 = 1_000_000_000;

/// The tier a record is reported under.
pub fn tier_of(service_tier: Option<&str>) -> &str {
    service_tier.filter(|t| !t.is_empty()).unwrap_or("default")
}
