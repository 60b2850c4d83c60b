//! The generated text of an answer that came without usage, for the tokenizer estimate.
//!
//! A stream keeps copies of its event payloads while they are small (parsing them would cost
//! every stream, and most streams end with usage, when the copies are dropped unread). Past
//! [`RAW_COMPACT`] bytes the payloads are boiled down to their text, which is a small fraction
//! of the raw SSE, and the text itself stops growing at [`TEXT_CAP`] (far beyond any model's
//! output limit). So an answer without usage holds at most about 1.3 MiB, whatever its size.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;

/// Raw payload bytes kept before they are reduced to text.
const RAW_COMPACT: usize = 256 * 1024;
/// Text kept per answer; about 250k tokens.
const TEXT_CAP: usize = 1024 * 1024;

#[derive(Debug, Clone, Default)]
pub struct CompletionText {
    raw: Vec<Bytes>,
    raw_bytes: usize,
    /// Text per choice index, so that n > 1 streams do not interleave mid-word.
    by_choice: BTreeMap<u64, String>,
    text_bytes: usize,
    truncated: bool,
}

impl CompletionText {
    /// Keeps one stream event's `data` payload.
    pub fn push_event(&mut self, data: &[u8]) {
        self.raw_bytes += data.len();
        // A copy, not a slice: a slice would pin the whole read buffer it came from.
        self.raw.push(Bytes::copy_from_slice(data));
        if self.raw_bytes > RAW_COMPACT {
            self.compact();
        }
    }

    /// Bytes held (raw payloads and text), for tests of the memory bound.
    pub fn held_bytes(&self) -> usize {
        self.raw_bytes + self.text_bytes
    }

    /// Whether text was dropped at the cap (the estimate is then a lower bound).
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The text of every choice, in choice order.
    pub fn into_text(mut self) -> String {
        self.compact();
        self.by_choice.into_values().collect()
    }

    fn compact(&mut self) {
        for data in std::mem::take(&mut self.raw) {
            let Ok(chunk) = serde_json::from_slice::<Choices>(&data) else {
                continue;
            };
            for choice in &chunk.choices {
                let text = self.by_choice.entry(choice.index).or_default();
                let before = text.len();
                choice.append_to(text, TEXT_CAP.saturating_sub(self.text_bytes));
                self.text_bytes += text.len() - before;
                self.truncated |= self.text_bytes >= TEXT_CAP;
            }
        }
        self.raw_bytes = 0;
    }
}

/// Completion text of a non-stream body (choices[*].message.content, refusal, tool call names
/// and arguments, legacy choices[*].text).
pub fn from_body(body: &[u8]) -> String {
    let mut text = String::new();
    if let Ok(body) = serde_json::from_slice::<Choices>(body) {
        body.choices
            .iter()
            .for_each(|c| c.append_to(&mut text, TEXT_CAP));
    }
    text
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
    /// Appends at most `room` more bytes (cut at a character boundary).
    fn append_to(&self, text: &mut String, room: usize) {
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
        let limit = text.len().saturating_add(room);
        for part in parts.flatten() {
            let left = limit.saturating_sub(text.len());
            if part.len() <= left {
                text.push_str(part);
            } else {
                let mut cut = left;
                while !part.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.push_str(&part[..cut]);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_text(payloads: &[&str]) -> String {
        let mut t = CompletionText::default();
        payloads.iter().for_each(|p| t.push_event(p.as_bytes()));
        t.into_text()
    }

    #[test]
    fn text_of_streams_and_bodies() {
        let stream = [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}"#,
            r#"{"choices":[{"index":1,"delta":{"content":"B"}},{"index":0,"delta":{"function_call":{"arguments":"1"}}}]}"#,
            r#"{"choices":[{"index":0,"text":" legacy","finish_reason":null}]}"#,
            "not json",
        ];
        assert_eq!(stream_text(&stream), "get_weather{\"city\":1 legacyB");
        let body = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Hello \u00e9","tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}},{"text":"x"}]}"#;
        assert_eq!(from_body(body), "Hello \u{e9}f{}x");
        assert_eq!(from_body(b"oops"), "");
    }

    #[test]
    fn memory_is_bounded_whatever_the_stream_size() {
        let mut t = CompletionText::default();
        let word = "é".repeat(500);
        let event = format!(
            r#"{{"choices":[{{"index":0,"delta":{{"content":"{word}"}}}}],"padding":"{}"}}"#,
            "x".repeat(4000)
        );
        for _ in 0..2000 {
            t.push_event(event.as_bytes());
            assert!(t.held_bytes() <= RAW_COMPACT + event.len() + TEXT_CAP);
        }
        assert!(t.truncated());
        let text = t.into_text();
        assert!(
            text.len() <= TEXT_CAP && text.len() > TEXT_CAP - 4,
            "{}",
            text.len()
        );
        assert!(text.chars().all(|c| c == 'é'));
    }
}
