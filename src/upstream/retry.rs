//! The one retry-safety decision: after a next hop failed, may the request go to another?
//!
//! Every walk over next hops (a group's servers, the cache hierarchy, cluster members, an
//! origin's addresses, a CONNECT through parents) asks [`may_try_next`]; none reads error kinds
//! to decide it. Two facts decide: what the failed attempt sent ([`Error::nothing_sent`], set
//! where the error is made), and what of the request can still be sent again ([`Replay`]).
//! Whether the failure also counts against the hop is the caller's liveness rule
//! (`upstream::liveness`), which starts from the same [`Error::nothing_sent`].

use http::Method;

use crate::error::{Error, Side};

/// What of a request could be sent to another next hop after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Its body went to the failed attempt and cannot be sent again: no other hop.
    Never,
    /// Only if the failed hop received nothing ([`Error::nothing_sent`]).
    IfNothingSent,
    /// Even if the failed hop may have received it: an idempotent request without a body
    /// (RFC 9110 §9.2.2: "the intended effect on the server of multiple identical requests
    /// with that method is the same as the effect for a single such request ... a proxy MAY
    /// automatically retry"), or a CONNECT before its 200 (no byte of the tunnel was relayed).
    Always,
}

impl Replay {
    /// The replay a request allows: none once its body is gone, any failure for an idempotent
    /// method when `after_sending` (the caller's policy lets it replay what a hop may have
    /// received: nginx `proxy_next_upstream timeout|invalid_header`), else only when nothing
    /// was sent.
    pub fn of(method: &Method, has_body: bool, after_sending: bool) -> Self {
        if has_body {
            Self::Never
        } else if after_sending && idempotent(method) {
            Self::Always
        } else {
            Self::IfNothingSent
        }
    }
}

/// RFC 9110 §9.2.2: "PUT, DELETE, and safe request methods are idempotent" (the safe ones,
/// §9.2.1: GET, HEAD, OPTIONS, TRACE).
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether a request that failed with `err` may be sent to the next hop. A failure that is the
/// client's own (a broken request body) is never retried elsewhere.
pub fn may_try_next(err: &Error, replay: Replay) -> bool {
    match replay {
        Replay::Never => false,
        Replay::IfNothingSent => err.nothing_sent(),
        Replay::Always => err.nothing_sent() || err.side() == Side::Upstream,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn nothing_sent_is_always_retried_unless_the_body_is_gone() {
        let refused = Error::new(ErrorKind::ConnectFailed, "refused").before_sending();
        let tls = Error::new(ErrorKind::TlsCertificate, "untrusted").before_sending();
        for err in [&refused, &tls] {
            assert!(may_try_next(err, Replay::IfNothingSent));
            assert!(may_try_next(err, Replay::Always));
            assert!(!may_try_next(err, Replay::Never));
        }
    }

    #[test]
    fn what_may_have_been_received_is_replayed_only_for_idempotent_requests() {
        let timeout = Error::new(ErrorKind::ReadTimeout, "slow");
        assert!(!timeout.nothing_sent());
        assert!(!may_try_next(
            &timeout,
            Replay::of(&Method::GET, false, false)
        ));
        assert!(may_try_next(
            &timeout,
            Replay::of(&Method::GET, false, true)
        ));
        assert!(!may_try_next(
            &timeout,
            Replay::of(&Method::POST, false, true)
        ));
        assert!(!may_try_next(
            &timeout,
            Replay::of(&Method::PUT, true, true)
        ));
        let client_fault = Error::new(ErrorKind::InvalidRequest, "body broke");
        assert!(!may_try_next(&client_fault, Replay::Always));
    }
}
