//! Model prices and the cost of one request, in exact decimals (money is never a float).
//!
//! Prices are USD per 1M tokens, as OpenAI prints them. The built-in table is `prices.toml`
//! (compiled in); `[pricing.models."<model>"]` in the config replaces or adds entries with the
//! same layout. Lookup runs per request: an exact `HashMap` hit first, else the longest
//! configured name that is a plain string prefix of the model (`gpt-4o-mini-2024-07-18` →
//! `gpt-4o-mini`), also trying the OpenAI spelling of Azure names (`gpt-35-turbo` →
//! `gpt-3.5-turbo`). An unknown model has no cost (`None`): never a guess, never a silent 0.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;

use super::usage::Usage;

/// The built-in table: OpenAI's list prices, dated inside the file.
const BUILTIN: &str = include_str!("../../prices.toml");

/// One set of per-1M-token prices, with api.md's fallbacks already applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    pub input: Decimal,
    pub cached_input: Decimal,
    pub cache_write: Decimal,
    pub output: Decimal,
    pub audio_input: Decimal,
    pub audio_output: Decimal,
}

impl Rates {
    /// Text-only prices: every other kind falls back to `input`/`output`.
    pub fn flat(input: Decimal, output: Decimal) -> Rates {
        Rates {
            input,
            cached_input: input,
            cache_write: input,
            output,
            audio_input: input,
            audio_output: output,
        }
    }
}

/// A model's standard prices, its service-tier tables, and an optional price per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrice {
    pub standard: Rates,
    pub tiers: BTreeMap<String, Rates>,
    pub per_request: Option<Decimal>,
}

/// A price entry that does not parse; `key` is the dotted path of the offending value.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for `{key}`: {message}")]
pub struct PriceError {
    pub key: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct PriceTable {
    exact: HashMap<String, ModelPrice>,
    /// Every name, longest first (ties by name), so the first prefix hit is the longest.
    by_length: Vec<String>,
    /// `[pricing.service_tiers]`: the multiplier for a tier a model has no table for.
    tier_multipliers: HashMap<String, Decimal>,
}

/// Tier names that mean standard prices.
fn is_standard_tier(tier: &str) -> bool {
    matches!(tier, "" | "default" | "auto" | "standard")
}

impl PriceTable {
    /// The compiled-in `prices.toml`, with the default tier multipliers (flex 0.5, priority 2).
    pub fn builtin() -> Result<Self, PriceError> {
        let doc: toml::Table = BUILTIN.parse().map_err(|e: toml::de::Error| PriceError {
            key: "prices.toml".into(),
            message: e.message().to_string(),
        })?;
        let models = match doc.get("models") {
            Some(toml::Value::Table(t)) => parse_models(t, "models")?,
            _ => Vec::new(),
        };
        let tier_multipliers = [("flex", "0.5"), ("priority", "2")]
            .into_iter()
            .map(|(t, m)| {
                (
                    t.to_string(),
                    Decimal::from_str_exact(m).unwrap_or(Decimal::ONE),
                )
            })
            .collect();
        let mut table = PriceTable {
            exact: models.into_iter().collect(),
            by_length: Vec::new(),
            tier_multipliers,
        };
        table.reindex();
        Ok(table)
    }

    /// A table of exactly these entries (no built-in ones), with the default multipliers.
    pub fn from_entries(entries: impl IntoIterator<Item = (String, ModelPrice)>) -> Self {
        let mut table = Self::builtin().unwrap_or_else(|_| PriceTable {
            exact: HashMap::new(),
            by_length: Vec::new(),
            tier_multipliers: HashMap::new(),
        });
        table.exact = entries.into_iter().collect();
        table.reindex();
        table
    }

    /// Adds or replaces one model's prices (config entries replace built-in ones whole).
    pub fn insert(&mut self, model: String, price: ModelPrice) {
        self.exact.insert(model, price);
        self.reindex();
    }

    /// Sets the multiplier for a service tier that a model has no table for.
    pub fn set_tier_multiplier(&mut self, tier: String, multiplier: Decimal) {
        self.tier_multipliers.insert(tier, multiplier);
    }

    /// All configured model names, longest first.
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.by_length.iter().map(String::as_str)
    }

    /// Exact match, else longest configured prefix (plain string prefix); also tries
    /// `canonical_model(model)`. Returns the configured name that matched and its prices.
    pub fn lookup(&self, model: &str) -> Option<(&str, &ModelPrice)> {
        let canonical = canonical_model(model);
        let alias = matches!(canonical, Cow::Owned(_)).then_some(canonical.as_ref());
        let exact = |m: &str| self.exact.get_key_value(m).map(|(k, p)| (k.as_str(), p));
        if let Some(hit) = exact(model).or_else(|| alias.and_then(exact)) {
            return Some(hit);
        }
        // The first hit in `by_length` is the longest; across both spellings keep the longer.
        let prefix = |m: &str| {
            self.by_length
                .iter()
                .find(|name| m.starts_with(name.as_str()))
                .and_then(|name| exact(name))
        };
        match (prefix(model), alias.and_then(prefix)) {
            (Some(a), Some(b)) if b.0.len() > a.0.len() => Some(b),
            (a, b) => a.or(b),
        }
    }

    /// The cost of `usage` for `model` in service `tier`, exact:
    ///
    /// ```text
    /// ((prompt − cached − cache_write − audio_in) × input + cached × cached_input
    ///   + cache_write × cache_write + audio_in × audio_input
    ///   + (completion − audio_out) × output + audio_out × audio_output) / 1M + per_request
    /// ```
    ///
    /// A tier the model has a table for uses it; another non-standard tier scales the standard
    /// cost by its multiplier. `None` for an unknown model (and for arithmetic beyond
    /// `Decimal`, which the token plausibility bound rules out).
    pub fn cost(&self, model: &str, tier: Option<&str>, usage: &Usage) -> Option<Decimal> {
        let (_, price) = self.lookup(model)?;
        let tier = tier.filter(|t| !is_standard_tier(t));
        let (rates, multiplier) = match tier {
            None => (&price.standard, Decimal::ONE),
            Some(t) => match price.tiers.get(t) {
                Some(rates) => (rates, Decimal::ONE),
                None => (
                    &price.standard,
                    self.tier_multipliers
                        .get(t)
                        .copied()
                        .unwrap_or(Decimal::ONE),
                ),
            },
        };
        let u = usage.clamped();
        let uncached =
            u.prompt_tokens - u.cached_tokens - u.cache_write_tokens - u.audio_input_tokens;
        let text_out = u.completion_tokens - u.audio_output_tokens;
        let parts = [
            (uncached, rates.input),
            (u.cached_tokens, rates.cached_input),
            (u.cache_write_tokens, rates.cache_write),
            (u.audio_input_tokens, rates.audio_input),
            (text_out, rates.output),
            (u.audio_output_tokens, rates.audio_output),
        ];
        let mut per_million = Decimal::ZERO;
        for (tokens, rate) in parts {
            per_million = per_million.checked_add(Decimal::from(tokens).checked_mul(rate)?)?;
        }
        let tokens_cost = per_million.checked_div(Decimal::from(1_000_000u32))?;
        let total = tokens_cost.checked_add(price.per_request.unwrap_or(Decimal::ZERO))?;
        Some(total.checked_mul(multiplier)?.normalize())
    }

    fn reindex(&mut self) {
        self.by_length = self.exact.keys().cloned().collect();
        self.by_length
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }
}

/// Parses `[<prefix>."<model>"]` tables (the layout of `prices.toml` and of
/// `[pricing.models]`), naming the exact key of any bad value.
pub fn parse_models(
    table: &toml::Table,
    prefix: &str,
) -> Result<Vec<(String, ModelPrice)>, PriceError> {
    table
        .iter()
        .map(|(model, value)| {
            let key = format!("{prefix}.\"{model}\"");
            let entry = value.as_table().ok_or_else(|| PriceError {
                key: key.clone(),
                message: "must be a table with `input` and `output`".into(),
            })?;
            Ok((model.clone(), model_price(entry, &key)?))
        })
        .collect()
}

fn model_price(entry: &toml::Table, key: &str) -> Result<ModelPrice, PriceError> {
    let mut tiers = BTreeMap::new();
    for (name, value) in entry {
        if let toml::Value::Table(tier) = value {
            let tier_key = format!("{key}.{name}");
            if let Some(k) = tier.keys().find(|k| k.as_str() == "per_request") {
                return Err(PriceError {
                    key: format!("{tier_key}.{k}"),
                    message: "`per_request` is set per model, not per tier".into(),
                });
            }
            tiers.insert(name.clone(), rates(tier, &tier_key)?);
        }
    }
    let per_request = entry
        .get("per_request")
        .map(|v| decimal(&format!("{key}.per_request"), v))
        .transpose()?;
    Ok(ModelPrice {
        standard: rates(entry, key)?,
        tiers,
        per_request,
    })
}

const RATE_FIELDS: &[&str] = &[
    "input",
    "cached_input",
    "cache_write",
    "output",
    "audio_input",
    "audio_output",
    "per_request",
];

/// The rates of one table; `input` and `output` are required, the rest fall back.
fn rates(table: &toml::Table, key: &str) -> Result<Rates, PriceError> {
    if let Some((k, _)) = table
        .iter()
        .find(|(k, v)| !v.is_table() && !RATE_FIELDS.contains(&k.as_str()))
    {
        return Err(PriceError {
            key: format!("{key}.{k}"),
            message: format!(
                "unknown price field; expected one of {}",
                RATE_FIELDS.join(", ")
            ),
        });
    }
    let field = |name: &str| {
        table
            .get(name)
            .map(|v| decimal(&format!("{key}.{name}"), v))
            .transpose()
    };
    let required = |name: &str| {
        field(name)?.ok_or_else(|| PriceError {
            key: format!("{key}.{name}"),
            message: "is required (USD per 1M tokens, as a string like \"1.25\")".into(),
        })
    };
    let input = required("input")?;
    let output = required("output")?;
    Ok(Rates {
        input,
        cached_input: field("cached_input")?.unwrap_or(input),
        cache_write: field("cache_write")?.unwrap_or(input),
        output,
        audio_input: field("audio_input")?.unwrap_or(input),
        audio_output: field("audio_output")?.unwrap_or(output),
    })
}

/// A non-negative exact decimal from a TOML string (or integer). A TOML float has already
/// lost exactness, so it is refused with a message that says so.
pub fn decimal(key: &str, v: &toml::Value) -> Result<Decimal, PriceError> {
    let text = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        _ => String::new(),
    };
    text.trim()
        .parse::<Decimal>()
        .ok()
        .filter(|d| !d.is_sign_negative())
        .ok_or_else(|| PriceError {
            key: key.to_string(),
            message: format!("{v} is not a non-negative decimal string like \"1.25\""),
        })
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

#[cfg(test)]
#[path = "pricing_tests.rs"]
mod tests;
