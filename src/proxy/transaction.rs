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
use super::Shared;
use crate::log::AccessRecord;

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

/// Squid hierarchy codes used so far.
pub mod hier {
    pub const DIRECT: &str = "HIER_DIRECT";
    /// An upstream group's server (Squid logs origin-server peers as a parent).
    pub const PARENT: &str = "FIRST_UP_PARENT";
    pub const NONE: &str = "HIER_NONE";
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
    /// Bytes of response header sent to the client.
    pub header_bytes: u64,
    /// Bytes of response body (or tunnelled data) sent to the client.
    pub body_bytes: u64,
    /// The response did not complete (upstream failed mid-body or the client left).
    pub aborted: bool,
    /// How much an error page for this request may tell (its port's `error_details`).
    pub error_details: super::respond::ErrorDetails,
    /// Cleared when the transaction completes normally.
    incomplete: bool,
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
            started: Instant::now(),
            client,
            method: method.clone(),
            url,
            code: code::NONE,
            status: 0,
            hierarchy: hier::NONE,
            peer: None,
            content_type: None,
            header_bytes: 0,
            body_bytes: 0,
            aborted: false,
            error_details: super::respond::ErrorDetails::Full,
            incomplete: true,
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

    /// Notes the response about to be sent.
    pub fn respond<B>(&mut self, response: &http::Response<B>) {
        self.status = response.status().as_u16();
        self.content_type = response.headers().get(http::header::CONTENT_TYPE).cloned();
        self.header_bytes = head_size(response);
    }
}

/// Approximate size on the wire of a response head.
fn head_size<B>(response: &http::Response<B>) -> u64 {
    let fields: usize = response
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    u64::try_from(fields + 19).unwrap_or(u64::MAX)
}

impl Drop for Transaction {
    fn drop(&mut self) {
        let code = if self.aborted || self.incomplete {
            aborted_code(self.code)
        } else {
            self.code
        };
        self.shared.access_log.log(AccessRecord {
            time: self.shared.clock.now(),
            elapsed: self.started.elapsed(),
            client: Arc::clone(&self.client),
            code,
            status: self.status,
            bytes: self.header_bytes + self.body_bytes,
            method: std::mem::replace(&mut self.method, http::Method::GET),
            url: std::mem::take(&mut self.url),
            user: None,
            hierarchy: self.hierarchy,
            peer: self.peer.take(),
            content_type: self.content_type.take(),
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
