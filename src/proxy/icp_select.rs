//! ICP before the hierarchy walk (Squid `peerSelectIcpPing`, `neighborsUdpPing`): the peers
//! with an `icp_port` among a request's next hops are asked about its URL, and a hit puts that
//! peer first (`SIBLING_HIT` for a sibling, `PARENT_HIT` for a parent). Siblings asked over ICP
//! are not also asked over HTTP: without a hit they drop out of the walk, as in Squid; parents
//! stay in their place.
//!
//! Only a lookup (GET or HEAD without a body) is worth a query; anything else, and a request
//! routed `always_direct` (whose only hop is direct), walks the hops unchanged.

use super::Shared;
use crate::upstream::hierarchy::{code, Hop, PeerKind};
use crate::upstream::peer::Peers;

/// The hops to walk, and whether some ICP peer had not answered when the wait ended.
#[derive(Debug)]
pub struct Selection {
    pub hops: Vec<Hop>,
    /// Squid then logs the hierarchy code with a `TIMEOUT_` prefix ([`timed_out`]).
    pub timed_out: bool,
}

/// `hops` reordered by what the ICP peers among them answer about `url` (Squid's effective
/// request URI, the string a Squid peer looks up).
pub async fn reorder(
    shared: &Shared,
    peers: &Peers,
    url: &str,
    hops: Vec<Hop>,
    lookup: bool,
) -> Selection {
    let icp_port = |i: usize| peers.config.peers.get(i).and_then(|p| p.icp_port);
    let asked_by_icp = |hop: &Hop| match hop {
        Hop::Sibling(i) => icp_port(*i).is_some(),
        _ => false,
    };
    if !lookup
        || !hops
            .iter()
            .any(|h| hop_peer(h).is_some_and(|i| icp_port(i).is_some()))
    {
        return Selection {
            hops,
            timed_out: false,
        };
    }
    let mut targets = Vec::new();
    for hop in &hops {
        let Some(index) = hop_peer(hop) else { continue };
        let (Some(peer), Some(port)) = (peers.config.peers.get(index), icp_port(index)) else {
            continue;
        };
        if peer.info.no_query
            || targets
                .iter()
                .any(|t: &crate::icp::client::Target| t.index == index)
        {
            continue;
        }
        match tokio::net::lookup_host((peer.host.as_str(), port)).await {
            Ok(mut addrs) => {
                if let Some(addr) = addrs.next() {
                    targets.push(crate::icp::client::Target { index, addr });
                }
            }
            Err(error) => {
                tracing::debug!(peer = %peer.info.name, %error, "ICP: peer address not resolved")
            }
        }
    }
    let outcome = crate::icp::client::ping(&targets, url, shared.config.icp.query_timeout).await;
    tracing::debug!(url, replies = ?outcome.replies, timed_out = outcome.timed_out, "ICP replies");
    let first = outcome.hit.and_then(|index| {
        let peer = peers.config.peers.get(index)?;
        Some(match peer.info.kind {
            PeerKind::Sibling => Hop::Sibling(index),
            PeerKind::Parent => Hop::Parent {
                index,
                code: code::PARENT_HIT,
            },
        })
    });
    let chosen = first.and_then(|h| hop_peer(&h));
    let hops = first
        .into_iter()
        .chain(
            hops.into_iter()
                .filter(|h| !asked_by_icp(h) && (hop_peer(h).is_none() || hop_peer(h) != chosen)),
        )
        .collect();
    Selection {
        hops,
        timed_out: outcome.timed_out,
    }
}

/// The hierarchy code Squid logs when the ICP wait timed out: `code` with a `TIMEOUT_` prefix
/// (Squid's native log prints `TIMEOUT_` before `%Sh` when `hier.ping.timedout`).
pub fn timed_out(code: &'static str) -> &'static str {
    match code {
        code::HIER_DIRECT => "TIMEOUT_HIER_DIRECT",
        code::FIRSTUP_PARENT => "TIMEOUT_FIRSTUP_PARENT",
        code::ROUNDROBIN_PARENT => "TIMEOUT_ROUNDROBIN_PARENT",
        code::CARP => "TIMEOUT_CARP",
        code::SOURCEHASH_PARENT => "TIMEOUT_SOURCEHASH_PARENT",
        code::DEFAULT_PARENT => "TIMEOUT_DEFAULT_PARENT",
        code::ANY_OLD_PARENT => "TIMEOUT_ANY_OLD_PARENT",
        code::SIBLING_HIT => "TIMEOUT_SIBLING_HIT",
        code::PARENT_HIT => "TIMEOUT_PARENT_HIT",
        other => other,
    }
}

/// The peer a hop goes to, if any.
fn hop_peer(hop: &Hop) -> Option<usize> {
    match hop {
        Hop::Sibling(i) | Hop::Parent { index: i, .. } => Some(*i),
        Hop::Direct => None,
    }
}
