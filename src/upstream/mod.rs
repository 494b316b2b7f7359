//! Everything about talking to the next hop: opening connections (TCP or TLS), the pooled
//! client, and the request body on its way up.
//!
//! This layer never decides policy (access, caching, routing); it sends what the proxy gives it
//! and reports failures as typed errors.

pub mod carp;
pub mod client;
pub mod cluster;
pub mod connect;
pub mod continue_gate;
pub mod early_response;
pub mod group;
pub mod h1;
pub mod h2;
pub mod health;
pub mod hierarchy;
pub mod informational;
pub mod liveness;
pub mod peer;
pub mod pool;
pub mod read_deadline;
pub mod request_body;
pub mod response_body;
pub mod retry;
pub mod select;
pub mod stats;
pub mod stream;
pub mod tls;
pub mod walk;

use std::time::Duration;

pub use client::Upstream;
pub use request_body::{Progress, RequestBody};
pub use response_body::ResponseBody;

/// Upstream settings, built from the `[timeouts]` and `[limits]` sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Budget for resolving and connecting.
    pub connect_timeout: Duration,
    /// Longest silence while waiting for any upstream read.
    pub read_timeout: Duration,
    /// Largest upstream response header accepted (bigger is a 502).
    pub max_response_header_size: usize,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
}
