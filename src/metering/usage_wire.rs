//! Usage as upstreams send it: the lenient wire form of a `usage` object, in Chat Completions
//! names with the Responses API's as aliases.
//!
//! Upstream numbers are not trusted blindly: a detail that is negative, fractional or not a
//! number reads as 0 and marks the usage `suspect`; a top-level count that is not a
//! non-negative integer makes the whole usage unreadable (the request is then estimated).

use std::fmt;

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::usage::Usage;

/// A count as sent: a non-negative integer, or anything else (`bogus`, read as 0).
#[derive(Debug, Clone, Copy, Default)]
struct Count {
    value: u64,
    bogus: bool,
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        const BOGUS: Count = Count {
            value: 0,
            bogus: true,
        };
        impl<'de> Visitor<'de> for CountVisitor {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a token count")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Count, E> {
                Ok(Count {
                    value: v,
                    bogus: false,
                })
            }
            fn visit_i64<E>(self, v: i64) -> Result<Count, E> {
                Ok(u64::try_from(v).map_or(BOGUS, |value| Count {
                    value,
                    bogus: false,
                }))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Count, E> {
                Ok(BOGUS)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Count, E> {
                Ok(BOGUS)
            }
            fn visit_str<E>(self, _: &str) -> Result<Count, E> {
                Ok(BOGUS)
            }
            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count::default())
            }
            fn visit_none<E>(self) -> Result<Count, E> {
                Ok(Count::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Count, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(BOGUS)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Count, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(BOGUS)
            }
        }
        d.deserialize_any(CountVisitor)
    }
}

#[derive(Deserialize, Default)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Count,
    #[serde(default)]
    cache_write_tokens: Count,
    #[serde(default)]
    audio_tokens: Count,
}

#[derive(Deserialize, Default)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Count,
    #[serde(default)]
    audio_tokens: Count,
}

/// The wire shape of `usage`: Chat Completions names, with the Responses API's as aliases.
#[derive(Deserialize)]
pub(crate) struct RawUsage {
    #[serde(alias = "input_tokens")]
    prompt_tokens: Count,
    #[serde(default, alias = "output_tokens")]
    completion_tokens: Option<Count>,
    #[serde(default)]
    total_tokens: Option<Count>,
    #[serde(default, alias = "input_tokens_details")]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default, alias = "output_tokens_details")]
    completion_tokens_details: Option<CompletionDetails>,
}

impl RawUsage {
    /// `None` when a top-level count is not a non-negative integer: such numbers cannot be
    /// billed, so the request is estimated instead.
    pub(crate) fn into_usage(self) -> Option<Usage> {
        let completion = self.completion_tokens.unwrap_or_default();
        let total = self.total_tokens;
        if self.prompt_tokens.bogus || completion.bogus || total.is_some_and(|t| t.bogus) {
            return None;
        }
        let prompt = self.prompt_tokens.value;
        let p = self.prompt_tokens_details.unwrap_or_default();
        let c = self.completion_tokens_details.unwrap_or_default();
        let details = [
            p.cached_tokens,
            p.cache_write_tokens,
            p.audio_tokens,
            c.reasoning_tokens,
            c.audio_tokens,
        ];
        Some(Usage {
            prompt_tokens: prompt,
            cached_tokens: p.cached_tokens.value,
            cache_write_tokens: p.cache_write_tokens.value,
            audio_input_tokens: p.audio_tokens.value,
            completion_tokens: completion.value,
            reasoning_tokens: c.reasoning_tokens.value,
            audio_output_tokens: c.audio_tokens.value,
            total_tokens: total.map_or(prompt.saturating_add(completion.value), |t| t.value),
            suspect: details.iter().any(|d| d.bogus),
        })
    }
}
