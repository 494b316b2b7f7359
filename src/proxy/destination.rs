//! Where a forward-mode request or tunnel really goes: the destination is resolved once, checked
//! by `http_access` address by address, and only the checked addresses are handed on, so the
//! connection goes to one of them and nowhere else (no second lookup that DNS could answer
//! differently).
//!
//! Resolution happens only when something needs it: a `dst` ACL in `http_access` or in the
//! hierarchy's `always_direct` / `never_direct`, or a tunnel that connects directly. A request
//! with no such rule keeps the pooled client's own resolution (nothing to bypass). A name that
//! does not resolve is judged without addresses (a `dst` ACL does not match it, as in Squid), so
//! a denied client gets 403 rather than learning about DNS; an allowed one gets the DNS error
//! when it would go direct, while a parent cache may still carry it (the parent resolves). The
//! failure is remembered ([`Resolution::Failed`]) so that going direct never looks the name up
//! a second time.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::Method;

use super::authorize::{decide, Requester};
use super::Shared;
use crate::access::AccessRequest;
use crate::error::{Error, ErrorKind};
use crate::upstream::connect::resolve;

/// The addresses a destination resolved to, every one of them allowed by `http_access`.
pub type Checked = Arc<[SocketAddr]>;

/// What the access check learnt about the destination's addresses.
#[derive(Debug, Clone)]
pub enum Resolution {
    /// No rule looked at addresses: a direct connection may resolve the name itself.
    Unneeded,
    /// Resolved and checked: connect to these and nothing else.
    Checked(Checked),
    /// The name did not resolve (this error); a direct connection must fail with it.
    Failed(ErrorKind, Arc<str>),
}

impl Resolution {
    /// The checked addresses as IPs, for the hierarchy's `always_direct` / `never_direct`.
    pub fn ips(&self) -> Vec<IpAddr> {
        match self {
            Self::Checked(addrs) => addrs.iter().map(SocketAddr::ip).collect(),
            Self::Unneeded | Self::Failed(..) => Vec::new(),
        }
    }
}

/// Applies `http_access` to a request for `host:port` from `who`, resolving the host first
/// when a rule looks at addresses or `must_resolve` is set, and authenticating `who` when a
/// `proxy_auth` rule needs it (see `authorize`). With `must_resolve` (a direct tunnel), a name
/// that does not resolve is an error here.
pub async fn check(
    shared: &Shared,
    who: &mut Requester<'_>,
    method: &Method,
    host: &str,
    port: u16,
    must_resolve: bool,
) -> Result<Resolution, Error> {
    let request = AccessRequest {
        src: who.client,
        host,
        port,
        method,
        dst: None,
        facts: who.facts,
    };
    let plain = |r: &AccessRequest<'_>| shared.access.check(r);
    let needs_addresses = must_resolve
        || shared.access.needs_dst()
        || shared.peers.as_ref().is_some_and(|p| {
            p.config.always_direct.needs_dst() || p.config.never_direct.needs_dst()
        });
    if !needs_addresses {
        return decide(shared, &request, who, plain)
            .await
            .map(|()| Resolution::Unneeded);
    }
    match resolve(host, port, shared.upstream_connect_timeout()).await {
        Ok(addrs) => {
            let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
            let resolved = |r: &AccessRequest<'_>| shared.access.check_resolved(r, &ips);
            decide(shared, &request, who, resolved).await?;
            Ok(Resolution::Checked(addrs.into()))
        }
        Err(err) => {
            decide(shared, &request, who, plain).await?;
            let err = err.to_error();
            if must_resolve || shared.peers.is_none() {
                return Err(err);
            }
            Ok(Resolution::Failed(err.kind(), err.cause().into()))
        }
    }
}
