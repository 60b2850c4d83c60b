//! What reports are made of: the dimensions a report groups by and its rows.

use rust_decimal::Decimal;

/// What a report can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    User,
    Model,
    Key,
    Day,
    Tier,
}

impl Dimension {
    pub const ALL: [Dimension; 5] = [
        Dimension::User,
        Dimension::Model,
        Dimension::Key,
        Dimension::Day,
        Dimension::Tier,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dimension::User => "user",
            Dimension::Model => "model",
            Dimension::Key => "key",
            Dimension::Day => "day",
            Dimension::Tier => "tier",
        }
    }

    pub fn parse(text: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.name() == text)
    }
}

/// One report row: the grouped identity (unset dimensions are `None`) and the sums.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportRow {
    pub user: Option<(i64, String)>,
    pub model: Option<String>,
    /// `Some((None, None))` for records that never reached a key.
    pub key: Option<(Option<i64>, Option<String>)>,
    pub day: Option<String>,
    pub tier: Option<String>,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub cached_tokens: i64,
    pub cache_write_tokens: i64,
    pub completion_tokens: i64,
    pub reasoning_tokens: i64,
    pub audio_input_tokens: i64,
    pub audio_output_tokens: i64,
    pub total_tokens: i64,
    pub cost: Decimal,
    pub estimated_requests: i64,
    pub unpriced_requests: i64,
    pub failed_requests: i64,
}

/// What `reprice` changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Repriced {
    pub records: u64,
    pub changed: u64,
    pub total_before: Decimal,
    pub total_after: Decimal,
}

impl Repriced {
    /// Counts one record priced `before` and now `after`; true if its cost changes. Shared by
    /// the backends so that both sum the same way.
    pub fn count(&mut self, before: Option<Decimal>, after: Option<Decimal>) -> bool {
        self.records += 1;
        self.total_before = self.total_before.saturating_add(before.unwrap_or_default());
        self.total_after = self.total_after.saturating_add(after.unwrap_or_default());
        let changed = before != after;
        self.changed += u64::from(changed);
        changed
    }
}
