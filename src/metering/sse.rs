//! Splitting an upstream `text/event-stream` body into whole events without changing a byte.
//!
//! Invariant: everything handed out by [`SseSplitter::push`] plus [`SseSplitter::finish`],
//! concatenated, is exactly the input. Events are cut right after their blank line, so the
//! proxy can forward each one the moment it is complete.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use memchr::memchr2;

/// Longest event kept whole; real events are a few hundred bytes.
pub const MAX_EVENT: usize = 1 << 20;

/// Finds event boundaries across chunk borders; see the module docs.
#[derive(Debug)]
pub struct SseSplitter {
    /// Bytes of the current, still incomplete event that came in earlier chunks.
    buf: BytesMut,
    /// No byte of the current line has been seen yet, so a terminator here ends the event.
    line_empty: bool,
    /// The last byte was a line-ending '\r'; a '\n' right after it belongs to the same ending.
    cr_pending: bool,
    /// The event ended with a blank line made of '\r'; it is cut after the next byte is known,
    /// because a following '\n' is still part of it.
    end_after_cr: bool,
}

impl Default for SseSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl SseSplitter {
    pub fn new() -> Self {
        Self {
            buf: BytesMut::new(),
            line_empty: true,
            cr_pending: false,
            end_after_cr: false,
        }
    }

    /// Appends `chunk` and calls `f` with each event that it completes, in order. An event is the
    /// exact bytes of the stream from its first byte through its terminating blank line, so the
    /// concatenation of everything passed to `f` plus `finish()` reproduces the input byte for
    /// byte. Zero-copy (`chunk.slice(..)`) when an event lies inside one chunk and nothing is
    /// buffered.
    ///
    /// An event whose blank line ends in '\r' exactly at the end of `chunk` is held until the
    /// next byte arrives (or `finish`), since that byte may be the '\n' of a "\r\n".
    ///
    /// An event that grows past [`MAX_EVENT`] without ending is handed out in pieces as it
    /// arrives (a hostile upstream cannot make catgate hold more than that per stream); the
    /// pieces still concatenate to the input.
    pub fn push(&mut self, chunk: Bytes, mut f: impl FnMut(Bytes)) {
        let mut start = 0;
        if !self.buf.is_empty() {
            match self.find_end(&chunk, 0) {
                Some(end) => {
                    self.buf.extend_from_slice(&chunk[..end]);
                    f(self.buf.split().freeze());
                    start = end;
                }
                None => {
                    self.buf.extend_from_slice(&chunk);
                    self.spill_oversized(&mut f);
                    return;
                }
            }
        }
        while let Some(end) = self.find_end(&chunk, start) {
            f(chunk.slice(start..end));
            start = end;
        }
        if start < chunk.len() {
            self.buf.extend_from_slice(&chunk[start..]);
            self.spill_oversized(&mut f);
        }
    }

    /// Hands out the buffered part of an event that outgrew [`MAX_EVENT`]; the scan state
    /// carries on, so the rest of the event is found and handed out as it arrives.
    fn spill_oversized(&mut self, f: &mut impl FnMut(Bytes)) {
        if self.buf.len() > MAX_EVENT {
            f(self.buf.split().freeze());
        }
    }

    /// At end of stream: the trailing incomplete event, if any bytes remain.
    pub fn finish(&mut self) -> Option<Bytes> {
        self.reset();
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }

    fn reset(&mut self) {
        self.line_empty = true;
        self.cr_pending = false;
        self.end_after_cr = false;
    }

    /// Scans `data[from..]`, continuing the state left by earlier bytes of the same event, and
    /// returns the index just past the event's end, if it ends inside `data`.
    fn find_end(&mut self, data: &[u8], from: usize) -> Option<usize> {
        let mut i = from;
        loop {
            if self.end_after_cr {
                let next = *data.get(i)?;
                self.reset();
                return Some(if next == b'\n' { i + 1 } else { i });
            }
            if self.cr_pending {
                let next = *data.get(i)?;
                self.cr_pending = false;
                if next == b'\n' {
                    i += 1;
                    continue;
                }
            }
            let rest = data.get(i..).unwrap_or_default();
            let Some(off) = memchr2(b'\n', b'\r', rest) else {
                if !rest.is_empty() {
                    self.line_empty = false;
                }
                return None;
            };
            let blank = self.line_empty && off == 0;
            self.line_empty = true;
            let j = i + off;
            match (data[j], blank) {
                (b'\n', true) => {
                    self.reset();
                    return Some(j + 1);
                }
                (b'\n', false) => {}
                (_, true) => self.end_after_cr = true,
                (_, false) => self.cr_pending = true,
            }
            i = j + 1;
        }
    }
}

/// The event's `data` field per the WHATWG SSE rules: all `data:` lines joined with '\n'
/// (one optional space after the colon removed); None when the event has no data line
/// (comment-only `: ping` events, `event:`/`id:`/`retry:` only).
pub fn event_data(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut out: Option<Cow<'_, [u8]>> = None;
    for line in Lines(event) {
        let value = match line.strip_prefix(b"data") {
            Some([]) => &[][..],
            Some([b':', b' ', v @ ..]) | Some([b':', v @ ..]) => v,
            // Another field whose name merely starts with "data", e.g. "database:".
            Some(_) | None => continue,
        };
        out = Some(match out {
            None => Cow::Borrowed(value),
            Some(prev) => {
                let mut joined = prev.into_owned();
                joined.push(b'\n');
                joined.extend_from_slice(value);
                Cow::Owned(joined)
            }
        });
    }
    out
}

/// Lines of one event, split at "\r\n", "\n" or "\r"; the blank terminating line is skipped.
struct Lines<'a>(&'a [u8]);

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.0.is_empty() {
            return None;
        }
        let (line, rest) = match memchr2(b'\n', b'\r', self.0) {
            None => (self.0, &[][..]),
            Some(i) => {
                let skip = if self.0[i..].starts_with(b"\r\n") {
                    2
                } else {
                    1
                };
                (&self.0[..i], &self.0[i + skip..])
            }
        };
        self.0 = rest;
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pieces: &[&[u8]]) -> (Vec<Bytes>, Option<Bytes>) {
        let mut s = SseSplitter::new();
        let mut events = Vec::new();
        for p in pieces {
            s.push(Bytes::copy_from_slice(p), |e| events.push(e));
        }
        (events, s.finish())
    }

    fn data(event: &[u8]) -> Option<Vec<u8>> {
        event_data(event).map(Cow::into_owned)
    }

    #[test]
    fn many_events_in_one_chunk_are_zero_copy() {
        let chunk = Bytes::from_static(b"data: a\n\n: ping\n\ndata: b\n\ndata: [DONE]\n\n");
        let mut s = SseSplitter::default();
        let mut events = Vec::new();
        s.push(chunk.clone(), |e| events.push(e));
        let want: [&[u8]; 4] = [
            b"data: a\n\n",
            b": ping\n\n",
            b"data: b\n\n",
            b"data: [DONE]\n\n",
        ];
        assert_eq!(events, want);
        let inside = chunk.as_ptr_range();
        assert!(events.iter().all(|e| inside.contains(&e.as_ptr())));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn every_line_ending_style() {
        for (input, want) in [
            (
                &b"data: a\r\n\r\ndata: b\r\n\r\n"[..],
                &[&b"data: a\r\n\r\n"[..], b"data: b\r\n\r\n"][..],
            ),
            (b"data: a\r\rdata: b\r\r", &[b"data: a\r\r", b"data: b\r\r"]),
            (
                b"data: a\n\r\ndata: b\r\n\n",
                &[b"data: a\n\r\n", b"data: b\r\n\n"],
            ),
        ] {
            let (events, rest) = split(&[input]);
            // A trailing '\r' might still be followed by '\n': only `finish` can release it.
            let all: Vec<Bytes> = events.into_iter().chain(rest).collect();
            assert_eq!(all, want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn split_between_cr_and_lf_is_one_terminator() {
        let (events, rest) = split(&[b"data: a\r\n\r", b"\ndata: b\r", b"\n\r\n"]);
        assert_eq!(events, [&b"data: a\r\n\r\n"[..], b"data: b\r\n\r\n"]);
        assert_eq!(rest, None);
    }

    #[test]
    fn trailing_partial_event_comes_from_finish() {
        let (events, rest) = split(&[b"data: a\n\nda", b"ta: {\"x\""]);
        assert_eq!(events, [&b"data: a\n\n"[..]]);
        assert_eq!(rest.as_deref(), Some(&b"data: {\"x\""[..]));
    }

    #[test]
    fn data_field_rules() {
        assert_eq!(data(b"data: x\n\n"), Some(b"x".to_vec()));
        assert_eq!(data(b"data:x\n\n"), Some(b"x".to_vec()));
        assert_eq!(data(b"data:  x\n\n"), Some(b" x".to_vec()));
        assert_eq!(data(b"data\n\n"), Some(Vec::new()));
        assert_eq!(
            data(b"data: a\r\ndata:b\rdata: c\n\n"),
            Some(b"a\nb\nc".to_vec())
        );
        assert_eq!(data(b"event: x\nid: 1\n: data: no\ndatum: no\n\n"), None);
        assert_eq!(data(b": ping\n\n"), None);
        assert_eq!(data(b"retry: 10\r\n\r\n"), None);
        assert!(matches!(
            event_data(b"data: one\n\n"),
            Some(Cow::Borrowed(_))
        ));
    }

    /// A realistic chat stream: 200 events with comments, `event:` lines and a multi-line
    /// data field, in mixed line-ending styles.
    fn stream() -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut events = Vec::new();
        for i in 0..200 {
            let nl = ["\n", "\r\n", "\r"][i % 3];
            let e = match i {
                0 => format!(": keep-alive{nl}{nl}"),
                199 => format!("data: [DONE]{nl}{nl}"),
                50 => format!("event: note{nl}data: line one{nl}data:line two{nl}{nl}"),
                _ => format!(
                    "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"w{i} \"}},\"finish_reason\":null}}],\"usage\":null}}{nl}{nl}"
                ),
            };
            events.push(e.into_bytes());
        }
        (events.concat(), events)
    }

    #[test]
    fn every_single_split_point_reassembles_exactly() {
        let (input, want) = stream();
        for cut in 0..=input.len() {
            let (events, rest) = split(&[&input[..cut], &input[cut..]]);
            let all: Vec<Bytes> = events.into_iter().chain(rest).collect();
            assert_eq!(all.len(), want.len(), "cut at {cut}");
            assert!(all.iter().zip(&want).all(|(a, b)| a == b), "cut at {cut}");
            assert_eq!(all.concat(), input, "cut at {cut}");
        }
        let (events, _) = split(&[&input]);
        assert_eq!(data(&events[50]), Some(b"line one\nline two".to_vec()));
        assert_eq!(data(&events[0]), None);
    }

    #[test]
    fn byte_by_byte_feed() {
        let (input, want) = stream();
        let pieces: Vec<&[u8]> = input.chunks(1).collect();
        let (events, rest) = split(&pieces);
        let all: Vec<Bytes> = events.into_iter().chain(rest).collect();
        assert!(all.iter().map(|b| &b[..]).eq(want.iter().map(|v| &v[..])));
    }

    #[test]
    fn an_endless_event_is_handed_out_in_bounded_pieces() {
        let mut splitter = SseSplitter::new();
        let mut input = Vec::new();
        let mut pieces: Vec<Bytes> = Vec::new();
        let huge = format!("data: {}", "x".repeat(3 << 20));
        for part in huge
            .as_bytes()
            .chunks(64 * 1024)
            .chain([&b"\n\ndata: ok\n\n"[..]])
        {
            input.extend_from_slice(part);
            splitter.push(Bytes::copy_from_slice(part), |e| pieces.push(e));
            assert!(splitter.buf.len() <= MAX_EVENT + 64 * 1024);
        }
        assert!(pieces.iter().all(|p| p.len() <= MAX_EVENT + 64 * 1024));
        assert_eq!(pieces.last().map(|p| &p[..]), Some(&b"data: ok\n\n"[..]));
        assert_eq!(pieces.concat(), input, "pieces concatenate to the input");
    }
}
