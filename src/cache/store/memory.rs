//! The memory tier: whole bodies as shared `Bytes` in a moka cache bounded by weight.
//!
//! A hit clones two reference counts (the head's `Arc` and the body's `Bytes`) and copies
//! no body bytes; moka's `get` takes no global lock. The entry is moka's value itself, not
//! behind another `Arc`: one allocation less per cached object. Keys are shared strings: the
//! invalidation index lists a URL under the very string its entry is keyed by here, rather
//! than a copy. Which objects are small enough to be here is decided by `Store`; moka decides
//! admission and eviction (TinyLFU).

use std::sync::Arc;

use bytes::Bytes;
use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};

use crate::cache::meta::StoredHead;

/// One stored object.
#[derive(Debug, Clone)]
pub(super) struct MemEntry {
    pub head: Arc<StoredHead>,
    pub body: Bytes,
}

impl MemEntry {
    /// The very same stored object (not merely equal bytes).
    fn is(&self, other: &MemEntry) -> bool {
        Arc::ptr_eq(&self.head, &other.head)
            && self.body.as_ptr() == other.body.as_ptr()
            && self.body.len() == other.body.len()
    }
}

/// The moka-backed tier.
pub(super) struct Memory {
    cache: Cache<Arc<str>, MemEntry>,
    max_size: u64,
    /// Entries moka evicted for size (for metrics); bumped by its eviction listener.
    evictions: Arc<std::sync::atomic::AtomicU64>,
    /// Larger bodies are never kept here.
    max_object_size: u64,
}

impl Memory {
    pub fn new(max_size: u64, max_object_size: u64) -> Self {
        let evictions = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = Arc::clone(&evictions);
        let cache = Cache::builder()
            .max_capacity(max_size)
            .weigher(|key: &Arc<str>, entry: &MemEntry| weight(key, entry))
            .eviction_listener(move |_key, _value, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
            .build();
        Self {
            cache,
            max_size,
            evictions,
            max_object_size,
        }
    }

    pub fn max_object_size(&self) -> u64 {
        self.max_object_size
    }

    pub async fn get(&self, key: &str) -> Option<MemEntry> {
        self.cache.get(key).await
    }

    /// Stores `body` under `key` unless it is larger than this tier's objects may be.
    pub async fn insert(&self, key: &Arc<str>, head: Arc<StoredHead>, body: Bytes) -> bool {
        if u64::try_from(body.len()).map_or(true, |len| len > self.max_object_size) {
            return false;
        }
        self.cache
            .insert(Arc::clone(key), MemEntry { head, body })
            .await;
        true
    }

    /// Stores a promoted disk hit unless `key` is already here (a newer commit may be);
    /// returns the entry it inserted.
    pub async fn promote(&self, key: &str, head: Arc<StoredHead>, body: Bytes) -> Option<MemEntry> {
        if u64::try_from(body.len()).map_or(true, |len| len > self.max_object_size) {
            return None;
        }
        let entry = MemEntry { head, body };
        let put = entry.clone();
        let result = self
            .cache
            .entry(Arc::from(key))
            .and_compute_with(|current| {
                std::future::ready(match current {
                    Some(_) => Op::Nop,
                    None => Op::Put(put),
                })
            })
            .await;
        matches!(result, CompResult::Inserted(_)).then_some(entry)
    }

    /// Removes `key` only while it still holds `entry`.
    pub async fn remove_if_same(&self, key: &str, entry: &MemEntry) {
        self.cache
            .entry(Arc::from(key))
            .and_compute_with(|current| {
                std::future::ready(match current {
                    Some(c) if c.value().is(entry) => Op::Remove,
                    _ => Op::Nop,
                })
            })
            .await;
    }

    /// Replaces the head of a stored entry, keeping its body; false if absent.
    pub async fn update_head(&self, key: &str, mut head: StoredHead) -> bool {
        let result = self
            .cache
            .entry(Arc::from(key))
            .and_compute_with(|current| {
                let op = match current {
                    Some(entry) => {
                        let body = entry.value().body.clone();
                        head.body_len = u64::try_from(body.len()).unwrap_or(u64::MAX);
                        Op::Put(MemEntry {
                            head: Arc::new(head),
                            body,
                        })
                    }
                    None => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
        result.into_entry().is_some()
    }

    /// True while `key` is held.
    pub fn contains(&self, key: &str) -> bool {
        self.cache.contains_key(key)
    }

    /// True if `key` was present.
    pub async fn remove(&self, key: &str) -> bool {
        self.cache.remove(key).await.is_some()
    }

    /// Every key starting with `prefix`.
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.cache
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.to_string())
            .collect()
    }

    /// Applies pending evictions now (moka batches them); for tests and metrics.
    pub async fn sync(&self) {
        self.cache.run_pending_tasks().await;
    }

    /// `key`'s stored head, without counting a use.
    pub fn peek(&self, key: &str) -> Option<Arc<StoredHead>> {
        self.cache
            .iter()
            .find(|(k, _)| &***k == key)
            .map(|(_, e)| Arc::clone(&e.head))
    }

    /// Objects, bytes, byte limit and evictions (moka's figures, without a sync).
    pub fn stats(&self) -> super::TierStats {
        super::TierStats {
            objects: self.cache.entry_count(),
            bytes: self.cache.weighted_size(),
            max_bytes: self.max_size,
            evictions: self.evictions.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Bytes currently weighed (after [`sync`](Self::sync)).
    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }
}

/// Body bytes + head estimate + key length, saturating at `u32::MAX`.
fn weight(key: &str, entry: &MemEntry) -> u32 {
    let bytes = entry
        .head
        .approx_size()
        .saturating_add(u64::try_from(entry.body.len()).unwrap_or(u64::MAX))
        .saturating_add(u64::try_from(key.len()).unwrap_or(u64::MAX));
    u32::try_from(bytes).unwrap_or(u32::MAX)
}
