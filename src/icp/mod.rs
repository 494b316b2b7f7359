//! ICP, the Internet Cache Protocol version 2 (RFC 2186, used by caches as RFC 2187
//! describes): the UDP question "do you have this URL?" that Squid asks its siblings and
//! parents before choosing where to forward a miss, so cuttle can sit in a Squid hierarchy.
//!
//! - `wire`: the message format (pure, fuzzed by property tests);
//! - `server`: the `icp_port` socket answering queries; what it answers is the proxy's
//!   decision (a [`server::Responder`], `proxy::icp_answer`), so this module never sees the
//!   cache or the request path;
//! - `client`: asking a set of peers about one URL and waiting for the first hit.
//!
//! Between cuttle nodes HTTP `only-if-cached` stays the default: a sibling without `icp_port`
//! is asked over HTTP, as before.

pub mod client;
pub mod server;
pub mod wire;

use std::net::SocketAddr;
use std::time::Duration;

use crate::access::{Acl, Action, Rule, Rules};

/// ICP settings (Squid `icp_port`, `icp_access`, `icp_query_timeout`).
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the ICP server listens (UDP); `None`: no server (Squid's default, `icp_port 0`).
    pub port: Option<SocketAddr>,
    /// Who may query us; a denied query is answered `ICP_OP_DENIED`.
    pub access: Rules,
    /// How long a request waits for its peers' replies before going on without them.
    pub query_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            port: None,
            access: default_access(),
            query_timeout: DEFAULT_QUERY_TIMEOUT,
        }
    }
}

/// Squid computes a dynamic timeout capped by `maximum_icp_query_timeout`, 2 seconds; a
/// fixed timeout of that cap only costs a wait when a peer does not answer at all.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The default `icp_access`: queries from loopback and private networks (Squid's `localnet`)
/// are answered, every other one is denied.
pub fn default_access() -> Rules {
    let nets = [
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
    ]
    .iter()
    .filter_map(|n| n.parse().ok())
    .collect();
    Rules::new(
        vec![Acl::All, Acl::Src(nets)],
        vec![
            Rule {
                action: Action::Allow,
                conditions: vec![(1, false)],
                text: "allow <loopback and private networks>".to_owned(),
            },
            Rule {
                action: Action::Deny,
                conditions: vec![(0, false)],
                text: "deny all".to_owned(),
            },
        ],
    )
}
