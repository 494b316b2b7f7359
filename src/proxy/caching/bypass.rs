//! The bypass phase: requests that are no cache lookup go forward as they are, and a
//! successful unsafe method invalidates what it names (RFC 9111 §4.4).

use http::Response;

use super::exchange::Exchange;
use super::reply::deliver;
use crate::cache::phase::BypassReason;
use crate::cache::policy::{invalidation::is_safe_method, invalidation_targets};
use crate::cache::result::CacheResult;
use crate::cache::status::{CacheStatus, Fwd};
use crate::error::Error;
use crate::proxy::body::ProxyBody;
use crate::proxy::transaction::Transaction;

/// Whether `[[cache.access]]` lets this request use the cache (no rules: yes). The rules see
/// what `http_access` sees, the verified user included; they never ask for credentials.
pub(super) fn cache_allowed(ex: &Exchange<'_>, user: Option<&str>) -> bool {
    let rules = &ex.shared.config.cache_access;
    if rules.is_empty() {
        return true;
    }
    let uri = &ex.parts.uri;
    let port = uri
        .port_u16()
        .or_else(|| crate::cache::key::default_port(uri.scheme_str().unwrap_or("http")))
        .unwrap_or(80);
    let client = ex.conn.peer.ip();
    let mut facts = crate::proxy::authorize::facts_for(
        ex.shared,
        rules,
        client,
        &ex.url,
        uri,
        &ex.parts.headers,
    );
    facts.user = user;
    let request = crate::access::AccessRequest {
        src: client,
        host: uri.host().unwrap_or(""),
        port,
        method: &ex.parts.method,
        dst: None,
        facts,
    };
    rules.check(&request) == crate::access::Verdict::Allow
}

/// Forwards a request the cache does not look up, for `reason`.
pub(super) async fn bypass(
    ex: &mut Exchange<'_>,
    txn: &mut Transaction,
    reason: BypassReason,
) -> Result<Response<ProxyBody>, Error> {
    tracing::trace!(url = %ex.url, phase = "bypass", reason = reason.as_str(), "cache phase");
    let headers = ex.forwarded_headers();
    let up = ex.send(txn, headers).await?;
    let fwd = match reason {
        BypassReason::Method => Fwd::Method,
        BypassReason::RequestContent
        | BypassReason::NoKey
        | BypassReason::CacheDeny
        | BypassReason::Upgrade
        | BypassReason::Cluster => Fwd::Bypass,
    };
    if reason == BypassReason::Method && !is_safe_method(&ex.parts.method) {
        let targets = invalidation_targets(
            &ex.parts.method,
            up.parts.status,
            &ex.parts.uri,
            &up.parts.headers,
        );
        for target in targets {
            if let Some(primary) = ex.shared.cache.primary_key(&target) {
                ex.shared.cache.invalidate(&primary).await;
            }
        }
    }
    let status = txn.outcome(CacheResult::Bypass { reason }, CacheStatus::forward(fwd));
    Ok(deliver(ex.shared, up, status, None))
}
