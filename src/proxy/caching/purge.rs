//! PURGE (Squid's method): removes every stored variant of a URL (or the entries with the
//! tags the request names, or marks them stale), for clients in `cache.purge_from` (loopback
//! by default).

use std::net::IpAddr;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode, Uri};

use crate::cache::result::CacheResult;
use crate::cache::status::CacheStatus;
use crate::error::{Error, ErrorKind};
use crate::proxy::body::ProxyBody;
use crate::proxy::transaction::Transaction;
use crate::proxy::Shared;

/// PURGE: removes every stored variant of the URI, or with `Surrogate-Key`/`Cache-Tag` the
/// entries with those tags, or with `Cuttle-Purge: soft` marks them stale (see
/// `cache::invalidate`); forwarded to `cache.purge_propagate`. 200 if anything was purged,
/// else 404.
pub async fn purge(
    shared: &Shared,
    client: IpAddr,
    uri: &Uri,
    headers: &HeaderMap,
    txn: &mut Transaction,
) -> Result<Response<ProxyBody>, Error> {
    let client = client.to_canonical();
    if !shared
        .cache
        .behaviour
        .purge_from
        .iter()
        .any(|net| net.contains(&client))
    {
        return Err(Error::new(
            ErrorKind::AccessDenied,
            format!("PURGE is not allowed from {client} (cache.purge_from)"),
        ));
    }
    let Some(primary) = shared.cache.primary_key(uri) else {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            "PURGE needs an absolute URL",
        ));
    };
    let cache = &shared.cache;
    let request =
        crate::cache::invalidate::from_purge_request(primary, headers, &cache.behaviour.tag_fields);
    let hops = crate::cache::invalidate::propagate::hops(headers);
    let purged = cache
        .purge_and_propagate(&request, hops)
        .await
        .map_or(0, |(purged, _)| purged.entries);
    let status = if purged > 0 {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
    txn.outcome(
        CacheResult::Purge {
            removed: purged > 0,
        },
        CacheStatus::default(),
    );
    Ok(response)
}
