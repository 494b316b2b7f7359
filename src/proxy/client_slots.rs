//! Connections per client address (Squid's `client_ip_max_connections`).
//!
//! `limits.max_connections` protects the process; this protects other clients from one
//! address that opens thousands of idle connections and so fills the global cap (issue 11).
//! Each accepted connection takes a slot for its client address; a connection beyond the limit
//! is answered `429 Too Many Requests` at once (plain ports; TLS ports just close) instead of
//! waiting. Addresses in `client_ip_limit_exempt` (loopback by default: a load balancer or the
//! operator on this machine) are counted but never refused; the counts also answer Squid's
//! `maxconn` ACL. The count table is one small mutex-protected map touched twice per
//! connection (accept, close), and per request only when a `maxconn` ACL is in the rules.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use ipnet::IpNet;
use tokio::sync::OwnedSemaphorePermit;

/// Live connection counts per client address.
#[derive(Debug)]
pub struct ClientSlots {
    /// Most connections one address may hold; 0 = unlimited.
    max: usize,
    exempt: Vec<IpNet>,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in [`ClientSlots`]; released on drop.
#[derive(Debug)]
pub struct ClientSlot {
    slots: Arc<ClientSlots>,
    ip: IpAddr,
}

/// Everything a connection holds while it lives: its place under `max_connections` and under
/// its address's limit. CONNECT tunnels keep a clone until they close.
#[derive(Debug)]
pub struct ConnSlot {
    _global: OwnedSemaphorePermit,
    _client: Option<ClientSlot>,
}

impl ConnSlot {
    /// Holds both places.
    pub fn new(global: OwnedSemaphorePermit, client: Option<ClientSlot>) -> Self {
        Self {
            _global: global,
            _client: client,
        }
    }
}

impl ClientSlots {
    /// At most `max` connections per address (0 = unlimited), addresses in `exempt` uncounted.
    pub fn new(max: usize, exempt: Vec<IpNet>) -> Arc<Self> {
        Arc::new(Self {
            max,
            exempt,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a connection from `ip`, or `Err(count)` when it already holds `max`
    /// connections. Exempt addresses (and every address when `max` is 0) are counted, for
    /// `maxconn` ACLs, but never refused.
    pub fn try_take(self: &Arc<Self>, ip: IpAddr) -> Result<Option<ClientSlot>, usize> {
        let ip = ip.to_canonical();
        let limited = self.max != 0 && !self.exempt.iter().any(|net| net.contains(&ip));
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if limited && *count >= self.max {
            return Err(*count);
        }
        *count += 1;
        Ok(Some(ClientSlot {
            slots: Arc::clone(self),
            ip,
        }))
    }

    /// Connections `ip` holds now.
    pub fn count(&self, ip: IpAddr) -> usize {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(&ip.to_canonical()).copied().unwrap_or(0)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self
            .slots
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// What an over-limit client on a plain port reads before the connection closes (RFC 6585 §4).
pub const REJECTION: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 44\r\n\
Retry-After: 5\r\n\
Cache-Control: no-store\r\n\
Connection: close\r\n\
\r\n\
too many connections from your address (429)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_at_most_max_slots_and_gets_them_back_on_drop() {
        let slots = ClientSlots::new(2, vec!["127.0.0.0/8".parse().unwrap()]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = slots.try_take(a).unwrap().unwrap();
        let _second = slots.try_take(a).unwrap().unwrap();
        assert_eq!(slots.try_take(a).unwrap_err(), 2);
        assert!(
            slots.try_take(b).unwrap().is_some(),
            "other addresses unaffected"
        );
        drop(first);
        assert_eq!(slots.count(a), 1);
        let _third = slots.try_take(a).unwrap().unwrap();
        // IPv4-mapped IPv6 is the same client.
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(slots.try_take(mapped).unwrap_err(), 2);
        // Exempt and unlimited addresses are counted (for maxconn) but never refused.
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..10).map(|_| slots.try_take(lo).unwrap()).collect();
        assert_eq!(slots.count(lo), 10);
        drop(held);
        assert_eq!(slots.count(lo), 0);
        let unlimited = ClientSlots::new(0, Vec::new());
        let _one = unlimited.try_take(a).unwrap();
        assert_eq!(unlimited.count(a), 1);
    }

    #[test]
    fn the_rejection_is_one_complete_response() {
        let text = std::str::from_utf8(REJECTION).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{text}"
        );
    }
}
