//! The state the disk index's background load shares with the disk tier and readers: its
//! progress, what changed while it ran, and the gate tests hold it with (see `loading`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cacache::Integrity;
use tokio::sync::watch;

/// Holds the background load before each batch while closed (a test hook: the load
/// otherwise never waits). Cloning shares the gate.
#[derive(Debug, Clone)]
pub struct LoadGate {
    open: Arc<watch::Sender<bool>>,
}

impl LoadGate {
    /// A gate that holds the load until [`open`](Self::open).
    pub fn closed() -> Self {
        Self {
            open: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Lets the load run to its end.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Returns once the gate is open.
    pub(super) async fn passed(&self) {
        let mut rx = self.open.subscribe();
        // The sender lives in `self`, so this only ends when the gate opens.
        let _ = rx.wait_for(|open| *open).await;
    }
}

impl PartialEq for LoadGate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.open, &other.open)
    }
}

impl Eq for LoadGate {}

/// How far the disk index's load has come (for `/status` and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadProgress {
    /// Entries loaded into the index so far (at the end: the entries read back from disk).
    pub loaded: u64,
    /// The whole index is loaded: every stored entry can be a hit.
    pub ready: bool,
    /// How long the load took, once ready.
    pub took: Option<Duration>,
}

/// The load's progress, shared by the loader and readers.
#[derive(Debug)]
pub(super) struct Progress {
    loaded: AtomicU64,
    /// Milliseconds the load took plus one; 0 while loading.
    took_ms: AtomicU64,
    ready: watch::Sender<bool>,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            loaded: AtomicU64::new(0),
            took_ms: AtomicU64::new(0),
            ready: watch::Sender::new(false),
        }
    }

    pub fn add(&self, n: u64) {
        self.loaded.fetch_add(n, Ordering::Relaxed);
    }

    pub fn finish(&self, took: Duration) {
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX - 1);
        self.took_ms.store(ms + 1, Ordering::Relaxed);
        self.ready.send_replace(true);
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    pub fn snapshot(&self) -> LoadProgress {
        let took = self.took_ms.load(Ordering::Relaxed);
        LoadProgress {
            loaded: self.loaded.load(Ordering::Relaxed),
            ready: self.is_ready(),
            took: took.checked_sub(1).map(Duration::from_millis),
        }
    }

    /// Returns once the load has finished.
    pub async fn wait(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|ready| *ready).await;
    }
}

/// What changed on disk while the load ran; the loader must not undo any of it.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// Keys committed or removed since the load began.
    pub keys: HashSet<String>,
    /// Primary keys invalidated since the load began: their unloaded entries are dropped.
    pub urls: HashSet<String>,
    /// Contents whose last key may have gone: deleted at the end if no key names them.
    pub maybe_orphans: Vec<Integrity>,
}
