//! The disk index's load at start, in the background, so the proxy serves before it ends.
//!
//! The listeners are bound before the disk tier's index is read back; meanwhile a lookup of
//! a key not yet loaded is a miss (it goes upstream and may store a new copy), and memory hits
//! work. A blocking thread walks cacache's buckets (`bucket::walk`) and hands batches to an
//! async task that inserts them under the disk tier's change lock, so each batch is atomic
//! with respect to commits and removals. While loading, the disk tier notes what changed
//! ([`Pending`]): a key committed, freshened or removed, and a URL invalidated. The loader
//! skips those keys (a store or purge made during the load is never undone), deletes the
//! lines of removed ones from disk, and at the end deletes content files no key kept. Loaded
//! entries take their use order from their last write time and sit below every entry used
//! since start; bans and tag purges see them as older than anything (`register_loaded`).
//! Purges that enumerate the index (tags, soft purges, bans) wait for the load to finish.
//!
//! [`LoadGate`] (in `load_state`, with the progress and the changes noted) pauses the load,
//! for tests that must see the proxy mid-load without sleeps.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};

use cacache::Integrity;
use tokio::time::Instant;

use super::bucket::{self, Bucket};
use super::disk::{line_for, remove_content, Disk};
use super::file::content_path;
use super::load_state::{LoadGate, LoadProgress};
use crate::cache::invalidate::index::primary_of;
use crate::cache::meta::StoredHead;

/// Bucket files handed from the listing thread to the loader at a time.
const BATCH: usize = 1024;

impl Disk {
    /// Reads cacache's index into ours, in batches that wait for `gate`; `loaded` is told
    /// each entry kept. Skips what changed meanwhile, compacts buckets holding dead lines,
    /// drops entries that cannot be served, then trims to `max_size`. Returns the entries
    /// loaded. Call once, after [`open`](Self::open).
    pub async fn load(
        &self,
        gate: Option<LoadGate>,
        mut loaded: impl FnMut(&str, &StoredHead) + Send,
    ) -> u64 {
        let started = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(PathBuf, Bucket)>>(4);
        let path = Arc::clone(&self.path);
        let lister = tokio::task::spawn_blocking(move || {
            let mut batch = Vec::with_capacity(BATCH);
            bucket::walk(&path, |file, found| {
                batch.push((file, found));
                if batch.len() < BATCH {
                    return true;
                }
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                tx.blocking_send(full).is_ok()
            });
            if !batch.is_empty() {
                let _ = tx.blocking_send(batch);
            }
        });
        let mut count = 0u64;
        while let Some(batch) = rx.recv().await {
            if let Some(gate) = &gate {
                gate.passed().await;
            }
            let _changes = self.changes.lock().await;
            let mut n = 0;
            for (file, found) in batch {
                n += self.load_bucket(&file, found, &mut loaded).await;
            }
            self.progress.add(n);
            count += n;
        }
        if let Err(e) = lister.await {
            tracing::warn!(error = %e, "disk cache index listing stopped");
        }
        let _changes = self.changes.lock().await;
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_default();
        for sri in pending.maybe_orphans {
            if !self.lock().references(&sri) {
                remove_content(&self.path, &sri).await;
            }
        }
        self.evict().await;
        let took = started.elapsed();
        self.progress.finish(took);
        tracing::info!(
            entries = count,
            kept = self.lock().len(),
            took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            path = %self.path.display(),
            "disk cache index ready"
        );
        count
    }

    /// Loads the live lines of one bucket file; returns how many entries were kept. Callers
    /// hold `changes`.
    async fn load_bucket(
        &self,
        file: &Path,
        found: Bucket,
        loaded: &mut (impl FnMut(&str, &StoredHead) + Send),
    ) -> u64 {
        let mut compact = found.has_garbage();
        let mut kept = 0;
        for line in found.live {
            let sri: Option<Integrity> = line.integrity.as_deref().and_then(|i| i.parse().ok());
            let (settled, dropped) = {
                let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                pending.as_ref().map_or((false, false), |p| {
                    (
                        p.keys.contains(&line.key),
                        p.urls.contains(primary_of(&line.key)),
                    )
                })
            };
            let current = self.lock().get(&line.key);
            if settled || current.is_some() || dropped {
                // Changed since the load began: what is on disk now is what that change
                // left, except that a removed key's line may still be here.
                if let Some(sri) = sri {
                    self.maybe_orphan(sri);
                }
                let rewritten = match current {
                    Some(entry) => {
                        let current = line_for(&line.key, &entry.sri, &entry.head);
                        self.rewrite_bucket(&line.key, current).await
                    }
                    None => self.rewrite_bucket(&line.key, None).await,
                };
                compact &= rewritten.is_err();
                continue;
            }
            let head = StoredHead::from_json(&line.metadata)
                .ok()
                .filter(|h| h.body_len == line.size);
            match (head, sri) {
                (Some(head), Some(sri)) if content_path(&self.path, &sri).is_some() => {
                    loaded(&line.key, &head);
                    let head = Arc::new(head);
                    self.lock().insert_loaded(line.key, sri, head, line.time);
                    kept += 1;
                }
                (_, sri) => {
                    tracing::warn!(
                        key = line.key,
                        "dropping disk cache entry with an unreadable head"
                    );
                    if self.rewrite_bucket(&line.key, None).await.is_ok() {
                        compact = false;
                    }
                    if let Some(sri) = sri.filter(|s| content_path(&self.path, s).is_some()) {
                        if !self.lock().references(&sri) {
                            self.maybe_orphan(sri);
                        }
                    }
                }
            }
        }
        if compact {
            // Dead lines (older lines of a key, tombstones): rewrite the file with the live
            // ones, which are the ones just loaded.
            let path = Arc::clone(&self.path);
            let file = file.to_path_buf();
            let done = tokio::task::spawn_blocking(move || bucket::compact(&path, &file)).await;
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "disk cache bucket compaction failed");
            }
        }
        kept
    }

    /// Notes a content whose last key may have gone while loading: deleted at the end of
    /// the load unless a key names it then.
    pub(super) fn maybe_orphan(&self, sri: Integrity) {
        if let Some(p) = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            p.maybe_orphans.push(sri);
        }
    }

    /// Notes that `key` changed while loading, so the loader leaves it alone. Callers hold
    /// `changes`.
    pub(super) fn settle(&self, key: &str) {
        if let Some(p) = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            p.keys.insert(key.to_owned());
        }
    }

    /// Entries of `primary` not loaded yet are dropped when the loader reaches them (an
    /// invalidation while loading). Does nothing once loaded.
    pub async fn drop_unloaded(&self, primary: &str) {
        // Once loaded (nearly always), nothing to note: no wait on `changes`, the disk-wide
        // lock every commit holds across its writes, so an invalidation of a URL never
        // cached stays a map probe (RFC 9111 §4.4 on every POST). `pending` only ever goes
        // from `Some` to `None`, so a `None` seen here stays `None`.
        if !self.pending_is_some() {
            return;
        }
        let _changes = self.changes.lock().await;
        if let Some(p) = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            p.urls.insert(primary.to_owned());
        }
    }

    /// How far the index load has come.
    pub fn load_progress(&self) -> LoadProgress {
        self.progress.snapshot()
    }

    /// Returns once the index is loaded.
    pub async fn loaded(&self) {
        self.progress.wait().await;
    }
}
