//! The one storage pipeline: may this upstream response be stored, and under which key?
//!
//! Every response the cache might keep passes here, whoever fetched it: a foreground miss, a
//! foreground revalidation that brought a new response, and the background refresh behind
//! stale-while-revalidate. In order: a `proxy_only` peer's answer is never stored (Squid
//! `proxy-only`); RFC 9111 §3 storability (`check_storable`); the stored head (§3.1);
//! reusability (a response that could never be served again is not worth a write); the key
//! (Vary, §4.1); a writer from a tier that takes its size. The answer is an [`Admission`]:
//! either [`Admitted`] (which alone can start a fill) or a pass with its reason.

use std::time::SystemTime;

use http::header::{self, HeaderMap, HeaderName};
use http::Method;

use super::reply::SET_COOKIE2;
use crate::cache::collapse::Leader;
use crate::cache::fill::{self, FillSink};
use crate::cache::lookup::{Evaluation, FillTicket};
use crate::cache::meta::StoredHead;
use crate::cache::policy::storable::storage_excluded_fields;
use crate::cache::policy::{
    check_storable, effective_response_directives, NotStorable, RequestDirectives,
    ResponseDirectives, StoreInput,
};
use crate::cache::store::Writer;
use crate::out_of_line;
use crate::proxy::next_hop::Upstreamed;
use crate::proxy::Shared;

/// The request a response answers, as the pipeline needs it.
pub(super) struct StoreRequest<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub directives: &'a RequestDirectives,
    pub url: &'a str,
    pub primary: &'a str,
    /// The URI held responses for other Vary values (a plain response replaces them).
    pub had_variants: bool,
    /// When the request was sent (RFC 9111 §4.2.3 `request_time`).
    pub request_time: SystemTime,
}

/// What the pipeline decided.
// Made once per fetched response and matched at once; boxing would cost every store an
// allocation for nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Admission {
    Store(Admitted),
    /// Relay without storing; the reason is the `Cache-Status` detail.
    Pass(&'static str),
}

/// A response that will be stored: only this can start a fill.
pub(super) struct Admitted {
    pub head: StoredHead,
    /// The new head evaluated at its arrival (its `ttl` goes into `Cache-Status`).
    pub eval: Evaluation,
    pub content_length: Option<u64>,
    writer: Writer,
}

impl Admitted {
    /// Starts the fill: the body given to the returned sink is stored, and committed only if
    /// no invalidation of the URL came after `ticket` (see `Cache::ticket`).
    pub fn start_fill(
        self,
        leader: Option<Leader>,
        ticket: FillTicket,
    ) -> (FillSink, tokio::task::JoinHandle<bool>) {
        fill::start(self.writer, leader, ticket)
    }
}

/// Runs `up` through the pipeline for `req`.
pub(super) async fn admit(shared: &Shared, req: &StoreRequest<'_>, up: &Upstreamed) -> Admission {
    if up.no_store {
        // A `proxy_only` peer served it: relay without storing (Squid `proxy-only`).
        return Admission::Pass("proxy-only");
    }
    let cache = &shared.cache;
    let response =
        effective_response_directives(&up.parts.headers, &cache.behaviour.targeted_fields);
    let content_length = up.content_length();
    let verdict = if req.method == Method::HEAD {
        Err(NotStorable::Method)
    } else {
        check_storable(&StoreInput {
            method: req.method,
            request_headers: req.headers,
            request: req.directives,
            status: up.parts.status,
            response_headers: &up.parts.headers,
            response: &response,
            content_length,
            max_object_size: cache.store.max_object_size(),
            complete: true,
            allow_partial: false,
            extra_permission: cache
                .behaviour
                .extra_storage_permission(req.url, up.parts.status),
        })
    };
    if let Err(reason) = verdict {
        tracing::debug!(url = %req.url, reason = reason.as_str(), "cache: response not storable (RFC 9111 §3)");
        return Admission::Pass(reason.as_str());
    }
    let response_time = shared.clock.now();
    let head = stored_head(
        up,
        &response,
        req,
        response_time,
        cache.behaviour.store_set_cookie,
    );
    let eval = cache.evaluate(&head, &RequestDirectives::default(), req.url, response_time);
    if !reusable(&head, &eval) {
        return Admission::Pass("not-reusable");
    }
    // Most responses passed above; inline, the key's state (a Vary record's write) would
    // widen this future, and every one awaiting it, for all of them.
    let key = out_of_line::start(|| {
        cache.key_for_response(req.primary, req.headers, &head, req.had_variants)
    });
    let writer = match key.await {
        Some(key) => cache.store.writer(&key, head.clone(), content_length),
        None => None,
    };
    match writer {
        Some(writer) => Admission::Store(Admitted {
            head,
            eval,
            content_length,
            writer,
        }),
        None => Admission::Pass("not-stored"),
    }
}

/// Whether a storable response could ever be reused: fresh now, or revalidatable (it has a
/// validator), or allowed by its own directives to be served stale. Storing one that is none of
/// these (a bare 200 with no Last-Modified, so zero heuristic lifetime) would only cost disk
/// writes. `max_stale` (on by default) does not count: it keeps serving what is stored for a
/// reason of its own when the origin is unreachable, and is no reason to store every
/// uncacheable-looking page.
fn reusable(head: &StoredHead, eval: &Evaluation) -> bool {
    eval.ttl() > 0
        || head.headers.contains_key(&header::ETAG)
        || head.headers.contains_key(&header::LAST_MODIFIED)
        || eval.response.stale_while_revalidate.is_some()
        || eval.response.stale_if_error.is_some()
}

/// The head to store for an upstream response (RFC 9111 §3.1: without hop-by-hop fields,
/// proxy authentication fields, or fields named by a qualified `private`), and without
/// `Set-Cookie` unless `store_set_cookie` (see `reply::storable_update`).
fn stored_head(
    up: &Upstreamed,
    directives: &ResponseDirectives,
    req: &StoreRequest<'_>,
    response_time: SystemTime,
    store_set_cookie: bool,
) -> StoredHead {
    let excluded = storage_excluded_fields(&up.parts.headers, directives);
    let skip = |name: &HeaderName| {
        excluded.contains(name)
            || (!store_set_cookie && (name == header::SET_COOKIE || name == SET_COOKIE2))
            // An origin must not be able to make its response look like an internal vary
            // record, nor mark it soft-purged.
            || name.as_str() == crate::cache::lookup::VARY_RECORD
            || crate::cache::invalidate::soft::is_mark(name)
    };
    StoredHead {
        status: up.parts.status,
        headers: crate::cache::meta::StoredFields::from_map_without(&up.parts.headers, skip),
        request_time: req.request_time,
        response_time,
        url: req.url.into(),
        body_len: up.content_length().unwrap_or(0),
        derived: Default::default(),
    }
}
