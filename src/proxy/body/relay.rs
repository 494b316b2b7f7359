//! A cache fill that runs at the origin's pace, not at its first client's (issue 11: a
//! stalled first client must not hold the fill, nor the collapsed requests waiting on it).
//!
//! A response relayed while it fills the cache is read from upstream by a task of its own, the
//! *pump*: it drives the [`UpstreamStream`] (read timeout, cache writer, commit before the last
//! bytes, exactly as a directly relayed body) and queues each frame for the client, which reads
//! the queue at its own pace. A client that falls more than [`WINDOW`] behind gets no more
//! queued frames: once the entry is committed, it carries on from the stored copy at the byte
//! where it fell behind. So the fill moves as fast as the origin sends, whatever one client
//! does, and a fill holds at most a window of memory for its client.
//!
//! Running ahead is allowed only while the store is taking a body of announced length (it
//! then commits unless the upstream breaks its own framing, which fails the client anyway).
//! Otherwise (a chunked body that may yet prove too large, a fill the writer gave up) the pump
//! waits for the client once the window is full, as a plain relay does. A client that goes
//! away stops the pump, which abandons the fill, unless requests are collapsed behind it and it
//! may run ahead (Squid likewise keeps fetching for the other clients of an entry).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

use super::{DiskSlice, UpstreamStream};
use crate::cache::fill::FillSink;
use crate::cache::store::{HitBody, Store};
use crate::error::BoxError;

/// Most bytes queued for a client that does not keep up.
pub(super) const WINDOW: usize = 4 << 20;

/// Why a relayed fill ended a client's response early.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RelayFailed(String);

/// The client's end.
#[derive(Debug)]
pub(super) struct RelayReader {
    channel: Arc<Channel>,
    /// The stored copy the client carries on from after falling behind.
    resumed: Option<Resumed>,
    /// Bytes handed to the client so far.
    delivered: u64,
    /// The body's announced length, for the size hint.
    length: Option<u64>,
}

#[derive(Debug)]
enum Resumed {
    Memory(Option<Bytes>),
    Disk(DiskSlice),
}

#[derive(Debug, Default)]
struct Channel {
    state: Mutex<State>,
    /// Wakes the pump when the client took a frame or went away.
    space: Notify,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Frame<Bytes>>,
    queued_bytes: usize,
    /// Body bytes the pump took from upstream (queued or not).
    produced: u64,
    /// Where the first byte not queued (the client being too far behind) starts.
    lagged_at: Option<u64>,
    end: End,
    reader: Option<Waker>,
    reader_gone: bool,
    /// The client had every byte before it went away.
    reader_done: bool,
}

#[derive(Debug, Default)]
enum End {
    #[default]
    Open,
    /// Everything queued is everything there is.
    Complete,
    /// The rest comes from the stored copy, from `lagged_at`.
    Resume(Option<HitBody>),
    Failed(String),
}

impl Channel {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic elsewhere while holding it; the queue itself is intact.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    fn wake_reader(&mut self) {
        if let Some(waker) = self.reader.take() {
            waker.wake();
        }
    }
}

/// Starts the pump for `stream` (which carries the fill) and returns the client's end.
pub(super) fn spawn(stream: Box<UpstreamStream>, store: Store) -> RelayReader {
    let length = stream.inner.size_hint().exact().map(|rest| {
        rest + stream
            .first
            .as_ref()
            .and_then(Frame::data_ref)
            .map_or(0, |d| d.len() as u64)
    });
    let channel = Arc::new(Channel::default());
    tokio::spawn(pump(stream, Arc::clone(&channel), store));
    RelayReader {
        channel,
        resumed: None,
        delivered: 0,
        length,
    }
}

/// Whether the fill may run ahead of the client (see the module comment).
fn may_run_ahead(fill: Option<&FillSink>) -> bool {
    fill.is_some_and(|f| f.length_known() && f.is_filling())
}

async fn pump(mut stream: Box<UpstreamStream>, channel: Arc<Channel>, store: Store) {
    // Kept: the stream hands its sink over for the commit at the end.
    let identity = stream.fill.as_ref().map(FillSink::identity);
    loop {
        // Room for the client, unless the fill may run ahead of it.
        loop {
            let notified = channel.space.notified();
            {
                let st = channel.lock();
                if st.reader_gone {
                    let for_others = may_run_ahead(stream.fill.as_ref())
                        && stream.fill.as_ref().is_some_and(FillSink::has_waiters);
                    if !st.reader_done && !stream.is_end() && !for_others {
                        // Dropping the stream drops its sink uncompleted: the fill is abandoned
                        // (Squid's quick_abort: nobody else wants the rest).
                        return;
                    }
                    // The client had the whole body (hyper stops reading a body once it has
                    // the announced length, an empty one at once), or requests collapsed behind
                    // the fill want it: finish the fill.
                    break;
                }
                if st.lagged_at.is_some() && !may_run_ahead(stream.fill.as_ref()) {
                    if stream.fill.is_some() {
                        drop(st);
                        fail(
                            &channel,
                            "the cache fill stopped while this client was behind",
                        );
                        return;
                    }
                    // The sink was handed over for the commit: the stream is finishing.
                    break;
                }
                if st.queued_bytes < WINDOW || may_run_ahead(stream.fill.as_ref()) {
                    break;
                }
            }
            notified.await;
        }
        let run_ahead = may_run_ahead(stream.fill.as_ref());
        let next = std::future::poll_fn(|cx| stream.poll_next(cx)).await;
        if matches!(next, Some(Err(_))) {
            // Abandon the fill before the client hears of the failure, so that a request it
            // makes next cannot attach to the dead fill.
            stream.fill = None;
        }
        let finished = stream.is_end();
        let lagged_at_end = match take_frame(&channel, next, finished, run_ahead) {
            Step::More => continue,
            Step::Done => return,
            Step::Resume { produced } => produced,
        };
        // The body is complete and the entry committed (if it could be): the client that fell
        // behind carries on from it.
        let hit = match &identity {
            Some(identity) => store
                .lookup(&identity.key)
                .await
                .filter(|hit| identity.is_entry(&hit.head, lagged_at_end)),
            None => None,
        };
        let mut st = channel.lock();
        st.end = match hit {
            Some(hit) => End::Resume(Some(hit.body)),
            None => {
                End::Failed("the cached copy a slow client was to carry on from is gone".to_owned())
            }
        };
        st.wake_reader();
        return;
    }
}

/// What the pump does after a frame.
enum Step {
    More,
    Done,
    /// The body ended after the client fell behind; `produced` bytes in all.
    Resume {
        produced: u64,
    },
}

/// Queues (or, for a client too far behind, drops) what the stream yielded.
fn take_frame(
    channel: &Channel,
    next: Option<Result<Frame<Bytes>, BoxError>>,
    finished: bool,
    run_ahead: bool,
) -> Step {
    let mut st = channel.lock();
    match next {
        Some(Ok(frame)) => {
            let len = frame.data_ref().map_or(0, Bytes::len);
            let offset = st.produced;
            st.produced += len as u64;
            let behind = st.queued_bytes.saturating_add(len) > WINDOW || st.reader_gone;
            if st.lagged_at.is_none() && !(behind && run_ahead) {
                st.queued_bytes += len;
                st.queue.push_back(frame);
            } else if st.lagged_at.is_none() {
                tracing::debug!(offset, "cache fill ran ahead of a slow client");
                st.lagged_at = Some(offset);
            }
            if !finished {
                st.wake_reader();
                return Step::More;
            }
        }
        Some(Err(e)) => {
            st.end = End::Failed(e.to_string());
            st.wake_reader();
            return Step::Done;
        }
        None => {}
    }
    if st.lagged_at.is_none() {
        st.end = End::Complete;
        st.wake_reader();
        return Step::Done;
    }
    Step::Resume {
        produced: st.produced,
    }
}

fn fail(channel: &Channel, why: &str) {
    let mut st = channel.lock();
    st.end = End::Failed(why.to_owned());
    st.wake_reader();
}

impl RelayReader {
    pub(super) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = self.poll_inner(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            self.delivered += frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        polled
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(resumed) = &mut self.resumed {
            return match resumed {
                Resumed::Memory(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
                Resumed::Disk(slice) => slice.poll_next(cx),
            };
        }
        let mut st = self.channel.lock();
        if let Some(frame) = st.queue.pop_front() {
            st.queued_bytes -= frame.data_ref().map_or(0, Bytes::len);
            drop(st);
            self.channel.space.notify_one();
            return Poll::Ready(Some(Ok(frame)));
        }
        match &mut st.end {
            End::Open => {
                st.reader = Some(cx.waker().clone());
                Poll::Pending
            }
            End::Complete => Poll::Ready(None),
            End::Failed(why) => {
                let why = std::mem::take(why);
                st.end = End::Complete;
                Poll::Ready(Some(Err(Box::new(RelayFailed(why)))))
            }
            End::Resume(_) => {
                let offset = st.lagged_at.unwrap_or(0);
                let body = match &mut st.end {
                    End::Resume(body) => body.take(),
                    _ => None,
                };
                st.end = End::Complete;
                drop(st);
                self.resumed = Some(match body {
                    Some(HitBody::Memory(bytes)) => {
                        let start = usize::try_from(offset)
                            .unwrap_or(bytes.len())
                            .min(bytes.len());
                        Resumed::Memory(Some(bytes.slice(start..)).filter(|b| !b.is_empty()))
                    }
                    Some(HitBody::Disk(body)) => Resumed::Disk(DiskSlice {
                        body,
                        skip: offset,
                        remaining: u64::MAX,
                    }),
                    None => Resumed::Memory(None),
                });
                self.poll_inner(cx)
            }
        }
    }

    pub(super) fn is_end_stream(&self) -> bool {
        // Every announced byte delivered ends the body, but a length of 0 is delivered from
        // the start: that body ends when the pump does, after the commit.
        if let Some(length) = self.length {
            if length > 0 && self.delivered >= length {
                return true;
            }
        }
        match &self.resumed {
            Some(Resumed::Memory(bytes)) => bytes.is_none(),
            Some(Resumed::Disk(slice)) => slice.remaining == 0 || slice.body.is_end_stream(),
            None => {
                let st = self.channel.lock();
                st.queue.is_empty() && matches!(st.end, End::Complete) && st.lagged_at.is_none()
            }
        }
    }

    pub(super) fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(length) => SizeHint::with_exact(length.saturating_sub(self.delivered)),
            None => SizeHint::new(),
        }
    }
}

impl Drop for RelayReader {
    fn drop(&mut self) {
        let done = self.length.is_some_and(|length| self.delivered >= length);
        let mut st = self.channel.lock();
        st.reader_gone = true;
        st.reader_done = done;
        drop(st);
        self.channel.space.notify_one();
    }
}
