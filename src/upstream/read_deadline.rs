//! How long a request waits for its response head: until it has made no progress (no body
//! bytes sent, no head received) for the read timeout.
//!
//! Our HTTP/1.1 exchange watches the deadline on a timer its connection keeps from one request
//! to the next ([`ReadDeadline::poll_expired`]): each request only pushes the timer's deadline
//! later, which tokio does without touching its timer wheel (`Sleep::reset` to a later instant
//! only records it; the wheel entry, when it comes due, finds the later deadline and moves
//! itself). A timer of its own per request cost every miss a wheel insertion and removal, each
//! under the driver's lock, and a `select!` around the exchange. The other exchanges (HTTP/2,
//! and requests that may switch protocols, both carried by hyper) wait
//! [`within`](ReadDeadline::within) it.

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

    /// `response`, or the error once the deadline passes with no progress.
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
        tokio::time::sleep(Duration::from_secs(3)).await;
        // The next request on the connection: its deadline is 5 s from now, not the first's.
        let second = deadline(Duration::from_secs(5));
        let started = Instant::now();
        let err = std::future::poll_fn(|cx| second.poll_expired(&mut timer, cx)).await;
        assert_eq!(err.kind(), ErrorKind::ReadTimeout);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
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
