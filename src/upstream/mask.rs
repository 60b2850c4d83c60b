//! Keeping an upstream key's secret out of what a member sees. Upstream errors quote the key
//! they rejected ("Incorrect API key provided: sk-…"), and a member must never learn it: every
//! occurrence in a forwarded header value, and in the body of a non-2xx answer, becomes
//! `sk-…abcd` (first 3 and last 4 characters; `…` alone for secrets under 8 characters).
//!
//! Bodies are masked as they stream rather than read whole up to a cap: nothing is truncated
//! and memory stays bounded. Only the longest chunk tail that could begin the secret is held
//! back until the next chunk (or the end) shows whether it does.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use http_body::{Body, Frame, SizeHint};
use memchr::memmem;

use crate::error::BoxError;

/// A key's secret and its masked form. Its `Debug` shows only the masked form.
pub struct Secret {
    secret: Box<[u8]>,
    masked: Box<[u8]>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({})", String::from_utf8_lossy(&self.masked))
    }
}

/// `sk-…abcd`: enough to tell keys apart, too little to use one.
pub fn masked_form(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 8 {
        return "…".to_string();
    }
    let mut out: String = chars.iter().take(3).collect();
    out.push('…');
    out.extend(chars.iter().skip(chars.len() - 4));
    out
}

impl Secret {
    pub fn new(secret: &str) -> Secret {
        Secret {
            secret: secret.as_bytes().into(),
            masked: masked_form(secret).into_bytes().into(),
        }
    }

    /// `data` with every occurrence masked, and where the bytes after the last mask start;
    /// `None` when there is no occurrence.
    fn replace_in(&self, data: &[u8]) -> Option<(Vec<u8>, usize)> {
        if self.secret.is_empty() {
            return None;
        }
        let finder = memmem::Finder::new(&self.secret);
        let mut found = finder.find_iter(data).peekable();
        found.peek()?;
        let mut out = Vec::with_capacity(data.len());
        let mut at = 0;
        for start in found {
            out.extend_from_slice(&data[at..start]);
            out.extend_from_slice(&self.masked);
            at = start + self.secret.len();
        }
        let tail_start = out.len();
        out.extend_from_slice(&data[at..]);
        Some((out, tail_start))
    }

    /// The length of the longest end of `data` that is a proper start of the secret.
    fn pending_prefix(&self, data: &[u8]) -> usize {
        let longest = self.secret.len().saturating_sub(1).min(data.len());
        (1..=longest)
            .rev()
            .find(|&k| data.ends_with(&self.secret[..k]))
            .unwrap_or(0)
    }
}

/// `value` with the secret masked, or `None` in the (impossible in practice) case that the
/// masked bytes do not form a header value, so the caller drops the header.
pub fn header(value: &HeaderValue, secret: &Secret) -> Option<HeaderValue> {
    let Some((masked, _)) = secret.replace_in(value.as_bytes()) else {
        return Some(value.clone());
    };
    let mut masked = HeaderValue::from_bytes(&masked).ok()?;
    masked.set_sensitive(value.is_sensitive());
    Some(masked)
}

/// Masks a body chunk by chunk, including occurrences split across chunks.
pub struct MaskingStream {
    secret: Arc<Secret>,
    /// The end of earlier bytes that may be the start of the secret.
    carry: BytesMut,
}

impl MaskingStream {
    pub fn new(secret: Arc<Secret>) -> MaskingStream {
        MaskingStream {
            secret,
            carry: BytesMut::new(),
        }
    }

    /// What of `data` (after anything held back) can be forwarded now.
    pub fn push(&mut self, data: Bytes) -> Bytes {
        let whole = if self.carry.is_empty() {
            data
        } else {
            self.carry.extend_from_slice(&data);
            self.carry.split().freeze()
        };
        let (masked, tail_start) = match self.secret.replace_in(&whole) {
            Some((m, tail_start)) => (Bytes::from(m), tail_start),
            None => (whole, 0),
        };
        // Only original bytes are held back: a mask followed by new bytes must never be able
        // to complete the secret.
        let keep = self.secret.pending_prefix(&masked[tail_start..]);
        let ready = masked.len() - keep;
        self.carry.extend_from_slice(&masked[ready..]);
        masked.slice(..ready)
    }

    /// Bytes held back at the end of the body: they never completed the secret.
    pub fn finish(&mut self) -> Bytes {
        self.carry.split().freeze()
    }
}

/// A body with the secret masked as it passes (for non-2xx answers, whose bodies carry
/// upstream error messages). The inner body keeps its own end-of-body duties (metering).
pub struct MaskedBody<B> {
    inner: B,
    stream: MaskingStream,
    /// Trailers that must follow the held-back bytes.
    stash: Option<Frame<Bytes>>,
    done: bool,
}

impl<B> MaskedBody<B> {
    pub fn new(inner: B, secret: Arc<Secret>) -> MaskedBody<B> {
        MaskedBody {
            inner,
            stream: MaskingStream::new(secret),
            stash: None,
            done: false,
        }
    }
}

impl<B> Body for MaskedBody<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
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
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(None) => {
                    this.done = true;
                    let rest = this.stream.finish();
                    return Poll::Ready((!rest.is_empty()).then(|| Ok(Frame::data(rest))));
                }
                other => return other,
            };
            match frame.into_data() {
                Ok(data) => {
                    let out = this.stream.push(data);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                Err(trailers) => {
                    let rest = this.stream.finish();
                    if rest.is_empty() {
                        return Poll::Ready(Some(Ok(trailers)));
                    }
                    this.stash = Some(trailers);
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stash.is_none() && (self.done || (self.inner.is_end_stream() && self.carry_empty()))
    }

    fn size_hint(&self) -> SizeHint {
        // Masking changes the length.
        SizeHint::default()
    }
}

impl<B> MaskedBody<B> {
    fn carry_empty(&self) -> bool {
        self.stream.carry.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_forms() {
        assert_eq!(masked_form("sk-proj-abcdefgh1234"), "sk-…1234");
        assert_eq!(masked_form("12345678"), "123…5678");
        assert_eq!(masked_form("sk-1234"), "…");
        assert_eq!(masked_form(""), "…");
        let s = Secret::new("sk-proj-abcdefgh1234");
        assert_eq!(format!("{s:?}"), "Secret(sk-…1234)");
    }

    fn mask_in_pieces(secret: &str, pieces: &[&[u8]]) -> Vec<u8> {
        let mut stream = MaskingStream::new(Arc::new(Secret::new(secret)));
        let mut out = Vec::new();
        for p in pieces {
            out.extend_from_slice(&stream.push(Bytes::copy_from_slice(p)));
        }
        out.extend_from_slice(&stream.finish());
        out
    }

    #[test]
    fn every_split_point_masks_like_one_pass() {
        for (secret, input, count) in [
            (
                "sk-aaaaaaaa1234",
                "key sk-sk-aaaaaaaa1234, again sk-aaaaaaaa1234sk-aaaaaaaa1234 and sk-aaaa",
                3,
            ),
            // The masked form ends in a start of this secret: a mask and the bytes after it
            // must not be read as a new occurrence.
            ("1234abcd1234", "x1234abcd1234abcd1234", 1),
        ] {
            let want = input.replace(secret, &masked_form(secret));
            assert_eq!(want.matches(&masked_form(secret)).count(), count);
            let input = input.as_bytes();
            for a in 0..=input.len() {
                for b in a..=input.len() {
                    let got = mask_in_pieces(secret, &[&input[..a], &input[a..b], &input[b..]]);
                    assert_eq!(String::from_utf8(got).unwrap(), want, "cuts {a} {b}");
                }
            }
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(mask_in_pieces(secret, &bytes), want.as_bytes());
        }
    }

    #[test]
    fn nothing_is_held_back_without_a_possible_start() {
        let mut stream = MaskingStream::new(Arc::new(Secret::new("sk-abcdefgh")));
        assert_eq!(stream.push(Bytes::from_static(b"plain text")), "plain text");
        assert_eq!(
            stream.push(Bytes::from_static(b"ends with sk")),
            "ends with "
        );
        assert_eq!(stream.finish(), "sk");
        assert_eq!(
            mask_in_pieces("", &[b"nothing to mask"]),
            b"nothing to mask".to_vec()
        );
    }

    #[test]
    fn header_values_are_masked() {
        let secret = Secret::new("sk-proj-abcdefgh1234");
        let v = HeaderValue::from_static("key sk-proj-abcdefgh1234 rejected");
        let masked = header(&v, &secret).unwrap();
        assert_eq!(masked.as_bytes(), "key sk-…1234 rejected".as_bytes());
        let plain = HeaderValue::from_static("req_123");
        assert_eq!(header(&plain, &secret).unwrap(), plain);
    }
}
