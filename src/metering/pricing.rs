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
    // Beyond api.md's table: without these, plain prefix matching would bill gpt-4.1 as gpt-4
    // (15x too much) and o3/o4 models not at all. OpenAI list prices, per 1K tokens.
    ("gpt-4.1", "0.002", "0.008"),
    ("gpt-4.1-mini", "0.0004", "0.0016"),
    ("gpt-4.1-nano", "0.0001", "0.0004"),
    ("o3", "0.002", "0.008"),
    ("o3-mini", "0.0011", "0.0044"),
    ("o4-mini", "0.0011", "0.0044"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn matched(table: &PriceTable, model: &str) -> Option<String> {
        table.lookup(model).map(|(name, _)| name.to_string())
    }

    #[test]
    fn defaults_are_all_there_and_exact() {
        let t = PriceTable::defaults();
        assert_eq!(t.iter().count(), DEFAULTS.len());
        let (_, p) = t.lookup("gpt-4o-mini").unwrap();
        assert_eq!(p.input.to_string(), "0.00015");
        assert_eq!(p.output.to_string(), "0.0006");
        let names: Vec<&str> = t.iter().map(|(m, _)| m).collect();
        assert_eq!(names.first(), Some(&"text-embedding-3-large"));
        assert_eq!(names.last(), Some(&"o3"));
        let (name, _) = t.lookup("gpt-4.1-2025-04-14").unwrap();
        assert_eq!(name, "gpt-4.1", "not billed as gpt-4");
    }

    #[test]
    fn longest_prefix_and_azure_names() {
        let t = PriceTable::defaults();
        for (model, want) in [
            ("gpt-4o-mini-2024-07-18", Some("gpt-4o-mini")),
            ("gpt-4o-2024-08-06", Some("gpt-4o")),
            ("gpt-4-0613", Some("gpt-4")),
            ("gpt-4-32k-0613", Some("gpt-4-32k")),
            ("gpt-4-turbo-2024-04-09", Some("gpt-4-turbo")),
            ("o1-mini-2024-09-12", Some("o1-mini")),
            ("o1-2024-12-17", Some("o1")),
            ("gpt-35-turbo", Some("gpt-3.5-turbo")),
            ("gpt-35-turbo-16k", Some("gpt-3.5-turbo")),
            ("gpt-3.5-turbo-0125", Some("gpt-3.5-turbo")),
            ("text-embedding-3-small", Some("text-embedding-3-small")),
            ("claude-3", None),
            ("gpt-3", None),
            ("", None),
        ] {
            assert_eq!(matched(&t, model).as_deref(), want, "{model}");
        }
    }

    #[test]
    fn exact_costs() {
        let t = PriceTable::defaults();
        // 10 × 0.0015 / 1000 + 45 × 0.002 / 1000 = 0.000015 + 0.00009
        assert_eq!(t.cost("gpt-3.5-turbo", 10, 45), Some(d("0.000105")));
        assert_eq!(
            t.cost("gpt-35-turbo", 10, 45).unwrap().to_string(),
            "0.000105"
        );
        // 1000 × 0.03 / 1000 + 500 × 0.06 / 1000
        assert_eq!(t.cost("gpt-4-0613", 1000, 500), Some(d("0.06")));
        // 7 × 0.00015 / 1000 + 3 × 0.0006 / 1000 = 0.00000105 + 0.0000018
        assert_eq!(
            t.cost("gpt-4o-mini-2024-07-18", 7, 3).unwrap().to_string(),
            "0.00000285"
        );
        assert_eq!(
            t.cost("text-embedding-3-small", 123, 0),
            Some(d("0.00000246"))
        );
        assert_eq!(t.cost("gpt-4", 0, 0), Some(Decimal::ZERO));
        assert_eq!(t.cost("unknown-model", 10, 10), None);
        // Far beyond any real count, still no overflow panic.
        assert!(t.cost("gpt-4", u64::MAX, u64::MAX).is_some());
    }

    #[test]
    fn config_overrides_and_extends() {
        let mut t = PriceTable::defaults();
        let p = |i: &str, o: &str| Price {
            input: d(i),
            output: d(o),
        };
        t.insert("gpt-4o".into(), p("0.005", "0.015"));
        t.insert("gpt-4o-2024-08-06".into(), p("0.0025", "0.01"));
        t.insert("gpt-35-turbo".into(), p("0.001", "0.001"));
        assert_eq!(
            t.lookup("gpt-4o-2024-05-13"),
            Some(("gpt-4o", p("0.005", "0.015")))
        );
        assert_eq!(
            matched(&t, "gpt-4o-2024-08-06").as_deref(),
            Some("gpt-4o-2024-08-06")
        );
        assert_eq!(matched(&t, "gpt-35-turbo").as_deref(), Some("gpt-35-turbo"));
        assert_eq!(
            matched(&t, "gpt-3.5-turbo").as_deref(),
            Some("gpt-3.5-turbo")
        );
        let only = PriceTable::from_entries([("m".to_string(), p("1", "2"))]);
        assert_eq!(only.cost("m-x", 1000, 1000), Some(d("3")));
        assert_eq!(only.cost("gpt-4", 1, 1), None);
    }

    #[test]
    fn canonical_names() {
        assert_eq!(canonical_model("gpt-35-turbo"), "gpt-3.5-turbo");
        assert_eq!(canonical_model("gpt-35-turbo-16k"), "gpt-3.5-turbo-16k");
        assert_eq!(
            canonical_model("gpt-35-turbo-instruct"),
            "gpt-3.5-turbo-instruct"
        );
        assert!(matches!(canonical_model("gpt-4o"), Cow::Borrowed("gpt-4o")));
        assert!(matches!(canonical_model("gpt-350"), Cow::Borrowed(_)));
    }
}
