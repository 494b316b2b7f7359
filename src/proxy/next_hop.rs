//! Sending a request to its next hop: the origin named by the URI (forward mode) or a server of
//! an upstream group (reverse mode), and holding the response head for its first body frame.
//!
//! The request is rewritten for the next hop (`Host`, `Via`, `X-Forwarded-For`). The response
//! head is held until the first body frame arrives, so an upstream whose body is broken from its
//! first byte (bad chunked framing) still gets the client a clean 502 instead of a truncated 200.
//!
//! A group's servers are addressed as `http://{address}{path}`, or `https://...` for a group with
//! `tls = true`, and reached on that group's own client (see `Shared::upstream_for`). They are
//! tried in the selector's order (nginx `proxy_next_upstream`). Whether a failure moves on is
//! `upstream::retry`'s one decision: nothing sent (no connection, a failed TLS handshake) is
//! safe for any request without a body; a read timeout, an invalid reply or a configured 5xx
//! only for an idempotent one (RFC 9110 §9.2.2). Each failure counts towards the server's
//! `max_fails` (its `liveness`). Peers are walked by `upstream::walk`, as CONNECT is.

use std::future::Future as _;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::Authority;
use http::{Method, Request, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};

use super::body::ProxyBody;
use super::client_body::ClientBody;
use super::destination::Resolution;
use super::headers;
use super::transaction::hier;
use super::Shared;
use crate::access::{AccessRequest, RequestFacts};
use crate::clock;
use crate::error::{Error, ErrorKind};
use crate::upstream::carp::url_key;
use crate::upstream::continue_gate::Gate;
use crate::upstream::group::{ActiveGuard, Group};
use crate::upstream::hierarchy::Hop;
use crate::upstream::informational::OnInformational;
use crate::upstream::peer::Peers;
use crate::upstream::retry::{self, Replay};
use crate::upstream::walk::{self, Walk};
use crate::upstream::{Progress, RequestBody, ResponseBody};

/// Where a request goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// The origin in the request URI, with what `http_access` learnt of its addresses
    /// (`proxy::destination`): when it resolved them, only those are connected to.
    Origin(Resolution),
    /// A server of an upstream group.
    Group {
        group: Arc<Group>,
        host_header: HostHeader,
        /// The Host the client asked for.
        client_host: Authority,
        /// The client reached us over TLS (for `X-Forwarded-Proto` and `Forwarded`).
        client_tls: bool,
    },
}

/// The `Host` sent to a group's server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostHeader {
    /// The client's Host (the default, like nginx `proxy_set_header Host $host`).
    Preserve,
    /// The server's own address.
    Upstream,
    /// A fixed name.
    Fixed(HeaderValue),
}

/// A response from upstream, head received, first body frame (if any) already read.
///
/// It travels boxed: it is handed up through half a dozen layers (next hop, then the caching
/// steps), and at ~340 bytes each hand-over was a copy; one allocation costs less.
#[derive(Debug)]
pub struct Upstreamed {
    /// Hop-by-hop fields removed; no `Via` added yet.
    pub parts: http::response::Parts,
    pub first: Option<Frame<Bytes>>,
    pub body: ResponseBody,
    /// The server that answered (for the access log).
    pub peer: Option<String>,
    /// Counts the request against its group server until the response is done.
    pub guard: Option<ActiveGuard>,
    /// How the next hop was chosen (Squid hierarchy code), when a hierarchy routed it.
    pub hierarchy: Option<&'static str>,
    /// A `proxy_only` peer served it: do not store.
    pub no_store: bool,
}

impl Upstreamed {
    /// The Content-Length the upstream declared, if any and valid.
    pub fn content_length(&self) -> Option<u64> {
        self.parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    }

    /// The address of the server that answered: our HTTP/1 codec keeps it with the body,
    /// hyper's client puts it in the extensions (`HttpInfo`).
    pub fn remote_addr(&self) -> Option<std::net::SocketAddr> {
        self.body.remote_addr().or_else(|| {
            self.parts
                .extensions
                .get::<hyper_util::client::legacy::connect::HttpInfo>()
                .map(hyper_util::client::legacy::connect::HttpInfo::remote_addr)
        })
    }

    /// The response head, and the body as it is relayed to the client (the group server's
    /// request counted until the body ends).
    pub fn into_relay(
        self,
        read_timeout: std::time::Duration,
    ) -> (http::response::Parts, ProxyBody) {
        let body = ProxyBody::upstream(self.first, self.body, read_timeout).with_guard(self.guard);
        (self.parts, body)
    }
}

/// What to send upstream; boxed on its way down the layers, like [`Upstreamed`] on its way
/// up (~360 bytes).
#[derive(Debug)]
pub struct Outgoing {
    pub method: Method,
    /// The effective request URI (absolute).
    pub uri: Uri,
    /// The client's protocol version, recorded in `Via`.
    pub version: Version,
    /// End-to-end fields (hop-by-hop already removed).
    pub headers: HeaderMap,
    pub body: Option<ClientBody>,
    pub client: IpAddr,
    pub target: Target,
}

/// Sends `out` to its next hop and waits for the response head and first body frame.
pub async fn send(shared: &Shared, mut out: Box<Outgoing>) -> Result<Box<Upstreamed>, Error> {
    // Taken, not cloned: every path below reads it once and no try is sent to it again.
    let target = std::mem::replace(&mut out.target, Target::Origin(Resolution::Unneeded));
    match target {
        Target::Origin(resolution) => {
            let authority = out
                .uri
                .authority()
                .map(|a| {
                    a.as_str()
                        .rsplit('@')
                        .next()
                        .unwrap_or(a.as_str())
                        .to_owned()
                })
                .unwrap_or_default();
            // RFC 9112 §3.2.2: "When a proxy receives a request with an absolute-form of
            // request-target, the proxy MUST ignore the received Host header field (if any) and
            // instead replace it with the host information of the request-target."
            let host = HeaderValue::from_str(&authority)
                .map_err(|_| Error::new(ErrorKind::InvalidRequest, "Invalid URL: bad host"))?;
            if out.uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
                return send_bumped(shared, out, host).await;
            }
            if let Some(peers) = &shared.peers {
                return send_via_hierarchy(shared, peers, out, host, &resolution).await;
            }
            send_direct(shared, out, host, &resolution).await
        }
        Target::Group {
            group,
            host_header,
            client_host,
            client_tls,
        } => {
            // Added only when a request really goes upstream: hits never pay for them.
            let reverse = &shared.config.reverse;
            super::forwarding_fields::add_forwarding_fields(
                &super::forwarding_fields::Policy {
                    x_forwarded_proto: reverse.x_forwarded_proto,
                    forwarded: reverse.forwarded,
                    trusted_proxies: &reverse.trusted_proxies,
                },
                out.client,
                client_tls,
                &client_host,
                &mut out.headers,
            );
            send_to_group(shared, out, &group, &host_header, &client_host).await
        }
    }
}

/// Routes through the cache hierarchy (`upstream::walk`: siblings asked with `only-if-cached`,
/// then parents in selection order, in absolute-form, RFC 9112 §3.2.2, then direct unless
/// `never_direct`). A sibling never becomes a path to the origin: its 504 (not cached there)
/// moves on.
async fn send_via_hierarchy(
    shared: &Shared,
    peers: &Arc<Peers>,
    mut out: Box<Outgoing>,
    host: HeaderValue,
    resolution: &Resolution,
) -> Result<Box<Upstreamed>, Error> {
    let uri_host = out.uri.host().unwrap_or("").to_owned();
    let request = AccessRequest {
        src: out.client,
        host: &uri_host,
        port: out.uri.port_u16().unwrap_or(80),
        method: &out.method,
        dst: None,
        facts: RequestFacts::default(),
    };
    let key = url_key(&out.uri);
    let hops = walk::plan(peers, &request, &resolution.ips(), &key);
    let has_body = out.body.as_ref().is_some_and(|b| !b.is_end_stream());
    // A sibling is asked for what it has stored; an upgrade is never stored.
    let lookup = matches!(out.method, Method::GET | Method::HEAD)
        && !has_body
        && !out.headers.contains_key(header::UPGRADE);
    let icp = super::icp_select::reorder(shared, peers, &key, hops, lookup).await;
    // Squid prefixes the code with `TIMEOUT_` when an ICP peer did not answer in time.
    let logged = |code| {
        if icp.timed_out {
            super::icp_select::timed_out(code)
        } else {
            code
        }
    };
    // A parent that may have received the request is not asked again elsewhere.
    let replay = Replay::of(&out.method, has_body, false);
    let mut walk = Walk::new(peers, icp.hops, replay, lookup, "to the origin");
    while let Some(hop) = walk.next_hop() {
        let (i, code) = match hop {
            Hop::Sibling(i) => (i, hier::SIBLING_HIT),
            Hop::Parent { index, code } => (index, code),
            Hop::Direct => {
                let mut up = send_direct(shared, out, host, resolution).await?;
                up.hierarchy = up.hierarchy.map(logged);
                return Ok(up);
            }
        };
        let (Some(peer), Some(client)) = (peers.config.peers.get(i), peers.client(i)) else {
            continue;
        };
        let sibling = matches!(hop, Hop::Sibling(_));
        let mut attempt = Outgoing {
            method: out.method.clone(),
            uri: out.uri.clone(),
            version: out.version,
            headers: out.headers.clone(),
            body: if sibling { None } else { out.body.take() },
            client: out.client,
            target: Target::Origin(Resolution::Unneeded),
        };
        if sibling {
            ask_only_if_cached(&mut attempt.headers);
        }
        if let Some(login) = &peer.login {
            attempt
                .headers
                .insert(header::PROXY_AUTHORIZATION, login.clone());
        }
        let started = clock::instant();
        let uri = out.uri.clone();
        let sent = send_once(shared, client, &mut attempt, true, uri, host.clone()).await;
        observe(peers.stats.get(i), &sent, started);
        match sent {
            // 504 from a sibling: not cached there (RFC 9111 §5.2.1.7); anything else but a
            // success or redirect from it is not usable either.
            Ok(up)
                if sibling
                    && !(up.parts.status.is_success() || up.parts.status.is_redirection()) =>
            {
                walk.answered(hop);
            }
            Ok(mut up) => {
                walk.answered(hop);
                up.peer = Some(peer.info.name.clone());
                up.hierarchy = Some(logged(code));
                up.no_store = peer.proxy_only;
                return Ok(up);
            }
            Err(err) => walk.failed(hop, err)?,
        }
    }
    Err(walk.finish())
}

/// Sends `out` to another cache over `client` (a cluster member's pooled client), in
/// absolute-form (RFC 9112 §3.2.2) with the URI's authority as Host; nothing is retried here.
pub(super) async fn send_to_cache(
    shared: &Shared,
    client: &crate::upstream::Upstream,
    mut out: Box<Outgoing>,
) -> Result<Box<Upstreamed>, Error> {
    let host = out
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .ok_or_else(|| Error::new(ErrorKind::InvalidRequest, "Invalid URL: bad host"))?;
    let uri = out.uri.clone();
    send_once(shared, client, &mut out, true, uri, host).await
}

/// A request from a bumped tunnel (`https` in forward mode) goes straight to its origin over
/// TLS verified by `[tls_intercept]`'s trust (the certificate checked against the URI's host,
/// so the connection is made by name), never through peers.
async fn send_bumped(
    shared: &Shared,
    mut out: Box<Outgoing>,
    host: HeaderValue,
) -> Result<Box<Upstreamed>, Error> {
    let Some(client) = &shared.bump_upstream else {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            "unsupported URL scheme `https`; HTTPS goes through CONNECT",
        ));
    };
    let peer = out.uri.host().map(str::to_owned);
    let uri = out.uri.clone();
    let mut up = send_once(shared, client, &mut out, true, uri, host).await?;
    up.peer = peer;
    up.hierarchy = Some(hier::HIER_DIRECT);
    Ok(up)
}

/// Sends `out` straight to its origin. With checked addresses (a `dst` rule resolved and
/// checked them) the connection goes to one of those, named by address so that neither the
/// pool nor the connector looks the name up again; a bodiless request moves on to the next
/// address when a connection cannot be made (a body, once handed over, cannot be re-sent).
async fn send_direct(
    shared: &Shared,
    mut out: Box<Outgoing>,
    host: HeaderValue,
    resolution: &Resolution,
) -> Result<Box<Upstreamed>, Error> {
    let peer = out.uri.host().map(str::to_owned);
    let addrs = match resolution {
        Resolution::Checked(addrs) => addrs,
        Resolution::Failed(kind, cause) => return Err(Error::new(*kind, cause.to_string())),
        Resolution::Unneeded => {
            let uri = out.uri.clone();
            let mut up = send_once(shared, &shared.upstream, &mut out, true, uri, host).await?;
            up.peer = peer;
            up.hierarchy = Some(hier::HIER_DIRECT);
            return Ok(up);
        }
    };
    let has_body = out.body.as_ref().is_some_and(|b| !b.is_end_stream());
    let path = out
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str)
        .to_owned();
    let mut last_error = Error::new(
        ErrorKind::DnsFailed,
        format!("{} resolved to no address", peer.as_deref().unwrap_or("")),
    );
    for (i, addr) in addrs.iter().enumerate() {
        let uri: Uri = format!("http://{addr}{path}")
            .parse()
            .map_err(|_| Error::new(ErrorKind::InvalidRequest, "Invalid URL: bad path"))?;
        let last = has_body || i + 1 == addrs.len();
        match send_once(shared, &shared.upstream, &mut out, last, uri, host.clone()).await {
            Ok(mut up) => {
                up.peer = peer;
                up.hierarchy = Some(hier::HIER_DIRECT);
                return Ok(up);
            }
            Err(err) if !last && retry::may_try_next(&err, Replay::IfNothingSent) => {
                last_error = err;
            }
            Err(err) => return Err(err),
        }
    }
    Err(last_error)
}

/// True when `Expect` holds the `100-continue` expectation (RFC 9110 §10.1.1: "The Expect
/// field value is case-insensitive").
fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::EXPECT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| e.trim().eq_ignore_ascii_case("100-continue"))
}

/// Adds `only-if-cached` to the request's Cache-Control (a sibling must not fetch for us).
fn ask_only_if_cached(headers: &mut http::HeaderMap) {
    let value = match headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
    {
        Some(existing) if !existing.trim().is_empty() => format!("{existing}, only-if-cached"),
        _ => "only-if-cached".to_owned(),
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(header::CACHE_CONTROL, value);
    }
}

/// Tries the group's servers in order until one answers acceptably.
async fn send_to_group(
    shared: &Shared,
    mut out: Box<Outgoing>,
    group: &Arc<Group>,
    host_header: &HostHeader,
    client_host: &Authority,
) -> Result<Box<Upstreamed>, Error> {
    // Only `hash` balancing looks at the key, so only it pays for making it: the cache key
    // (after `store_id`), so URLs that share a cache entry share a server.
    let key = if group.needs_hash_key() {
        shared
            .cache
            .primary_key(&out.uri)
            .unwrap_or_else(|| out.uri.to_string())
    } else {
        String::new()
    };
    let candidates = group.candidates(out.client, &key, random());
    let has_body = out.body.as_ref().is_some_and(|b| !b.is_end_stream());
    // nginx replays an idempotent request after a timeout or bad reply from a server that
    // may have received it (`proxy_next_upstream`); RFC 9110 §9.2.2 is why only those.
    let replay = Replay::of(&out.method, has_body, true);
    let replayable = replay == Replay::Always;
    let next = &group.config.next_upstream;
    let attempts = usize::try_from(group.config.retries)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    // Made only when no server answers (its text is formatted: no cost on the usual path).
    let mut last_error = None;
    let path_and_query = out
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let total = candidates.len().min(attempts);
    // TLS groups are reached over https on their own client (so their own pool).
    let scheme = if group.config.tls.is_some() {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    };
    let client = shared.upstream_for(group);
    for (attempt, index) in candidates.into_iter().take(attempts).enumerate() {
        let Some(server) = group.servers.get(index) else {
            continue;
        };
        let address = server.config.address.clone();
        let bad_address = || {
            Error::new(
                ErrorKind::Internal,
                format!("bad upstream address `{address}`"),
            )
        };
        let authority = server.authority.clone().ok_or_else(bad_address)?;
        // From its parts directly: `Uri::builder` moves the whole `Parts` through each step.
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(scheme.clone());
        parts.authority = Some(authority);
        parts.path_and_query = Some(path_and_query.clone());
        let uri = Uri::from_parts(parts).map_err(|_| bad_address())?;
        let host = match host_header {
            HostHeader::Preserve => HeaderValue::from_str(client_host.as_str()),
            HostHeader::Upstream => HeaderValue::from_str(&address),
            HostHeader::Fixed(value) => Ok(value.clone()),
        }
        .map_err(|_| Error::new(ErrorKind::InvalidRequest, "invalid Host"))?;
        let guard = group.begin(index);
        let is_last = attempt + 1 >= total;
        let started = clock::instant();
        let sent = send_once(shared, client, &mut out, is_last, uri, host).await;
        observe(Some(&server.stats), &sent, started);
        match sent {
            Ok(mut up) => {
                let status = up.parts.status.as_u16();
                if next.statuses.contains(&status) && replayable && !is_last {
                    group.failed(index, &format!("answered {status}"));
                    tracing::debug!(server = %address, status, "trying the next upstream server");
                    continue;
                }
                group.succeeded(index);
                up.peer = Some(address);
                up.guard = Some(guard);
                up.hierarchy = Some(if attempt == 0 {
                    group_code(group)
                } else {
                    hier::ANY_OLD_PARENT
                });
                return Ok(up);
            }
            Err(err) => {
                // nginx's max_fails counts what could not be reached, timed out or answered
                // nonsense.
                let bad_reply = matches!(
                    err.kind(),
                    ErrorKind::ReadTimeout | ErrorKind::InvalidResponse
                );
                if err.nothing_sent() || bad_reply {
                    group.failed(index, err.cause());
                }
                // Which failures `proxy_next_upstream` names; whether it is safe is `retry`'s.
                let named = if err.is_timeout() {
                    next.timeout
                } else {
                    next.error && (err.nothing_sent() || bad_reply)
                };
                tracing::debug!(server = %address, error = %err, "upstream attempt failed");
                let go_on = named && retry::may_try_next(&err, replay);
                if !go_on {
                    return Err(err);
                }
                last_error = Some(err);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| {
        Error::new(
            ErrorKind::NoUpstream,
            format!(
                "no server of upstream group `{}` is available",
                group.config.name
            ),
        )
    }))
}

/// The Squid hierarchy code for a group server chosen by the group's balancing, as Squid logs
/// a `cache_peer ... originserver` chosen that way: one server is `FIRSTUP_PARENT`, round robin
/// `ROUNDROBIN_PARENT`, `ip_hash` `SOURCEHASH_PARENT`, `hash` (a key hash, like CARP's URL
/// hash) `CARP`. `least_conn` and `random two` have no Squid counterpart; they spread load as
/// Squid's round robin does (it picks the least-used parent), so they log `ROUNDROBIN_PARENT`.
fn group_code(group: &Group) -> &'static str {
    use crate::upstream::select::Algorithm;
    if group.servers.len() <= 1 {
        return hier::FIRSTUP_PARENT;
    }
    match group.config.algorithm {
        Algorithm::RoundRobin | Algorithm::LeastConn | Algorithm::RandomTwo => {
            hier::ROUNDROBIN_PARENT
        }
        Algorithm::IpHash => hier::SOURCEHASH_PARENT,
        Algorithm::Hash => hier::CARP,
    }
}

/// Per-request randomness for `random_two`: splitmix64 over a process-wide counter. Not
/// cryptographic; it only has to decorrelate consecutive picks.
fn random() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0x853C_49E6_748F_EA9B);
    let mut z = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Refuses (502) what cannot be relayed faithfully: a status outside 100-599 (RFC 9110 §15:
/// "Values outside the range 100..599 are invalid"), a `101` to a protocol cuttle did not offer
/// (`offered` is the `Upgrade` it sent, if any; RFC 9110 §7.8, §15.2.2, see `upgrade`), and a
/// transfer coding other than chunked, which would be dropped with the hop-by-hop field and its
/// coded bytes relayed (and stored) as the content (RFC 9112 §6.1).
fn check_response_framing(
    parts: &http::response::Parts,
    offered: Option<&HeaderValue>,
) -> Result<(), Error> {
    let status = parts.status.as_u16();
    let cause = if !(100..=599).contains(&status) {
        format!("the upstream sent status {status}, outside 100-599")
    } else if status == 101
        && !offered.is_some_and(|o| super::headers::switch_is_valid(o, &parts.headers))
    {
        "the upstream switched protocols (101) to a protocol it was not offered".to_owned()
    } else if let Some(coding) = headers::unsupported_coding(&parts.headers) {
        format!("the upstream used transfer coding `{coding}` (only chunked is supported)")
    } else {
        return Ok(());
    };
    Err(Error::new(ErrorKind::InvalidResponse, cause))
}

/// Counts one attempt on a server's or peer's statistics.
fn observe<T>(
    stats: Option<&crate::upstream::stats::ServerStats>,
    sent: &Result<T, Error>,
    started: tokio::time::Instant,
) {
    if let Some(stats) = stats {
        match sent {
            Ok(_) => stats.responded(clock::since(started)),
            Err(_) => stats.failed(),
        }
    }
}

/// One try of `out` at `uri` (whose authority is where to connect) with `host` as Host, on
/// `upstream`. The body moves to it; the `last` try takes the fields where an earlier one
/// copies them, keeping them for a retry.
async fn send_once(
    shared: &Shared,
    upstream: &crate::upstream::Upstream,
    out: &mut Outgoing,
    last: bool,
    uri: Uri,
    host: HeaderValue,
) -> Result<Box<Upstreamed>, Error> {
    let (method, version, client) = (out.method.clone(), out.version, out.client);
    let mut headers = if last {
        std::mem::take(&mut out.headers)
    } else {
        out.headers.clone()
    };
    let body = out.body.take();
    let forward_config = &shared.config.forward;
    headers.insert(header::HOST, host);
    if forward_config.via {
        shared.via.append(&mut headers, version);
    }
    headers::apply_forwarded_for(&mut headers, forward_config.forwarded_for, client);

    let progress = Progress::new();
    let mut gate = None;
    let body = match body {
        Some(body) if !body.is_end_stream() => {
            let body =
                RequestBody::streaming(body, shared.config.timeouts.client_read, progress.clone());
            // RFC 9110 §10.1.1: the expectation goes on with the request and the body waits
            // for the next hop's 100 (`continue_gate`). An HTTP/1.0 client's expectation is
            // not one ("A server that receives a 100-continue expectation in an HTTP/1.0
            // request MUST ignore that expectation").
            if version != Version::HTTP_10 && expects_continue(&headers) {
                let (open, held) = Gate::new();
                gate = Some(open);
                body.gated(held)
            } else {
                body
            }
        }
        _ => RequestBody::empty(progress.clone()),
    };
    if version == Version::HTTP_10 {
        headers.remove(header::EXPECT);
    }
    // Only `upgrade::handle` sends `Upgrade` (every other path removed it as hop-by-hop).
    let offered = headers.get(header::UPGRADE).cloned();
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    // Interim responses: a 100 opens the gate; 102 and 103 go on to an HTTP/1.1 client
    // (RFC 9110 §15.2, `interim`).
    let client_conn = super::interim::current();
    let on_informational = (gate.is_some() || client_conn.is_some()).then(|| {
        let gate = gate.clone();
        OnInformational::new(move |status, fields| {
            if let Some(gate) = &gate {
                gate.informational(status);
            }
            if let Some(conn) = &client_conn {
                if let Some(head) = super::interim::render(status, fields) {
                    conn.send_interim(&head);
                }
            }
        })
    });
    let sent = upstream
        .send_with(request, progress, on_informational)
        .await;
    if let Some(gate) = &gate {
        // A final response (or a failure) before the 100: the body is not wanted.
        gate.final_response();
    }
    let response = sent?;
    let (mut parts, mut body) = response.into_parts();
    check_response_framing(&parts, offered.as_ref())?;
    let switched_to = (parts.status == http::StatusCode::SWITCHING_PROTOCOLS)
        .then(|| parts.headers.get(header::UPGRADE).cloned())
        .flatten();
    headers::remove_hop_by_hop(&mut parts.headers);
    // A 101 keeps the protocol it switched to, for the client (RFC 9110 §15.2.2).
    if let Some(protocol) = switched_to {
        parts.headers.insert(header::UPGRADE, protocol);
    }

    let read_timeout = upstream.read_timeout();
    let first = if body.is_end_stream() {
        None
    } else {
        // Usually the first frame came with the head: one poll finds it, and no timer is set.
        let mut frame = body.frame();
        let polled = std::pin::Pin::new(&mut frame)
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
        let ready = match polled {
            std::task::Poll::Ready(frame) => Ok(frame),
            std::task::Poll::Pending => tokio::time::timeout(read_timeout, frame).await,
        };
        match ready {
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::ReadTimeout,
                    format!("the upstream sent a header but no body within {read_timeout:?}"),
                ))
            }
            Ok(None) => None,
            Ok(Some(Err(e))) => return Err(e),
            Ok(Some(Ok(frame))) => Some(frame),
        }
    };
    Ok(Box::new(Upstreamed {
        parts,
        first,
        body,
        peer: None,
        guard: None,
        hierarchy: None,
        no_store: false,
    }))
}
