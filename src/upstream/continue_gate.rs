//! `Expect: 100-continue` towards the next hop: the request body waits for the upstream's
//! `100 (Continue)`.
//!
//! RFC 9110 §10.1.1: a client sending `100-continue` "wishes to receive a 100 (Continue) interim
//! response if the method, target URI, and header fields are not sufficient to cause an
//! immediate success, redirect, or error response". cuttle passes the expectation on and does
//! not touch the client's body until the next hop asks for it: hyper's server answers the
//! client's expectation with `100 Continue` only when the body is first read, so the client
//! sees a 100 exactly when the origin sent one (or when cuttle must read the body to forward
//! it: the next hop stayed silent for [`WAIT_FOR_CONTINUE`]). A final response that arrives
//! first abandons the gate: the body is dropped unread, so the client, still waiting, gets that
//! response and never uploads.
//!
//! The interim responses arrive through the request's `upstream::informational` callback
//! (our HTTP/1.1 codec calls it, and hyper's `on_informational` where hyper carries the
//! request); [`Gate::informational`] is called from it.

use std::future::Future as _;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

/// How long the body waits for the next hop's `100 (Continue)` before it is sent anyway.
/// RFC 9110 §10.1.1: a client "SHOULD NOT wait for an indefinite period before sending the
/// content" (100 cannot cross an HTTP/1.0 hop). One second is curl's `--expect100-timeout`
/// default, so a client timing out on its own side and cuttle do so together.
pub const WAIT_FOR_CONTINUE: Duration = Duration::from_secs(1);

/// What the held body does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Go {
    /// Send it: the next hop sent 100, or did not answer within the wait.
    Send,
    /// Drop it unread: a final response came first.
    Abandon,
}

/// The proxy's side of the gate: opened by a 100, abandoned by a final response.
#[derive(Debug)]
pub struct Gate(Mutex<Option<oneshot::Sender<Go>>>);

impl Gate {
    /// A closed gate and the body's side of it.
    pub fn new() -> (Arc<Self>, Held) {
        let (sender, receiver) = oneshot::channel();
        let held = Held {
            receiver,
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + WAIT_FOR_CONTINUE)),
        };
        (Arc::new(Self(Mutex::new(Some(sender)))), held)
    }

    /// Decides once; later calls do nothing.
    fn decide(&self, go: Go) {
        let sender = self.0.lock().ok().and_then(|mut s| s.take());
        if let Some(sender) = sender {
            let _ = sender.send(go);
        }
    }

    /// An interim response from the next hop: a `100` releases the body.
    pub fn informational(&self, status: http::StatusCode) {
        // Other interim responses are forwarded (or not) by `proxy::interim`.
        if status == http::StatusCode::CONTINUE {
            self.decide(Go::Send);
        }
    }

    /// The final response head arrived: a body still held is dropped unread.
    pub fn final_response(&self) {
        self.decide(Go::Abandon);
    }
}

/// The body's side of the gate.
#[derive(Debug)]
pub struct Held {
    receiver: oneshot::Receiver<Go>,
    deadline: std::pin::Pin<Box<Sleep>>,
}

impl Held {
    /// Ready once the gate decided or the wait ran out.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Go> {
        match std::pin::Pin::new(&mut self.receiver).poll(cx) {
            Poll::Ready(Ok(go)) => return Poll::Ready(go),
            // The proxy's side is gone without deciding: nothing holds the body back.
            Poll::Ready(Err(_)) => return Poll::Ready(Go::Send),
            Poll::Pending => {}
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Go::Send),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next(held: &mut Held) -> Go {
        std::future::poll_fn(|cx| held.poll(cx)).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_100_releases_the_body_and_later_decisions_change_nothing() {
        let (gate, mut held) = Gate::new();
        gate.informational(http::StatusCode::from_u16(103).unwrap());
        gate.informational(http::StatusCode::CONTINUE);
        gate.final_response();
        assert_eq!(next(&mut held).await, Go::Send);
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_response_first_abandons_the_body() {
        let (gate, mut held) = Gate::new();
        gate.final_response();
        assert_eq!(next(&mut held).await, Go::Abandon);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_next_hop_gets_the_body_after_the_wait() {
        let (_gate, mut held) = Gate::new();
        let started = Instant::now();
        assert_eq!(next(&mut held).await, Go::Send);
        assert_eq!(started.elapsed(), WAIT_FOR_CONTINUE);
    }
}
