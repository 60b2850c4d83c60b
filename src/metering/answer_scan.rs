//! Cheap readers of an upstream answer: the usage, model and service tier of a whole JSON body
//! or of one SSE event's payload, found by scanning bytes for their keys and parsing only what
//! follows, so that the common answer is never walked whole.

use std::borrow::Cow;

use memchr::memmem;
use serde::Deserialize;
use serde_json::Value;

use super::usage::Usage;
use super::usage_wire::RawUsage;

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
#[path = "answer_scan_tests.rs"]
mod tests;
