//! The body of a request on its way upstream: the client's stream, with a stall timeout, and a
//! progress mark that the upstream read timeout counts from.
//!
//! An upload can take longer than any fixed response timeout, so the wait for the upstream's
//! answer is measured from the last moment the request made progress (see `Progress`), not
//! from when it was sent. A client that stops sending mid-body is cut off after the
//! `client_read` timeout instead of holding an upstream connection forever.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::clock;
use crate::error::BoxError;

/// The last time a request made progress towards its upstream.
#[derive(Debug)]
pub struct Progress {
    origin: Instant,
    /// Milliseconds after `origin` of the last progress; atomic because the body and the
    /// waiting request run on different tasks.
    last_ms: AtomicU64,
}

impl Progress {
    /// Progress starting now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: clock::instant(),
            last_ms: AtomicU64::new(0),
        })
    }

    /// Records progress now.
    pub fn touch(&self) {
        self.last_ms
            .fetch_max(clock::millis_since(self.origin), Ordering::Relaxed);
    }

    /// When progress was last made.
    pub fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Why the client's body could not be relayed.
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    #[error("the client sent no request body data for {0:?}")]
    Timeout(Duration),
    #[error("reading the client's request body failed: {0}")]
    Read(#[source] BoxError),
}

/// The client's body, whichever server read it (the proxy's `ClientBody`); boxed so this
/// module needs no type from the request path, and only requests with content pay for it.
type ClientStream = Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send + Sync>>;

/// [`ClientStream`] with a `Debug` for the derive below.
struct Client(ClientStream);

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientStream")
    }
}

/// A request body relayed upstream.
#[derive(Debug)]
pub struct RequestBody {
    /// `None` for bodiless requests.
    inner: Option<Client>,
    /// Holds the body back until the next hop asks for it (`Expect: 100-continue`).
    gate: Option<super::continue_gate::Held>,
    /// The gate was abandoned: the body will never end (see `poll_frame`).
    abandoned: bool,
    /// Longest wait for the client's next frame.
    stall_timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    progress: Arc<Progress>,
}

impl RequestBody {
    /// Relays `inner`, marking `progress` on every frame.
    pub fn streaming<B>(inner: B, stall_timeout: Duration, progress: Arc<Progress>) -> Self
    where
        B: Body<Data = Bytes, Error = BoxError> + Send + Sync + 'static,
    {
        Self {
            inner: Some(Client(Box::pin(inner))),
            gate: None,
            abandoned: false,
            stall_timeout,
            sleep: None,
            progress,
        }
    }

    /// Sends nothing until `gate` opens; an abandoned gate drops the client's body unread
    /// (see `continue_gate`).
    pub fn gated(mut self, gate: super::continue_gate::Held) -> Self {
        self.gate = Some(gate);
        self
    }

    /// A request without a body.
    pub fn empty(progress: Arc<Progress>) -> Self {
        Self {
            inner: None,
            gate: None,
            abandoned: false,
            stall_timeout: Duration::ZERO,
            sleep: None,
            progress,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.abandoned {
            return Poll::Pending;
        }
        if let Some(gate) = this.gate.as_mut() {
            match gate.poll(cx) {
                Poll::Ready(super::continue_gate::Go::Send) => this.gate = None,
                Poll::Ready(super::continue_gate::Go::Abandon) => {
                    // The final response came first: the client's body is dropped unread (its
                    // connection then closes instead of reading it, RFC 9112 §9.3), and this
                    // request, whose body can never complete, stays unfinished until the
                    // upstream closes the connection it answered on.
                    this.inner = None;
                    this.abandoned = true;
                    this.gate = None;
                    return Poll::Pending;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.0.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.progress.touch();
                this.sleep = None;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(ClientBodyError::Read(e).into()))),
            Poll::Ready(None) => {
                this.progress.touch();
                this.inner = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let timeout = this.stall_timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.inner = None;
                        Poll::Ready(Some(Err(ClientBodyError::Timeout(timeout).into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.abandoned && self.inner.as_ref().is_none_or(|c| c.0.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |c| c.0.size_hint())
    }
}
