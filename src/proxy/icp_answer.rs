//! What cuttle answers an ICP query (Squid's `doV2Query` and `icpCheckUdpHit`): the
//! [`Responder`] the `icp_port` server asks, over the current config generation.
//!
//! - a URL that is not an absolute `http(s)` URL: `ICP_OP_ERR`;
//! - a querier `icp_access` does not allow: `ICP_OP_DENIED` (RFC 2186 §2);
//! - a fresh stored response for a plain GET of the URL: `ICP_OP_HIT` (Squid answers a hit
//!   only for a response it may serve without revalidation, `refreshCheckICP`);
//! - nothing fresh, but no route to fetch it either (`never_direct` applies and no parent is
//!   alive, like Squid's hit-only mode): `ICP_OP_MISS_NOFETCH` ("the requester should not
//!   fetch it from this cache", RFC 2186 §2);
//! - otherwise `ICP_OP_MISS`. A URL `[[cache.access]]` keeps out of the cache is a miss.
//!
//! Each answered query gets an access-log line, as Squid's `log_icp_queries` (on by default)
//! writes it: `UDP_HIT/000 ... ICP_QUERY URL - HIER_NONE/-`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, Uri};

use super::{Live, Shared};
use crate::access::{AccessRequest, RequestFacts, Verdict};
use crate::cache::decision::Decision;
use crate::cache::policy::RequestDirectives;
use crate::icp::server::Responder;
use crate::icp::wire::Opcode;
use crate::log::record::{client_text, AccessRecord};

/// Answers ICP queries from whatever generation is live when each arrives (so a reload's
/// `icp_access` applies at once).
#[derive(Debug)]
pub struct IcpAnswer {
    pub live: Arc<Live>,
}

impl Responder for IcpAnswer {
    async fn answer(&self, from: SocketAddr, url: &str) -> Opcode {
        let started = tokio::time::Instant::now();
        let shared = self.live.load();
        let opcode = answer(&shared, from, url).await;
        log_query(&shared, from, url, opcode, started.elapsed());
        opcode
    }
}

/// Logs the query as Squid does by default (`log_icp_queries on`): method `ICP_QUERY`, code
/// `UDP_HIT`, `UDP_MISS`, ... with status 000, the reply's size, `HIER_NONE/-`.
fn log_query(shared: &Shared, from: SocketAddr, url: &str, opcode: Opcode, elapsed: Duration) {
    let code = match opcode {
        Opcode::Hit | Opcode::HitObj => "UDP_HIT",
        Opcode::MissNofetch => "UDP_MISS_NOFETCH",
        Opcode::Denied => "UDP_DENIED",
        Opcode::Err | Opcode::Query | Opcode::Secho | Opcode::Decho => "UDP_INVALID",
        Opcode::Miss => "UDP_MISS",
    };
    let Ok(method) = Method::from_bytes(b"ICP_QUERY") else {
        return;
    };
    // The reply: the header, the URL and its NUL (RFC 2186 §2).
    let bytes = (crate::icp::wire::HEADER_LEN + url.len() + 1) as u64;
    shared.access_log.log(AccessRecord {
        time: shared.clock.now(),
        elapsed,
        client: client_text(from.ip()),
        code,
        status: 0,
        bytes,
        body_bytes: 0,
        method,
        url: url.to_owned(),
        origin_form: false,
        version: http::Version::HTTP_11,
        user: None,
        hierarchy: crate::upstream::hierarchy::code::HIER_NONE,
        peer: None,
        upstream_addr: None,
        upstream_wait: None,
        content_type: None,
        cache_status: None,
        referer: None,
        user_agent: None,
    });
}

/// The answer to `from`'s query about `url`.
pub async fn answer(shared: &Shared, from: SocketAddr, url: &str) -> Opcode {
    let Ok(uri) = url.parse::<Uri>() else {
        return Opcode::Err;
    };
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return Opcode::Err;
    };
    if !matches!(scheme, "http" | "https") {
        return Opcode::Err;
    }
    let port = uri
        .port_u16()
        .or_else(|| crate::cache::key::default_port(scheme))
        .unwrap_or(80);
    let src = from.ip().to_canonical();
    let headers = HeaderMap::new();
    let request = |rules: &crate::access::Rules| AccessRequest {
        src,
        host,
        port,
        method: &Method::GET,
        dst: None,
        facts: super::authorize::facts_for(shared, rules, src, url, &uri, &headers),
    };
    let rules = &shared.config.icp.access;
    if rules.check(&request(rules)) != Verdict::Allow {
        return Opcode::Denied;
    }
    let cache_rules = &shared.config.cache_access;
    let cacheable =
        cache_rules.is_empty() || cache_rules.check(&request(cache_rules)) == Verdict::Allow;
    if cacheable {
        if let Some(primary) = shared.cache.primary_key(&uri) {
            let decision = shared
                .cache
                .decide(
                    &primary,
                    &headers,
                    &RequestDirectives::default(),
                    url,
                    shared.clock.now(),
                )
                .await;
            if matches!(decision, Decision::FreshHit { .. }) {
                return Opcode::Hit;
            }
        }
    }
    if cannot_fetch(shared, &request(&crate::access::Rules::default())) {
        return Opcode::MissNofetch;
    }
    Opcode::Miss
}

/// `never_direct` applies to the request and no parent is alive: a miss here could not be
/// fetched.
fn cannot_fetch(shared: &Shared, request: &AccessRequest<'_>) -> bool {
    let Some(peers) = &shared.peers else {
        return false;
    };
    let request = AccessRequest {
        facts: RequestFacts::default(),
        ..*request
    };
    let config = &peers.config;
    if config.always_direct.check(&request) == Verdict::Allow
        || config.never_direct.check(&request) != Verdict::Allow
    {
        return false;
    }
    !config
        .peers
        .iter()
        .enumerate()
        .any(|(i, p)| p.info.kind == crate::upstream::hierarchy::PeerKind::Parent && peers.alive(i))
}
