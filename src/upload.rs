//! Request bodies on their way upstream: small ones in memory, larger ones spooled to an
//! owner-only temp file as they arrive, so memory per request stays bounded whatever the size
//! of the upload. Failover resends a spooled body from its file; the file is deleted when the
//! last holder (the request, or its usage record awaiting an estimate) lets go.

use std::borrow::Cow;
use std::io::{Read, SeekFrom};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncSeekExt, AsyncWriteExt, ReadBuf};

/// Bodies up to this size stay in memory.
pub const MEMORY_LIMIT: usize = 1024 * 1024;
/// Bytes gathered before each write to the temp file, and read per upstream frame.
const CHUNK: usize = 256 * 1024;

/// Why a client's request body could not be read.
#[derive(Debug)]
pub enum ReadError {
    TooLarge,
    /// The whole body did not arrive before the deadline.
    TimedOut,
    Io(String),
}

/// A whole request body, as read from the client.
#[derive(Debug, Clone)]
pub enum RequestBody {
    Memory(Bytes),
    Spooled(Arc<Spooled>),
}

/// A body kept in a temp file (0600, deleted on drop).
#[derive(Debug)]
pub struct Spooled {
    path: tempfile::TempPath,
    len: u64,
}

impl Default for RequestBody {
    fn default() -> Self {
        RequestBody::Memory(Bytes::new())
    }
}

impl RequestBody {
    pub fn len(&self) -> u64 {
        match self {
            RequestBody::Memory(b) => b.len() as u64,
            RequestBody::Spooled(s) => s.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, for a body held in memory.
    pub fn in_memory(&self) -> Option<&Bytes> {
        match self {
            RequestBody::Memory(b) => Some(b),
            RequestBody::Spooled(_) => None,
        }
    }

    /// The whole body for a token estimate; blocking for a spooled body (the estimate runs on
    /// the blocking pool). Empty if the file cannot be read.
    pub fn contents_blocking(&self) -> Cow<'_, [u8]> {
        match self {
            RequestBody::Memory(b) => Cow::Borrowed(b),
            RequestBody::Spooled(s) => Cow::Owned(std::fs::read(&s.path).unwrap_or_default()),
        }
    }

    /// The first `n` bytes (blocking for a spooled body).
    pub fn head_blocking(&self, n: usize) -> Vec<u8> {
        match self {
            RequestBody::Memory(b) => b[..n.min(b.len())].to_vec(),
            RequestBody::Spooled(s) => {
                let mut head = Vec::with_capacity(n);
                let read = std::fs::File::open(&s.path)
                    .and_then(|f| f.take(n as u64).read_to_end(&mut head));
                if read.is_err() {
                    head.clear();
                }
                head
            }
        }
    }

    /// A blocking reader over a spooled body (for parsing it without loading it).
    pub fn reader_blocking(&self) -> Option<std::io::BufReader<std::fs::File>> {
        match self {
            RequestBody::Spooled(s) => std::fs::File::open(&s.path)
                .ok()
                .map(std::io::BufReader::new),
            RequestBody::Memory(_) => None,
        }
    }

    /// The body to send upstream: `prefix`, then the body from byte `skip` on.
    pub async fn upstream(
        &self,
        prefix: Option<Bytes>,
        skip: u64,
    ) -> std::io::Result<UpstreamBody> {
        match self {
            RequestBody::Memory(b) => {
                let rest = b.slice((skip as usize).min(b.len())..);
                Ok(UpstreamBody::Bytes(match prefix {
                    Some(p) => Some([p, rest].concat().into()),
                    None => Some(rest),
                }))
            }
            RequestBody::Spooled(s) => {
                let mut file = tokio::fs::File::open(&s.path).await?;
                file.seek(SeekFrom::Start(skip)).await?;
                Ok(UpstreamBody::File {
                    prefix,
                    file,
                    remaining: s.len.saturating_sub(skip),
                    scratch: vec![0; CHUNK],
                })
            }
        }
    }
}

/// Reads a whole request body of at most `limit` bytes within `deadline`, spooling it to a
/// temp file once it outgrows [`MEMORY_LIMIT`]. A body that arrives in one frame stays as that
/// frame, without a copy.
pub async fn read(
    body: Incoming,
    limit: usize,
    deadline: Duration,
) -> Result<RequestBody, ReadError> {
    tokio::time::timeout(deadline, read_all(body, limit))
        .await
        .unwrap_or(Err(ReadError::TimedOut))
}

async fn read_all(mut body: Incoming, limit: usize) -> Result<RequestBody, ReadError> {
    if body.size_hint().lower() > limit as u64 {
        return Err(ReadError::TooLarge);
    }
    let io = |e: std::io::Error| ReadError::Io(e.to_string());
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    let mut spool: Option<(tokio::fs::File, tempfile::TempPath)> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Io(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        if total > limit {
            return Err(ReadError::TooLarge);
        }
        if spool.is_none() && total <= MEMORY_LIMIT && first.is_none() && buf.is_empty() {
            first = Some(data);
            continue;
        }
        if let Some(f) = first.take() {
            buf.extend_from_slice(&f);
        }
        buf.extend_from_slice(&data);
        if spool.is_none() && total > MEMORY_LIMIT {
            spool = Some(create_spool().await.map_err(io)?);
        }
        if let Some((file, _)) = spool.as_mut() {
            if buf.len() >= CHUNK {
                file.write_all(&buf).await.map_err(io)?;
                buf.clear();
            }
        }
    }
    match spool {
        None => Ok(RequestBody::Memory(first.unwrap_or_else(|| buf.freeze()))),
        Some((mut file, path)) => {
            file.write_all(&buf).await.map_err(io)?;
            file.flush().await.map_err(io)?;
            Ok(RequestBody::Spooled(Arc::new(Spooled {
                path,
                len: total as u64,
            })))
        }
    }
}

async fn create_spool() -> std::io::Result<(tokio::fs::File, tempfile::TempPath)> {
    let named = tokio::task::spawn_blocking(|| {
        tempfile::Builder::new()
            .prefix("catgate-upload-")
            .tempfile()
    })
    .await
    .map_err(std::io::Error::other)??;
    let (file, path) = named.into_parts();
    Ok((tokio::fs::File::from_std(file), path))
}

/// The body of an upstream request: bytes in memory, or a spooled file read a chunk at a time.
pub enum UpstreamBody {
    Bytes(Option<Bytes>),
    File {
        prefix: Option<Bytes>,
        file: tokio::fs::File,
        remaining: u64,
        scratch: Vec<u8>,
    },
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            UpstreamBody::Bytes(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            UpstreamBody::File {
                prefix,
                file,
                remaining,
                scratch,
            } => {
                if let Some(p) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let want = scratch.len().min(*remaining as usize);
                let mut read = ReadBuf::new(&mut scratch[..want]);
                match Pin::new(file).poll_read(cx, &mut read) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                    Poll::Ready(Ok(())) if read.filled().is_empty() => {
                        Poll::Ready(Some(Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "spooled body shrank",
                        ))))
                    }
                    Poll::Ready(Ok(())) => {
                        let data = Bytes::copy_from_slice(read.filled());
                        *remaining -= data.len() as u64;
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Bytes(b) => b.as_ref().is_none_or(Bytes::is_empty),
            UpstreamBody::File {
                prefix, remaining, ..
            } => prefix.is_none() && *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Bytes(b) => {
                SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            UpstreamBody::File {
                prefix, remaining, ..
            } => SizeHint::with_exact(remaining + prefix.as_ref().map_or(0, |p| p.len() as u64)),
        }
    }
}

/// Where an include_usage splice goes in a spooled JSON body: just after its opening brace,
/// when it has no `stream_options` key (the common case). `None`: leave it as sent.
pub fn splice_point(head: &[u8], has_stream_options: bool) -> Option<u64> {
    if has_stream_options {
        return None;
    }
    let brace = head.iter().position(|b| !b.is_ascii_whitespace())?;
    (head[brace] == b'{').then_some(brace as u64 + 1)
}
