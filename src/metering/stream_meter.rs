//! Metering an SSE stream as it passes: forward every event the moment it is complete, keep the
//! last usage seen, and keep what an estimate needs when no usage comes.
//!
//! It only parses an event after a byte scan shows it can carry a `"usage": {` object; everything
//! else is forwarded untouched. Invariants: the usage kept is the last one seen (never a sum);
//! `data: [DONE]` and malformed events are always forwarded; only a usage-only chunk
//! (`choices: []`) is ever removed. Memory per stream is bounded: see [`CompletionText`].

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::answer_scan;
use super::completion_text::CompletionText;
use super::settle::DEFAULT_MAX_TOKENS;
use super::sse::{event_data, SseSplitter};
use super::usage::Usage;
use super::usage_wire::RawUsage;

/// What a stream showed, once it has ended.
#[derive(Debug, Clone, Default)]
pub struct StreamOutcome {
    pub usage: Option<Usage>,
    pub model: Option<String>,
    pub service_tier: Option<String>,
    pub saw_done: bool,
    pub events: u64,
    /// The generated text, for an estimate; empty once usage was seen.
    pub text: CompletionText,
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
    /// The tier named by the event that carried the usage (Responses streams echo the
    /// requested tier, `auto`, in earlier events and the one served at the end).
    final_tier: Option<String>,
    /// Usage with a count above this is not believed: the text is kept for an estimate.
    max_tokens: u64,
}

impl StreamMeter {
    pub fn new(strip_usage_chunk: bool) -> Self {
        Self {
            splitter: SseSplitter::new(),
            state: MeterState {
                strip_usage_chunk,
                outcome: StreamOutcome::default(),
                final_tier: None,
                max_tokens: DEFAULT_MAX_TOKENS,
            },
            out: Vec::new(),
        }
    }

    /// Sets the plausibility bound (`[metering] max_tokens_per_request`).
    pub fn with_token_bound(mut self, max_tokens: u64) -> Self {
        self.state.max_tokens = max_tokens;
        self
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

    /// What was learned: the last usage seen, the first non-empty model, the service tier,
    /// whether `[DONE]` came, the number of events and, only without usage, the text.
    pub fn finish(self) -> StreamOutcome {
        let mut outcome = self.state.outcome;
        if self.state.final_tier.is_some() {
            outcome.service_tier = self.state.final_tier;
        }
        outcome
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
            self.outcome.model = answer_scan::model_of(data);
        }
        if self.outcome.service_tier.is_none() {
            self.outcome.service_tier = answer_scan::service_tier_of(data);
        }
        if answer_scan::may_carry_usage(data) {
            match serde_json::from_slice::<UsageChunk>(data) {
                Ok(chunk) if chunk.carries_usage() => return self.take_usage(chunk),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "unmetered stream event"),
            }
        }
        if self.outcome.usage.is_none() {
            self.outcome.text.push_event(data);
        }
        true
    }

    /// Keeps the usage of a chunk that carries one; returns whether the chunk is forwarded.
    fn take_usage(&mut self, chunk: UsageChunk) -> bool {
        // Chat/completions put usage at the top; the Responses API streams it inside the
        // `response` of `response.completed`, `response.incomplete` or `response.failed`.
        let usage_only = chunk.choices.as_ref().is_some_and(|c| c.is_empty());
        let (raw, tier) = match (chunk.usage, chunk.response) {
            (Some(u), _) => (Some(u), chunk.service_tier),
            (None, Some(r)) => (r.usage, r.service_tier.or(chunk.service_tier)),
            (None, None) => (None, chunk.service_tier),
        };
        match raw.and_then(RawUsage::into_usage) {
            Some(u) if u.largest_count() > self.max_tokens => {
                tracing::warn!(
                    prompt = u.prompt_tokens,
                    completion = u.completion_tokens,
                    total = u.total_tokens,
                    "stream usage beyond the plausibility bound; the stream will be estimated"
                );
            }
            Some(u) => {
                self.outcome.usage = Some(u);
                self.outcome.text = CompletionText::default();
                if tier.is_some() {
                    self.final_tier = tier;
                }
            }
            None => tracing::warn!("stream usage with counts that are not token numbers; ignored"),
        }
        !(self.strip_usage_chunk && usage_only)
    }
}

#[derive(Deserialize)]
struct UsageChunk {
    #[serde(default)]
    choices: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    service_tier: Option<String>,
    #[serde(default)]
    response: Option<NestedResponse>,
}

impl UsageChunk {
    fn carries_usage(&self) -> bool {
        self.usage.is_some() || self.response.as_ref().is_some_and(|r| r.usage.is_some())
    }
}

#[derive(Deserialize)]
struct NestedResponse {
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    service_tier: Option<String>,
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

#[cfg(test)]
#[path = "stream_meter_tests.rs"]
mod tests;
