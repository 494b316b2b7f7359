//! The request body the service sees, from either server: hyper's (HTTP/2) or our own
//! HTTP/1 server's (`h1`). One enum, so the request path has one type and no boxing.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::h1::H1Body;
use crate::error::BoxError;

/// A client's request body.
#[derive(Debug)]
pub enum ClientBody {
    /// From hyper's HTTP/2 server.
    Hyper(Incoming),
    /// From our HTTP/1 server.
    H1(H1Body),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Self::H1(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Hyper(body) => body.is_end_stream(),
            Self::H1(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Hyper(body) => body.size_hint(),
            Self::H1(body) => body.size_hint(),
        }
    }
}
