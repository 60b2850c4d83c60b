//! Metering an answer the upstream compressed (`content-encoding: gzip` or `deflate`).
//!
//! The client gets the upstream's bytes and `content-encoding` untouched; metering reads its
//! own decompressed copy. Compressed input is fed a little at a time and the output is handed
//! straight to the (bounded) meter, so a decompression bomb never lands in memory whole.
//! Nothing can be removed from a compressed stream, so the usage chunk catgate asked for
//! stays in it.

use std::io::Write;

use bytes::Bytes;
use flate2::write::{GzDecoder, ZlibDecoder};

use super::json_keep::JsonKeep;
use crate::metering::settle::Observed;
use crate::metering::stream_meter::StreamMeter;

/// Compressed bytes fed per step: at most ~1 MiB comes out of one step, even for a bomb.
const STEP: usize = 1024;

enum Decoder {
    Gzip(GzDecoder<Vec<u8>>),
    Deflate(ZlibDecoder<Vec<u8>>),
}

impl Decoder {
    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Decoder::Gzip(d) => d.write_all(data),
            Decoder::Deflate(d) => d.write_all(data),
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        match self {
            Decoder::Gzip(d) => d.try_finish(),
            Decoder::Deflate(d) => d.try_finish(),
        }
    }

    fn take_output(&mut self) -> Vec<u8> {
        match self {
            Decoder::Gzip(d) => std::mem::take(d.get_mut()),
            Decoder::Deflate(d) => std::mem::take(d.get_mut()),
        }
    }
}

enum Meter {
    Json(Box<JsonKeep>),
    Sse(Box<StreamMeter>),
}

pub struct Decoded {
    decoder: Decoder,
    meter: Meter,
    /// The stream stopped decoding (corrupt): it is forwarded but no longer metered.
    broken: bool,
}

impl Decoded {
    /// `encoding` is the `content-encoding` value; `None` if catgate cannot decode it.
    pub fn new(encoding: &str, sse: bool, max_tokens: u64) -> Option<Decoded> {
        let decoder = match encoding.trim().to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Decoder::Gzip(GzDecoder::new(Vec::new())),
            "deflate" => Decoder::Deflate(ZlibDecoder::new(Vec::new())),
            _ => return None,
        };
        let meter = match sse {
            true => Meter::Sse(Box::new(
                StreamMeter::new(false).with_token_bound(max_tokens),
            )),
            false => Meter::Json(Box::new(JsonKeep::new(max_tokens))),
        };
        Some(Decoded {
            decoder,
            meter,
            broken: false,
        })
    }

    /// Meters the decompressed form of one chunk.
    pub fn push(&mut self, data: &[u8]) {
        for step in data.chunks(STEP) {
            if self.broken {
                return;
            }
            if let Err(e) = self.decoder.write(step) {
                tracing::warn!(error = %e, "compressed answer does not decode; left unmetered");
                self.broken = true;
                return;
            }
            self.feed();
        }
    }

    fn feed(&mut self) {
        let out = Bytes::from(self.decoder.take_output());
        if out.is_empty() {
            return;
        }
        match &mut self.meter {
            Meter::Json(keep) => keep.push(&out),
            Meter::Sse(meter) => {
                meter.on_chunk(out);
            }
        }
    }

    pub fn observed(mut self) -> Observed {
        if !self.broken && self.decoder.finish().is_ok() {
            self.feed();
        }
        match self.meter {
            Meter::Json(keep) => keep.observed(),
            Meter::Sse(mut meter) => {
                meter.on_end();
                Observed::Stream(meter.finish())
            }
        }
    }
}
