//! Read-while-writer: the bytes of a fill in progress, for the requests collapsed behind it
//! (Squid's store clients reading a `STORE_PENDING` entry; Varnish's streaming busy object).
//!
//! The fill's sink pushes every chunk it hands the writer into a [`Tap`]; each waiter reads
//! the tap from its own offset and so gets its first byte when the leader's client does. The
//! chunks are the upstream's own `Bytes`, shared by reference count: no waiter copies the body.
//! Memory is bounded: the tap keeps only the last [`WINDOW`] bytes, whatever the waiters do. A
//! waiter that falls further behind is told so ([`Read::Behind`]) and carries on from the
//! committed entry, at its own offset, once the fill is stored. The entry itself stays
//! invisible to lookups until the commit: waiters are attached to the fill, never to a lookup.
//!
//! How a tap ends decides how its readers end: a stored fill (or a complete body the store
//! then refused) ends them cleanly after its last byte; an aborted fill ends them with an
//! error (an aborted response, never a clean EOF), as does a fill that was not stored when a
//! reader still needed the committed copy.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use super::meta::StoredHead;

/// Most body bytes a tap keeps for its readers.
pub const WINDOW: usize = 4 << 20;

/// A fill's body as it is written, readable by the requests collapsed on it.
#[derive(Debug)]
pub struct Tap {
    /// The key the entry is committed under (for readers resuming from it).
    key: String,
    /// The stored head of the entry being written.
    head: std::sync::Arc<StoredHead>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The most recent chunks with the offset each starts at.
    ring: VecDeque<(u64, Bytes)>,
    ring_bytes: usize,
    /// Body bytes pushed so far; the next chunk starts here.
    produced: u64,
    end: End,
    /// Readers waiting for more.
    wakers: Vec<Waker>,
}

/// Where the fill stands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum End {
    #[default]
    Open,
    /// The body ended cleanly; the commit is under way.
    BodyDone,
    /// The body is complete and settled: committed (`true`) or refused by the store.
    Settled { stored: bool },
    /// The fill was abandoned before the body ended.
    Aborted,
}

/// What a reader gets at its offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// The next bytes, from the reader's offset on.
    Data(Bytes),
    /// The whole body was read.
    End,
    /// The fill was aborted, or its bytes are no longer held and it was not stored.
    Aborted,
    /// The bytes at the reader's offset are no longer held, but the entry is committed:
    /// read on from it.
    Behind,
}

impl Tap {
    /// A tap for the fill of `head` under `key`.
    pub fn new(key: String, head: std::sync::Arc<StoredHead>) -> Self {
        Self {
            key,
            head,
            state: Mutex::default(),
        }
    }

    /// The key the entry is committed under.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The head of the response being filled (its `body_len` is the announced length).
    pub fn head(&self) -> &std::sync::Arc<StoredHead> {
        &self.head
    }

    /// Whether a stored `head` of a body `len` bytes long is the entry this fill committed,
    /// and not one a later fill stored under the same key.
    pub fn is_entry(&self, head: &StoredHead, len: u64) -> bool {
        head.response_time == self.head.response_time && head.body_len == len
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic elsewhere while holding it; the ring itself is intact.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the body's first byte is still held: a reader starting now streams from
    /// memory (one joining later would wait for the commit to read the start from the store).
    pub fn holds_start(&self) -> bool {
        let st = self.lock();
        st.ring.front().map_or(st.produced, |(at, _)| *at) == 0
    }

    /// Whether the fill was abandoned (a request arriving now must not attach to it).
    pub fn is_aborted(&self) -> bool {
        self.lock().end == End::Aborted
    }

    /// Adds the next chunk of the body, dropping the oldest beyond the window.
    pub fn push(&self, chunk: &Bytes) {
        if chunk.is_empty() {
            return;
        }
        let mut st = self.lock();
        if st.end != End::Open {
            return;
        }
        let offset = st.produced;
        st.produced += chunk.len() as u64;
        st.ring_bytes += chunk.len();
        st.ring.push_back((offset, chunk.clone()));
        while st.ring_bytes > WINDOW && st.ring.len() > 1 {
            if let Some((_, old)) = st.ring.pop_front() {
                st.ring_bytes -= old.len();
            }
        }
        st.wake_all();
    }

    /// The body ended cleanly; the outcome of the commit follows with [`Tap::settle`].
    pub fn body_done(&self) {
        let mut st = self.lock();
        if st.end == End::Open {
            st.end = End::BodyDone;
            st.wake_all();
        }
    }

    /// The fill is over: committed or not. Before a clean end of the body, this is an abort.
    pub fn settle(&self, stored: bool) {
        let mut st = self.lock();
        st.end = match st.end {
            End::BodyDone => End::Settled { stored },
            End::Open | End::Aborted => End::Aborted,
            settled @ End::Settled { .. } => settled,
        };
        st.wake_all();
    }

    /// The fill was abandoned: every reader's response ends aborted.
    pub fn abort(&self) {
        let mut st = self.lock();
        if matches!(st.end, End::Open | End::BodyDone) {
            st.end = End::Aborted;
            st.wake_all();
        }
    }

    /// Reads at `offset`, or registers `cx` to be woken when there is more to say.
    pub fn poll_read(&self, offset: u64, cx: &mut Context<'_>) -> Poll<Read> {
        let mut st = self.lock();
        let start = st.ring.front().map_or(st.produced, |(at, _)| *at);
        if offset < start {
            return match st.end {
                End::Settled { stored: true } => Poll::Ready(Read::Behind),
                End::Settled { stored: false } | End::Aborted => Poll::Ready(Read::Aborted),
                End::Open | End::BodyDone => st.wait(cx),
            };
        }
        if offset < st.produced {
            // The chunk holding `offset`: the last one starting at or before it.
            let at = st.ring.partition_point(|(begin, _)| *begin <= offset);
            if let Some((begin, chunk)) = at.checked_sub(1).and_then(|i| st.ring.get(i)) {
                let skip = usize::try_from(offset - begin).unwrap_or(usize::MAX);
                if skip < chunk.len() {
                    return Poll::Ready(Read::Data(chunk.slice(skip..)));
                }
            }
            return Poll::Ready(Read::Aborted);
        }
        match st.end {
            End::Settled { .. } => Poll::Ready(Read::End),
            End::Aborted => Poll::Ready(Read::Aborted),
            End::Open | End::BodyDone => st.wait(cx),
        }
    }
}

impl State {
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<Read> {
        if !self.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            self.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    fn wake_all(&mut self) {
        for waker in self.wakers.drain(..) {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::sync::Arc;

    fn tap() -> Arc<Tap> {
        Arc::new(Tap::new("k".into(), Arc::new(test_head())))
    }

    fn test_head() -> StoredHead {
        StoredHead {
            status: http::StatusCode::OK,
            headers: crate::cache::meta::StoredFields::from_map(&http::HeaderMap::new()),
            request_time: std::time::UNIX_EPOCH,
            response_time: std::time::UNIX_EPOCH,
            url: "http://example/".into(),
            body_len: 10,
            derived: Default::default(),
        }
    }

    async fn read(tap: &Tap, offset: u64) -> Read {
        poll_fn(|cx| tap.poll_read(offset, cx)).await
    }

    #[tokio::test]
    async fn readers_get_chunks_as_pushed_and_a_clean_end_after_the_commit() {
        let tap = tap();
        assert!(tap.holds_start());
        let waiting = tokio::spawn({
            let tap = Arc::clone(&tap);
            async move { read(&tap, 0).await }
        });
        tap.push(&Bytes::from_static(b"hello"));
        assert_eq!(
            waiting.await.unwrap(),
            Read::Data(Bytes::from_static(b"hello"))
        );
        tap.push(&Bytes::from_static(b"world"));
        assert_eq!(read(&tap, 7).await, Read::Data(Bytes::from_static(b"rld")));
        tap.body_done();
        let end = tokio::spawn({
            let tap = Arc::clone(&tap);
            async move { read(&tap, 10).await }
        });
        tap.settle(true);
        assert_eq!(end.await.unwrap(), Read::End);
    }

    #[tokio::test]
    async fn an_abort_ends_every_reader_as_aborted() {
        let tap = tap();
        tap.push(&Bytes::from_static(b"half"));
        let waiting = tokio::spawn({
            let tap = Arc::clone(&tap);
            async move { read(&tap, 4).await }
        });
        tap.settle(false);
        assert!(tap.is_aborted());
        assert_eq!(waiting.await.unwrap(), Read::Aborted);
        assert_eq!(read(&tap, 4).await, Read::Aborted);
        assert_eq!(
            read(&tap, 0).await,
            Read::Data(Bytes::from_static(b"half")),
            "what was held is still readable"
        );
    }

    #[tokio::test]
    async fn memory_is_bounded_and_a_slow_reader_resumes_from_the_store() {
        let tap = tap();
        let chunk = Bytes::from(vec![7u8; 64 << 10]);
        for _ in 0..(2 * WINDOW / chunk.len()) {
            tap.push(&chunk);
        }
        let held = tap.lock().ring_bytes;
        assert!(held <= WINDOW, "held {held}");
        assert!(!tap.holds_start());
        let behind = tokio::spawn({
            let tap = Arc::clone(&tap);
            async move { read(&tap, 0).await }
        });
        tap.body_done();
        tap.settle(true);
        assert_eq!(behind.await.unwrap(), Read::Behind);
        let last = 2 * WINDOW as u64 - 1;
        assert_eq!(read(&tap, last).await, Read::Data(Bytes::from_static(&[7])));
    }

    #[tokio::test]
    async fn a_slow_reader_of_an_unstored_fill_is_aborted() {
        let tap = tap();
        let chunk = Bytes::from(vec![1u8; WINDOW]);
        tap.push(&chunk);
        tap.push(&chunk);
        tap.body_done();
        tap.settle(false);
        assert_eq!(read(&tap, 0).await, Read::Aborted);
        assert_eq!(read(&tap, 2 * WINDOW as u64).await, Read::End);
    }
}
