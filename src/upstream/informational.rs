//! Where a request's interim (1xx) responses go: a callback the proxy hands to
//! `Upstream::send_with` (or puts in the request's extensions), called by whichever client
//! carries the request.
//!
//! Our HTTP/1.1 codec (`upstream::h1`) calls it for each interim head it reads; on the
//! connections left to hyper the pool registers it with `hyper::ext::on_informational`. The
//! proxy uses it to open the `100-continue` gate and to relay 102 and 103 (`proxy::interim`).

use std::sync::Arc;

use http::{HeaderMap, StatusCode};

type Callback = dyn Fn(StatusCode, &HeaderMap) + Send + Sync;

/// The callback for a request's interim responses.
#[derive(Clone)]
pub struct OnInformational(Arc<Callback>);

impl OnInformational {
    /// A callback calling `f` with each interim response's status and fields, to pass to
    /// `Upstream::send_with`: handed over as it is, where the extensions cost a request a map
    /// to insert it into and a lookup to find it again.
    pub fn new(f: impl Fn(StatusCode, &HeaderMap) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Calls `f` with each interim response's status and fields.
    pub fn register<B>(
        request: &mut http::Request<B>,
        f: impl Fn(StatusCode, &HeaderMap) + Send + Sync + 'static,
    ) {
        request.extensions_mut().insert(Self(Arc::new(f)));
    }

    /// One interim response arrived.
    pub fn call(&self, status: StatusCode, headers: &HeaderMap) {
        (self.0)(status, headers);
    }

    /// Hands the callback to hyper's HTTP/1 client for `request`.
    pub fn to_hyper<B>(self, request: &mut http::Request<B>) {
        hyper::ext::on_informational(request, move |interim| {
            self.call(interim.status(), interim.headers());
        });
    }
}

impl std::fmt::Debug for OnInformational {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnInformational")
    }
}
