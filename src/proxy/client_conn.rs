//! Timers on a client connection: the header-read deadline and the keep-alive idle deadline.
//!
//! hyper 1's `header_read_timeout` restarts when a keep-alive connection goes idle, so on its own
//! it cannot give different limits for "a client is slowly sending a header" (short, against
//! slowloris) and "a keep-alive connection sits idle between requests" (longer, to save
//! handshakes). This wrapper around the socket tracks which state the connection is in:
//!
//! - **awaiting a request** (no request in flight, no byte of the next one yet): the idle
//!   deadline applies, counted from the end of the previous response; a new connection instead
//!   gets the request-start deadline (Squid `request_start_timeout`), counted from accept, so a
//!   connection that never sends anything gives its slot back quickly;
//! - **reading a header** (bytes arrived, the service has not been called yet): the header
//!   deadline applies, counted from the first byte (read when the reader first waits for the
//!   rest, in the same poll), except on a new connection, where it is counted from accept (a
//!   client cannot restart the clock by sending one byte late);
//! - **in flight** (the service owns a request): no deadline here; upstream and body timeouts
//!   govern.
//!
//! A connection awaiting a request after serving one is also told, [`RELEASE_AFTER`] into the
//! wait, that it may let go of its buffers ([`ClientIo::take_release`]): a keep-alive client
//! that goes quiet should cost little memory (HAProxy and nginx hold no buffer for one), while
//! a busy connection keeps its buffer across requests. The same timer serves both.
//!
//! The service marks requests in flight with [`ConnActivity::begin`]; dropping the returned
//! [`InFlight`] (when the response body is finished) moves the connection back to awaiting. When
//! a deadline passes, reads fail with `TimedOut` and the server (`h1`, or hyper's HTTP/2) closes
//! the connection.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `header_started_ms` value meaning "no header bytes yet".
const NOT_STARTED: u64 = u64::MAX;
/// `header_started_ms` value meaning "header bytes arrived, the clock not read yet": it is
/// read when the reader first waits for the rest, so a head that arrives whole (the common
/// case) costs no clock read.
const UNTIMED: u64 = u64::MAX - 1;

/// How long a connection awaits its next request before it may let go of its buffers (nginx
/// frees its header buffer at once; at once, it would cost every request an allocation).
pub const RELEASE_AFTER: Duration = Duration::from_secs(1);

/// Shared state between a connection's socket wrapper and its requests.
#[derive(Debug)]
pub struct ConnActivity {
    origin: Instant,
    /// Requests whose responses are not finished.
    in_flight: AtomicUsize,
    /// When the connection last became idle (ms after `origin`).
    idle_since_ms: AtomicU64,
    /// When the first byte of the pending request header arrived, or `NOT_STARTED`.
    header_started_ms: AtomicU64,
    /// Whether any request has been served (the first one gets the header deadline from accept).
    served_any: std::sync::atomic::AtomicBool,
    header_timeout: Duration,
    /// Longest a new connection may stay silent (never more than `header_timeout`).
    request_start_timeout: Duration,
    idle_timeout: Duration,
    /// Longest a write may stay blocked (the client stopped reading).
    write_timeout: Duration,
    /// The reader parked while a request was in flight, woken when the connection goes idle
    /// so it can arm the idle deadline. Per connection, so the lock is uncontended.
    parked_reader: Mutex<Option<Waker>>,
    /// Interim (1xx) heads for the client, written by `ClientIo` (see `interim`).
    pub outbox: super::outbox::Outbox,
    /// The connection now carries a tunnel or a switched protocol: its close is a plain
    /// shutdown, with no lingering read (the relay reads and forwards what still comes).
    switched: std::sync::atomic::AtomicBool,
}

impl ConnActivity {
    /// Activity for a connection accepted now, whose first byte may come as late as its header
    /// may end.
    pub fn new(
        header_timeout: Duration,
        idle_timeout: Duration,
        write_timeout: Duration,
    ) -> Arc<Self> {
        Self::with_request_start(header_timeout, header_timeout, idle_timeout, write_timeout)
    }

    /// Activity for a connection accepted now that must send its first byte within
    /// `request_start_timeout`.
    pub fn with_request_start(
        header_timeout: Duration,
        request_start_timeout: Duration,
        idle_timeout: Duration,
        write_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            request_start_timeout: request_start_timeout.min(header_timeout),
            origin: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            header_started_ms: AtomicU64::new(NOT_STARTED),
            served_any: std::sync::atomic::AtomicBool::new(false),
            header_timeout,
            idle_timeout,
            write_timeout,
            parked_reader: Mutex::new(None),
            outbox: super::outbox::Outbox::default(),
            switched: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Now, by the poll's clock reading (`clock::instant`).
    fn now_ms(&self) -> u64 {
        self.ms_at(crate::clock::instant())
    }

    /// `at` in ms after `origin` (below the `header_started_ms` markers).
    fn ms_at(&self, at: Instant) -> u64 {
        let ms = at.saturating_duration_since(self.origin).as_millis();
        u64::try_from(ms).unwrap_or(UNTIMED - 1).min(UNTIMED - 1)
    }

    /// Marks a request in flight until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.header_started_ms.store(NOT_STARTED, Ordering::Relaxed);
        self.served_any.store(true, Ordering::Relaxed);
        InFlight {
            activity: Arc::clone(self),
            ended: None,
        }
    }

    /// What a reader waiting now watches, if anything.
    fn due(&self) -> Option<Due> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let mut header_started = self.header_started_ms.load(Ordering::Relaxed);
        if header_started == UNTIMED {
            // The reader waits for the rest of a head: its clock starts now (`on_read`).
            let now = self.now_ms();
            header_started = match self.header_started_ms.compare_exchange(
                UNTIMED,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => now,
                Err(current) => current,
            };
        }
        let at = |ms: u64, d: Duration| self.origin + Duration::from_millis(ms) + d;
        let served_any = self.served_any.load(Ordering::Relaxed);
        let due = if header_started != NOT_STARTED {
            // The first request's header counts from accept.
            let from = if served_any { header_started } else { 0 };
            Due::at(at(from, self.header_timeout))
        } else if served_any {
            // Awaiting the next request: the idle deadline, and first the release point.
            let since = self.idle_since_ms.load(Ordering::Relaxed);
            Due {
                deadline: at(since, self.idle_timeout),
                release: Some(Release {
                    wait: since,
                    at: at(since, RELEASE_AFTER),
                }),
            }
        } else {
            Due::at(at(0, self.request_start_timeout))
        };
        Some(due)
    }

    /// The connection is handed to a tunnel or a switched protocol (CONNECT, `Upgrade`).
    pub fn switch(&self) {
        self.switched.store(true, Ordering::Relaxed);
    }

    /// Queues an interim response head for the client and wakes the connection to write it.
    pub fn send_interim(&self, head: &[u8]) {
        if !self.outbox.push(head) {
            tracing::debug!("interim response not forwarded (HTTP/2 client or queue full)");
            return;
        }
        let parked = self
            .parked_reader
            .lock()
            .ok()
            .and_then(|w| w.as_ref().cloned());
        if let Some(waker) = parked {
            waker.wake();
        }
    }

    /// Bytes arrived from the client: a head has started (timed by `deadline`, if it waits).
    fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self.header_started_ms.compare_exchange(
                NOT_STARTED,
                UNTIMED,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}

/// A request in flight; dropping it marks the connection idle when it was the last one.
#[derive(Debug)]
pub struct InFlight {
    activity: Arc<ConnActivity>,
    /// When the request ended, if its owner has read the clock already (`ended_at`).
    ended: Option<Instant>,
}

impl InFlight {
    /// The request ended at `now` (a clock read its owner made anyway): the idle deadline
    /// counts from there.
    pub fn ended_at(&mut self, now: Instant) {
        self.ended = Some(now);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.activity;
        let now = self
            .ended
            .map_or_else(|| activity.now_ms(), |at| activity.ms_at(at));
        activity.idle_since_ms.store(now, Ordering::Relaxed);
        if activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            let parked = activity
                .parked_reader
                .lock()
                .map(|mut w| w.take())
                .unwrap_or_default();
            if let Some(waker) = parked {
                waker.wake();
            }
        }
    }
}

/// What a reader waiting for the client watches ([`ConnActivity::due`]).
#[derive(Debug, Clone, Copy)]
struct Due {
    /// When the read fails: the header, request-start or idle deadline.
    deadline: Instant,
    /// In a wait for the next request after serving one: when its buffers may go.
    release: Option<Release>,
}

impl Due {
    fn at(deadline: Instant) -> Self {
        Self {
            deadline,
            release: None,
        }
    }
}

/// The release point of one idle wait.
#[derive(Debug, Clone, Copy)]
struct Release {
    /// The wait's name: when it began, in ms after `origin`.
    wait: u64,
    at: Instant,
}

/// A client socket with connection-state deadlines on reads and a stall deadline on writes.
#[derive(Debug)]
pub struct ClientIo<T> {
    inner: T,
    activity: Arc<ConnActivity>,
    /// Re-armed to the current deadline whenever a read would block.
    sleep: Pin<Box<Sleep>>,
    /// Armed when a write blocks; cleared when a write makes progress. A client that stops
    /// reading would otherwise pin the upstream connection, the cache fill and every request
    /// collapsed behind it (Squid `write_timeout`, nginx `send_timeout`).
    write_stall: Option<Pin<Box<Sleep>>>,
    /// Closing: half-closed and draining what the client still sends (`linger`).
    linger: super::linger::Linger,
    /// Interim heads taken from the outbox and not yet written.
    interim: Vec<u8>,
    /// The server has written bytes it has not flushed yet: an interim head must wait.
    dirty: bool,
    /// The idle wait (its `Release::wait`) whose release was already signalled.
    released_for: Option<u64>,
    /// A release is signalled and not yet taken by the server.
    release_due: bool,
}

impl<T> ClientIo<T> {
    /// Wraps `inner`, governed by `activity`.
    pub fn new(inner: T, activity: Arc<ConnActivity>) -> Self {
        Self {
            inner,
            activity,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            write_stall: None,
            linger: super::linger::Linger::default(),
            interim: Vec::new(),
            dirty: false,
            released_for: None,
            release_due: false,
        }
    }

    /// Whether the connection has awaited its next request for [`RELEASE_AFTER`] since the
    /// last call said so: the server may then drop its (empty) buffers. Checked after a read
    /// returned `Pending`; true at most once per idle wait.
    pub fn take_release(&mut self) -> bool {
        std::mem::take(&mut self.release_due)
    }

    /// Whether the request now being served may be sent interim heads: RFC 9110 §15.2, "a
    /// server MUST NOT send a 1xx response to an HTTP/1.0 client" (HTTP/1.1 ones may be sent
    /// the upstream's 102 and 103, `interim`). The HTTP/1 server says so for each request.
    pub fn interim_for(&self, http11: bool) {
        self.activity.outbox.set_enabled(http11);
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // A pending write of interim heads registers its own wakeup; errors show on the next
        // write.
        let _ = this.poll_interim(cx);
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.activity.on_read();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some(due) = this.activity.due() else {
                    if let Ok(mut parked) = this.activity.parked_reader.lock() {
                        *parked = Some(cx.waker().clone());
                    }
                    // The last request may have finished while the waker was being stored.
                    if this.activity.due().is_none() {
                        return Poll::Pending;
                    }
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                };
                let deadline = due.deadline;
                // An idle wait's release point comes first, unless already signalled.
                let mut release = due.release.filter(|r| this.released_for != Some(r.wait));
                let target =
                    |release: Option<Release>| release.map_or(deadline, |r| r.at.min(deadline));
                // The timer is moved only when the target comes closer. The idle deadline
                // (and release point) moves on with every response, so the timer is left armed
                // at an earlier one and moved on when that fires: about once per
                // `RELEASE_AFTER` on a busy connection, not per request.
                if target(release) < this.sleep.deadline() {
                    this.sleep.as_mut().reset(target(release));
                }
                // Each turn either returns or moves the timer to a later target: at most
                // three (a stale firing, the release point, the deadline).
                for _ in 0..3 {
                    let fired_at = this.sleep.deadline();
                    if this.sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    if let Some(r) = release.filter(|r| fired_at >= r.at) {
                        this.released_for = Some(r.wait);
                        this.release_due = true;
                        release = None;
                    }
                    if fired_at >= deadline {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "client connection timed out waiting for a request",
                        )));
                    }
                    this.sleep.as_mut().reset(target(release));
                }
                // Not reached (see above); a live connection is polled again, not failed.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> ClientIo<T> {
    /// Writes queued interim heads, unless the server has a message partly written (`dirty`):
    /// they then wait for its flush, so they only ever land between messages (`interim`).
    fn poll_interim(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.dirty {
            return Poll::Ready(Ok(()));
        }
        if self.interim.is_empty() {
            self.interim = self.activity.outbox.take();
        }
        while !self.interim.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.interim) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.interim.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> ClientIo<T> {
    /// For a server that does not read while a request is in flight (`h1`): writes queued
    /// interim heads, and parks `cx`'s waker where [`ConnActivity::send_interim`] wakes it.
    pub fn poll_interim_while_busy(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Ok(mut parked) = self.activity.parked_reader.lock() {
            match &*parked {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => *parked = Some(cx.waker().clone()),
            }
        }
        self.poll_interim(cx)
    }
}

impl<T> ClientIo<T> {
    /// Tracks how long writes have been blocked; fails them after the write timeout.
    fn watch_write(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if result.is_ready() {
            self.write_stall = None;
            return result;
        }
        let timeout = self.activity.write_timeout;
        let stall = self
            .write_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stopped reading the response",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> ClientIo<T> {
    /// The server handed over bytes: until its next flush, interim heads wait.
    fn note_written(&mut self, result: &Poll<io::Result<usize>>) {
        if matches!(result, Poll::Ready(Ok(n)) if *n > 0) {
            self.dirty = true;
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ClientIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let pending = self.poll_interim(cx).map_ok(|()| 0);
        if !matches!(pending, Poll::Ready(Ok(_))) {
            return self.watch_write(cx, pending);
        }
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_written(&result);
        self.watch_write(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let pending = self.poll_interim(cx).map_ok(|()| 0);
        if !matches!(pending, Poll::Ready(Ok(_))) {
            return self.watch_write(cx, pending);
        }
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_written(&result);
        self.watch_write(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = result {
            // Everything the server wrote is out: an interim head may go next.
            self.dirty = false;
        }
        result
    }

    /// RFC 9112 §9.6: a half-close, then the client's remaining input is drained (`linger`).
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.activity.switched.load(Ordering::Relaxed) {
            return Pin::new(&mut this.inner).poll_shutdown(cx);
        }
        this.linger.poll_close(&mut this.inner, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn first_request_gets_header_deadline_from_accept() {
        let (client, server) = tokio::io::duplex(64);
        let activity = ConnActivity::new(
            Duration::from_secs(5),
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let mut io = ClientIo::new(server, activity);
        let started = Instant::now();
        let mut buf = [0u8; 8];
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_new_connection_ends_at_request_start() {
        let (client, server) = tokio::io::duplex(64);
        let activity = ConnActivity::with_request_start(
            Duration::from_secs(30),
            Duration::from_secs(10),
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let mut io = ClientIo::new(server, activity);
        let started = Instant::now();
        let mut buf = [0u8; 8];
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_first_byte_does_not_restart_the_first_header_deadline() {
        let (mut client, server) = tokio::io::duplex(64);
        let activity = ConnActivity::with_request_start(
            Duration::from_secs(30),
            Duration::from_secs(10),
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let mut io = ClientIo::new(server, activity);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(9)).await;
        client.write_all(b"G").await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(io.read(&mut buf).await.unwrap(), 1);
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // 30 s from accept, not from the byte at 9 s.
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test]
    async fn a_request_ending_in_a_poll_counts_idle_time_from_the_polls_reading() {
        let activity = ConnActivity::new(
            Duration::from_secs(5),
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let first = crate::clock::during_poll(|| {
            let first = crate::clock::instant();
            std::thread::sleep(Duration::from_millis(5));
            drop(activity.begin());
            first
        });
        // A fresh read would be at least 5 ms later.
        assert_eq!(
            activity.idle_since_ms.load(Ordering::Relaxed),
            activity.ms_at(first)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_deadline_applies_between_requests_and_none_in_flight() {
        let (mut client, server) = tokio::io::duplex(64);
        let activity = ConnActivity::new(
            Duration::from_secs(5),
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let mut io = ClientIo::new(server, Arc::clone(&activity));
        client.write_all(b"GET").await.unwrap();
        let mut buf = [0u8; 8];
        assert!(io.read(&mut buf).await.unwrap() > 0);
        let guard = activity.begin();
        // In flight: no deadline, even after a long time.
        let pending = tokio::time::timeout(Duration::from_secs(600), io.read(&mut buf)).await;
        assert!(pending.is_err(), "read must stay pending while in flight");
        drop(guard);
        let idle_start = Instant::now();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(idle_start.elapsed(), Duration::from_secs(60));
    }

    /// A connection awaiting its next request is told once, `RELEASE_AFTER` into the wait,
    /// that its buffers may go; never while a request is in flight or before the first one;
    /// and the idle deadline still falls where it did.
    #[tokio::test(start_paused = true)]
    async fn an_idle_wait_signals_release_once_and_keeps_its_deadline() {
        let (mut client, server) = tokio::io::duplex(64);
        let idle = Duration::from_secs(60);
        let activity = ConnActivity::new(Duration::from_secs(5), idle, idle);
        let mut io = ClientIo::new(server, Arc::clone(&activity));
        let mut buf = [0u8; 8];
        let short = Duration::from_millis(10);
        // A new connection (nothing served yet) gets no release.
        let waited = tokio::time::timeout(RELEASE_AFTER + short, io.read(&mut buf)).await;
        assert!(waited.is_err());
        assert!(!io.take_release(), "nothing served yet");
        client.write_all(b"GET").await.unwrap();
        assert!(io.read(&mut buf).await.unwrap() > 0);
        let guard = activity.begin();
        let waited = tokio::time::timeout(RELEASE_AFTER * 3, io.read(&mut buf)).await;
        assert!(waited.is_err());
        assert!(!io.take_release(), "a request in flight");
        drop(guard);
        let idle_start = Instant::now();
        let waited = tokio::time::timeout(RELEASE_AFTER - short, io.read(&mut buf)).await;
        assert!(waited.is_err());
        assert!(!io.take_release(), "too early");
        let waited = tokio::time::timeout(short * 2, io.read(&mut buf)).await;
        assert!(waited.is_err());
        assert!(io.take_release(), "RELEASE_AFTER into the wait");
        assert!(!io.take_release(), "once");
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(idle_start.elapsed(), idle);
        assert!(!io.take_release(), "once per wait");
    }

    #[tokio::test(start_paused = true)]
    async fn reader_parked_during_a_request_arms_the_idle_deadline_when_it_ends() {
        let (_client, server) = tokio::io::duplex(64);
        let activity = ConnActivity::new(
            Duration::from_secs(5),
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let guard = activity.begin();
        let mut io = ClientIo::new(server, Arc::clone(&activity));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            io.read(&mut buf).await
        });
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(!reader.is_finished(), "no deadline while in flight");
        let ended = Instant::now();
        drop(guard);
        let err = reader.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(ended.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_fails_the_write_after_the_write_timeout() {
        let (_client, server) = tokio::io::duplex(16);
        let activity = ConnActivity::new(
            Duration::from_secs(5),
            Duration::from_secs(60),
            Duration::from_secs(30),
        );
        let mut io = ClientIo::new(server, activity);
        let started = Instant::now();
        let err = io.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn partial_header_gets_header_deadline_from_first_byte() {
        let (mut client, server) = tokio::io::duplex(64);
        let activity = ConnActivity::new(
            Duration::from_secs(5),
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let mut io = ClientIo::new(server, Arc::clone(&activity));
        drop(activity.begin()); // one request served: now idle
        tokio::time::advance(Duration::from_secs(30)).await;
        client.write_all(b"GE").await.unwrap();
        let mut buf = [0u8; 8];
        assert!(io.read(&mut buf).await.unwrap() > 0);
        let first_byte = Instant::now();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(first_byte.elapsed(), Duration::from_secs(5));
    }
}
