//! The response-body wrapper that meters exactly once.
//!
//! It forwards upstream bytes as they arrive (SSE event by event), remembers what metering
//! needs, and hands one [`Finished`] to the recorder when the body ends, fails, idles out, or
//! is dropped because the client went away — whichever comes first. The `Finished` is taken
//! out of an `Option`, so no path can send it twice.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use crate::error::BoxError;
use crate::metering::recorder::Recorder;
use crate::metering::settle::{Finished, Observed};
use crate::metering::usage::{self, StreamMeter};

/// JSON bodies up to this size are kept whole for metering; past it only the head (for the
/// model) and the last [`JSON_TAIL`] bytes (where OpenAI puts `usage`) are kept.
const MAX_JSON_KEEP: usize = 32 * 1024 * 1024;
const JSON_TAIL: usize = 64 * 1024;

/// What is kept of a JSON body while it streams through: every chunk until the body
/// outgrows [`MAX_JSON_KEEP`], then only its first chunk and its last [`JSON_TAIL`] bytes.
#[derive(Default)]
pub struct JsonKeep {
    whole: Vec<Bytes>,
    kept: usize,
    overflowed: bool,
    head: Option<Bytes>,
    tail: std::collections::VecDeque<Bytes>,
    tail_len: usize,
}

impl JsonKeep {
    fn push(&mut self, data: &Bytes) {
        self.kept += data.len();
        if !self.overflowed {
            self.whole.push(data.clone());
            if self.kept <= MAX_JSON_KEEP {
                return;
            }
            self.overflowed = true;
            let mut chunks = std::mem::take(&mut self.whole).into_iter();
            self.head = chunks.next();
            for chunk in chunks {
                self.push_tail(chunk);
            }
            return;
        }
        self.push_tail(data.clone());
    }

    fn push_tail(&mut self, chunk: Bytes) {
        self.tail_len += chunk.len();
        self.tail.push_back(chunk);
        while self.tail_len - self.tail.front().map_or(0, Bytes::len) >= JSON_TAIL {
            if let Some(old) = self.tail.pop_front() {
                self.tail_len -= old.len();
            }
        }
    }

    fn observed(self) -> Observed {
        if !self.overflowed {
            return json_observed(&self.whole);
        }
        // Too large to keep whole: the usage object is at the end, the model near the start.
        let tail: Vec<u8> = self.tail.iter().flat_map(|b| b.iter().copied()).collect();
        match usage::last_usage_object(&tail) {
            Some(usage) => Observed::Usage {
                usage,
                model: self.head.as_deref().and_then(usage::model_of),
            },
            None => {
                tracing::warn!(
                    bytes = self.kept,
                    "large JSON answer without a usage object; recorded with zero tokens"
                );
                Observed::Nothing
            }
        }
    }
}

/// How the body is observed.
pub enum Mode {
    /// Forward only (errors, binary bodies).
    Plain,
    /// Keep the JSON body (or its head and tail) to read its usage at the end.
    Json(Box<JsonKeep>),
    /// Split SSE events; optionally drop the usage-only chunk catgate asked for.
    Sse(Box<StreamMeter>),
}

impl Mode {
    pub fn json() -> Mode {
        Mode::Json(Box::default())
    }
}

pub struct MeteredBody {
    inner: Incoming,
    mode: Mode,
    /// Armed the first time upstream keeps us waiting; most small bodies never need it.
    idle: Option<Pin<Box<Sleep>>>,
    idle_timeout: Duration,
    record: Option<Finished>,
    /// Trailers that must follow the partial last SSE event returned before them.
    stash: Option<Frame<Bytes>>,
    recorder: Recorder,
    started: Instant,
}

enum End {
    Complete,
    Failed,
}

impl MeteredBody {
    pub fn new(
        inner: Incoming,
        mode: Mode,
        record: Finished,
        recorder: Recorder,
        started: Instant,
        idle_timeout: Duration,
    ) -> MeteredBody {
        MeteredBody {
            inner,
            mode,
            idle: None,
            idle_timeout,
            record: Some(record),
            stash: None,
            recorder,
            started,
        }
    }

    /// Observes one chunk and returns what to forward.
    fn observe(&mut self, data: Bytes) -> Bytes {
        match &mut self.mode {
            Mode::Plain => data,
            Mode::Json(keep) => {
                keep.push(&data);
                data
            }
            Mode::Sse(meter) => meter.on_chunk(data),
        }
    }

    /// Sends the record (once). Returns bytes still to forward at a clean end of an SSE body.
    fn finish(&mut self, end: End) -> Bytes {
        let Some(mut record) = self.record.take() else {
            return Bytes::new();
        };
        let mut tail = Bytes::new();
        let mode = std::mem::replace(&mut self.mode, Mode::Plain);
        record.observed = match mode {
            Mode::Plain => Observed::Nothing,
            Mode::Json(keep) => keep.observed(),
            Mode::Sse(mut meter) => {
                if matches!(end, End::Complete) {
                    tail = meter.on_end();
                }
                Observed::Stream(meter.finish())
            }
        };
        // Until the recorder writes it (up to its batching window), a record must not pin
        // hyper's read buffers: keep the request body only when tokens must be estimated, and
        // then as a compact copy.
        record.request_body = match &record.observed {
            Observed::Usage { .. } | Observed::Nothing => Bytes::new(),
            Observed::Stream(outcome) if outcome.usage.is_some() => Bytes::new(),
            _ => Bytes::copy_from_slice(&record.request_body),
        };
        record.latency_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.recorder.record(record);
        tail
    }
}

/// A finished JSON body: its usage when it has one (the common case, parsed here cheaply
/// from the usage object), else a compact copy for the recorder to estimate from.
fn json_observed(chunks: &[Bytes]) -> Observed {
    let body = match chunks {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => Bytes::from(many.concat()),
    };
    match usage::from_json_body(&body) {
        (Some(usage), model) => Observed::Usage { usage, model },
        // A lone chunk is a slice of hyper's read buffer; a concatenation is already compact.
        (None, _) if chunks.len() == 1 => Observed::Body(Bytes::copy_from_slice(&body)),
        (None, _) => Observed::Body(body),
    }
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(trailers) = this.stash.take() {
            return Poll::Ready(Some(Ok(trailers)));
        }
        if this.record.is_none() {
            return Poll::Ready(None);
        }
        // One upstream frame in, at most one frame out, as soon as it arrives. (hyper's client
        // hands over one chunk per scheduling round, so there is nothing ready to merge.)
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(idle) = this.idle.as_mut() {
                        idle.as_mut()
                            .reset(tokio::time::Instant::now() + this.idle_timeout);
                    }
                    match frame.into_data() {
                        Ok(data) => {
                            let out = this.observe(data);
                            if out.is_empty() {
                                continue;
                            }
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                        Err(trailers) => {
                            // A partial last SSE event goes out before the trailers, not after.
                            let partial = match &mut this.mode {
                                Mode::Sse(meter) => meter.on_end(),
                                _ => Bytes::new(),
                            };
                            if partial.is_empty() {
                                return Poll::Ready(Some(Ok(trailers)));
                            }
                            this.stash = Some(trailers);
                            return Poll::Ready(Some(Ok(Frame::data(partial))));
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(error = %e, "upstream body failed mid-response");
                    this.finish(End::Failed);
                    return Poll::Ready(Some(Err("upstream response failed".into())));
                }
                Poll::Ready(None) => {
                    let tail = this.finish(End::Complete);
                    return Poll::Ready((!tail.is_empty()).then(|| Ok(Frame::data(tail))));
                }
                Poll::Pending => {
                    let timeout = this.idle_timeout;
                    let idle = this
                        .idle
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    if idle.as_mut().poll(cx).is_ready() {
                        tracing::warn!(timeout = ?this.idle_timeout, "upstream went idle mid-response");
                        this.finish(End::Failed);
                        return Poll::Ready(Some(Err("upstream idle timeout".into())));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.record.is_none() && self.stash.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.mode {
            // Stripping an event changes the length.
            Mode::Sse(_) => SizeHint::default(),
            _ => self.inner.size_hint(),
        }
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        // The client went away (or the server is closing): record what was seen so far.
        self.finish(End::Failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_json_bodies_are_metered_from_their_tail() {
        let mut keep = JsonKeep::default();
        keep.push(&Bytes::from_static(
            br#"{"object":"list","model":"text-embedding-3-large","data":["#,
        ));
        let filler = Bytes::from(vec![b' '; 1024 * 1024]);
        for _ in 0..40 {
            keep.push(&filler);
        }
        keep.push(&Bytes::from_static(
            br#"],"usage":{"prompt_tokens":100000,"total_tokens":100000}}"#,
        ));
        match keep.observed() {
            Observed::Usage { usage, model } => {
                assert_eq!(
                    (usage.prompt_tokens, usage.total_tokens),
                    (100_000, 100_000)
                );
                assert_eq!(model.as_deref(), Some("text-embedding-3-large"));
            }
            other => panic!("{other:?}"),
        }
    }
}
