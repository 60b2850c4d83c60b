//! Token usage as upstreams report it: the [`Usage`] counts, their lenient wire form (Chat
//! Completions and Responses API names), and cheap readers for whole JSON bodies.
//!
//! Upstream numbers are not trusted blindly: a detail that is negative, fractional or not a
//! number reads as 0 and marks the usage `suspect`; details larger than their parent are cut
//! down by [`Usage::clamped`]; a top-level count that is not a non-negative integer makes the
//! whole usage unreadable (the request is then estimated).

use std::borrow::Cow;
use std::fmt;

use memchr::memmem;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Token counts of one request, in api.md's column names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    /// Part of prompt: read from the prompt cache.
    pub cached_tokens: u64,
    /// Part of prompt: written to the prompt cache.
    pub cache_write_tokens: u64,
    /// Part of prompt: audio input.
    pub audio_input_tokens: u64,
    pub completion_tokens: u64,
    /// Part of completion: hidden reasoning (priced as output).
    pub reasoning_tokens: u64,
    /// Part of completion: audio output.
    pub audio_output_tokens: u64,
    pub total_tokens: u64,
    /// A detail was negative, fractional or not a number and was read as 0.
    pub suspect: bool,
}

impl Usage {
    /// Prompt and completion only (what a tokenizer estimate or an old record knows).
    pub fn plain(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            ..Usage::default()
        }
    }

    /// The details cut to fit their parent: cached, then cache writes, then audio within the
    /// prompt; audio output and reasoning each within the completion. Pricing subtracts the
    /// prompt parts from the prompt, so they must never add up to more than it.
    pub fn clamped(&self) -> Usage {
        let mut u = *self;
        let mut prompt_left = u.prompt_tokens;
        for part in [
            &mut u.cached_tokens,
            &mut u.cache_write_tokens,
            &mut u.audio_input_tokens,
        ] {
            *part = (*part).min(prompt_left);
            prompt_left -= *part;
        }
        u.audio_output_tokens = u.audio_output_tokens.min(u.completion_tokens);
        u.reasoning_tokens = u.reasoning_tokens.min(u.completion_tokens);
        u
    }

    /// Whether the upstream's details did not fit (or were not numbers): worth a log line.
    pub fn was_inconsistent(&self) -> bool {
        self.suspect || self.clamped() != *self
    }

    /// The largest top-level count, for the plausibility bound.
    pub fn largest_count(&self) -> u64 {
        self.prompt_tokens
            .max(self.completion_tokens)
            .max(self.total_tokens)
    }

    pub fn is_zero(&self) -> bool {
        self.prompt_tokens == 0 && self.completion_tokens == 0 && self.total_tokens == 0
    }
}

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

/// What a whole JSON answer says about metering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyUsage {
    pub usage: Option<Usage>,
    pub model: Option<String>,
    pub service_tier: Option<String>,
}

/// Reads a complete non-stream JSON response body. Missing, null or malformed usage → `None`.
/// Embeddings have no completion tokens (→ 0); a missing total is prompt + completion.
pub fn from_json_body(body: &[u8]) -> BodyUsage {
    // Fast path: OpenAI puts the top-level `usage` object last; parse just that object and
    // scan for the first `model` and `service_tier` values instead of walking the whole body.
    if let Some(usage) = last_usage_object(body) {
        return BodyUsage {
            usage: Some(usage),
            model: model_of(body),
            service_tier: service_tier_of(body),
        };
    }
    // `Value` fields so that a malformed `usage` does not also lose the model, and vice versa.
    #[derive(Deserialize)]
    struct Whole {
        #[serde(default)]
        model: Option<Value>,
        #[serde(default)]
        usage: Option<Value>,
        #[serde(default)]
        service_tier: Option<Value>,
    }
    let Ok(whole) = serde_json::from_slice::<Whole>(body) else {
        return BodyUsage::default();
    };
    let text = |v: Option<Value>| match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    };
    BodyUsage {
        usage: whole
            .usage
            .and_then(|u| RawUsage::deserialize(u).ok())
            .and_then(RawUsage::into_usage),
        model: text(whole.model),
        service_tier: text(whole.service_tier),
    }
}

/// The last `"usage": {…}` in `body`, parsed. Inside JSON strings quotes are escaped, so an
/// unescaped `"usage"` followed by ':' is a key; anything unexpected falls back to a full parse.
pub fn last_usage_object(body: &[u8]) -> Option<Usage> {
    let at = memmem::rfind(body, b"\"usage\"")?;
    if at > 0 && body[at - 1] == b'\\' {
        return None;
    }
    let rest = body.get(at + 7..)?.trim_ascii_start().strip_prefix(b":")?;
    let rest = rest.trim_ascii_start();
    if !rest.starts_with(b"{") {
        return None;
    }
    let mut de = serde_json::Deserializer::from_slice(rest);
    RawUsage::deserialize(&mut de).ok()?.into_usage()
}

/// Whether `data` has a `"usage"` key whose value is an object. Inside JSON strings every quote
/// is escaped, so a match followed by ':' is a key; nested keys only cost a wasted parse.
pub fn may_carry_usage(data: &[u8]) -> bool {
    value_after_key(data, b"\"usage\"").is_some_and(|v| v.first() == Some(&b'{'))
}

/// The first non-empty string value of a `"model"` key, without parsing the whole event.
pub fn model_of(data: &[u8]) -> Option<String> {
    string_after_key(data, b"\"model\"")
}

/// The first non-empty string value of a `"service_tier"` key.
pub fn service_tier_of(data: &[u8]) -> Option<String> {
    string_after_key(data, b"\"service_tier\"")
}

fn string_after_key(data: &[u8], key: &[u8]) -> Option<String> {
    let value = value_after_key(data, key)?;
    let mut de = serde_json::Deserializer::from_slice(value);
    let text = Cow::<str>::deserialize(&mut de).ok()?;
    (!text.is_empty()).then(|| text.into_owned())
}

/// The bytes after the first occurrence of `key` used as an object key: past ':' and whitespace.
fn value_after_key<'a>(data: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut from = 0;
    while let Some(at) = memmem::find(data.get(from..)?, key) {
        let after = from + at + key.len();
        let rest = data.get(after..)?.trim_ascii_start();
        if let Some(value) = rest.strip_prefix(b":") {
            return Some(value.trim_ascii_start());
        }
        from = after;
    }
    None
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
