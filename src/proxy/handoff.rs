//! Handing a switched connection's transaction from the response path to its relay task, so
//! the access-log line is written when the session ends (see `upgrade`); its own module so the
//! request path and `upgrade` share it without importing each other.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::transaction::Transaction;

/// The transaction of a switched connection, sent by `request::finish` to the relay task so
/// that the access log line is written when the session ends, not when the 101 is.
#[derive(Debug, Clone)]
pub struct Handoff(Arc<std::sync::Mutex<Option<oneshot::Sender<Transaction>>>>);

impl Handoff {
    /// A handoff to the relay waiting on `sender`'s receiver.
    pub fn new(sender: oneshot::Sender<Transaction>) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Some(sender))))
    }

    /// Hands `txn` to the relay; a relay that is gone (the upgrade failed) drops it, which
    /// logs it as it stands.
    pub fn send(&self, txn: Box<Transaction>) {
        let sender = self.0.lock().ok().and_then(|mut s| s.take());
        if let Some(sender) = sender {
            let _ = sender.send(*txn);
        }
    }
}
