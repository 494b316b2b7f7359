//! The queue of interim (1xx) response heads waiting to be written to one client connection
//! (filled through `interim`, written by `client_conn::ClientIo`); its own module so the
//! connection and the request path share it without importing each other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Most interim bytes queued for one connection; more are dropped (an origin sending
/// endless 1xx heads must not grow the proxy's memory).
const MAX_QUEUED: usize = 64 * 1024;

/// Interim heads waiting to be written to one client connection.
#[derive(Debug, Default)]
pub struct Outbox {
    /// The connection speaks HTTP/1 and its current request is HTTP/1.1 (`ClientIo::interim_for`).
    enabled: AtomicBool,
    /// Something is queued: lets every read and write skip the lock when nothing is.
    nonempty: AtomicBool,
    queued: Mutex<Vec<u8>>,
}

impl Outbox {
    /// Lets this connection take interim responses, or not (for its current request).
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    /// True when interim responses can be written to this connection.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Queues `head`; false when it was dropped (disabled or over [`MAX_QUEUED`]).
    pub fn push(&self, head: &[u8]) -> bool {
        if !self.enabled() {
            return false;
        }
        let Ok(mut queued) = self.queued.lock() else {
            return false;
        };
        if queued.len() + head.len() > MAX_QUEUED {
            return false;
        }
        queued.extend_from_slice(head);
        self.nonempty.store(true, Ordering::Release);
        true
    }

    /// Takes what is queued.
    pub fn take(&self) -> Vec<u8> {
        if !self.nonempty.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        self.queued
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_or_full_outbox_drops_heads() {
        let outbox = Outbox::default();
        assert!(!outbox.push(b"x"));
        outbox.set_enabled(true);
        assert!(outbox.push(b"abc"));
        assert!(!outbox.push(&vec![0u8; MAX_QUEUED]));
        assert_eq!(outbox.take(), b"abc");
        assert!(outbox.take().is_empty());
    }
}
