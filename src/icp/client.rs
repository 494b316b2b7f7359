//! Asking peers about one URL (RFC 2186 §2 ICP_OP_QUERY; Squid's `neighborsUdpPing`): one
//! query to each, then the replies until the first hit, every peer has answered, or the
//! timeout.
//!
//! Each round uses its own ephemeral UDP socket, so replies need no demultiplexing and a late
//! reply to an earlier round is never mistaken for this one's; a reply counts only when it
//! comes from the address the query went to and carries the query's request number and URL.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;

use super::wire::{self, Opcode};

/// One peer to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The caller's index for the peer.
    pub index: usize,
    /// Its ICP address.
    pub addr: SocketAddr,
}

/// What a round of queries learnt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The first peer that answered `ICP_OP_HIT`.
    pub hit: Option<usize>,
    /// Every reply received, in arrival order.
    pub replies: Vec<(usize, Opcode)>,
    /// Some peer had not answered when the timeout ended the wait (Squid logs the hierarchy
    /// code with a `TIMEOUT_` prefix then).
    pub timed_out: bool,
}

/// Request numbers, process-wide.
fn next_request_number() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Queries `targets` about `url` and waits up to `timeout` for their replies.
pub async fn ping(targets: &[Target], url: &str, timeout: Duration) -> Outcome {
    let mut outcome = Outcome::default();
    if targets.is_empty() {
        return outcome;
    }
    let request_number = next_request_number();
    let Some(query) = wire::encode(&wire::query(url, request_number)) else {
        return outcome;
    };
    let v4 = targets.iter().any(|t| t.addr.is_ipv4());
    let v6 = targets.iter().any(|t| t.addr.is_ipv6());
    let bind: SocketAddr = match (v4, v6) {
        (_, false) => SocketAddr::from(([0, 0, 0, 0], 0)),
        _ => SocketAddr::from(([0u16; 8], 0)),
    };
    let socket = match UdpSocket::bind(bind).await {
        Ok(socket) => socket,
        Err(error) => {
            tracing::warn!(%error, "ICP: cannot open a UDP socket for queries");
            return outcome;
        }
    };
    let mut pending: Vec<Target> = Vec::with_capacity(targets.len());
    for target in targets {
        match socket.send_to(&query, target.addr).await {
            Ok(_) => pending.push(*target),
            Err(error) => {
                tracing::debug!(peer = %target.addr, %error, "ICP query not sent");
            }
        }
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = vec![0u8; wire::MAX_MESSAGE];
    while !pending.is_empty() {
        let received = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await;
        let (len, from) = match received {
            Err(_) => {
                outcome.timed_out = true;
                break;
            }
            Ok(Err(error)) => {
                // An ICMP port unreachable shows up here on Linux: that peer will not answer.
                tracing::debug!(%error, "ICP receive failed");
                continue;
            }
            Ok(Ok(got)) => got,
        };
        let from = canonical(from);
        let Some(position) = pending.iter().position(|t| canonical(t.addr) == from) else {
            continue;
        };
        let Ok(reply) = wire::decode(buf.get(..len).unwrap_or_default()) else {
            continue;
        };
        if reply.request_number != request_number || reply.url != url {
            continue;
        }
        let target = pending.swap_remove(position);
        if matches!(reply.opcode, Opcode::Query | Opcode::Secho | Opcode::Decho) {
            continue;
        }
        outcome.replies.push((target.index, reply.opcode));
        // RFC 2186 §2 ICP_OP_HIT_OBJ is a hit too (we never ask for one).
        if matches!(reply.opcode, Opcode::Hit | Opcode::HitObj) {
            outcome.hit = Some(target.index);
            break;
        }
    }
    outcome
}

/// An address with an IPv4-mapped IPv6 address read as IPv4 (a dual-stack socket reports
/// IPv4 senders that way).
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer on loopback answering every query with `opcode`, after `delay`.
    async fn peer(opcode: Opcode, delay: Duration) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; wire::MAX_MESSAGE];
            for _ in 0..4 {
                let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let query = wire::decode(&buf[..len]).unwrap();
                tokio::time::sleep(delay).await;
                let reply = wire::encode(&wire::reply(&query, opcode)).unwrap();
                let _ = socket.send_to(&reply, from).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn the_hit_wins_and_misses_are_recorded() {
        let miss = peer(Opcode::Miss, Duration::ZERO).await;
        let hit = peer(Opcode::Hit, Duration::from_millis(50)).await;
        let targets = [
            Target {
                index: 0,
                addr: miss,
            },
            Target {
                index: 1,
                addr: hit,
            },
        ];
        let outcome = ping(&targets, "http://example.com/x", Duration::from_secs(5)).await;
        assert_eq!(outcome.hit, Some(1));
        assert_eq!(outcome.replies, vec![(0, Opcode::Miss), (1, Opcode::Hit)]);
        assert!(!outcome.timed_out);
    }

    #[tokio::test]
    async fn a_silent_peer_times_out_and_all_misses_end_early() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let miss = peer(Opcode::Miss, Duration::ZERO).await;
        let started = tokio::time::Instant::now();
        let outcome = ping(
            &[
                Target {
                    index: 0,
                    addr: miss,
                },
                Target {
                    index: 1,
                    addr: silent.local_addr().unwrap(),
                },
            ],
            "http://example.com/x",
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(outcome.hit, None);
        assert!(outcome.timed_out);
        assert!(started.elapsed() >= Duration::from_millis(200));

        let started = tokio::time::Instant::now();
        let outcome = ping(
            &[Target {
                index: 3,
                addr: miss,
            }],
            "http://example.com/y",
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(outcome.replies, vec![(3, Opcode::Miss)]);
        assert!(!outcome.timed_out);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no wait once all answered"
        );
    }
}
