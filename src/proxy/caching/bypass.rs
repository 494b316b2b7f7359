//! The bypass phase: requests that are no cache lookup go forward as they are, and a
//! successful unsafe method invalidates what it names (RFC 9111 §4.4).

use http::Response;

use super::exchange::Exchange;
use super::reply::deliver;
use crate::cache::key::primary_key;
use crate::cache::phase::BypassReason;
use crate::cache::policy::{invalidation::is_safe_method, invalidation_targets};
use crate::cache::result::CacheResult;
use crate::cache::status::{CacheStatus, Fwd};
use crate::error::Error;
use crate::proxy::body::ProxyBody;
use crate::proxy::transaction::Transaction;

/// Forwards a request the cache does not look up, for `reason`.
pub(super) async fn bypass(
    ex: &mut Exchange<'_>,
    txn: &mut Transaction,
    reason: BypassReason,
) -> Result<Response<ProxyBody>, Error> {
    tracing::trace!(url = %ex.url, phase = "bypass", reason = reason.as_str(), "cache phase");
    let up = ex.send(txn, ex.parts.headers.clone()).await?;
    let fwd = match reason {
        BypassReason::Method => Fwd::Method,
        BypassReason::RequestContent | BypassReason::NoKey => Fwd::Bypass,
    };
    if reason == BypassReason::Method && !is_safe_method(&ex.parts.method) {
        let targets = invalidation_targets(
            &ex.parts.method,
            up.parts.status,
            &ex.parts.uri,
            &up.parts.headers,
        );
        for target in targets {
            if let Some(primary) = primary_key(&target) {
                ex.shared.cache.invalidate(&primary).await;
            }
        }
    }
    let status = txn.outcome(CacheResult::Bypass { reason }, CacheStatus::forward(fwd));
    Ok(deliver(ex.shared, up, status, None))
}
