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
//! A new connection moves the deadline on once it is made (`pool`): the read timeout counts
//! from a ready connection, as Squid's `read_timeout` and nginx's `proxy_read_timeout` do, and
//! `timeouts.connect` bounds connecting (name, TCP and TLS handshake).
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

    /// Ready with the error once the deadline has passed with no progress; `timer` is made
    /// on first use and kept by the caller for the next request.
    pub fn poll_expired(
        &self,
        timer: &mut Option<Pin<Box<Sleep>>>,
        cx: &mut Context<'_>,
    ) -> Poll<Error> {
        // Each turn returns, or finds that progress moved the deadline on (so it is later
        // than the one that just passed), so the loop ends.
        loop {
            let at = self.at();
            let timer = match timer {
                Some(timer) => {
                    if timer.deadline() != at {
                        timer.as_mut().reset(at);
                    }
                    timer
                }
                None => timer.insert(Box::pin(tokio::time::sleep_until(at))),
            };
            std::task::ready!(timer.as_mut().poll(cx));
            if self.at() <= Instant::now() {
                return Poll::Ready(self.expired());
            }
        }
    }

    /// `response`, or the error once the deadline passes with no progress (a timer made for
    /// this wait alone).
    pub async fn within<T>(
        &self,
        response: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let mut response = std::pin::pin!(response);
        let mut timer = None;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = response.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            self.poll_expired(&mut timer, cx).map(Err)
        })
        .await
    }
}

/// Lets go of the waker a kept `timer` holds once its request has its head: left armed for
/// the connection's next request, the timer then neither keeps this request's task (and its
/// memory) alive while the connection idles in the pool nor wakes it when it comes due.
pub fn release_waker(timer: &mut Option<Pin<Box<Sleep>>>) {
    if let Some(timer) = timer {
        // Registers the no-op waker in place of the task's; the outcome does not matter.
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

    #[tokio::test(start_paused = true)]
    async fn a_wait_without_progress_ends_at_the_timeout() {
        let wait = deadline(Duration::from_secs(5));
        let started = Instant::now();
        let err = wait
            .within(std::future::pending::<Result<(), Error>>())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ReadTimeout);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn progress_moves_the_deadline_on() {
        let wait = deadline(Duration::from_secs(5));
        let started = Instant::now();
        let progress = Arc::clone(&wait.progress);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            progress.touch();
        });
        let err = wait
            .within(std::future::pending::<Result<(), Error>>())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ReadTimeout);
        assert_eq!(started.elapsed(), Duration::from_secs(9));
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
