//! The response-body wrapper that meters exactly once.
//!
//! It forwards upstream bytes as they arrive (SSE event by event), remembers what metering
//! needs, and hands one [`Finished`] to the recorder when the body ends, fails, idles out, or
//! is dropped because the client went away — whichever comes first. The `Finished` is taken
//! out of an `Option`, so no path can send it twice.
//!
//! Durability: at a clean end the body's last bytes (the last data frame of a body with a
//! length, or the end of a chunked body) are held until the recorder says the row is
//! committed, so a client that saw a whole answer is never missing from the bill, even after
//! `kill -9`. The hold is bounded by
//! [`crate::metering::recorder::DURABLE_WAIT`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use super::decoded::Decoded;
use super::json_keep::JsonKeep;
use crate::error::BoxError;
use crate::metering::recorder::Recorder;
use crate::metering::settle::{Finished, Observed};
use crate::metering::stream_meter::StreamMeter;
use crate::upload::RequestBody;

/// How the body is observed.
pub enum Mode {
    /// Forward only (errors, binary bodies).
    Plain,
    /// Keep the JSON body (or its head and tail) to read its usage at the end.
    Json(Box<JsonKeep>),
    /// Split SSE events; optionally drop the usage-only chunk catgate asked for.
    Sse(Box<StreamMeter>),
    /// Forward compressed bytes as they are; meter a decompressed copy.
    Decoded(Box<Decoded>),
}

impl Mode {
    pub fn json(max_tokens: u64) -> Mode {
        Mode::Json(Box::new(JsonKeep::new(max_tokens)))
    }
}

type Ack = Pin<Box<dyn Future<Output = ()> + Send>>;

pub struct MeteredBody {
    inner: Incoming,
    /// The first frame, read before the head went out (see `attempt::first_frame`).
    first: Option<Frame<Bytes>>,
    /// Waiting for the row of a cleanly ended body to be durable.
    ack: Option<Ack>,
    /// Bytes released once `ack` resolves.
    held: Bytes,
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
        first: Option<Frame<Bytes>>,
        mode: Mode,
        record: Finished,
        recorder: Recorder,
        started: Instant,
        idle_timeout: Duration,
    ) -> MeteredBody {
        MeteredBody {
            inner,
            first,
            ack: None,
            held: Bytes::new(),
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
            Mode::Decoded(decoded) => {
                decoded.push(&data);
                data
            }
        }
    }

    /// Takes the record (once) with what the body showed. Returns it and, at a clean end of
    /// an SSE body, the bytes still to forward.
    fn take_record(&mut self, end: End) -> Option<(Finished, Bytes)> {
        let mut record = self.record.take()?;
        let mut tail = Bytes::new();
        let mode = std::mem::replace(&mut self.mode, Mode::Plain);
        record.observed = match mode {
            Mode::Plain => Observed::Nothing,
            Mode::Json(keep) => keep.observed(),
            Mode::Decoded(decoded) => decoded.observed(),
            Mode::Sse(mut meter) => {
                if matches!(end, End::Complete) {
                    tail = meter.on_end();
                }
                Observed::Stream(meter.finish())
            }
        };
        // Until the recorder writes it, a record must not pin hyper's read buffers: keep the
        // request body only when tokens must be estimated, and then as a compact copy.
        record.request_body = match (&record.request_body, record.needs_estimate()) {
            (_, false) => RequestBody::default(),
            (RequestBody::Memory(b), true) => RequestBody::Memory(Bytes::copy_from_slice(b)),
            (spooled, true) => spooled.clone(),
        };
        record.latency_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Some((record, tail))
    }

    /// The body failed or was dropped: record what was seen, nothing left to hold.
    fn finish(&mut self, end: End) {
        if let Some((record, _)) = self.take_record(end) {
            self.recorder.record(record);
        }
    }

    /// A clean end: `out` (the last bytes, possibly empty) waits for the row to be durable.
    fn finish_durably(&mut self, out: Bytes) {
        let Some((record, tail)) = self.take_record(End::Complete) else {
            return;
        };
        let durable = self.recorder.record_durable(record);
        self.held = match (out.is_empty(), tail.is_empty()) {
            (_, true) => out,
            (true, false) => tail,
            (false, false) => [out, tail].concat().into(),
        };
        self.ack = Some(Box::pin(durable));
    }

    /// Releases the held bytes once the row is durable.
    fn poll_release(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(ack) = self.ack.as_mut() {
            if ack.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.ack = None;
        }
        let held = std::mem::take(&mut self.held);
        Poll::Ready((!held.is_empty()).then(|| Ok(Frame::data(held))))
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
        if this.ack.is_some() || !this.held.is_empty() {
            return this.poll_release(cx);
        }
        if this.record.is_none() {
            return Poll::Ready(None);
        }
        // One upstream frame in, at most one frame out, as soon as it arrives. (hyper's client
        // hands over one chunk per scheduling round, so there is nothing ready to merge.)
        loop {
            let polled = match this.first.take() {
                Some(frame) => Poll::Ready(Some(Ok(frame))),
                None => Pin::new(&mut this.inner).poll_frame(cx),
            };
            match polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(idle) = this.idle.as_mut() {
                        idle.as_mut()
                            .reset(tokio::time::Instant::now() + this.idle_timeout);
                    }
                    match frame.into_data() {
                        Ok(data) => {
                            let out = this.observe(data);
                            if this.inner.is_end_stream() {
                                // The last frame of a body with a length: the client has the
                                // whole answer with it, so it waits for the row.
                                this.finish_durably(out);
                                return this.poll_release(cx);
                            }
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
                    this.finish_durably(Bytes::new());
                    return this.poll_release(cx);
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
        self.record.is_none()
            && self.stash.is_none()
            && self.ack.is_none()
            && self.held.is_empty()
            && self.first.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if let Mode::Sse(_) = self.mode {
            // Stripping an event changes the length.
            return SizeHint::default();
        }
        // The first frame was already taken from `inner`: add it back.
        let taken = self
            .first
            .as_ref()
            .and_then(Frame::data_ref)
            .map_or(0, |d| d.len() as u64);
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + taken);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + taken);
        }
        hint
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        // The client went away (or the server is closing): record what was seen so far.
        self.finish(End::Failed);
    }
}
