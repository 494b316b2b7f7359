//! The disk tier: bodies and heads in a cacache directory, bounded by an LRU index.
//!
//! cacache stores content by hash and appends `key → integrity + metadata` lines to index
//! buckets; the head is that metadata. It has no size bound, so [`DiskIndex`] accounts
//! bytes in process and this file deletes what it evicts. Bodies go in and out in chunks:
//! a body is never held whole in memory here unless the caller asked for a small one.
//!
//! Changes (commit, freshen, remove, evict) are serialised by one async lock. Each is a
//! rename or an index append, and doing them in order keeps cacache's index and ours in
//! step (a key's latest cacache line always names the content our index has). Lookups
//! take no async lock and hold the index mutex only to read or touch a slot.
//!
//! Use order is kept in process only: after a restart it starts again from each entry's
//! last write (cacache's index time, in milliseconds).
//!
//! Known limit: cacache buckets are append-only, so every commit or freshen of a key adds
//! a line to its bucket until the key is removed. A key whose content is shared with
//! another key is removed with a tombstone line rather than by deleting its bucket.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use cacache::{Integrity, RemoveOpts, WriteOpts};
use tokio::io::AsyncReadExt;

use super::lru::{DiskIndex, Removed};
use crate::cache::meta::StoredHead;
use crate::cache::DiskConfig;

/// The cacache tier of one directory. Only one `Disk` may use a directory at a time.
pub(super) struct Disk {
    path: PathBuf,
    max_size: u64,
    max_object_size: u64,
    /// std mutex: held for a few map operations, never across an `.await`.
    index: Mutex<DiskIndex>,
    /// Serialises changes to cacache's index together with ours.
    changes: tokio::sync::Mutex<()>,
}

/// What a disk lookup found.
pub(super) enum Found {
    /// The whole body, already checked against its integrity.
    Whole(Arc<StoredHead>, Bytes, Integrity),
    /// A reader at the start of a larger body, checked as it streams.
    Stream(Arc<StoredHead>, cacache::Reader, Integrity),
}

/// One entry listed at open.
struct Listed {
    key: String,
    sri: Integrity,
    time: u128,
    /// `None` when the head did not parse: the entry is dropped.
    head: Option<StoredHead>,
}

impl Disk {
    /// Opens (creating) the directory and rebuilds the index from cacache's.
    pub async fn open(cfg: &DiskConfig) -> io::Result<Self> {
        tokio::fs::create_dir_all(&cfg.path).await?;
        // cacache writes bodies in flight under `tmp/`; a crash leaves them there.
        match tokio::fs::remove_dir_all(cfg.path.join("tmp")).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let path = cfg.path.clone();
        let mut listed = tokio::task::spawn_blocking(move || list(&path))
            .await
            .map_err(io::Error::other)?;
        listed.sort_by_key(|l| l.time);
        let disk = Self {
            path: cfg.path.clone(),
            max_size: cfg.max_size,
            max_object_size: cfg.max_object_size,
            index: Mutex::new(DiskIndex::default()),
            changes: tokio::sync::Mutex::new(()),
        };
        let mut bad = Vec::new();
        {
            let mut ix = disk.lock();
            for l in listed {
                match l.head {
                    Some(head) => {
                        ix.insert(l.key, l.sri, head.body_len, head.approx_size());
                    }
                    None => bad.push((l.key, l.sri)),
                }
            }
        }
        for (key, sri) in bad {
            tracing::warn!(key, "dropping disk cache entry with an unreadable head");
            let orphaned = !disk.lock().references(&sri);
            disk.delete(Removed { key, sri, orphaned }).await;
        }
        {
            let _changes = disk.changes.lock().await;
            disk.evict().await;
        }
        Ok(disk)
    }

    pub fn max_object_size(&self) -> u64 {
        self.max_object_size
    }

    /// Bytes accounted: content once per distinct body, plus each key's index line.
    pub fn usage(&self) -> u64 {
        self.lock().total()
    }

    /// Finds `key`; bodies of at most `whole_up_to` bytes are read and checked now.
    ///
    /// A damaged entry (unreadable head, missing or corrupt content) is removed and
    /// reported as a miss.
    pub async fn lookup(&self, key: &str, whole_up_to: u64) -> Option<Found> {
        let (sri, _) = self.lock().get(key)?;
        let meta = match cacache::index::find_async(&self.path, key).await {
            Ok(Some(meta)) => meta,
            Ok(None) => {
                self.remove_if(key, &sri).await;
                return None;
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "disk cache index read failed");
                return None;
            }
        };
        let found = self.read(key, &meta, whole_up_to).await;
        match found {
            Ok(found) => {
                self.lock().touch(key);
                Some(found)
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "removing damaged disk cache entry");
                self.remove_if(key, &meta.integrity).await;
                None
            }
        }
    }

    async fn read(
        &self,
        key: &str,
        meta: &cacache::Metadata,
        whole_up_to: u64,
    ) -> io::Result<Found> {
        let head = StoredHead::from_json(&meta.metadata).map_err(io::Error::other)?;
        let len = head.body_len;
        if u64::try_from(meta.size).ok() != Some(len) {
            return Err(io::Error::other(format!("{key}: index size disagrees")));
        }
        let mut reader = cacache::Reader::open_hash(&self.path, meta.integrity.clone())
            .await
            .map_err(io_error)?;
        if len > whole_up_to {
            return Ok(Found::Stream(
                Arc::new(head),
                reader,
                meta.integrity.clone(),
            ));
        }
        let cap = usize::try_from(len).map_err(io::Error::other)?;
        let mut body = Vec::with_capacity(cap);
        // One byte more than recorded, so that a longer (damaged) file is noticed.
        (&mut reader)
            .take(len.saturating_add(1))
            .read_to_end(&mut body)
            .await?;
        if body.len() != cap {
            return Err(io::Error::other(format!("{key}: content length differs")));
        }
        reader.check().map_err(io_error)?;
        Ok(Found::Whole(
            Arc::new(head),
            Bytes::from(body),
            meta.integrity.clone(),
        ))
    }

    /// Starts writing a body; the content is visible to no key until [`commit`](Self::commit).
    pub async fn begin(&self) -> io::Result<cacache::Writer> {
        WriteOpts::new()
            .open_hash(&self.path)
            .await
            .map_err(io_error)
    }

    /// Finishes `writer`'s content and points `key` at it with `head`; then evicts.
    pub async fn commit(
        &self,
        key: &str,
        writer: cacache::Writer,
        head: &StoredHead,
    ) -> io::Result<()> {
        let _changes = self.changes.lock().await;
        let sri = writer.commit().await.map_err(io_error)?;
        if let Err(e) = self.insert_line(key, &sri, head).await {
            if !self.lock().references(&sri) {
                remove_content(&self.path, &sri).await;
            }
            return Err(e);
        }
        let previous = self
            .lock()
            .insert(key.to_owned(), sri, head.body_len, head.approx_size());
        if let Some(old) = previous.filter(|old| old.orphaned) {
            remove_content(&self.path, &old.sri).await;
        }
        self.evict().await;
        Ok(())
    }

    /// Replaces `key`'s head, keeping its content; false if the key is not stored.
    pub async fn update_head(&self, key: &str, mut head: StoredHead) -> bool {
        let _changes = self.changes.lock().await;
        let Some((sri, size)) = self.lock().get(key) else {
            return false;
        };
        head.body_len = size;
        if let Err(e) = self.insert_line(key, &sri, &head).await {
            tracing::warn!(key, error = %e, "disk cache head update failed");
            return false;
        }
        self.lock().set_head_bytes(key, head.approx_size());
        self.evict().await;
        true
    }

    /// Removes `key`; true if it was stored.
    pub async fn remove(&self, key: &str) -> bool {
        let _changes = self.changes.lock().await;
        let removed = self.lock().remove(key);
        match removed {
            Some(removed) => {
                self.delete(removed).await;
                true
            }
            None => false,
        }
    }

    /// Removes `key` only while it still names `sri`, as a damaged read found it.
    pub async fn remove_if(&self, key: &str, sri: &Integrity) {
        let _changes = self.changes.lock().await;
        let removed = self.lock().remove_if(key, sri);
        if let Some(removed) = removed {
            self.delete(removed).await;
        }
    }

    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.lock().keys_with_prefix(prefix)
    }

    /// True while `key` still names `sri` (it has not been replaced or removed).
    pub fn holds(&self, key: &str, sri: &Integrity) -> bool {
        self.lock().get(key).is_some_and(|(s, _)| s == *sri)
    }

    /// Appends `key → sri` with `head` to cacache's index.
    async fn insert_line(&self, key: &str, sri: &Integrity, head: &StoredHead) -> io::Result<()> {
        let size = usize::try_from(head.body_len).map_err(io::Error::other)?;
        let opts = WriteOpts::new()
            .integrity(sri.clone())
            .size(size)
            .metadata(head.to_json());
        cacache::index::insert_async(&self.path, key, opts)
            .await
            .map(drop)
            .map_err(io_error)
    }

    /// Evicts until within `max_size`. Callers hold `changes`.
    async fn evict(&self) {
        let evicted = self.lock().evict(self.max_size);
        for removed in evicted {
            tracing::debug!(key = removed.key, "evicting from disk cache");
            self.delete(removed).await;
        }
    }

    /// Deletes a key that left the index from cacache (and its content if orphaned).
    async fn delete(&self, removed: Removed) {
        if removed.orphaned {
            // Deletes the content file and the key's whole bucket.
            let fully = RemoveOpts::new()
                .remove_fully(true)
                .remove(&self.path, &removed.key)
                .await;
            if fully.is_ok() {
                return;
            }
            // The content was already gone: fall back to a tombstone line.
            remove_content(&self.path, &removed.sri).await;
        }
        if let Err(e) = cacache::remove(&self.path, &removed.key).await {
            tracing::warn!(key = removed.key, error = %e, "disk cache index delete failed");
        }
    }

    fn lock(&self) -> MutexGuard<'_, DiskIndex> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Deletes a content file; a file already gone is fine.
async fn remove_content(path: &Path, sri: &Integrity) {
    if let Err(e) = cacache::remove_hash(path, sri).await {
        tracing::debug!(error = %e, "disk cache content already gone");
    }
}

/// Every live entry in cacache's index (blocking: walks the directory).
fn list(path: &Path) -> Vec<Listed> {
    let mut out = Vec::new();
    for item in cacache::index::ls(path) {
        match item {
            Ok(meta) => out.push(Listed {
                head: StoredHead::from_json(&meta.metadata)
                    .ok()
                    .filter(|h| u64::try_from(meta.size).ok() == Some(h.body_len)),
                key: meta.key,
                sri: meta.integrity,
                time: meta.time,
            }),
            // A fresh directory has no index yet.
            Err(e) => tracing::debug!(error = %e, "disk cache index listing"),
        }
    }
    out
}

/// cacache's error as an `io::Error`, keeping the kind of an underlying I/O error.
pub(super) fn io_error(e: cacache::Error) -> io::Error {
    match e {
        cacache::Error::IoError(inner, context) => {
            io::Error::new(inner.kind(), format!("{context}: {inner}"))
        }
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}
