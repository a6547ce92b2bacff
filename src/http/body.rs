//! The body of an API response: whole, or a streamed read's first bytes followed by the
//! rest as PostgreSQL produces it (see `db::stream`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

use super::head_clock::Answering;
use crate::db::{BodyRest, Chunk};

pub enum ApiBody {
    /// Sent with its Content-Length; `None` once sent.
    Whole(Option<Bytes>),
    /// Sent chunked: the bytes already read, then the rest until its end.
    Streamed {
        first: Option<Bytes>,
        rest: BodyRest,
        /// The connection's head clock stands still while this is being sent.
        answering: Option<Answering>,
    },
}

impl ApiBody {
    pub fn whole(body: impl Into<Bytes>) -> ApiBody {
        ApiBody::Whole(Some(body.into()))
    }

    /// This (whole) body's bytes, then `rest`.
    pub fn followed_by(self, rest: BodyRest) -> ApiBody {
        let first = match self {
            ApiBody::Whole(first) => first,
            ApiBody::Streamed { first, .. } => first,
        };
        ApiBody::Streamed {
            first,
            rest,
            answering: None,
        }
    }

    /// Keeps `answering` until a streamed body is sent (or dropped); a whole one lets it
    /// go now, as hyper takes it whole at once.
    pub fn hold(&mut self, answering: Answering) {
        if let ApiBody::Streamed {
            answering: held, ..
        } = self
        {
            *held = Some(answering);
        }
    }
}

/// A streamed body that broke off before its end: hyper then closes the connection
/// without the last chunk, so the client cannot take what it got for the whole body.
#[derive(Debug)]
pub struct BrokenOff;

impl std::fmt::Display for BrokenOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the response body broke off")
    }
}

impl std::error::Error for BrokenOff {}

impl hyper::body::Body for ApiBody {
    type Data = Bytes;
    type Error = BrokenOff;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BrokenOff>>> {
        match self.get_mut() {
            ApiBody::Whole(body) => Poll::Ready(
                body.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            ApiBody::Streamed { first, rest, .. } => {
                if let Some(first) = first.take() {
                    return Poll::Ready(Some(Ok(Frame::data(first))));
                }
                match rest.poll_chunk(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Some(Chunk::Data(data))) => {
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    Poll::Ready(Some(Chunk::End)) => Poll::Ready(None),
                    Poll::Ready(None) => Poll::Ready(Some(Err(BrokenOff))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ApiBody::Whole(body) => body.as_ref().is_none_or(Bytes::is_empty),
            ApiBody::Streamed { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ApiBody::Whole(body) => {
                SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64))
            }
            ApiBody::Streamed { .. } => SizeHint::default(),
        }
    }
}
