//! One client transaction's bookkeeping: what the access log will say about it.
//!
//! A [`Transaction`] is created when a request arrives, filled in as the request is handled
//! (result code, status, next hop), travels with the response body, and writes its access-log
//! record when it is dropped, i.e. when the last body byte went out or the client went away.
//! It also holds the connection's [`InFlight`] mark, so the keep-alive idle timer starts only
//! once the response is really finished.

use std::sync::Arc;

use tokio::time::Instant;

use super::client_conn::InFlight;
use super::{Mode, Shared};
use crate::cache::result::CacheResult;
use crate::cache::serve::HitHead;
use crate::cache::status::{CacheStatus, CACHE_STATUS};
use crate::clock;
use crate::log::AccessRecord;
use crate::metrics::{MethodClass, ModeClass, Record};

/// Squid result codes used so far.
pub mod code {
    pub const TCP_MISS: &str = "TCP_MISS";
    pub const TCP_HIT: &str = "TCP_HIT";
    pub const TCP_MEM_HIT: &str = "TCP_MEM_HIT";
    pub const TCP_IMS_HIT: &str = "TCP_IMS_HIT";
    pub const TCP_STALE_HIT: &str = "TCP_STALE_HIT";
    pub const TCP_CF_HIT: &str = "TCP_CF_HIT";
    pub const TCP_REFRESH_UNMODIFIED: &str = "TCP_REFRESH_UNMODIFIED";
    pub const TCP_REFRESH_MODIFIED: &str = "TCP_REFRESH_MODIFIED";
    pub const TCP_REFRESH_FAIL_OLD: &str = "TCP_REFRESH_FAIL_OLD";
    pub const TCP_TUNNEL: &str = "TCP_TUNNEL";
    pub const TCP_DENIED: &str = "TCP_DENIED";
    pub const NONE: &str = "NONE_NONE";
}

/// Squid hierarchy codes (`upstream::hierarchy::code`). A transaction starts as `HIER_NONE`
/// with no peer and gets a code only when a request really went to a next hop
/// (`proxy::next_hop` says which), so hits, denials and errors answered here log `HIER_NONE/-`.
pub mod hier {
    pub use crate::upstream::hierarchy::code::*;
    pub const DIRECT: &str = HIER_DIRECT;
    pub const NONE: &str = HIER_NONE;
}

/// A transaction in progress.
#[derive(Debug)]
pub struct Transaction {
    shared: Arc<Shared>,
    started: Instant,
    /// The client address as logged, shared with the connection.
    pub client: Arc<str>,
    pub method: http::Method,
    pub url: String,
    pub code: &'static str,
    pub status: u16,
    pub hierarchy: &'static str,
    pub peer: Option<String>,
    pub content_type: Option<http::HeaderValue>,
    /// The client's HTTP version.
    pub version: http::Version,
    /// The client sent an origin-form target (see [`AccessRecord::origin_form`]).
    pub origin_form: bool,
    pub referer: Option<http::HeaderValue>,
    pub user_agent: Option<http::HeaderValue>,
    /// The user whose proxy credentials were verified, for the log's user field.
    pub user: Option<Arc<str>>,
    /// The `Cache-Status` field of the response sent.
    pub cache_status: Option<http::HeaderValue>,
    /// Address of the upstream connection the response came on.
    pub upstream_addr: Option<std::net::SocketAddr>,
    /// Time spent waiting on the next hop (see [`AccessRecord::upstream_wait`]).
    pub upstream_wait: Option<std::time::Duration>,
    /// Bytes of response header sent to the client.
    pub header_bytes: u64,
    /// Bytes of response body (or tunnelled data) sent to the client.
    pub body_bytes: u64,
    /// The response did not complete (upstream failed mid-body or the client left).
    pub aborted: bool,
    /// What the cache did, when the request reached it; `code` is rendered from it.
    pub result: Option<CacheResult>,
    /// The kind of port the request came in on (for metrics).
    pub mode: Mode,
    /// Index of the reverse-mode site in `shared.config.reverse.sites` (for metrics).
    pub site: Option<usize>,
    /// Response body bytes received from upstream and relayed (for metrics).
    pub upstream_bytes: u64,
    /// How much an error page for this request may tell (its port's `error_details`).
    pub error_details: super::error_details::ErrorDetails,
    /// Cleared when the transaction completes normally.
    incomplete: bool,
    /// Waited on a collapsed fetch it could not reuse and went forward itself: its
    /// `Cache-Status` says `collapsed=?0` (RFC 9211 §2.6).
    pub released_from_collapse: bool,
    _in_flight: Option<InFlight>,
}

impl Transaction {
    /// A transaction for a request from `client`.
    pub fn new(
        shared: Arc<Shared>,
        client: Arc<str>,
        method: &http::Method,
        url: String,
        in_flight: Option<InFlight>,
    ) -> Self {
        Self {
            shared,
            started: clock::instant_fresh(),
            client,
            method: method.clone(),
            url,
            code: code::NONE,
            status: 0,
            hierarchy: hier::NONE,
            peer: None,
            content_type: None,
            version: http::Version::HTTP_11,
            origin_form: false,
            referer: None,
            user_agent: None,
            user: None,
            cache_status: None,
            upstream_addr: None,
            upstream_wait: None,
            header_bytes: 0,
            body_bytes: 0,
            aborted: false,
            result: None,
            mode: Mode::Forward,
            site: None,
            upstream_bytes: 0,
            error_details: super::error_details::ErrorDetails::Full,
            incomplete: true,
            released_from_collapse: false,
            _in_flight: in_flight,
        }
    }

    /// Marks the transaction as cut short (logged with an `_ABORTED` code).
    pub fn abort(&mut self) {
        self.aborted = true;
    }

    /// Marks the response as fully delivered.
    pub fn complete(&mut self) {
        self.incomplete = false;
    }

    /// Notes what the log shows of the request head: its version, its target's form (as
    /// the client wrote it), `Referer` and `User-Agent` (refcounted clones, not copies).
    pub fn note_request<B>(&mut self, request: &http::Request<B>, origin_form: bool) {
        self.version = request.version();
        self.origin_form = origin_form;
        let headers = request.headers();
        self.referer = headers.get(http::header::REFERER).cloned();
        self.user_agent = headers.get(http::header::USER_AGENT).cloned();
    }

    /// Records what the cache did: the access-log code and the metric come from `result`,
    /// and so do the members of the returned `Cache-Status` that say what happened
    /// (`status` brings `fwd`, `fwd-status` and `ttl`). Explains the decision at debug level.
    pub fn outcome(&mut self, result: CacheResult, status: CacheStatus) -> CacheStatus {
        self.result = Some(result);
        self.code = result.squid_code();
        let mut status = result.mark(status);
        if self.released_from_collapse && status.collapsed.is_none() && status.fwd.is_some() {
            // RFC 9211 §2.6: collapsed, but "a new request had to be made".
            status.collapsed = Some(false);
        }
        tracing::debug!(
            url = %self.url,
            result = result.kind().as_str(),
            phase = result.phase().as_str(),
            code = self.code,
            fwd = status.fwd.map(|f| f.as_str()),
            detail = status.detail,
            ttl = status.ttl,
            "cache decision"
        );
        status
    }

    /// Notes the response about to be sent.
    pub fn respond<B>(&mut self, response: &http::Response<B>) {
        self.status = response.status().as_u16();
        self.content_type = response.headers().get(http::header::CONTENT_TYPE).cloned();
        self.cache_status = response.headers().get(&CACHE_STATUS).cloned();
        self.header_bytes = head_size(response);
    }

    /// Notes a plain hit about to be sent: its fields are lines, not a map
    /// (`caching::reply`), read for the same facts [`respond`](Self::respond) reads.
    pub fn respond_hit(&mut self, status: http::StatusCode, hit: &HitHead) {
        self.status = status.as_u16();
        self.content_type = hit.content_type();
        self.cache_status = hit.added(&CACHE_STATUS).cloned();
        self.header_bytes = u64::try_from(hit.fields_len() + HEAD_FRAME).unwrap_or(u64::MAX);
    }
}

/// Approximate size on the wire of a response head.
/// A head's bytes besides its field lines: the status line of a 200 and the closing CRLF.
const HEAD_FRAME: usize = "HTTP/1.1 200 OK\r\n\r\n".len();

fn head_size<B>(response: &http::Response<B>) -> u64 {
    let fields: usize = response
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    u64::try_from(fields + HEAD_FRAME).unwrap_or(u64::MAX)
}

impl Drop for Transaction {
    fn drop(&mut self) {
        let code = if self.aborted || self.incomplete {
            aborted_code(self.code)
        } else {
            self.code
        };
        // One clock read for the log's elapsed time and the connection's idle deadline: a
        // fresh one, so a hit served within one poll logs the time it took.
        let now = clock::instant_fresh();
        if let Some(in_flight) = self._in_flight.as_mut() {
            in_flight.ended_at(now);
        }
        let shared = &*self.shared;
        shared.metrics.record(&Record {
            mode: match self.mode {
                Mode::Forward => ModeClass::Forward,
                Mode::Reverse => ModeClass::Reverse,
            },
            method: MethodClass::of(&self.method),
            status: self.status,
            result: self.result,
            to_clients: self.body_bytes,
            // A tunnel relays what the other side sent.
            from_upstream: if self.code == code::TCP_TUNNEL {
                self.body_bytes
            } else {
                self.upstream_bytes
            },
            site: self.site.and_then(|i| shared.site_slots.get(i).copied()),
            url: &self.url,
        });
        self.shared.access_log.log(AccessRecord {
            time: self.shared.clock.now(),
            elapsed: now.saturating_duration_since(self.started),
            client: Arc::clone(&self.client),
            code,
            status: self.status,
            bytes: self.header_bytes + self.body_bytes,
            body_bytes: self.body_bytes,
            method: std::mem::replace(&mut self.method, http::Method::GET),
            url: std::mem::take(&mut self.url),
            origin_form: self.origin_form,
            version: self.version,
            user: self.user.as_deref().map(str::to_owned),
            hierarchy: self.hierarchy,
            peer: self.peer.take(),
            upstream_addr: self.upstream_addr,
            upstream_wait: self.upstream_wait,
            content_type: self.content_type.take(),
            cache_status: self.cache_status.take(),
            referer: self.referer.take(),
            user_agent: self.user_agent.take(),
        });
    }
}

/// Squid appends `_ABORTED` to the code of a transaction that did not complete.
fn aborted_code(code: &'static str) -> &'static str {
    match code {
        code::TCP_MISS => "TCP_MISS_ABORTED",
        code::TCP_HIT => "TCP_HIT_ABORTED",
        code::TCP_MEM_HIT => "TCP_MEM_HIT_ABORTED",
        code::TCP_TUNNEL => "TCP_TUNNEL_ABORTED",
        other => other,
    }
}
