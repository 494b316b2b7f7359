//! The body of every response cuttle sends: generated, or streamed from an upstream.
//!
//! One enum instead of a boxed trait object keeps the hot path free of allocation and dynamic
//! dispatch. The upstream variant relays frames as they arrive (never buffering the whole body),
//! applies the upstream read timeout between frames, and turns an upstream failure after the
//! header went out into a body error, which makes hyper abort the client connection: a
//! truncated body is never presented as complete. The attached [`Transaction`] counts bytes and
//! writes the access-log record when the body ends.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;
use tokio::time::Sleep;

mod collapsed;
mod relay;
mod window;

use super::transaction::Transaction;
use crate::cache::fill::FillSink;
use crate::cache::serve::HitHead;
use crate::cache::store::DiskBody;
use crate::error::BoxError;
use crate::upstream::ResponseBody;

/// A response body.
#[derive(Debug)]
pub struct ProxyBody {
    kind: Kind,
    /// Boxed: most of the struct's size, and only touched per frame.
    txn: Option<Box<Transaction>>,
    /// The head of a plain hit as stored lines (see [`ProxyBody::plain_hit`]), for our
    /// HTTP/1 writer: carried here rather than as a response extension, which took a map and
    /// a box per hit. Boxed for the same reason as `txn`.
    head: Option<Box<HitHead>>,
}

#[derive(Debug)]
enum Kind {
    Empty,
    Full(Option<Bytes>),
    /// Several shared slices in order (multipart/byteranges from a memory hit).
    Chunks(VecDeque<Bytes>),
    /// Boxed: at ~230 bytes inline it made every body (and every `Response` carrying one,
    /// moved through each layer of the request path) that size, where the other kinds take
    /// at most 40; a disk hit's file reads dwarf one allocation.
    Disk(Box<DiskSlice>),
    /// Boxed so hit bodies (the hot path) stay small.
    Upstream(Box<UpstreamStream>),
    /// An upstream body filling the cache, read by its own task (see `relay`).
    Relay(Box<relay::RelayReader>),
    /// A fill in progress read by a request collapsed behind it (see `collapsed`).
    Collapsed(Box<collapsed::TapReader>),
    /// Bytes produced by a task of their own (a sliced object stitched from blocks).
    Channel(Feed),
    /// A byte range of another body (a range of an object being filled).
    Window(Box<window::Window>),
}

/// A body a task produces: exactly `remaining` bytes, or an error that aborts the response.
#[derive(Debug)]
struct Feed {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, BoxError>>,
    remaining: u64,
}

/// A disk hit, optionally a byte range of it.
#[derive(Debug)]
struct DiskSlice {
    body: DiskBody,
    /// Bytes still to drop from the front.
    skip: u64,
    /// Bytes still to send (`u64::MAX`: all).
    remaining: u64,
}

/// An upstream body being relayed.
#[derive(Debug)]
struct UpstreamStream {
    /// A frame read before the header was sent (see `proxy::forward`).
    first: Option<Frame<Bytes>>,
    inner: ResponseBody,
    read_timeout: Duration,
    /// Armed while waiting for the next frame.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Where a copy of each data frame goes while the response is being cached.
    fill: Option<FillSink>,
    /// A frame held back while the cache writer catches up.
    held: Option<Frame<Bytes>>,
    /// Keeps the group server's in-flight count until the body is done.
    guard: Option<crate::upstream::group::ActiveGuard>,
    /// The last frame (`None`: the end of the stream) held until the cache entry is
    /// committed, so that once a client has the whole response, later requests find it stored.
    finishing: Option<(Option<Frame<Bytes>>, oneshot::Receiver<bool>)>,
}

/// Upstream failures after the response header was sent.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("upstream sent no body data for {0:?}")]
    ReadTimeout(Duration),
    #[error("upstream body failed: {0}")]
    Upstream(#[source] crate::error::Error),
}

impl ProxyBody {
    /// No body.
    pub fn empty() -> Self {
        Self {
            kind: Kind::Empty,
            txn: None,
            head: None,
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
            head: None,
        }
    }

    /// Relays an upstream body, starting with `first` if a frame was already read.
    pub fn upstream(
        first: Option<Frame<Bytes>>,
        inner: ResponseBody,
        read_timeout: Duration,
    ) -> Self {
        Self {
            kind: Kind::Upstream(Box::new(UpstreamStream {
                first,
                inner,
                read_timeout,
                sleep: None,
                fill: None,
                held: None,
                guard: None,
                finishing: None,
            })),
            txn: None,
            head: None,
        }
    }

    /// Shared slices sent one after another.
    pub fn chunks(chunks: Vec<Bytes>) -> Self {
        Self {
            kind: Kind::Chunks(chunks.into_iter().filter(|c| !c.is_empty()).collect()),
            txn: None,
            head: None,
        }
    }

    /// Exactly `len` bytes sent by a producer task through `rx`; an `Err`, or the channel
    /// closing early, aborts the response (a truncated body is never presented as complete).
    pub fn channel(rx: tokio::sync::mpsc::Receiver<Result<Bytes, BoxError>>, len: u64) -> Self {
        Self {
            kind: Kind::Channel(Feed { rx, remaining: len }),
            txn: None,
            head: None,
        }
    }

    /// The `len` bytes of `inner` from `offset`; once they are sent, the rest of `inner` is
    /// read by a task of its own, so a fill it carries completes (see `window`).
    pub fn window(inner: ProxyBody, offset: u64, len: u64) -> Self {
        Self {
            kind: Kind::Window(Box::new(window::Window::new(inner, offset, len))),
            txn: None,
            head: None,
        }
    }

    /// `len` bytes of a disk hit starting at `offset` (`len = u64::MAX` for the rest).
    pub fn disk(body: DiskBody, offset: u64, len: u64) -> Self {
        Self {
            kind: Kind::Disk(Box::new(DiskSlice {
                body,
                skip: offset,
                remaining: len,
            })),
            txn: None,
            head: None,
        }
    }

    /// Streams the body of a fill in progress to a request collapsed behind it, carrying on
    /// from the committed copy in `store` if it falls behind (read-while-writer).
    pub fn collapsed(
        attached: crate::cache::collapse::Attached,
        store: &crate::cache::store::Store,
    ) -> Self {
        Self {
            kind: Kind::Collapsed(Box::new(collapsed::TapReader::new(attached, store.clone()))),
            txn: None,
            head: None,
        }
    }

    /// Counts the response against its upstream server until the body is done.
    pub fn with_guard(mut self, guard: Option<crate::upstream::group::ActiveGuard>) -> Self {
        if let Kind::Upstream(stream) = &mut self.kind {
            stream.guard = guard;
        }
        self
    }

    /// Copies an upstream body into the cache as it is relayed: a task of its own reads it at
    /// the origin's pace and fills `store`, and this body reads what it relays (see `relay`).
    /// Attach the guard first: it goes with the upstream stream.
    pub fn with_fill(mut self, fill: Option<FillSink>, store: &crate::cache::store::Store) -> Self {
        let Some(fill) = fill else {
            return self;
        };
        if let Kind::Upstream(mut stream) = std::mem::replace(&mut self.kind, Kind::Empty) {
            stream.fill = Some(fill);
            self.kind = Kind::Relay(Box::new(relay::spawn(stream, store.clone())));
        }
        self
    }

    /// The body of a plain hit (`caching::reply`) whose head goes to the HTTP/1 writer as the
    /// stored lines in `head`: the response's own map stays empty.
    pub fn plain_hit(mut body: Self, head: HitHead) -> Self {
        body.head = Some(Box::new(head));
        body
    }

    /// The head of a plain hit, if this body carries one.
    pub fn hit_head(&self) -> Option<&HitHead> {
        self.head.as_deref()
    }

    /// Takes the head of a plain hit out, for the writer.
    pub fn take_hit_head(&mut self) -> Option<Box<HitHead>> {
        self.head.take()
    }

    /// Attaches the transaction that will be logged when this body ends.
    pub fn with_transaction(mut self, txn: Box<Transaction>) -> Self {
        self.txn = Some(txn);
        self
    }

    fn finish(&mut self) {
        if let Kind::Upstream(stream) = &mut self.kind {
            if let Some(fill) = stream.fill.take() {
                let _ = fill.complete();
            }
        }
        if let Some(mut txn) = self.txn.take() {
            txn.complete();
        }
    }

    fn fail(&mut self) {
        if let Kind::Upstream(stream) = &mut self.kind {
            // Dropping the sink without `complete` abandons the cache entry.
            stream.fill = None;
        }
        if let Some(mut txn) = self.txn.take() {
            txn.abort();
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // hyper stops polling a length-delimited body once it has all its bytes, so the final
        // `None` may never be seen: completeness is decided by the stream's own end state.
        let filling = matches!(&self.kind, Kind::Upstream(s) if s.fill.is_some());
        if self.txn.is_some() || filling {
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
            Kind::Chunks(chunks) => Poll::Ready(chunks.pop_front().map(|b| Ok(Frame::data(b)))),
            Kind::Disk(slice) => slice.poll_next(cx),
            Kind::Upstream(stream) => stream.poll_next(cx),
            Kind::Relay(reader) => reader.poll_next(cx),
            Kind::Collapsed(reader) => reader.poll_next(cx),
            Kind::Channel(feed) => feed.poll_next(cx),
            Kind::Window(window) => window.poll_next(cx),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(txn)) = (frame.data_ref(), this.txn.as_mut()) {
                    txn.body_bytes += data.len() as u64;
                    if matches!(this.kind, Kind::Upstream(_) | Kind::Relay(_)) {
                        txn.upstream_bytes += data.len() as u64;
                    }
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
            Kind::Chunks(chunks) => chunks.is_empty(),
            Kind::Disk(slice) => slice.remaining == 0 || slice.body.is_end_stream(),
            Kind::Upstream(s) => s.is_end(),
            Kind::Relay(reader) => reader.is_end_stream(),
            Kind::Collapsed(reader) => reader.is_end_stream(),
            Kind::Channel(feed) => feed.remaining == 0,
            Kind::Window(window) => window.is_end(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Chunks(chunks) => {
                SizeHint::with_exact(chunks.iter().map(|c| c.len() as u64).sum())
            }
            Kind::Disk(slice) => {
                let mut hint = SizeHint::new();
                if slice.remaining != u64::MAX {
                    hint.set_upper(slice.remaining);
                }
                hint
            }
            Kind::Relay(reader) => reader.size_hint(),
            Kind::Collapsed(reader) => reader.size_hint(),
            Kind::Channel(feed) => SizeHint::with_exact(feed.remaining),
            Kind::Window(window) => SizeHint::with_exact(window.remaining()),
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

impl Feed {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(mut data))) => {
                let len = data.len() as u64;
                if len > self.remaining {
                    data.truncate(usize::try_from(self.remaining).unwrap_or(data.len()));
                }
                self.remaining = self.remaining.saturating_sub(len);
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(Some(Err("body producer ended early".into()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl DiskSlice {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.remaining == 0 {
                return Poll::Ready(None);
            }
            let frame = match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            let Ok(mut data) = frame.into_data() else {
                continue;
            };
            let len = data.len() as u64;
            if self.skip >= len {
                self.skip -= len;
                continue;
            }
            if self.skip > 0 {
                data = data.slice(usize::try_from(self.skip).unwrap_or(0)..);
                self.skip = 0;
            }
            if (data.len() as u64) > self.remaining {
                data.truncate(usize::try_from(self.remaining).unwrap_or(data.len()));
            }
            if self.remaining != u64::MAX {
                self.remaining -= data.len() as u64;
            }
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
    }
}

impl UpstreamStream {
    /// Everything was relayed (and the fill, if any, finished).
    fn is_end(&self) -> bool {
        self.first.is_none()
            && self.held.is_none()
            && self.finishing.is_none()
            && self.inner.is_end_stream()
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some((frame, committed)) = self.finishing.as_mut() {
            if Pin::new(committed).poll(cx).is_pending() {
                return Poll::Pending;
            }
            let frame = frame.take();
            self.finishing = None;
            return Poll::Ready(frame.map(Ok));
        }
        let frame = match self.held.take().or_else(|| self.first.take()) {
            Some(frame) => frame,
            None => match self.poll_inner(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(None) => return self.finish_fill(None, cx),
                other => return other,
            },
        };
        if let (Some(fill), Some(data)) = (self.fill.as_mut(), frame.data_ref()) {
            if fill.poll_offer(cx, data).is_pending() {
                self.held = Some(frame);
                return Poll::Pending;
            }
        }
        if self.fill.is_some() && self.first.is_none() && self.inner.is_end_stream() {
            return self.finish_fill(Some(frame), cx);
        }
        Poll::Ready(Some(Ok(frame)))
    }

    /// The upstream body is complete: commit the cache entry, then release `last`.
    fn finish_fill(
        &mut self,
        last: Option<Frame<Bytes>>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.fill.take().and_then(FillSink::complete) {
            Some(committed) => {
                self.finishing = Some((last, committed));
                self.poll_next(cx)
            }
            None => Poll::Ready(last.map(Ok)),
        }
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
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

/// An upstream body with its already-read first frame put back in front; for draining into
/// the cache without a client.
#[derive(Debug)]
pub struct Prefixed {
    first: Option<Frame<Bytes>>,
    inner: ResponseBody,
}

impl Prefixed {
    /// `first` followed by the rest of `inner`.
    pub fn new(first: Option<Frame<Bytes>>, inner: ResponseBody) -> Self {
        Self { first, inner }
    }
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = crate::error::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, crate::error::Error>>> {
        if let Some(frame) = self.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.inner.is_end_stream()
    }
}
