//! Reading token usage out of upstream answers: whole JSON bodies, and SSE streams as they pass.
//!
//! The stream side runs on every chunk the proxy forwards, so it only parses an event after a
//! byte scan shows it can carry a `"usage": {` object; everything else is forwarded untouched.
//! Invariants: the usage kept is the last one seen (never a sum); `data: [DONE]` and malformed
//! events are always forwarded; only a usage-only chunk (`choices: []`) is ever removed.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use memchr::memmem;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use super::sse::{event_data, SseSplitter};

/// Cap on the stream payloads kept for estimation when the upstream sends no usage.
const RAW_DATA_CAP: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// The wire shape of `usage`. The Responses API names the counts input/output tokens.
#[derive(Deserialize)]
struct RawUsage {
    #[serde(alias = "input_tokens")]
    prompt_tokens: u64,
    #[serde(default, alias = "output_tokens")]
    completion_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
}

impl From<RawUsage> for Usage {
    fn from(raw: RawUsage) -> Self {
        let completion_tokens = raw.completion_tokens.unwrap_or(0);
        Usage {
            prompt_tokens: raw.prompt_tokens,
            completion_tokens,
            total_tokens: raw
                .total_tokens
                .unwrap_or(raw.prompt_tokens.saturating_add(completion_tokens)),
        }
    }
}

/// From a complete non-stream JSON response body: (usage, model). Missing/null/malformed usage
/// → None. Embeddings responses have usage without completion_tokens (→ 0). If total_tokens is
/// missing, total = prompt + completion.
pub fn from_json_body(body: &[u8]) -> (Option<Usage>, Option<String>) {
    // Fastest path: OpenAI puts the top-level `usage` object last; parse just that object and
    // the first `model` value instead of walking the whole body (~7k instructions per call).
    if let Some(usage) = last_usage_object(body) {
        return (Some(usage), model_of(body));
    }
    // Fast path: typed fields, no intermediate `Value`.
    #[derive(Deserialize)]
    struct Typed<'a> {
        #[serde(default, borrow)]
        model: Option<Cow<'a, str>>,
        #[serde(default)]
        usage: Option<RawUsage>,
    }
    if let Ok(typed) = serde_json::from_slice::<Typed<'_>>(body) {
        let model = typed.model.filter(|m| !m.is_empty()).map(Cow::into_owned);
        return (typed.usage.map(Usage::from), model);
    }
    // `Value` fields so that a malformed `usage` does not also lose the model, and vice versa.
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        model: Option<Value>,
        #[serde(default)]
        usage: Option<Value>,
    }
    let Ok(body) = serde_json::from_slice::<Body>(body) else {
        return (None, None);
    };
    let usage = body
        .usage
        .and_then(|u| RawUsage::deserialize(u).ok())
        .map(Usage::from);
    let model = match body.model {
        Some(Value::String(m)) if !m.is_empty() => Some(m),
        _ => None,
    };
    (usage, model)
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
    RawUsage::deserialize(&mut de).ok().map(Usage::from)
}

/// What a stream showed, once it has ended.
#[derive(Debug, Clone, Default)]
pub struct StreamOutcome {
    pub usage: Option<Usage>,
    pub model: Option<String>,
    pub saw_done: bool,
    pub events: u64,
    /// `data` payloads for estimating the completion; empty once usage was seen.
    pub raw_data: Vec<Bytes>,
}

/// A streaming meter; see the module docs.
#[derive(Debug)]
pub struct StreamMeter {
    splitter: SseSplitter,
    state: MeterState,
    /// Events to forward from the current chunk; kept to reuse its allocation.
    out: Vec<Bytes>,
}

#[derive(Debug)]
struct MeterState {
    strip_usage_chunk: bool,
    outcome: StreamOutcome,
    raw_bytes: usize,
}

impl StreamMeter {
    pub fn new(strip_usage_chunk: bool) -> Self {
        Self {
            splitter: SseSplitter::new(),
            state: MeterState {
                strip_usage_chunk,
                outcome: StreamOutcome::default(),
                raw_bytes: 0,
            },
            out: Vec::new(),
        }
    }

    /// Process one upstream chunk; returns the bytes to forward to the client now (possibly
    /// empty). When nothing is stripped, the returned bytes are zero-copy slices of the input
    /// where possible. A partial event is held until its terminator arrives.
    pub fn on_chunk(&mut self, chunk: Bytes) -> Bytes {
        let Self {
            splitter,
            state,
            out,
        } = self;
        splitter.push(chunk.clone(), |event| {
            if state.inspect(&event) {
                out.push(event);
            }
        });
        join(&chunk, out)
    }

    /// End of stream: remaining bytes to forward (trailing partial event, inspected too).
    pub fn on_end(&mut self) -> Bytes {
        match self.splitter.finish() {
            Some(event) if self.state.inspect(&event) => event,
            _ => Bytes::new(),
        }
    }

    /// What was learned: the last usage seen, the first non-empty model, whether `[DONE]` came,
    /// the number of events and, only without usage, the payloads kept for estimation.
    pub fn finish(self) -> StreamOutcome {
        self.state.outcome
    }
}

impl MeterState {
    /// Meters one event; returns whether it is forwarded.
    fn inspect(&mut self, event: &Bytes) -> bool {
        self.outcome.events += 1;
        let Some(data) = event_data(event) else {
            return true;
        };
        let data = data.trim_ascii_end();
        if data == b"[DONE]" {
            self.outcome.saw_done = true;
            return true;
        }
        if self.outcome.model.is_none() {
            self.outcome.model = model_of(data);
        }
        if may_carry_usage(data) {
            match serde_json::from_slice::<UsageChunk>(data) {
                Ok(UsageChunk {
                    choices,
                    usage,
                    response,
                }) if usage.is_some() || response.as_ref().is_some_and(|r| r.usage.is_some()) => {
                    // Chat/completions put usage at the top; the Responses API streams it
                    // inside `response.completed`'s `response`.
                    let usage = usage.or_else(|| response.and_then(|r| r.usage));
                    self.outcome.usage = usage.map(Usage::from);
                    self.outcome.raw_data = Vec::new();
                    let usage_only = choices.is_some_and(|c| c.is_empty());
                    return !(self.strip_usage_chunk && usage_only);
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "unmetered stream event"),
            }
        }
        if self.outcome.usage.is_none() && self.raw_bytes + data.len() <= RAW_DATA_CAP {
            self.raw_bytes += data.len();
            // A copy, not a slice: a slice would pin the whole read buffer it came from
            // (8 KiB+ per event), which measured ~160 KiB per open stream.
            self.outcome.raw_data.push(Bytes::copy_from_slice(data));
        }
        true
    }
}

#[derive(Deserialize)]
struct UsageChunk {
    #[serde(default)]
    choices: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    response: Option<NestedResponse>,
}

#[derive(Deserialize)]
struct NestedResponse {
    #[serde(default)]
    usage: Option<RawUsage>,
}

/// Whether `data` has a `"usage"` key whose value is an object. Inside JSON strings every quote
/// is escaped, so a match followed by ':' is a key; nested keys only cost a wasted parse.
fn may_carry_usage(data: &[u8]) -> bool {
    value_after_key(data, b"\"usage\"").is_some_and(|v| v.first() == Some(&b'{'))
}

/// The first non-empty string value of a `"model"` key, without parsing the whole event.
pub fn model_of(data: &[u8]) -> Option<String> {
    let value = value_after_key(data, b"\"model\"")?;
    let mut de = serde_json::Deserializer::from_slice(value);
    let model = Cow::<str>::deserialize(&mut de).ok()?;
    (!model.is_empty()).then(|| model.into_owned())
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

/// Where `part` starts inside `whole`, if it is a view into `whole`'s bytes.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let at = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (at + part.len() <= whole.len()).then_some(at)
}

/// The forwarded events as one `Bytes`: a slice of `chunk` when they are adjacent inside it.
fn join(chunk: &Bytes, out: &mut Vec<Bytes>) -> Bytes {
    let joined = match out.as_slice() {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => match contiguous(chunk, many) {
            Some(range) => chunk.slice(range),
            None => {
                let mut buf = BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
                many.iter().for_each(|e| buf.extend_from_slice(e));
                buf.freeze()
            }
        },
    };
    out.clear();
    joined
}

fn contiguous(chunk: &[u8], parts: &[Bytes]) -> Option<Range<usize>> {
    let start = offset_in(chunk, parts.first()?)?;
    let mut end = start;
    for part in parts {
        if offset_in(chunk, part)? != end {
            return None;
        }
        end += part.len();
    }
    Some(start..end)
}

#[derive(Deserialize)]
struct Choices<'a> {
    #[serde(borrow, default)]
    choices: Vec<Choice<'a>>,
}

/// One choice of a stream chunk (`delta`) or of a whole body (`message`), or legacy `text`.
#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: u64,
    #[serde(borrow, default, alias = "message")]
    delta: Option<Message<'a>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
    #[serde(borrow, default)]
    function_call: Option<FunctionCall<'a>>,
}

#[derive(Deserialize)]
struct ToolCall<'a> {
    #[serde(borrow, default)]
    function: Option<FunctionCall<'a>>,
}

#[derive(Deserialize)]
struct FunctionCall<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

impl Choice<'_> {
    fn append_to(&self, text: &mut String) {
        let message = self.delta.as_ref();
        let calls = message
            .and_then(|m| m.tool_calls.as_deref())
            .unwrap_or_default();
        let functions = calls
            .iter()
            .filter_map(|c| c.function.as_ref())
            .chain(message.and_then(|m| m.function_call.as_ref()));
        let function_parts = functions.flat_map(|f| [&f.name, &f.arguments]);
        let parts = message
            .into_iter()
            .flat_map(|m| [&m.content, &m.refusal])
            .chain(function_parts)
            .chain([&self.text]);
        parts.flatten().for_each(|p| text.push_str(p));
    }
}

/// Completion text from kept stream payloads: concatenation of choices[*].delta.content, plus
/// delta.tool_calls[*].function.name/arguments and legacy delta.function_call, plus
/// choices[*].text (legacy completions). Malformed payloads are skipped.
pub fn completion_text_from_stream(raw_data: &[Bytes]) -> String {
    // Per choice index, so that n > 1 streams do not interleave mid-word.
    let mut by_choice: BTreeMap<u64, String> = BTreeMap::new();
    for data in raw_data {
        let Ok(chunk) = serde_json::from_slice::<Choices>(data) else {
            continue;
        };
        for choice in &chunk.choices {
            choice.append_to(by_choice.entry(choice.index).or_default());
        }
    }
    by_choice.into_values().collect()
}

/// Completion text from a non-stream body (choices[*].message.content, tool_calls arguments,
/// choices[*].text).
pub fn completion_text_from_body(body: &[u8]) -> String {
    let mut text = String::new();
    if let Ok(body) = serde_json::from_slice::<Choices>(body) {
        body.choices.iter().for_each(|c| c.append_to(&mut text));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: &str = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}"#;
    const USAGE: &str = r#"{"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0}}}"#;
    const FILTER: &str = r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}"#;

    fn ev(data: &str) -> String {
        format!("data: {data}\n\n")
    }

    #[test]
    fn responses_api_stream_usage_is_found() {
        let created = r#"{"type":"response.created","response":{"id":"r1","model":"gpt-4o-2024-08-06","usage":null}}"#;
        let delta = r#"{"type":"response.output_text.delta","delta":"Hi"}"#;
        let done = r#"{"type":"response.completed","response":{"id":"r1","model":"gpt-4o-2024-08-06","usage":{"input_tokens":1000,"output_tokens":500,"total_tokens":1500}}}"#;
        let mut meter = StreamMeter::new(false);
        let text = run(&mut meter, &[&ev(created), &ev(delta), &ev(done)]);
        assert_eq!(text, [ev(created), ev(delta), ev(done)].concat());
        let o = meter.finish();
        let want = Usage {
            prompt_tokens: 1000,
            completion_tokens: 500,
            total_tokens: 1500,
        };
        assert_eq!(o.usage, Some(want));
        assert_eq!(o.model.as_deref(), Some("gpt-4o-2024-08-06"));
    }

    #[test]
    fn body_usage_fast_path_agrees_with_the_full_parse() {
        let u = |p, c, t| Usage {
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: t,
        };
        let cases: &[(&str, Option<Usage>, Option<&str>)] = &[
            (
                r#"{"model":"m1","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
                Some(u(1, 2, 3)),
                Some("m1"),
            ),
            // Text that mentions "usage" is escaped, so it is never taken for the key.
            (
                r#"{"model":"m1","choices":[{"message":{"content":"\"usage\": {\"prompt_tokens\":99}"}}],"usage":{"prompt_tokens":1,"total_tokens":1}}"#,
                Some(u(1, 0, 1)),
                Some("m1"),
            ),
            (
                r#"{"model":"m1","choices":[{"message":{"content":"\"usage\": {}"}}],"usage":null}"#,
                None,
                Some("m1"),
            ),
            (
                r#"{"model":"","usage":{"prompt_tokens":5}}"#,
                Some(u(5, 0, 5)),
                None,
            ),
            (
                r#"{"usage" : { "prompt_tokens" : 4 , "total_tokens" : 4 } , "model" : "m2"}"#,
                Some(u(4, 0, 4)),
                Some("m2"),
            ),
        ];
        for (body, usage, model) in cases {
            assert_eq!(
                from_json_body(body.as_bytes()),
                (*usage, model.map(String::from)),
                "{body}"
            );
        }
    }

    fn run(meter: &mut StreamMeter, pieces: &[&str]) -> String {
        let mut out = Vec::new();
        for p in pieces {
            out.extend_from_slice(&meter.on_chunk(Bytes::copy_from_slice(p.as_bytes())));
        }
        out.extend_from_slice(&meter.on_end());
        String::from_utf8(out).unwrap()
    }

    fn usage(p: u64, c: u64, t: u64) -> Option<Usage> {
        Some(Usage {
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: t,
        })
    }

    #[test]
    fn json_bodies() {
        let chat = br#"{"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":45,"total_tokens":55}}"#;
        assert_eq!(
            from_json_body(chat),
            (usage(10, 45, 55), Some("gpt-4o".into()))
        );
        let embed = br#"{"object":"list","model":"text-embedding-3-small","usage":{"prompt_tokens":5,"total_tokens":5}}"#;
        assert_eq!(from_json_body(embed).0, usage(5, 0, 5));
        let no_total = br#"{"usage":{"prompt_tokens":2,"completion_tokens":3}}"#;
        assert_eq!(from_json_body(no_total), (usage(2, 3, 5), None));
        let bad_usage = br#"{"model":"m","usage":{"prompt_tokens":"2"}}"#;
        assert_eq!(from_json_body(bad_usage), (None, Some("m".into())));
        assert_eq!(from_json_body(br#"{"model":"m","usage":null}"#).0, None);
        assert_eq!(from_json_body(br#"{"model":7,"usage":"x"}"#), (None, None));
        assert_eq!(from_json_body(b"<html>502</html>"), (None, None));
    }

    #[test]
    fn strips_only_the_usage_chunk_and_keeps_done() {
        let stream = [ev(FILTER), ev(CHUNK), ev(CHUNK), ev(USAGE), ev("[DONE]")].concat();
        for strip in [true, false] {
            let mut meter = StreamMeter::new(strip);
            let (a, b) = stream.split_at(stream.len() / 2);
            let out = run(&mut meter, &[a, b]);
            let want = if strip {
                stream.replace(&ev(USAGE), "")
            } else {
                stream.clone()
            };
            assert_eq!(out, want);
            let o = meter.finish();
            assert_eq!(o.usage, usage(9, 12, 21));
            assert_eq!(o.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
            assert!(o.saw_done);
            assert_eq!(o.events, 5);
            assert!(o.raw_data.is_empty());
        }
    }

    #[test]
    fn unstripped_output_is_a_slice_of_the_input() {
        let mut meter = StreamMeter::new(false);
        let chunk = Bytes::from([ev(CHUNK), ev(CHUNK), ev(USAGE), "data: {\"par".into()].concat());
        let out = meter.on_chunk(chunk.clone());
        assert_eq!(out.len(), chunk.len() - "data: {\"par".len());
        assert_eq!(out.as_ptr(), chunk.as_ptr());
        assert_eq!(meter.on_chunk(Bytes::from_static(b"tial\n")), Bytes::new());
        assert_eq!(
            meter.on_chunk(Bytes::from_static(b"\n")),
            "data: {\"partial\n\n"
        );
    }

    #[test]
    fn last_usage_wins_and_usage_inside_content_chunks_is_forwarded() {
        let with_content = CHUNK.replace(
            r#""usage":null"#,
            r#""usage": {"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}"#,
        );
        let stream = [ev(USAGE), ev(&with_content)].concat();
        let mut meter = StreamMeter::new(true);
        let out = run(&mut meter, &[&stream]);
        assert_eq!(out, ev(&with_content));
        assert_eq!(meter.finish().usage, usage(1, 1, 2));
    }

    #[test]
    fn malformed_and_odd_events_pass_through() {
        let stream = [
            ": ping\n\n".to_string(),
            ev(r#"{"choices":[],"usage":{"prompt_tokens":1,"#),
            ev(r#"{"choices":[],"usage":{"prompt_tokens":-1}}"#),
            "event: x\ndata: {\"model\":\"\"}\n\n".into(),
            ev(CHUNK),
        ]
        .concat();
        let mut meter = StreamMeter::new(true);
        let out = run(&mut meter, &[&stream, "data: [DONE]"]);
        assert_eq!(out, stream.clone() + "data: [DONE]");
        let o = meter.finish();
        assert_eq!((o.usage, o.saw_done, o.events), (None, true, 6));
        assert_eq!(o.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        assert_eq!(o.raw_data.len(), 4, "{:?}", o.raw_data);
        assert_eq!(completion_text_from_stream(&o.raw_data), "Hi");
    }

    #[test]
    fn raw_data_is_capped() {
        let mut meter = StreamMeter::new(false);
        let big = ev(&format!("{{\"x\":\"{}\"}}", "a".repeat(1 << 20)));
        for _ in 0..6 {
            meter.on_chunk(Bytes::from(big.clone()));
        }
        let kept: usize = meter.finish().raw_data.iter().map(Bytes::len).sum();
        assert!(kept <= RAW_DATA_CAP && kept > 3 << 20, "{kept}");
    }

    #[test]
    fn completion_text() {
        let stream: Vec<Bytes> = [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}"#,
            r#"{"choices":[{"index":1,"delta":{"content":"B"}},{"index":0,"delta":{"function_call":{"arguments":"1"}}}]}"#,
            r#"{"choices":[{"index":0,"text":" legacy","finish_reason":null}]}"#,
            "not json",
        ]
        .map(|s: &'static str| Bytes::from_static(s.as_bytes()))
        .into();
        assert_eq!(
            completion_text_from_stream(&stream),
            "get_weather{\"city\":1 legacyB"
        );
        let body = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Hello \u00e9","tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}},{"text":"x"}]}"#;
        assert_eq!(completion_text_from_body(body), "Hello \u{e9}f{}x");
        assert_eq!(completion_text_from_body(b"oops"), "");
    }
}
