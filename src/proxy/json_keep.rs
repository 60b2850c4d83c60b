//! What is kept of a JSON answer while it streams through, for metering, in bounded memory.
//!
//! OpenAI puts `model` near the start of a body and `usage` (and `service_tier`) at its end. A
//! body up to [`WHOLE`] bytes is kept whole (an estimate needs its text when it has no usage);
//! past that only its first [`HEAD`] and last [`TAIL`] bytes are kept, copied out of hyper's
//! buffers. So a 30 MB answer costs about 70 KiB, whatever its size.

use bytes::Bytes;

use crate::metering::answer_scan;
use crate::metering::settle::Observed;

/// Bodies up to this size are kept whole.
const WHOLE: usize = 64 * 1024;
/// Bytes kept from the start of a larger body (the model).
const HEAD: usize = 4 * 1024;
/// Bytes kept from the end of a larger body (usage and service tier).
const TAIL: usize = 64 * 1024;

pub struct JsonKeep {
    /// The plausibility bound: a body whose usage exceeds it is kept for an estimate.
    max_tokens: u64,
    /// A body that came in one chunk, not copied (the common case).
    first: Option<Bytes>,
    /// The body so far while it fits in [`WHOLE`]; past it, the head.
    buf: Vec<u8>,
    /// The last bytes of a body past [`WHOLE`] (up to twice [`TAIL`] between trims).
    tail: Vec<u8>,
    total: usize,
}

impl JsonKeep {
    pub fn new(max_tokens: u64) -> JsonKeep {
        JsonKeep {
            max_tokens,
            first: None,
            buf: Vec::new(),
            tail: Vec::new(),
            total: 0,
        }
    }

    pub fn push(&mut self, data: &Bytes) {
        let before = self.total;
        self.total += data.len();
        if before == 0 && data.len() <= WHOLE {
            self.first = Some(data.clone());
            return;
        }
        if let Some(first) = self.first.take() {
            self.buf.extend_from_slice(&first);
        }
        if self.total <= WHOLE {
            self.buf.extend_from_slice(data);
            return;
        }
        if before <= WHOLE {
            // Just outgrew WHOLE: the last TAIL bytes so far start the tail, the first HEAD
            // bytes stay as the head.
            let from_data = data.len().min(TAIL);
            let from_buf = (TAIL - from_data).min(self.buf.len());
            let mut tail = Vec::with_capacity(2 * TAIL);
            tail.extend_from_slice(&self.buf[self.buf.len() - from_buf..]);
            tail.extend_from_slice(&data[data.len() - from_data..]);
            self.tail = tail;
            let missing = HEAD.saturating_sub(self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..missing]);
            self.buf.truncate(HEAD);
            self.buf.shrink_to_fit();
            return;
        }
        if data.len() >= TAIL {
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - TAIL..]);
        } else {
            // Trim first, so the buffer never grows past its 2 × TAIL capacity.
            if self.tail.len() + data.len() > 2 * TAIL {
                self.tail.drain(..self.tail.len() + data.len() - TAIL);
            }
            self.tail.extend_from_slice(data);
        }
    }

    /// Bytes held, for the memory bound.
    pub fn held_bytes(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.buf.capacity() + self.tail.capacity()
    }

    pub fn observed(self) -> Observed {
        if self.total <= WHOLE {
            let body = match self.first {
                Some(b) => b,
                None => Bytes::from(self.buf),
            };
            return whole_observed(body, self.max_tokens);
        }
        // Too large to keep whole: usage and tier are at the end, the model near the start.
        let tail = &self.tail[self.tail.len().saturating_sub(TAIL)..];
        match answer_scan::last_usage_object(tail) {
            Some(usage) => Observed::Usage {
                usage,
                model: answer_scan::model_of(&self.buf).or_else(|| answer_scan::model_of(tail)),
                service_tier: answer_scan::service_tier_of(tail),
            },
            None => {
                tracing::warn!(
                    bytes = self.total,
                    "large JSON answer without a usage object; recorded as unmeasured"
                );
                Observed::Nothing
            }
        }
    }
}

/// A whole JSON body: its usage when it has a believable one (parsed here cheaply from the
/// usage object), else a compact copy for the recorder to estimate from.
fn whole_observed(body: Bytes, max_tokens: u64) -> Observed {
    let read = answer_scan::from_json_body(&body);
    match read.usage {
        Some(usage) if usage.largest_count() <= max_tokens => Observed::Usage {
            usage,
            model: read.model,
            service_tier: read.service_tier,
        },
        // A lone chunk is a slice of hyper's read buffer: copy it so the record pins nothing.
        _ => Observed::Body(Bytes::copy_from_slice(&body)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_bodies_are_metered_from_their_tail_in_bounded_memory() {
        let mut keep = JsonKeep::new(10_000_000);
        keep.push(&Bytes::from_static(
            br#"{"object":"list","model":"text-embedding-3-large","data":["#,
        ));
        let filler = Bytes::from(vec![b' '; 1024 * 1024]);
        for _ in 0..30 {
            keep.push(&filler);
            assert!(
                keep.held_bytes() <= 2 * TAIL + HEAD,
                "{}",
                keep.held_bytes()
            );
        }
        keep.push(&Bytes::from_static(
            br#"],"usage":{"prompt_tokens":100000,"total_tokens":100000}}"#,
        ));
        match keep.observed() {
            Observed::Usage { usage, model, .. } => {
                assert_eq!(
                    (usage.prompt_tokens, usage.total_tokens),
                    (100_000, 100_000)
                );
                assert_eq!(model.as_deref(), Some("text-embedding-3-large"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn small_bodies_split_in_chunks_are_kept_whole() {
        let body = br#"{"model":"gpt-4o","choices":[{"message":{"content":"hi"}}],"service_tier":"flex","usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
        for cut in [1, 10, body.len() - 1] {
            let mut keep = JsonKeep::new(10_000_000);
            keep.push(&Bytes::copy_from_slice(&body[..cut]));
            keep.push(&Bytes::copy_from_slice(&body[cut..]));
            match keep.observed() {
                Observed::Usage {
                    usage,
                    model,
                    service_tier,
                } => {
                    assert_eq!(usage.total_tokens, 4);
                    assert_eq!(model.as_deref(), Some("gpt-4o"));
                    assert_eq!(service_tier.as_deref(), Some("flex"));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn bodies_just_past_the_whole_limit_keep_head_and_tail() {
        let head = br#"{"model":"gpt-4o","choices":[{"message":{"content":""#;
        let end = br#""}}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
        let mut keep = JsonKeep::new(10_000_000);
        keep.push(&Bytes::copy_from_slice(head));
        keep.push(&Bytes::from(vec![b'a'; WHOLE - 10]));
        keep.push(&Bytes::from(vec![b'a'; 100]));
        keep.push(&Bytes::copy_from_slice(end));
        match keep.observed() {
            Observed::Usage { usage, model, .. } => {
                assert_eq!(usage.total_tokens, 4);
                assert_eq!(model.as_deref(), Some("gpt-4o"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn implausible_usage_keeps_the_body_for_an_estimate() {
        let mut keep = JsonKeep::new(1000);
        keep.push(&Bytes::from_static(
            br#"{"model":"m","usage":{"prompt_tokens":5000,"total_tokens":5000}}"#,
        ));
        assert!(matches!(keep.observed(), Observed::Body(_)));
    }
}
