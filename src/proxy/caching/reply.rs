//! Building client responses on the cache path: from a stored entry (hits), from an upstream
//! response (relayed, maybe filling the cache), and the only-if-cached 504.
//!
//! Every one of them carries our `Via` entry and a `Cache-Status` member (RFC 9211); optional
//! Squid `X-Cache`. Hit bodies are shared `Bytes` slices (memory) or a stream (disk), never
//! copied.

use std::borrow::Cow;

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Response, Version};

use crate::cache::fill::FillSink;
use crate::cache::meta::{Carried, StoredHead};
use crate::cache::result::CacheResult;
use crate::cache::serve::{plain_hit, serve_stored, serve_stored_as, BodyPlan, HitHead};
use crate::cache::status::{CacheStatus, CACHE_STATUS};
use crate::cache::store::{Hit, HitBody, Tier};
use crate::error::{Error, ErrorKind};
use crate::proxy::body::ProxyBody;
use crate::proxy::next_hop::Upstreamed;
use crate::proxy::transaction::{hier, Transaction};
use crate::proxy::Shared;

static X_CACHE: header::HeaderName = header::HeaderName::from_static("x-cache");

/// Adds `Via`, `Cache-Status` and (if configured) `X-Cache` to a response we send.
pub(super) fn decorate(
    shared: &Shared,
    headers: &mut HeaderMap,
    received: Version,
    status: &CacheStatus,
) {
    crate::cache::invalidate::strip_for_client(headers, &shared.cache.behaviour);
    if shared.config.forward.via {
        shared.via.append(headers, received);
    }
    status.append_to(headers, &shared.cache.behaviour.status_name);
    add_x_cache(shared, headers, status);
}

/// [`decorate`] for a head built from a stored one by `serve_stored_as`, which already left
/// out what `strip_for_client` removes: ours are appended without looking for theirs unless
/// the stored head `carried` some. `ours` is our `Cache-Status` member, rendered.
fn decorate_served(
    shared: &Shared,
    headers: &mut HeaderMap,
    status: &CacheStatus,
    carried: Carried,
    ours: Option<HeaderValue>,
) {
    if shared.config.forward.via {
        if carried.via {
            shared.via.append(headers, Version::HTTP_11);
        } else {
            headers.append(header::VIA, shared.via.entry(Version::HTTP_11).clone());
        }
    }
    match ours {
        Some(ours) if !carried.cache_status => {
            headers.append(&CACHE_STATUS, ours);
        }
        _ => status.append_to(headers, &shared.cache.behaviour.status_name),
    }
    add_x_cache(shared, headers, status);
}

/// Squid's `X-Cache: HIT from name`, when configured.
fn add_x_cache(shared: &Shared, headers: &mut HeaderMap, status: &CacheStatus) {
    if let Some(value) = x_cache_value(shared, status) {
        headers.insert(&X_CACHE, value);
    }
}

/// The `X-Cache` value, when configured.
fn x_cache_value(shared: &Shared, status: &CacheStatus) -> Option<HeaderValue> {
    if !shared.cache.behaviour.x_cache {
        return None;
    }
    let word = if status.hit { "HIT" } else { "MISS" };
    HeaderValue::from_str(&format!("{word} from {}", shared.via.pseudonym())).ok()
}

/// `Age` and our `Cache-Status` member for a hit, as two values sharing one buffer: one
/// allocation (and one for sharing it) where making each value on its own took two, and
/// the access log's copy of `Cache-Status` costs none.
fn hit_values(age: u64, status: &CacheStatus, cache: &str) -> (HeaderValue, Option<HeaderValue>) {
    let mut text = String::with_capacity(80);
    text.push_str(itoa::Buffer::new().format(age));
    let age_len = text.len();
    let rendered = status.render_to(cache, &mut text);
    let bytes = bytes::Bytes::from(text);
    let age_value = HeaderValue::from_maybe_shared(bytes.slice(..age_len))
        .unwrap_or_else(|_| HeaderValue::from(age));
    let ours = if rendered {
        HeaderValue::from_maybe_shared(bytes.slice(age_len..)).ok()
    } else {
        None
    };
    (age_value, ours)
}

/// A stored response about to be served, and what to say about it.
pub struct Serve {
    pub hit: Hit,
    /// Its current age in seconds (RFC 9111 §4.2.3).
    pub age: u64,
    /// `fwd`, `fwd-status`, `ttl`, `stored` as the caller knows them; `result` adds the rest.
    pub status: CacheStatus,
    pub result: CacheResult,
}

/// Serves a stored response for the client request `parts`.
pub fn serve_hit(
    shared: &Shared,
    parts: &http::request::Parts,
    txn: &mut Transaction,
    serve: Serve,
) -> Response<ProxyBody> {
    let Serve {
        hit,
        age,
        status,
        result,
    } = serve;
    let status = txn.outcome(result, status);
    let multipart = matches!(hit.body, HitBody::Memory(_));
    let behaviour = &shared.cache.behaviour;
    let (age, ours) = hit_values(age, &status, &behaviour.status_name);
    if txn.upstream_wait.is_none() {
        // Served without asking anyone: Squid logs such a hit as `HIER_NONE/-`.
        txn.hierarchy = hier::NONE;
        txn.peer = None;
    }
    if let Some(response) = plain_response(shared, parts, &hit, &status, &age, &ours) {
        return response;
    }
    // The response's arrival stands in for the clock when reading the request's date
    // preconditions: it only places two-digit years, where a year's precision is plenty.
    let served = serve_stored_as(
        &parts.method,
        &parts.headers,
        &hit.head,
        age,
        |name| crate::cache::invalidate::stripped_for_client(name, behaviour),
        multipart,
        hit.head.response_time,
    );
    let body = match (served.body, hit.body) {
        (BodyPlan::Empty, _) => ProxyBody::empty(),
        (BodyPlan::Full, HitBody::Memory(bytes)) => ProxyBody::full(bytes),
        (BodyPlan::Range { start, end }, HitBody::Memory(bytes)) => {
            ProxyBody::full(slice(&bytes, start, end))
        }
        (BodyPlan::Multipart(layout), HitBody::Memory(bytes)) => {
            let mut chunks = Vec::with_capacity(layout.parts.len() * 2 + 1);
            for part in layout.parts {
                chunks.push(part.header);
                chunks.push(slice(&bytes, part.start, part.end));
            }
            chunks.push(layout.closing);
            ProxyBody::chunks(chunks)
        }
        (BodyPlan::Range { start, end }, HitBody::Disk(disk)) => {
            ProxyBody::disk(disk, start, end - start + 1)
        }
        (BodyPlan::Full | BodyPlan::Multipart(_), HitBody::Disk(disk)) => {
            ProxyBody::disk(disk, 0, u64::MAX)
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = served.status;
    *response.headers_mut() = served.headers;
    decorate_served(
        shared,
        response.headers_mut(),
        &status,
        served.carried,
        ours,
    );
    response
}

/// A plain hit on an entry held in memory, for an HTTP/1 client: a response with an empty map
/// and the head as a [`HitHead`] carried by its body (`ProxyBody::plain_hit`), written by our HTTP/1 server as the stored lines
/// with this hit's fields spliced in. The lines and fields are those `serve_stored_as` and
/// `decorate_served` would put in the map, in its order; `None` where they would differ or
/// something must look at the fields one by one: a stored `Via` or `Cache-Status` (merged),
/// an `X-Cache` or a tag field this configuration replaces or strips, HTTP/2 (hyper encodes
/// its own head from the map), a disk entry (its head is read anew for each hit).
fn plain_response(
    shared: &Shared,
    parts: &http::request::Parts,
    hit: &Hit,
    status: &CacheStatus,
    age: &HeaderValue,
    ours: &Option<HeaderValue>,
) -> Option<Response<ProxyBody>> {
    // Our own HTTP/1 server reads the head off the body; HTTP/2 requests are hyper's.
    if parts.version != Version::HTTP_11 && parts.version != Version::HTTP_10 {
        return None;
    }
    let (Tier::Memory, HitBody::Memory(bytes), Some(ours)) = (hit.tier, &hit.body, ours) else {
        return None;
    };
    let fields = plain_hit(&parts.method, &parts.headers, &hit.head)?;
    let behaviour = &shared.cache.behaviour;
    if behaviour.x_cache && fields.has_x_cache() {
        return None;
    }
    if fields.has_custom_names()
        && behaviour.strip_tag_fields
        && behaviour
            .tag_fields
            .iter()
            .any(|tag| hit.head.headers.contains_key(tag))
    {
        return None;
    }
    let via = shared
        .config
        .forward
        .via
        .then(|| (header::VIA, shared.via.entry(Version::HTTP_11).clone()));
    let x_cache = x_cache_value(shared, status).map(|v| (X_CACHE.clone(), v));
    let head = HitHead {
        fields,
        age: age.clone(),
        added: [via, Some((CACHE_STATUS.clone(), ours.clone())), x_cache],
    };
    let body = if parts.method == http::Method::HEAD {
        ProxyBody::empty()
    } else {
        ProxyBody::full(bytes.clone())
    };
    Some(Response::new(ProxyBody::plain_hit(body, head)))
}

/// Serves a request collapsed behind a fill in progress: the fill's head now, its body as
/// it arrives (read-while-writer). Only for requests served the whole body (no range, no
/// conditionals): those are answered from the stored copy after the commit.
pub fn serve_collapsed(
    shared: &Shared,
    parts: &http::request::Parts,
    txn: &mut Transaction,
    attached: crate::cache::collapse::Attached,
    status: CacheStatus,
    result: CacheResult,
) -> Response<ProxyBody> {
    let status = txn.outcome(result, status);
    let head = std::sync::Arc::clone(attached.tap.head());
    let served = serve_stored(
        &parts.method,
        &parts.headers,
        &head,
        0,
        false,
        head.response_time,
    );
    let body = match served.body {
        BodyPlan::Empty => ProxyBody::empty(),
        _ => ProxyBody::collapsed(attached, &shared.cache.store),
    };
    let mut response = Response::new(body);
    *response.status_mut() = served.status;
    *response.headers_mut() = served.headers;
    decorate(shared, response.headers_mut(), Version::HTTP_11, &status);
    txn.hierarchy = hier::NONE;
    txn.peer = None;
    response
}

/// `bytes[start..=end]`, clamped, as a shared slice.
fn slice(bytes: &bytes::Bytes, start: u64, end: u64) -> bytes::Bytes {
    let len = bytes.len();
    let start = usize::try_from(start).unwrap_or(len).min(len);
    let end = usize::try_from(end.saturating_add(1))
        .unwrap_or(len)
        .min(len);
    bytes.slice(start..end.max(start))
}

/// Relays an upstream response, filling the cache through `fill` when given.
pub fn deliver(
    shared: &Shared,
    up: Box<Upstreamed>,
    status: CacheStatus,
    fill: Option<FillSink>,
) -> Response<ProxyBody> {
    let (mut parts, body) = up.into_relay(shared.upstream.read_timeout());
    let received = parts.version;
    parts.version = Version::HTTP_11;
    decorate(shared, &mut parts.headers, received, &status);
    let body = body.with_fill(fill, &shared.cache.store);
    Response::from_parts(parts, body)
}

/// The obsolete RFC 2965 cookie field, treated like `Set-Cookie`.
pub(super) const SET_COOKIE2: HeaderName = HeaderName::from_static("set-cookie2");

/// The fields of a 304 (or HEAD) response that may update a stored head: all of them, except
/// `Set-Cookie` unless `store_set_cookie`.
///
/// A cookie is one client's state. RFC 9111 §7.3 notes that `Set-Cookie` does not inhibit
/// caching and that a stored response with it "can be (and often is) used to satisfy subsequent
/// requests", which hands the first client's session to everyone else. cuttle, like Squid
/// (which strips it from hits), never replays it: it is removed before storage (so it never
/// reaches disk either, and hits stay a plain copy of the stored head), while the client whose
/// request fetched the response still receives it. RFC 9110 §7.6.1 / RFC 9111 §3.1 allow
/// removing fields before storage when their semantics require it.
pub fn storable_update(headers: &HeaderMap, store_set_cookie: bool) -> Cow<'_, HeaderMap> {
    if store_set_cookie
        || !(headers.contains_key(header::SET_COOKIE) || headers.contains_key(SET_COOKIE2))
    {
        return Cow::Borrowed(headers);
    }
    let mut owned = headers.clone();
    owned.remove(header::SET_COOKIE);
    owned.remove(SET_COOKIE2);
    Cow::Owned(owned)
}

/// `head` with the cookies of `response` added, for the one client whose request fetched
/// `response` (the stored copy stays without them).
pub fn with_cookies_of(head: StoredHead, response: &HeaderMap) -> StoredHead {
    if !(response.contains_key(header::SET_COOKIE) || response.contains_key(SET_COOKIE2)) {
        return head;
    }
    let mut map = head.headers.to_map();
    for name in [header::SET_COOKIE, SET_COOKIE2] {
        map.remove(&name);
        for value in response.get_all(&name) {
            map.append(name.clone(), value.clone());
        }
    }
    StoredHead {
        headers: crate::cache::meta::StoredFields::from_map(&map),
        ..head
    }
}

/// RFC 9111 §5.2.1.7: with `only-if-cached` and nothing usable stored, answer 504.
pub fn not_in_cache(shared: &Shared, txn: &mut Transaction, url: &str) -> Response<ProxyBody> {
    let mut response = crate::proxy::respond::error_response_with(
        &Error::new(
            ErrorKind::NotInCache,
            "only-if-cached: no usable response is stored",
        ),
        url,
        shared.via.pseudonym(),
        txn.error_details,
        &shared.config.error_pages,
    );
    let status = txn.outcome(CacheResult::NotInCache, CacheStatus::default());
    status.append_to(response.headers_mut(), &shared.cache.behaviour.status_name);
    response
}
