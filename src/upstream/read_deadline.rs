//! How long a request waits for its response head: until it has made no progress (no body
//! bytes sent, no head received) for the read timeout.
//!
//! Our HTTP/1.1 exchange, in the pool, watches the deadline on a timer its connection keeps
//! from one request to the next ([`ReadDeadline::poll_expired`]): each request only pushes the
//! timer's deadline later, which tokio does without touching its timer wheel (`Sleep::reset` to
//! a later instant only records it; the wheel entry, when it comes due, finds the later deadline
//! and moves itself). Only a timer that came due while its connection was idle is registered
//! again. A timer of its own per request cost every miss a wheel insertion and removal, each
//! under the driver's lock, and a `select!` around the exchange. Once the head is in, the timer
//! lets go of the request's waker ([`release_waker`]). The waits hyper carries (HTTP/2, its
//! HTTP/1.1 fallback, and requests that may switch protocols) are bounded [`within`] it.
//!
//! The pool moves the deadline on once a new connection is made ([`ReadDeadline::connected`]):
//! the read timeout counts from a ready connection, as Squid's `read_timeout` and nginx's
//! `proxy_read_timeout` do, and `timeouts.connect` bounds connecting (name, TCP and TLS
//! handshake).
//!
//! [`within`]: ReadDeadline::within

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::request_body::Progress;
use crate::error::{Error, ErrorKind};

/// The read timeout of one request, counted from its last progress.
#[derive(Debug)]
pub struct ReadDeadline {
    pub progress: Arc<Progress>,
    pub timeout: Duration,
}

impl ReadDeadline {
    /// When the wait ends unless progress is made first.
    fn at(&self) -> Instant {
        self.progress.last() + self.timeout
    }

    /// The error of a wait that ran out (a 504).
    fn expired(&self) -> Error {
        Error::new(
            ErrorKind::ReadTimeout,
            format!("no response from the upstream within {:?}", self.timeout),
        )
    }

    /// A new connection is ready: the wait for the response head counts from here, as
    /// Squid's `read_timeout` and nginx's `proxy_read_timeout` do (connecting had
    /// `timeouts.connect` of its own).
    pub fn connected(&self) {
        self.progress.touch();
    }

    /// Ready with the error once the deadline has passed with no progress; `timer` is made
    /// on first use and kept by the caller (a connection) for its next request.
    pub fn poll_expired(
        &self,
        timer: &mut Option<Pin<Box<Sleep>>>,
        cx: &mut Context<'_>,
    ) -> Poll<Error> {
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(self.at())));
        self.poll_timer(timer.as_mut(), cx)
    }

    /// `response`, or the error once the deadline passes with no progress (on a timer of
    /// this wait's own).
    pub async fn within<T>(
        &self,
        response: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let mut response = std::pin::pin!(response);
        let mut timer = std::pin::pin!(tokio::time::sleep_until(self.at()));
        std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = response.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            self.poll_timer(timer.as_mut(), cx).map(Err)
        })
        .await
    }

    /// Moves `timer` to the deadline and waits on it. Each turn returns, or finds that
    /// progress moved the deadline on (so it is later than the one that just passed), so the
    /// loop ends.
    fn poll_timer(&self, mut timer: Pin<&mut Sleep>, cx: &mut Context<'_>) -> Poll<Error> {
        loop {
            let at = self.at();
            if timer.deadline() != at {
                timer.as_mut().reset(at);
            }
            std::task::ready!(timer.as_mut().poll(cx));
            if self.at() <= Instant::now() {
                return Poll::Ready(self.expired());
            }
        }
    }
}

/// Lets go of the waker a kept `timer` holds once its request has its head: left armed for
/// the connection's next request, the timer then neither keeps this request's task (and its
/// memory) alive while the connection idles in the pool nor wakes it when it comes due.
pub fn release_waker(timer: &mut Option<Pin<Box<Sleep>>>) {
    if let Some(timer) = timer {
        // Registers the no-op waker in place of the task's; the outcome does not matter. (With
        // the task's cooperative budget spent, tokio keeps the old one: it is then let go when
        // the timer comes due or the connection's next request polls it.)
        let _ = timer
            .as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deadline(timeout: Duration) -> ReadDeadline {
        ReadDeadline {
            progress: Progress::new(),
            timeout,
        }
    }

    /// How long `wait` waits for an answer that never comes; it must end in a read timeout.
    async fn waited_out(wait: &ReadDeadline) -> Duration {
        let started = Instant::now();
        let err = wait
            .within(std::future::pending::<Result<(), Error>>())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ReadTimeout);
        started.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_without_progress_ends_at_the_timeout() {
        let wait = deadline(Duration::from_secs(5));
        assert_eq!(waited_out(&wait).await, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn progress_moves_the_deadline_on() {
        let wait = deadline(Duration::from_secs(5));
        let progress = Arc::clone(&wait.progress);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            progress.touch();
        });
        assert_eq!(waited_out(&wait).await, Duration::from_secs(9));
    }

    /// Connecting (bounded by `timeouts.connect`) does not use up the read timeout.
    #[tokio::test(start_paused = true)]
    async fn a_new_connection_starts_the_wait_afresh() {
        let wait = deadline(Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(3)).await; // connecting
        wait.connected();
        assert_eq!(waited_out(&wait).await, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_timer_serves_the_next_request() {
        let mut timer = None;
        let first = deadline(Duration::from_secs(5));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(first.poll_expired(&mut timer, &mut cx).is_pending());
        let made = timer.as_deref().map(std::ptr::from_ref);
        tokio::time::sleep(Duration::from_secs(3)).await;
        // The next request on the connection: its deadline is 5 s from now, not the first's.
        let second = deadline(Duration::from_secs(5));
        let started = Instant::now();
        let err = std::future::poll_fn(|cx| second.poll_expired(&mut timer, cx)).await;
        assert_eq!(err.kind(), ErrorKind::ReadTimeout);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        // The same timer, moved on: none made for the second request.
        assert_eq!(timer.as_deref().map(std::ptr::from_ref), made);
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_timer_holds_and_wakes_no_task() {
        let wait = deadline(Duration::from_secs(5));
        let mut timer = None;
        let (wakes, waker) = crate::pass::CountWakes::waker();
        assert!(wait
            .poll_expired(&mut timer, &mut Context::from_waker(&waker))
            .is_pending());
        drop(waker);
        // The timer holds the task's waker (here the counter's) until it is released.
        assert_eq!(Arc::strong_count(&wakes), 2);
        release_waker(&mut timer);
        assert_eq!(Arc::strong_count(&wakes), 1);
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(wakes.count(), 0);
        assert!(timer.is_some(), "kept for the connection's next request");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_in_time_is_returned() {
        let wait = deadline(Duration::from_secs(5));
        let answer = wait
            .within(async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(7)
            })
            .await;
        assert_eq!(answer.unwrap(), 7);
    }
}
