//! The hierarchy walk, one for requests and CONNECT tunnels alike: which hops to try in what
//! order (siblings, parents, direct; `always_direct`, `never_direct`), what a failure does to
//! the hop (its `liveness`) and whether the walk goes on (`retry`), and the error when no hop
//! was left.
//!
//! The caller does the sending (an HTTP request on the peer's pooled client, or a CONNECT
//! through it), because that differs; everything decided between attempts is here:
//!
//! ```text
//! let mut walk = Walk::new(peers, hops, replay, siblings, what);
//! while let Some(hop) = walk.next_hop() {
//!     match attempt(hop) { Ok(x) => { walk.answered(hop); return Ok(x) }
//!                          Err(e) => walk.failed(hop, e)? }       // Err: stop here
//! }
//! Err(walk.finish())
//! ```

use std::net::IpAddr;

use super::hierarchy::{Hop, Route};
use super::peer::Peers;
use super::retry::{self, Replay};
use crate::access::{AccessRequest, Verdict};
use crate::error::{Error, ErrorKind};

/// The hops for a request or tunnel to `access`'s destination, best first: `never_direct` and
/// `always_direct` applied to it (with `ips`, the addresses `http_access` resolved), the
/// parents chosen for `key` (the CARP key: the effective URI, or `host:port` for CONNECT).
pub fn plan(peers: &Peers, access: &AccessRequest<'_>, ips: &[IpAddr], key: &str) -> Vec<Hop> {
    let route = Route {
        url: key,
        client: access.src,
        turn: peers.next_turn(),
        always_direct: peers.config.always_direct.check_resolved(access, ips) == Verdict::Allow,
        never_direct: peers.config.never_direct.check_resolved(access, ips) == Verdict::Allow,
    };
    peers.router.hops(&route, |i| peers.alive(i))
}

/// One walk over planned hops.
#[derive(Debug)]
pub struct Walk<'a> {
    peers: &'a Peers,
    hops: std::vec::IntoIter<Hop>,
    /// What of the request a failed parent leaves for the next one.
    replay: Replay,
    /// Whether siblings are asked (a lookup: bodiless GET/HEAD, never a tunnel or upgrade).
    siblings: bool,
    /// The error the walk ends with when no hop is left: the last parent's, else "no route".
    last_error: Error,
}

impl<'a> Walk<'a> {
    /// A walk over `hops` for a request that allows `replay`; `what` completes the "no route"
    /// error ("to the origin", "for CONNECT").
    pub fn new(
        peers: &'a Peers,
        hops: Vec<Hop>,
        replay: Replay,
        siblings: bool,
        what: &str,
    ) -> Self {
        Self {
            peers,
            hops: hops.into_iter(),
            replay,
            siblings,
            last_error: Error::new(
                ErrorKind::NoUpstream,
                format!("no route {what}: never_direct applies and no parent cache is reachable"),
            ),
        }
    }

    /// The next hop to try (a sibling only for lookups).
    pub fn next_hop(&mut self) -> Option<Hop> {
        let siblings = self.siblings;
        self.hops
            .by_ref()
            .find(|hop| siblings || !matches!(hop, Hop::Sibling(_)))
    }

    /// `hop` answered: a peer that was down is back.
    pub fn answered(&self, hop: Hop) {
        if let Some(liveness) = peer_index(hop).and_then(|i| self.peers.liveness(i)) {
            liveness.answered();
        }
    }

    /// `hop` failed with `err`: a peer that could not be reached is marked dead; `Ok` when the
    /// walk goes on, `Err` with the error to answer when it must stop here. A sibling's
    /// failure never ends the walk (it was only asked what it has stored).
    pub fn failed(&mut self, hop: Hop, err: Error) -> Result<(), Error> {
        if err.nothing_sent() {
            if let Some(liveness) = peer_index(hop).and_then(|i| self.peers.liveness(i)) {
                liveness.failed(err.cause());
            }
        }
        if matches!(hop, Hop::Sibling(_)) {
            tracing::debug!(error = %err, "sibling failed; moving on");
            return Ok(());
        }
        let go_on = retry::may_try_next(&err, self.replay);
        self.last_error = err;
        if go_on {
            Ok(())
        } else {
            Err(self.last_error.clone())
        }
    }

    /// The error to answer when no hop was left.
    pub fn finish(self) -> Error {
        self.last_error
    }
}

fn peer_index(hop: Hop) -> Option<usize> {
    match hop {
        Hop::Sibling(i) | Hop::Parent { index: i, .. } => Some(i),
        Hop::Direct => None,
    }
}
