//! HTTP/1.1 `Upgrade` (WebSocket and the like) through forward and reverse mode.
//!
//! RFC 9110 §7.8: a client invites a switch of protocol with `Upgrade` and the `upgrade`
//! connection option; the server may accept with `101 (Switching Protocols)` or ignore it.
//! `Upgrade` is hop-by-hop (§7.6.1), so an intermediary decides for itself whether to pass the
//! invitation on. cuttle passes on the protocols the port's allow list names (Squid's
//! `http_upgrade_request_protocols`; `websocket` by default on reverse ports, nothing on forward
//! ports, see `config`) and ignores the rest, as §7.8 lets a server do: the request then goes
//! upstream without `Upgrade` and is answered in HTTP/1.1.
//!
//! When the next hop answers 101 for a protocol that was offered, the 101 goes to the client
//! and, once both connections have switched (`switch` on the client's request, hyper's
//! `upgrade::on` on the upstream response), the bytes are copied both ways by the CONNECT tunnel's relay
//! (`tunnel::relay`): closed when either side closes or nothing moves for
//! `timeouts.tunnel_idle`. Nothing about an upgrade is ever cached. The transaction is logged
//! when the relay ends (`TCP_TUNNEL/101`, bytes sent to the client, the whole session's
//! duration); `handoff::Handoff` carries it from `request::finish` to the relay task.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use super::body::ProxyBody;
use super::client_body::ClientBody;
use super::handoff::Handoff;
#[cfg(test)]
use super::headers::switch_is_valid;
use super::headers::{protocol_name, upgrade_members as list};
use super::next_hop::{send, Outgoing, Target, Upstreamed};
use super::request::ConnInfo;
use super::transaction::{code, Transaction};
use super::{tunnel, Shared};
use crate::cache::phase::BypassReason;
use crate::cache::result::CacheResult;
use crate::cache::status::{CacheStatus, Fwd};
use crate::error::{BoxError, Error, ErrorKind};

/// What a request asks for by way of a protocol switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// No upgrade (no `Upgrade`, no `upgrade` connection option, or not HTTP/1.1).
    None,
    /// The allowed protocols, in the client's order, as the `Upgrade` value to send on.
    Allowed(HeaderValue),
    /// Only protocols outside the allow list: the request goes on without `Upgrade`.
    Refused,
}

/// Reads the upgrade a client request asks for and filters it through `allowed` (protocol
/// names, compared case-insensitively: RFC 9110 §7.8 "recipients SHOULD use case-insensitive
/// comparison when matching each protocol-name to supported protocols").
///
/// Only HTTP/1.1 requests can upgrade: RFC 9110 §7.8 defines it as "transitioning from
/// HTTP/1.1", HTTP/1.0 has no `Connection` semantics for it (hyper's own server ignores
/// `Upgrade` there too), and RFC 9113 §8.2.2 forbids the field in HTTP/2. The sender "MUST
/// also send an "upgrade" connection option" (§7.6.1, §7.8), so without it there is nothing to
/// pass on.
pub fn requested(version: Version, headers: &HeaderMap, allowed: &[String]) -> Requested {
    if version != Version::HTTP_11 || !headers.contains_key(header::UPGRADE) {
        return Requested::None;
    }
    if !has_option(headers, "upgrade") {
        return Requested::None;
    }
    let offered: Vec<&str> = list(headers.get_all(header::UPGRADE)).collect();
    if offered.is_empty() {
        return Requested::None;
    }
    let kept: Vec<&str> = offered
        .into_iter()
        .filter(|protocol| is_allowed(protocol, allowed))
        .collect();
    if kept.is_empty() {
        return Requested::Refused;
    }
    match HeaderValue::from_str(&kept.join(", ")) {
        Ok(value) => Requested::Allowed(value),
        Err(_) => Requested::Refused,
    }
}

/// True when `protocol` (`name[/version]`) is named by `allowed`.
fn is_allowed(protocol: &str, allowed: &[String]) -> bool {
    let name = protocol_name(protocol);
    allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// True when `Connection` carries `option`.
fn has_option(headers: &HeaderMap, option: &str) -> bool {
    list(headers.get_all(header::CONNECTION)).any(|o| o.eq_ignore_ascii_case(option))
}

/// Sends an upgrade request (hop-by-hop fields already removed) on to `target`, offering the
/// protocols in `offer`. A 101 starts the relay; any other answer is relayed as a response
/// that is neither looked up nor stored.
#[allow(clippy::too_many_arguments)]
pub async fn handle(
    conn: &ConnInfo,
    shared: &Arc<Shared>,
    txn: &mut Transaction,
    mut parts: http::request::Parts,
    body: ClientBody,
    target: Target,
    offer: HeaderValue,
) -> Result<Response<ProxyBody>, Error> {
    let client_upgrade = super::switch::take(&mut parts.extensions);
    let mut headers = std::mem::take(&mut parts.headers);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, offer);
    let asked = tokio::time::Instant::now();
    let up = send(
        shared,
        Box::new(Outgoing {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers,
            body: Some(body),
            client: conn.peer.ip(),
            target,
        }),
    )
    .await?;
    txn.upstream_wait = Some(asked.elapsed());
    if up.peer.is_some() {
        txn.peer.clone_from(&up.peer);
    }
    if let Some(code) = up.hierarchy {
        txn.hierarchy = code;
    }
    if up.parts.status != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(relay_response(shared, txn, up));
    }
    let Some(client_upgrade) = client_upgrade else {
        return Err(Error::new(
            ErrorKind::Internal,
            "the client connection cannot switch protocols",
        ));
    };
    Ok(switch(conn, shared, txn, up, client_upgrade))
}

/// Answers the client with the upstream's 101 and spawns the relay between the two switched
/// connections.
fn switch(
    conn: &ConnInfo,
    shared: &Shared,
    txn: &mut Transaction,
    mut up: Box<Upstreamed>,
    client_upgrade: super::switch::OnSwitch,
) -> Response<ProxyBody> {
    let upstream_upgrade = up.parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let mut headers = std::mem::take(&mut up.parts.headers);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if shared.config.forward.via {
        shared.via.append(&mut headers, up.parts.version);
    }
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = headers;
    txn.code = code::TCP_TUNNEL;
    conn.activity.switch();
    let (sender, receiver) = oneshot::channel::<Transaction>();
    response.extensions_mut().insert(Handoff::new(sender));
    let idle = shared.config.timeouts.tunnel_idle;
    // The switched connection counts against max_connections until it closes, and against
    // its group server (least-connections balancing) too.
    let permit = Arc::clone(&conn.permit);
    let guard = up.guard.take();
    tokio::spawn(async move {
        let Ok(mut txn) = receiver.await else {
            return;
        };
        let Some(upstream_upgrade) = upstream_upgrade else {
            tracing::debug!(url = %txn.url, "upstream 101 without a switchable connection");
            txn.abort();
            return;
        };
        let upstream_upgrade = async { upstream_upgrade.await.map_err(BoxError::from) };
        let client_upgrade = async { client_upgrade.await.map_err(BoxError::from) };
        match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok((client, upstream)) => {
                tunnel::relay(client, TokioIo::new(upstream), idle, txn).await;
            }
            Err(e) => {
                txn.abort();
                tracing::debug!(error = %e, "protocol switch failed");
            }
        }
        drop(guard);
        drop(permit);
    });
    response
}

/// An upstream that did not switch: its answer is relayed as is (never stored).
fn relay_response(
    shared: &Shared,
    txn: &mut Transaction,
    up: Box<Upstreamed>,
) -> Response<ProxyBody> {
    let (mut parts, body) = up.into_relay(shared.upstream.read_timeout());
    let received = parts.version;
    parts.version = Version::HTTP_11;
    if shared.config.forward.via {
        shared.via.append(&mut parts.headers, received);
    }
    let status = txn.outcome(
        CacheResult::Bypass {
            reason: BypassReason::Upgrade,
        },
        CacheStatus::forward(Fwd::Bypass),
    );
    status.append_to(&mut parts.headers, &shared.cache.behaviour.status_name);
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(fields: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in fields {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn allow(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn allowed_protocols_are_kept_in_order_and_others_dropped() {
        let h = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "IRC/6.9, WebSocket, h2c"),
        ]);
        assert_eq!(
            requested(Version::HTTP_11, &h, &allow(&["websocket", "irc"])),
            Requested::Allowed(HeaderValue::from_static("IRC/6.9, WebSocket"))
        );
        assert_eq!(
            requested(Version::HTTP_11, &h, &allow(&["tls"])),
            Requested::Refused
        );
    }

    #[test]
    fn no_upgrade_without_the_connection_option_or_outside_http_1_1() {
        let without_option = headers(&[("upgrade", "websocket")]);
        let ok = allow(&["websocket"]);
        assert_eq!(
            requested(Version::HTTP_11, &without_option, &ok),
            Requested::None
        );
        let full = headers(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        assert_eq!(requested(Version::HTTP_10, &full, &ok), Requested::None);
        assert_eq!(requested(Version::HTTP_2, &full, &ok), Requested::None);
        assert_eq!(
            requested(Version::HTTP_11, &headers(&[]), &ok),
            Requested::None
        );
    }

    #[test]
    fn a_switch_must_name_an_offered_protocol() {
        let offered = HeaderValue::from_static("websocket, IRC/6.9");
        assert!(switch_is_valid(
            &offered,
            &headers(&[("upgrade", "WebSocket")])
        ));
        assert!(switch_is_valid(&offered, &headers(&[("upgrade", "irc/7")])));
        assert!(!switch_is_valid(&offered, &headers(&[("upgrade", "h2c")])));
        assert!(!switch_is_valid(&offered, &headers(&[])));
    }
}
