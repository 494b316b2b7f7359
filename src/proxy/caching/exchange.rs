//! One client request on its way through the cache: what every phase reads (the request,
//! where it goes, the generation it runs on) and the two things every phase may do with it
//! (send it upstream, serve it a stored response).

use std::sync::Arc;

use http::header::{self, HeaderMap};
use http::Response;

use super::reply::{serve_hit, Serve};
use crate::cache::lookup::TicketStamp;
use crate::cache::policy::RequestDirectives;
use crate::clock;
use crate::error::Error;
use crate::proxy::body::ProxyBody;
use crate::proxy::next_hop::{send, Outgoing, Target, Upstreamed};
use crate::proxy::request::ConnInfo;
use crate::proxy::transaction::Transaction;
use crate::proxy::Shared;

/// Client request fields that would make the origin answer with less than the full
/// representation; removed when cuttle fetches to store (it answers them from the stored copy).
pub(super) const CLIENT_CONDITIONALS: [header::HeaderName; 5] = [
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
];

/// One client request on its way through the cache.
pub(super) struct Exchange<'a> {
    pub(super) conn: &'a ConnInfo,
    pub(super) shared: &'a Arc<Shared>,
    pub(super) parts: http::request::Parts,
    pub(super) body: Option<crate::proxy::client_body::ClientBody>,
    pub(super) url: String,
    pub(super) request: RequestDirectives,
    /// Where requests for this exchange go.
    pub(super) target: Target,
    /// Taken before a request that may be stored is sent (see `Cache::ticket`).
    pub(super) ticket: Option<TicketStamp>,
}

impl Exchange<'_> {
    /// Sends this request upstream with `headers` (the client's body goes along once).
    pub(super) async fn send(
        &mut self,
        txn: &mut Transaction,
        headers: HeaderMap,
    ) -> Result<Box<Upstreamed>, Error> {
        let asked = clock::instant();
        let out = Box::new(Outgoing {
            method: self.parts.method.clone(),
            uri: self.parts.uri.clone(),
            version: self.parts.version,
            headers,
            body: self.body.take(),
            client: self.conn.peer.ip(),
            target: self.target.clone(),
        });
        let up = send(self.shared, out).await?;
        // Summed over a revalidation's and a refetch's round trips.
        txn.upstream_wait = Some(txn.upstream_wait.unwrap_or_default() + clock::since(asked));
        if let Some(addr) = up.remote_addr() {
            txn.upstream_addr = Some(addr);
        }
        if up.peer.is_some() {
            txn.peer.clone_from(&up.peer);
        }
        if let Some(code) = up.hierarchy {
            txn.hierarchy = code;
        }
        Ok(up)
    }

    /// Serves a stored response to this request.
    pub(super) fn serve(&self, txn: &mut Transaction, serve: Serve) -> Response<ProxyBody> {
        serve_hit(self.shared, &self.parts, txn, serve)
    }

    /// The client's fields for revalidating a stored response: its own validators go (cuttle
    /// sends the stored response's and answers the client's from the result, RFC 9111 §4.3.2),
    /// and so does a Range that cuttle will serve from the whole object.
    pub(super) fn headers_for_store(&self) -> HeaderMap {
        let mut headers = self.headers_for_miss();
        for name in CLIENT_CONDITIONALS {
            headers.remove(name);
        }
        headers
    }

    /// The client's fields for a miss. RFC 9111 §4.3.2: a cache "MUST NOT evaluate conditional
    /// header fields that ... occur in a request with a target resource for which it has no
    /// stored responses", so validators go to the origin as sent. A Range starting below
    /// `range_offset_limit` is dropped (with its If-Range) so the whole object can be stored;
    /// as in Squid, a limit of 0 never fetches more than the client asked for.
    pub(super) fn headers_for_miss(&self) -> HeaderMap {
        let mut headers = self.parts.headers.clone();
        self.drop_stored_range(&mut headers);
        headers
    }

    /// [`headers_for_miss`](Self::headers_for_miss) for the request about to be sent, taking the
    /// client's own map (see [`forwarded_headers`](Self::forwarded_headers)).
    pub(super) fn take_headers_for_miss(&mut self) -> HeaderMap {
        let mut headers = self.forwarded_headers();
        self.drop_stored_range(&mut headers);
        headers
    }

    /// The client's fields as they are, for the request about to be sent; an equal copy stays
    /// in `parts` for what comes after the send (storage, Vary, conditionals). The map that
    /// goes is the one the request was read into: the connection's recycled map, with room
    /// for the fields the next hop adds (`Via`, `X-Forwarded-*`, `Forwarded`). A clone has
    /// room for exactly what it holds, so each of those added to it moved the whole map
    /// again (two reallocations on a miss).
    pub(super) fn forwarded_headers(&mut self) -> HeaderMap {
        let copy = self.parts.headers.clone();
        std::mem::replace(&mut self.parts.headers, copy)
    }

    /// Removes a Range starting below `range_offset_limit` (and its If-Range) from `headers`.
    fn drop_stored_range(&self, headers: &mut HeaderMap) {
        if range_start(headers).is_some_and(|s| s < self.shared.cache.behaviour.range_offset_limit)
        {
            headers.remove(header::RANGE);
            headers.remove(header::IF_RANGE);
        }
    }

    /// A client request with validators (its hits are logged `TCP_IMS_HIT`).
    ///
    /// One pass over the names (a request has a few fields) instead of a hashed lookup per
    /// name: comparing known names is a tag comparison, hashing each lookup cost more.
    pub(super) fn is_conditional(&self) -> bool {
        self.parts
            .headers
            .keys()
            .any(|name| *name == header::IF_NONE_MATCH || *name == header::IF_MODIFIED_SINCE)
    }
}

/// The first byte position of a `bytes=N-` range, if the request has one.
fn range_start(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(header::RANGE)?.to_str().ok()?;
    let spec = value.trim().strip_prefix("bytes=")?;
    spec.split(',')
        .filter_map(|r| r.trim().split('-').next()?.trim().parse::<u64>().ok())
        .min()
        .or(Some(0))
}
