//! Model prices and the cost of one request, in exact decimals (money is never a float).
//!
//! Lookup runs per request: an exact `HashMap` hit first, else the longest configured name that
//! is a plain string prefix of the model (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`), also trying
//! the OpenAI spelling of Azure names (`gpt-35-turbo` → `gpt-3.5-turbo`).

use std::borrow::Cow;
use std::collections::HashMap;

use rust_decimal::Decimal;

/// USD per 1K tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: Decimal,
    pub output: Decimal,
}

/// The default table from api.md: (model, input, output), USD per 1K tokens.
const DEFAULTS: &[(&str, &str, &str)] = &[
    ("gpt-3.5-turbo", "0.0015", "0.002"),
    ("gpt-4", "0.03", "0.06"),
    ("gpt-4-32k", "0.06", "0.12"),
    ("gpt-4-turbo", "0.01", "0.03"),
    ("gpt-4o", "0.0025", "0.01"),
    ("gpt-4o-mini", "0.00015", "0.0006"),
    ("o1-mini", "0.003", "0.012"),
    ("o1", "0.015", "0.06"),
    ("text-embedding-3-small", "0.00002", "0"),
    ("text-embedding-3-large", "0.00013", "0"),
    ("text-embedding-ada-002", "0.0001", "0"),
];

#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    exact: HashMap<String, Price>,
    /// Every entry, longest name first (ties by name), so the first prefix hit is the longest.
    by_length: Vec<(String, Price)>,
}

impl PriceTable {
    /// The api.md default table, parsed from strings (exact decimals).
    pub fn defaults() -> Self {
        let entries = DEFAULTS.iter().filter_map(|&(model, input, output)| {
            let price = Price {
                input: Decimal::from_str_exact(input).ok()?,
                output: Decimal::from_str_exact(output).ok()?,
            };
            Some((model.to_string(), price))
        });
        Self::from_entries(entries)
    }

    pub fn from_entries(entries: impl IntoIterator<Item = (String, Price)>) -> Self {
        let mut table = Self {
            exact: entries.into_iter().collect(),
            by_length: Vec::new(),
        };
        table.reindex();
        table
    }

    /// Adds or replaces one model's price (config overrides and extends the defaults).
    pub fn insert(&mut self, model: String, price: Price) {
        self.exact.insert(model, price);
        self.reindex();
    }

    /// All entries, longest name first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Price)> {
        self.by_length.iter().map(|(m, p)| (m.as_str(), p))
    }

    /// Exact match, else longest configured prefix (plain string prefix); also tries
    /// `canonical_model(model)`. Returns the configured name that matched and its price.
    pub fn lookup(&self, model: &str) -> Option<(&str, Price)> {
        let canonical = canonical_model(model);
        let alias = matches!(canonical, Cow::Owned(_)).then_some(canonical.as_ref());
        let exact = |m: &str| self.exact.get_key_value(m).map(|(k, p)| (k.as_str(), *p));
        if let Some(hit) = exact(model).or_else(|| alias.and_then(exact)) {
            return Some(hit);
        }
        // The first hit in `by_length` is the longest; across both spellings keep the longer.
        let prefix = |m: &str| {
            self.by_length
                .iter()
                .find(|(name, _)| m.starts_with(name.as_str()))
                .map(|(name, p)| (name.as_str(), *p))
        };
        match (prefix(model), alias.and_then(prefix)) {
            (Some(a), Some(b)) if b.0.len() > a.0.len() => Some(b),
            (a, b) => a.or(b),
        }
    }

    /// prompt × input / 1000 + completion × output / 1000, exact; None for an unknown model
    /// (and for a sum beyond `Decimal`'s range, which no real token count reaches).
    pub fn cost(&self, model: &str, prompt_tokens: u64, completion_tokens: u64) -> Option<Decimal> {
        let (_, price) = self.lookup(model)?;
        let thousand = Decimal::ONE_THOUSAND;
        let input = Decimal::from(prompt_tokens).checked_mul(price.input)?;
        let output = Decimal::from(completion_tokens).checked_mul(price.output)?;
        // Dividing by 1000 only shifts the scale, so the result stays exact.
        let total = input.checked_add(output)?.checked_div(thousand)?;
        Some(total.normalize())
    }

    fn reindex(&mut self) {
        self.by_length = self.exact.iter().map(|(m, p)| (m.clone(), *p)).collect();
        self.by_length
            .sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }
}

/// Azure deployment/model names back to OpenAI's: "gpt-35-turbo" → "gpt-3.5-turbo",
/// "gpt-35-turbo-16k" → "gpt-3.5-turbo-16k"; others unchanged.
pub fn canonical_model(model: &str) -> Cow<'_, str> {
    match model.strip_prefix("gpt-35") {
        Some(rest) if rest.is_empty() || rest.starts_with('-') => {
            Cow::Owned(format!("gpt-3.5{rest}"))
        }
        _ => Cow::Borrowed(model),
    }
}
