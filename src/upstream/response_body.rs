//! The body of an upstream response, whichever client read it: our HTTP/1.1 codec
//! (`upstream::h1`) for ordinary requests, hyper for HTTP/2 and for connections that may
//! switch protocols. Its errors are the crate's [`Error`], classified where they happen.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::client::classify_hyper;
use super::h1;
use crate::error::Error;

/// An upstream response body.
#[derive(Debug)]
pub enum ResponseBody {
    H1(h1::Body),
    Hyper(Incoming),
}

impl ResponseBody {
    /// The address of the server that sent the response, when our codec read it (hyper's
    /// responses carry it as `HttpInfo` in their extensions instead).
    pub fn remote_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Self::H1(body) => body.remote_addr(),
            Self::Hyper(_) => None,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match self.get_mut() {
            Self::H1(body) => Pin::new(body).poll_frame(cx),
            Self::Hyper(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|e| classify_hyper(&e)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::H1(body) => body.is_end_stream(),
            Self::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::H1(body) => body.size_hint(),
            Self::Hyper(body) => body.size_hint(),
        }
    }
}
