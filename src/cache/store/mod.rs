//! The cache store: a memory tier in front of a disk tier, behind one cheap handle.
//!
//! Lookups try memory, then disk. A disk hit small enough for memory (or up to
//! `READ_WHOLE`) is read whole and served as shared bytes; one small enough for memory is
//! also promoted into memory ("small hot disk hits are promoted"); a larger one streams
//! from disk as a [`DiskBody`]. A content's first read after it is written or after a start
//! checks it against its hash (before serving when read whole, at the end of the stream
//! otherwise); later reads trust it while its file's size, mtime, ctime and inode are unchanged
//! (see `file`). Writes go through a [`Writer`] that makes the entry visible in every tier that
//! took it only at commit. Freshness, Vary and what may be stored are decided elsewhere
//! (`cache::policy`, `cache::key`): the store only keeps bytes under keys.
//!
//! ```text
//! lookup ─▶ memory (moka) ─hit─▶ Hit { Memory(Bytes) }
//!             └miss▶ disk (LRU index: head + integrity ▶ open the content file)
//!                      ├ small ▶ read whole (+ check, first read) ▶ promote if it fits
//!                      │           ▶ Hit { Memory(Bytes), tier: Disk }
//!                      └ large ▶ Hit { Disk(DiskBody) }  (first read: checked at the end)
//! ```

mod body;
mod bucket;
mod disk;
mod epoch;
mod failure;
mod file;
mod load_state;
mod loading;
mod lru;
mod memory;
mod writer;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderName;

pub use body::DiskBody;
pub use bucket::index_bytes;
pub use epoch::Epoch;
pub use load_state::{LoadGate, LoadProgress};
pub use writer::Writer;

use crate::cache::invalidate::index::{Entries, Key};
use crate::cache::meta::StoredHead;
use disk::{Disk, Found};
use epoch::Epochs;
use memory::Memory;

/// Disk bodies up to this size are read whole (so on a first read, checked before anything
/// is sent) even when too big for memory.
const READ_WHOLE: u64 = 256 * 1024;

/// The two-tier cache store. Cloning is cheap (one `Arc`).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// What every handle and writer shares.
struct Inner {
    memory: Memory,
    /// `None` when the disk tier is disabled.
    disk: Option<Arc<Disk>>,
    /// Keeps fills that began before an invalidation from committing (see `epoch`).
    epochs: Epochs,

    /// Which keys each URL and tag has (see `cache::invalidate`): kept in step here, where
    /// every commit, head update and removal passes.
    index: Arc<Entries>,
    /// Response fields whose values are the entry's tags.
    tag_fields: Vec<HeaderName>,
    /// Index size at which the next sweep of evicted keys runs.
    next_sweep: std::sync::atomic::AtomicUsize,
}

/// Least index size that triggers a sweep.
const MIN_SWEEP: usize = 8192;

impl Inner {
    /// Lists `key` in the index with the tags of `head`; `keep_seq` for a head update that is
    /// not a new response.
    pub(super) fn register(self: &Arc<Self>, key: Key<'_>, head: &StoredHead, keep_seq: bool) {
        let tags = crate::cache::invalidate::tags::of_head(&head.headers, &self.tag_fields);
        self.index.register(key, tags, keep_seq);
        let len = self.index.len();
        let next = self.next_sweep.load(std::sync::atomic::Ordering::Relaxed);
        if len >= next
            && self
                .next_sweep
                .compare_exchange(
                    next,
                    usize::MAX,
                    std::sync::atomic::Ordering::AcqRel,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_ok()
        {
            // Entries evicted for room stay listed until a sweep: one runs each time the
            // index doubles, so its cost per commit stays constant.
            let inner = Arc::clone(self);
            tokio::task::spawn_blocking(move || {
                let dropped = inner.index.sweep(|key| inner.holds(key));
                let left = inner.index.len();
                tracing::debug!(dropped, left, "cache index swept");
                inner.next_sweep.store(
                    left.saturating_mul(2).max(MIN_SWEEP),
                    std::sync::atomic::Ordering::Release,
                );
            });
        }
    }

    /// True if a tier holds `key` (without counting a use).
    fn holds(&self, key: &str) -> bool {
        self.memory.contains(key) || self.disk.as_ref().is_some_and(|d| d.peek(key).is_some())
    }
}

/// Which tier served a hit; for logs and `Cache-Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Memory,
    Disk,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Memory => "memory",
            Tier::Disk => "disk",
        }
    }
}

/// One tier's use, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierStats {
    pub objects: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    /// Entries removed to make room, since start.
    pub evictions: u64,
}

/// A stored response found by [`Store::lookup`].
#[derive(Debug)]
pub struct Hit {
    pub head: Arc<StoredHead>,
    pub body: HitBody,
    pub tier: Tier,
}

/// A hit's body.
#[derive(Debug)]
pub enum HitBody {
    /// The whole body, shared: serving it copies nothing.
    Memory(Bytes),
    /// Streams from disk; ends in an error if the content is damaged.
    Disk(DiskBody),
}

impl Store {
    /// Opens the tiers `config` describes and returns at once: the disk index is rebuilt
    /// from the directory in a background task (so entries survive a restart), then trimmed
    /// to `max_size`; until then a disk entry not loaded yet is a miss (see `loading`).
    /// [`disk_loaded`](Self::disk_loaded) waits for the end.
    pub async fn open(config: &crate::cache::Config) -> std::io::Result<Store> {
        let disk = match &config.disk {
            Some(d) => Some(Arc::new(Disk::open(d).await?)),
            None => None,
        };
        let store = Self::with(
            Memory::new(config.memory.max_size, config.memory.max_object_size),
            disk,
            config.behaviour.tag_fields.clone(),
        );
        if let Some(disk) = &store.inner.disk {
            // The URL and tag index is rebuilt from what the disk tier kept, as it loads.
            let disk = Arc::clone(disk);
            let index = Arc::clone(&store.inner.index);
            let fields = store.inner.tag_fields.clone();
            let gate = config.disk.as_ref().and_then(|d| d.load_gate.clone());
            tokio::spawn(async move {
                disk.load(gate, |key, head| {
                    let tags = crate::cache::invalidate::tags::of_head(&head.headers, &fields);
                    index.register_loaded(key, tags);
                })
                .await;
            });
        }
        Ok(store)
    }

    /// Returns once the disk index is loaded (at once without a disk tier).
    pub async fn disk_loaded(&self) {
        if let Some(disk) = &self.inner.disk {
            disk.loaded().await;
        }
    }

    /// How far the disk index's load has come; `None` without a disk tier.
    pub fn disk_load(&self) -> Option<LoadProgress> {
        self.inner.disk.as_ref().map(|d| d.load_progress())
    }

    /// Drops the entries of `primary` the disk index has not loaded yet, when it reaches
    /// them (an invalidation while loading; the loaded ones are removed as usual).
    pub async fn drop_unloaded(&self, primary: &str) {
        if let Some(disk) = &self.inner.disk {
            disk.drop_unloaded(primary).await;
        }
    }

    /// Bytes of cacache's index files on disk; `None` without a disk tier. Walks the
    /// directory: for benchmarks and tests, not the request path.
    pub fn disk_index_bytes(&self) -> Option<u64> {
        self.inner.disk.as_ref().map(|d| index_bytes(d.path()))
    }

    /// A store with no disk tier.
    pub fn memory_only(max_size: u64, max_object_size: u64) -> Store {
        Self::with(
            Memory::new(max_size, max_object_size),
            None,
            crate::cache::invalidate::tags::default_fields(),
        )
    }

    fn with(memory: Memory, disk: Option<Arc<Disk>>, tag_fields: Vec<HeaderName>) -> Store {
        Store {
            inner: Arc::new(Inner {
                memory,
                disk,
                epochs: Epochs::new(),

                index: Arc::new(Entries::default()),
                tag_fields,
                next_sweep: std::sync::atomic::AtomicUsize::new(MIN_SWEEP),
            }),
        }
    }

    /// The index of stored keys by URL and by tag.
    pub fn index(&self) -> &Arc<Entries> {
        &self.inner.index
    }

    /// The largest object any tier accepts.
    pub fn max_object_size(&self) -> u64 {
        let memory = self.inner.memory.max_object_size();
        self.inner
            .disk
            .as_ref()
            .map_or(memory, |d| d.max_object_size().max(memory))
    }

    /// Finds `key` in memory, then on disk. A damaged disk entry is removed and missed.
    pub async fn lookup(&self, key: &str) -> Option<Hit> {
        let inner = &self.inner;
        if let Some(entry) = inner.memory.get(key).await {
            return Some(Hit {
                head: Arc::clone(&entry.head),
                body: HitBody::Memory(entry.body.clone()),
                tier: Tier::Memory,
            });
        }
        let disk = inner.disk.as_ref()?;
        if !disk.has(key) {
            return None;
        }
        crate::out_of_line::start(|| self.lookup_disk(disk, key)).await
    }

    /// The disk half of [`lookup`](Self::lookup), for a key the disk index holds: started out
    /// of line, as its state (the read, the promotion to memory) would otherwise widen every
    /// lookup's future, memory hits' and misses' included, and each future that awaits one.
    async fn lookup_disk(&self, disk: &Arc<Disk>, key: &str) -> Option<Hit> {
        let memory = &self.inner.memory;
        // Bodies up to this size are read whole, so damage found then is a clean miss;
        // larger ones stream and fail at the end if damaged.
        let whole = memory.max_object_size().max(READ_WHOLE);
        let hit = match disk.lookup(key, whole).await? {
            Found::Whole(head, body, sri) => {
                let promoted = memory.promote(key, Arc::clone(&head), body.clone()).await;
                // A commit that replaced the key meanwhile wins over this older copy.
                if let Some(entry) = promoted.filter(|_| !disk.holds(key, &sri)) {
                    memory.remove_if_same(key, &entry).await;
                }
                Hit {
                    head,
                    body: HitBody::Memory(body),
                    tier: Tier::Disk,
                }
            }
            Found::Stream(head, body) => Hit {
                head,
                body: HitBody::Disk(body),
                tier: Tier::Disk,
            },
        };
        Some(hit)
    }

    /// Starts storing a response under `key`; `expected_len` is its announced length.
    /// `None` if that exceeds every tier's object size limit.
    pub fn writer(&self, key: &str, head: StoredHead, expected_len: Option<u64>) -> Option<Writer> {
        Writer::new(Arc::clone(&self.inner), key, head, expected_len)
    }

    /// An epoch for a fill of `primary` starting now: pass it to
    /// [`Writer::commit_unless_invalidated`].
    pub fn epoch(&self, primary: &str) -> Epoch {
        self.inner.epochs.begin(primary)
    }

    /// Where the invalidation epochs are now; [`epoch_at`](Self::epoch_at) with it later makes
    /// the epoch [`epoch`](Self::epoch) would have made now.
    pub fn epoch_now(&self) -> u64 {
        self.inner.epochs.now()
    }

    /// The epoch of a fill of `primary` whose request went out at `seq` (from
    /// [`epoch_now`](Self::epoch_now)).
    pub fn epoch_at(&self, primary: &str, seq: u64) -> Epoch {
        epoch::Epochs::begin_at(primary, seq)
    }

    /// Starts a purge of `tags` (see `Epochs::purge_tags`): call before looking the tags up
    /// in the index.
    pub async fn purging_tags(&self, tags: &[String]) {
        self.inner.epochs.purge_tags(tags).await;
    }

    /// Starts invalidating `primary`: waits for commits of it under way, and refuses every
    /// fill whose epoch began before now. Remove its entries while holding the guard, so no
    /// fill can commit in between.
    pub async fn invalidating(&self, primary: &str) -> impl Drop + '_ {
        self.inner.epochs.invalidate(primary).await
    }

    /// Freshens a stored entry after a 304 (RFC 9111 §4.3.4): replaces the head and keeps
    /// the body, in every tier holding `key`. False if no tier does.
    pub async fn update_head(&self, key: &str, head: StoredHead) -> bool {
        self.replace_head(key, head, false).await
    }

    /// [`update_head`](Self::update_head); `keep_seq` when the head is not a new response
    /// (a soft purge's mark), so bans still see the entry's first store time.
    pub async fn replace_head(&self, key: &str, head: StoredHead, keep_seq: bool) -> bool {
        self.inner.register(key.into(), &head, keep_seq);
        let on_disk = match &self.inner.disk {
            Some(disk) => disk.update_head(key, head.clone()).await,
            None => false,
        };
        let in_memory = self.inner.memory.update_head(key, head).await;
        on_disk || in_memory
    }

    /// Removes `key` from both tiers; true if either held it.
    pub async fn remove(&self, key: &str) -> bool {
        let in_memory = self.inner.memory.remove(key).await;
        let on_disk = match &self.inner.disk {
            Some(disk) => disk.remove(key).await,
            None => false,
        };
        self.inner.index.forget(key);
        in_memory || on_disk
    }

    /// `key`'s stored head from the tier that would serve it, without promoting it (for
    /// purges, not the request path).
    pub async fn head(&self, key: &str) -> Option<Arc<StoredHead>> {
        if let Some(entry) = self.inner.memory.get(key).await {
            return Some(entry.head);
        }
        self.inner.disk.as_ref().and_then(|d| d.peek(key))
    }

    /// Removes every key starting with `prefix` from both tiers (all Vary variants of a
    /// primary key, as keys are `"<primary>\n<secondary>"`); returns how many keys went.
    ///
    /// This is a plain string prefix: `"http://a/"` also matches `"http://a/b"`, so pass
    /// `"<primary>\n"` for the variants and [`remove`](Self::remove) the bare primary key.
    pub async fn remove_prefix(&self, prefix: &str) -> usize {
        let keys = self.keys_with_prefix(prefix);
        for key in &keys {
            self.remove(key).await;
        }
        keys.len()
    }

    /// The memory tier's use.
    pub fn memory_stats(&self) -> TierStats {
        self.inner.memory.stats()
    }

    /// The disk tier's directory and use; `None` without a disk tier.
    pub fn disk_stats(&self) -> Option<(std::path::PathBuf, TierStats)> {
        let disk = self.inner.disk.as_ref()?;
        Some((disk.path().to_path_buf(), disk.stats()))
    }

    /// `key`'s stored head in each tier that holds it, without promoting or counting a use
    /// (for the cache inspector; scans the memory tier, so not for the request path).
    pub fn peek(&self, key: &str) -> Vec<(Tier, Arc<StoredHead>)> {
        let mut found = Vec::with_capacity(2);
        if let Some(head) = self.inner.memory.peek(key) {
            found.push((Tier::Memory, head));
        }
        if let Some(head) = self.inner.disk.as_ref().and_then(|d| d.peek(key)) {
            found.push((Tier::Disk, head));
        }
        found
    }

    /// Every stored key starting with `prefix` (both tiers, deduplicated, sorted).
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        let mut keys: BTreeSet<String> = self
            .inner
            .memory
            .keys_with_prefix(prefix)
            .into_iter()
            .collect();
        if let Some(disk) = &self.inner.disk {
            keys.extend(disk.keys_with_prefix(prefix));
        }
        keys.into_iter().collect()
    }

    /// Writes that found the disk full (each evicted room); `None` without a disk tier.
    pub fn disk_full_events(&self) -> Option<u64> {
        self.inner.disk.as_ref().map(|d| d.full_events())
    }

    /// Bytes accounted on disk; `None` without a disk tier.
    pub fn disk_usage(&self) -> Option<u64> {
        self.inner.disk.as_ref().map(|d| d.usage())
    }

    /// Bytes weighed in memory after applying moka's pending evictions.
    pub async fn memory_usage(&self) -> u64 {
        self.inner.memory.sync().await;
        self.inner.memory.weighted_size()
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("disk_usage", &self.disk_usage())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
