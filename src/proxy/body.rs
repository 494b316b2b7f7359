//! The body of every response cuttle sends: generated, or streamed from an upstream.
//!
//! One enum instead of a boxed trait object keeps the hot path free of allocation and dynamic
//! dispatch. The upstream variant relays frames as they arrive (never buffering the whole body),
//! applies the upstream read timeout between frames, and turns an upstream failure after the
//! header went out into a body error, which makes hyper abort the client connection: a
//! truncated body is never presented as complete. The attached [`Transaction`] counts bytes and
//! writes the access-log record when the body ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::Sleep;

use super::transaction::Transaction;
use crate::error::BoxError;

/// A response body.
#[derive(Debug)]
pub struct ProxyBody {
    kind: Kind,
    /// Boxed: most of the struct's size, and only touched per frame.
    txn: Option<Box<Transaction>>,
}

#[derive(Debug)]
enum Kind {
    Empty,
    Full(Option<Bytes>),
    Upstream(UpstreamStream),
}

/// An upstream body being relayed.
#[derive(Debug)]
struct UpstreamStream {
    /// A frame read before the header was sent (see `proxy::forward`).
    first: Option<Frame<Bytes>>,
    inner: Incoming,
    read_timeout: Duration,
    /// Armed while waiting for the next frame.
    sleep: Option<Pin<Box<Sleep>>>,
}

/// Upstream failures after the response header was sent.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("upstream sent no body data for {0:?}")]
    ReadTimeout(Duration),
    #[error("upstream body failed: {0}")]
    Upstream(#[source] hyper::Error),
}

impl ProxyBody {
    /// No body.
    pub fn empty() -> Self {
        Self {
            kind: Kind::Empty,
            txn: None,
        }
    }

    /// A body held in memory.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            kind: if bytes.is_empty() {
                Kind::Empty
            } else {
                Kind::Full(Some(bytes))
            },
            txn: None,
        }
    }

    /// Relays an upstream body, starting with `first` if a frame was already read.
    pub fn upstream(first: Option<Frame<Bytes>>, inner: Incoming, read_timeout: Duration) -> Self {
        Self {
            kind: Kind::Upstream(UpstreamStream {
                first,
                inner,
                read_timeout,
                sleep: None,
            }),
            txn: None,
        }
    }

    /// Attaches the transaction that will be logged when this body ends.
    pub fn with_transaction(mut self, txn: Transaction) -> Self {
        self.txn = Some(Box::new(txn));
        self
    }

    fn finish(&mut self) {
        if let Some(mut txn) = self.txn.take() {
            txn.complete();
        }
    }

    fn fail(&mut self) {
        if let Some(mut txn) = self.txn.take() {
            txn.abort();
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // hyper stops polling a length-delimited body once it has all its bytes, so the final
        // `None` may never be seen: completeness is decided by the stream's own end state.
        if self.txn.is_some() {
            if self.is_end_stream() {
                self.finish();
            } else {
                self.fail();
            }
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = match &mut this.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream(stream) => stream.poll_next(cx),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(txn)) = (frame.data_ref(), this.txn.as_mut()) {
                    txn.body_bytes += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::warn!(error = %e, "aborting client response");
                this.fail();
            }
            Poll::Ready(None) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upstream(s) => s.first.is_none() && s.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(s) => {
                let first = s
                    .first
                    .as_ref()
                    .and_then(Frame::data_ref)
                    .map_or(0, |d| d.len() as u64);
                let inner = s.inner.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + first);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + first);
                }
                hint
            }
        }
    }
}

impl UpstreamStream {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.sleep = None;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(RelayError::Upstream(e).into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let timeout = self.read_timeout;
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Some(Err(RelayError::ReadTimeout(timeout).into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}
