//! What the proxy needs to know about a client's request body, and the one rewrite it may
//! make: asking for `stream_options.include_usage` on streaming (chat) completions.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The few request fields that steer routing and metering.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub model: Option<String>,
    pub stream: bool,
    /// The client's own `stream_options.include_usage`, if it set one.
    pub include_usage: Option<bool>,
    /// The output cap the client set (`max_tokens`, `max_completion_tokens` or
    /// `max_output_tokens`): the worst case a budget reserves.
    pub max_tokens: Option<u64>,
    /// Choices asked for (`n`); each may produce up to `max_tokens`.
    pub n: Option<u64>,
    /// The `service_tier` asked for (`priority` costs more).
    pub service_tier: Option<String>,
}

/// The output cap among `max_completion_tokens`, `max_tokens`, `max_output_tokens` (in that
/// order); anything but a whole number counts as absent.
fn output_cap(fields: [&Option<serde_json::Value>; 3]) -> Option<u64> {
    fields
        .into_iter()
        .find_map(|v| v.as_ref().and_then(serde_json::Value::as_u64))
}

/// The fields [`Inspected`] is made of, as the client sent them. One shape for bodies in
/// memory and bodies read from their file; everything else in the body is skipped unkept.
#[derive(Deserialize)]
struct Peek {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<serde_json::Value>,
    /// `Some` whenever the key is there, `null` included (the splice needs to know).
    #[serde(default, deserialize_with = "present_value")]
    stream_options: Option<serde_json::Value>,
    #[serde(default)]
    max_tokens: Option<serde_json::Value>,
    #[serde(default)]
    max_completion_tokens: Option<serde_json::Value>,
    #[serde(default)]
    max_output_tokens: Option<serde_json::Value>,
    #[serde(default)]
    n: Option<serde_json::Value>,
    #[serde(default)]
    service_tier: Option<serde_json::Value>,
}

fn present_value<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

impl Peek {
    /// What the proxy keeps, and whether the body has a `stream_options` key.
    fn into_inspected(self) -> (Inspected, bool) {
        let include_usage = self
            .stream_options
            .as_ref()
            .and_then(|o| o.get("include_usage"))
            .and_then(serde_json::Value::as_bool);
        let inspected = Inspected {
            model: self.model.filter(|m| !m.is_empty()),
            stream: matches!(self.stream, Some(serde_json::Value::Bool(true))),
            include_usage,
            max_tokens: output_cap([
                &self.max_completion_tokens,
                &self.max_tokens,
                &self.max_output_tokens,
            ]),
            n: self.n.as_ref().and_then(serde_json::Value::as_u64),
            service_tier: self
                .service_tier
                .as_ref()
                .and_then(serde_json::Value::as_str)
                .map(str::to_string),
        };
        (inspected, self.stream_options.is_some())
    }
}

/// Reads the fields of [`Inspected`] from a JSON object body; anything else (multipart,
/// empty, malformed) yields the defaults and is forwarded untouched.
pub fn inspect(body: &[u8]) -> Inspected {
    if !starts_object(body) {
        return Inspected::default();
    }
    match serde_json::from_slice::<Peek>(body) {
        Ok(peek) => peek.into_inspected().0,
        Err(_) => Inspected::default(),
    }
}

/// [`inspect`] for a body too large to hold in memory, parsed as it is read. Also says whether
/// the body has a `stream_options` key (the splice for such bodies only handles its absence).
pub fn inspect_reader(reader: impl std::io::Read) -> (Inspected, bool) {
    match serde_json::from_reader::<_, Peek>(reader) {
        Ok(peek) => peek.into_inspected(),
        Err(_) => (Inspected::default(), false),
    }
}

/// The body with `stream_options.include_usage = true`, every other byte as sent. Without a
/// `stream_options` key the member is spliced in after the opening brace; an object value gets
/// `include_usage` the same way, or just the bytes of its existing `include_usage` value
/// replaced (its other options keep their bytes and order); `null` or any other value becomes
/// `{"include_usage":true}`. `None` (forward unchanged) unless the body is a JSON object.
pub fn with_include_usage(body: &Bytes) -> Option<Bytes> {
    #[derive(Deserialize)]
    struct Top<'a> {
        #[serde(borrow, default, deserialize_with = "present")]
        stream_options: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Options<'a> {
        #[serde(borrow, default, deserialize_with = "present")]
        include_usage: Option<&'a RawValue>,
    }
    if !starts_object(body) {
        return None;
    }
    let top: Top<'_> = serde_json::from_slice(body).ok()?;
    let Some(options) = top.stream_options else {
        let out = with_first_member(body, r#""stream_options":{"include_usage":true}"#)?;
        return Some(Bytes::from(out));
    };
    let options = options.get().as_bytes();
    let parsed = starts_object(options)
        .then(|| serde_json::from_slice::<Options<'_>>(options).ok())
        .flatten();
    let new_options = match parsed {
        Some(Options {
            include_usage: Some(old),
        }) => replaced(options, old.get().as_bytes(), b"true")?,
        Some(Options {
            include_usage: None,
        }) => with_first_member(options, r#""include_usage":true"#)?,
        None => br#"{"include_usage":true}"#.to_vec(),
    };
    replaced(body, options, &new_options).map(Bytes::from)
}

/// The body with `"model":"<model>"` as its first member, every other byte as sent; `None`
/// unless the body is a JSON object.
pub fn with_model(body: &Bytes, model: &str) -> Option<Bytes> {
    if !starts_object(body) {
        return None;
    }
    let member = String::from_utf8(model_member(model)).ok()?;
    with_first_member(body, &member).map(Bytes::from)
}

/// `"model":"<model>"`, the model JSON-escaped.
pub fn model_member(model: &str) -> Vec<u8> {
    let mut member = br#""model":"#.to_vec();
    member.extend_from_slice(serde_json::Value::from(model).to_string().as_bytes());
    member
}

/// `Some` for any value, `null` included (plain `Option` would turn `null` into `None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn starts_object(text: &[u8]) -> bool {
    text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// The object `text` with `member` inserted before its first member.
fn with_first_member(text: &[u8], member: &str) -> Option<Vec<u8>> {
    let open = text.iter().position(|b| *b == b'{')?;
    let rest = text.get(open + 1..)?;
    // `{}` takes the member without the comma that would separate it from the next.
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let mut out = Vec::with_capacity(text.len() + member.len() + 1);
    out.extend_from_slice(text.get(..=open)?);
    out.extend_from_slice(member.as_bytes());
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Some(out)
}

/// `text` with `part` (a slice of it, as serde_json's borrowed `RawValue`s are) replaced.
fn replaced(text: &[u8], part: &[u8], with: &[u8]) -> Option<Vec<u8>> {
    let start = (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    let mut out = Vec::with_capacity(text.len() - part.len() + with.len());
    out.extend_from_slice(text.get(..start)?);
    out.extend_from_slice(with);
    out.extend_from_slice(text.get(end..)?);
    Some(out)
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
    fn adds_a_model_keeping_every_other_byte() {
        let body = Bytes::from_static(b" {\"messages\": [ ]}");
        let out = with_model(&body, "gpt-\"x").unwrap();
        assert_eq!(&out[..], b" {\"model\":\"gpt-\\\"x\",\"messages\": [ ]}");
        let out = with_model(&Bytes::from_static(b"{}"), "m").unwrap();
        assert_eq!(&out[..], br#"{"model":"m"}"#);
        assert_eq!(with_model(&Bytes::from_static(b""), "m"), None);
    }

    #[test]
    fn splices_into_an_empty_object() {
        let out = with_include_usage(&Bytes::from_static(b"{ }")).unwrap();
        assert_eq!(&out[..], br#"{"stream_options":{"include_usage":true} }"#);
    }

    #[test]
    fn rewrites_existing_stream_options() {
        let body = Bytes::from_static(
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":false}}"#,
        );
        let out = with_include_usage(&body).unwrap();
        assert_eq!(
            &out[..],
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#
        );
        // Other options keep their bytes and order; `include_usage` is added first.
        let body = Bytes::from_static(br#"{"stream_options":{"z":1.10,"a":[ 2 ]}}"#);
        let out = with_include_usage(&body).unwrap();
        assert_eq!(
            &out[..],
            br#"{"stream_options":{"include_usage":true,"z":1.10,"a":[ 2 ]}}"#
        );
        for other in [&b"null"[..], b"7", b"[true]", b"\"x\""] {
            let body = [&br#"{"stream_options":"#[..], other, b"}"].concat();
            let out = with_include_usage(&Bytes::from(body)).unwrap();
            assert_eq!(&out[..], br#"{"stream_options":{"include_usage":true}}"#);
        }
        assert_eq!(with_include_usage(&Bytes::from_static(b"[{}]")), None);
    }
}
