//! What the proxy needs to know about a client's request body, and the one rewrite it may
//! make: asking for `stream_options.include_usage` on streaming (chat) completions.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The few request fields that steer routing and metering.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub model: Option<String>,
    pub stream: bool,
    /// The client's own `stream_options.include_usage`, if it set one.
    pub include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    stream: Option<serde_json::Value>,
    #[serde(default)]
    stream_options: Option<serde_json::Value>,
}

/// Reads `model`, `stream` and `stream_options` from a JSON object body; anything else
/// (multipart, empty, malformed) yields the defaults and is forwarded untouched.
pub fn inspect(body: &[u8]) -> Inspected {
    let starts_object = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    if !starts_object {
        return Inspected::default();
    }
    let Ok(peek) = serde_json::from_slice::<Peek<'_>>(body) else {
        return Inspected::default();
    };
    let include_usage = peek
        .stream_options
        .as_ref()
        .and_then(|o| o.get("include_usage"))
        .and_then(serde_json::Value::as_bool);
    Inspected {
        model: peek.model.map(|m| m.into_owned()).filter(|m| !m.is_empty()),
        stream: matches!(peek.stream, Some(serde_json::Value::Bool(true))),
        include_usage,
    }
}

/// The body with `stream_options.include_usage = true`, every other byte as sent. Without a
/// `stream_options` key the field is spliced in after the opening brace; otherwise only the
/// bytes of its value are replaced (an object keeps its other options; `null` or any other
/// value becomes `{"include_usage":true}`).
pub fn with_include_usage(body: &Bytes) -> Option<Bytes> {
    #[derive(Deserialize)]
    struct Raw<'a> {
        #[serde(borrow, default, deserialize_with = "present")]
        stream_options: Option<&'a RawValue>,
    }
    /// `Some` for any value, `null` included (plain `Option` would turn `null` into `None`).
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
        <&RawValue>::deserialize(d).map(Some)
    }
    let raw: Raw<'_> = serde_json::from_slice(body).ok()?;
    let (start, end, value) = match raw.stream_options {
        None => {
            let open = body.iter().position(|b| *b == b'{')?;
            (
                open + 1,
                open + 1,
                r#""stream_options":{"include_usage":true},"#.to_string(),
            )
        }
        Some(options) => {
            let text = options.get();
            let start = (text.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
            let value =
                match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text) {
                    Ok(mut map) => {
                        map.insert("include_usage".into(), serde_json::Value::Bool(true));
                        serde_json::to_string(&map).ok()?
                    }
                    Err(_) => r#"{"include_usage":true}"#.to_string(),
                };
            (start, start + text.len(), value)
        }
    };
    let mut out = BytesMut::with_capacity(body.len() + value.len());
    out.extend_from_slice(body.get(..start)?);
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(body.get(end..)?);
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspects_fields() {
        let i = inspect(br#"{"model":"gpt-4o","stream":true,"messages":[]}"#);
        assert_eq!(i.model.as_deref(), Some("gpt-4o"));
        assert!(i.stream);
        assert_eq!(i.include_usage, None);
        let i = inspect(br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#);
        assert_eq!(i.include_usage, Some(true));
        assert_eq!(inspect(b"--boundary\r\n"), Inspected::default());
        assert_eq!(inspect(b"{not json"), Inspected::default());
        assert!(!inspect(br#"{"stream":"yes"}"#).stream);
    }

    #[test]
    fn splices_include_usage_without_touching_other_bytes() {
        let body = Bytes::from_static(b" {\"model\":\"m\",\n \"stream\": true}");
        let out = with_include_usage(&body).unwrap();
        assert_eq!(
            &out[..],
            b" {\"stream_options\":{\"include_usage\":true},\"model\":\"m\",\n \"stream\": true}"
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
    }

    #[test]
    fn rewrites_existing_stream_options() {
        let body = Bytes::from_static(
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":false}}"#,
        );
        let out = with_include_usage(&body).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["model"], "m");
    }
}
