//! Bodies: reading a client's request body (bounded in size and time), and the one response
//! body type — a whole buffer (admin answers, catgate-made errors) or a streamed body (the
//! proxy's metered upstream answers).
//!
//! The streamed variant is a boxed trait object, so this module knows no proxy type: the proxy
//! depends on bodies, never the other way round.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;

use crate::error::BoxError;
use crate::upload::ReadError;

pub enum ResponseBody {
    Full(Option<Bytes>),
    /// Boxed once per answer, as the wrappers it replaces were.
    Stream(UnsyncBoxBody<Bytes, BoxError>),
}

impl ResponseBody {
    pub fn empty() -> Self {
        ResponseBody::Full(None)
    }

    pub fn stream<B>(body: B) -> Self
    where
        B: Body<Data = Bytes, Error = BoxError> + Send + 'static,
    {
        ResponseBody::Stream(UnsyncBoxBody::new(body))
    }
}

/// A whole buffer (what error responses are built from, see `error.rs`).
impl From<Bytes> for ResponseBody {
    fn from(bytes: Bytes) -> Self {
        ResponseBody::Full(Some(bytes))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ResponseBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Stream(s) => Pin::new(s).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(b) => b.is_none(),
            ResponseBody::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ResponseBody::Full(None) => SizeHint::with_exact(0),
            ResponseBody::Stream(s) => s.size_hint(),
        }
    }
}

/// A JSON response with `status`.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::Full(Some(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Serializes `value` as a JSON response; serialization of our own types cannot fail in
/// practice, but if it does the client gets a 500 rather than a panic.
pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<ResponseBody> {
    match serde_json::to_vec(value) {
        Ok(body) => json_response(status, body),
        Err(_) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"error":"internal error"}"#.to_vec(),
        ),
    }
}

/// Reads a whole request body of at most `limit` bytes (at most
/// [`crate::upload::MEMORY_LIMIT`]: this is for bodies that are used whole, like the admin
/// API's JSON) within `deadline` (from now). A body that arrives in one frame is returned
/// without a copy.
///
/// The deadline bounds the whole body, not each frame: a client trickling a byte at a time
/// must not hold a connection and a buffer for ever.
pub async fn read_limited(
    body: Incoming,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, ReadError> {
    let limit = limit.min(crate::upload::MEMORY_LIMIT);
    match crate::upload::read(body, limit, deadline).await? {
        crate::upload::RequestBody::Memory(bytes) => Ok(bytes),
        crate::upload::RequestBody::Spooled(_) => Err(ReadError::TooLarge),
    }
}
