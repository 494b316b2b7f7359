//! The disk tier: bodies and heads in a cacache directory, bounded by an LRU index.
//!
//! cacache stores content by hash and appends `key → integrity + metadata` lines to index
//! buckets; the head is that metadata. It has no size bound, so [`DiskIndex`] accounts
//! bytes in process and this file deletes what it evicts. The index also keeps each key's
//! parsed head, so a hit reads neither cacache's index nor JSON: it opens the content file
//! directly (`file`), on the worker thread if the file was read moments ago (it is in the
//! page cache), else on tokio's blocking pool. Bodies go out in chunks; they come in whole
//! when the memory tier's copy holds them anyway (one blocking job, [`Disk::commit_whole`],
//! which for a new key appends its index line in the same job), else in chunks, so a large
//! body is never held whole in memory here.
//!
//! Changes (commit, freshen, remove, evict) are serialised by one async lock. Each is a
//! rename or an index append, and doing them in order keeps cacache's index and ours in
//! step (a key's latest cacache line always names the content our index has). Lookups
//! take no async lock and hold the index mutex only to read or touch a slot.
//!
//! Use order is kept in process only: after a restart it starts again from each entry's
//! last write (cacache's index time, in milliseconds). The index is read back in the
//! background after the listeners are bound (see `loading`).
//!
//! A full disk (ENOSPC, EDQUOT: the file system has less room than `max_size` promised) is
//! met by [`Disk::make_room`]: it evicts least recently used entries worth at least the
//! object being written and counts the event; a body held whole is then written once more
//! ([`Disk::commit_whole`]), a streamed one's disk copy is given up (see `writer`). A write
//! that fails is abandoned: cacache deletes the partial file and nothing names it, so a
//! partial object is never served.
//!
//! cacache's buckets are append-only; here a new key appends its line, and every other
//! change (a commit over a stored key, a freshen, a removal) rewrites the key's bucket
//! (`bucket`), so the on-disk index holds one line per live key, however often keys are
//! freshened.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use cacache::{Integrity, WriteOpts};
use tokio::io::AsyncWriteExt as _;

use super::body::{BoxFuture, DiskBody, EntryOwner, EntryRef};
use super::bucket::{self, Line};
use super::failure::{io_error, is_damage, is_disk_full};
use super::file::{Open, Opened, Stamp};
use super::load_state::{Pending, Progress};
use super::lru::{DiskIndex, Removed};
use crate::cache::meta::StoredHead;
use crate::cache::DiskConfig;
use crate::clock;

/// cacache's index line for content `sri` with `head` as its metadata.
fn line_opts(sri: &Integrity, head: &StoredHead) -> io::Result<WriteOpts> {
    let size = usize::try_from(head.body_len).map_err(io::Error::other)?;
    Ok(WriteOpts::new()
        .integrity(sri.clone())
        .size(size)
        .metadata(head.to_json()))
}

/// Appends `key`'s index line (blocking: on the pool).
fn append_line(path: &Path, key: &str, opts: WriteOpts) -> io::Result<()> {
    cacache::index::insert(path, key, opts)
        .map(drop)
        .map_err(io_error)
}

/// The first of a test's queued faults.
#[cfg(test)]
fn next_fault(queue: &Mutex<std::collections::VecDeque<io::Error>>) -> Option<io::Error> {
    queue
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop_front()
}

/// What [`Disk::write_whole_and_append`]'s one blocking job did.
enum Fused {
    /// The content is written; its index line was appended, or failed to be.
    Indexed(Integrity, io::Result<()>),
    /// The content could not be written (nothing was).
    Unwritten(io::Error),
}

/// The cacache tier of one directory. Only one `Disk` may use a directory at a time.
pub(super) struct Disk {
    /// Shared with the blocking reads that open content files.
    pub(super) path: Arc<Path>,
    max_size: u64,
    max_object_size: u64,
    /// std mutex: held for a few map operations, never across an `.await`.
    index: Mutex<DiskIndex>,
    /// Serialises changes to cacache's index together with ours.
    pub(super) changes: tokio::sync::Mutex<()>,
    /// Entries evicted to stay under `max_size` (for metrics).
    evictions: std::sync::atomic::AtomicU64,
    /// Writes that found the disk full (ENOSPC, EDQUOT).
    full_events: AtomicU64,
    /// What changed while the index loads; `None` once loaded. Only changed under `changes`.
    pub(super) pending: Mutex<Option<Pending>>,
    /// How far the load has come.
    pub(super) progress: Progress,
    /// Errors the next content writes fail with, for tests of the disk-full path.
    #[cfg(test)]
    pub(super) faults: Mutex<std::collections::VecDeque<io::Error>>,
    /// Errors the next index lines appended with their content fail with, for tests.
    #[cfg(test)]
    pub(super) index_faults: Mutex<std::collections::VecDeque<io::Error>>,
}

/// Least room [`Disk::make_room`] frees, so that a run of small objects on a full disk does
/// not evict one entry per write.
const MIN_ROOM: u64 = 1024 * 1024;

/// What a disk lookup found.
pub(super) enum Found {
    /// The whole body (checked against its integrity if this was its first read).
    Whole(Arc<StoredHead>, Bytes, Integrity),
    /// A larger body, streaming from the start.
    Stream(Arc<StoredHead>, DiskBody),
}

impl Disk {
    /// Opens (creating) the directory, with an empty index: [`load`](Self::load) reads
    /// cacache's back.
    pub async fn open(cfg: &DiskConfig) -> io::Result<Self> {
        tokio::fs::create_dir_all(&cfg.path).await?;
        // cacache writes bodies in flight under `tmp/`, and `bucket` its new buckets; a crash
        // leaves them there.
        match tokio::fs::remove_dir_all(cfg.path.join("tmp")).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Ok(Self {
            path: Arc::from(cfg.path.as_path()),
            max_size: cfg.max_size,
            max_object_size: cfg.max_object_size,
            index: Mutex::new(DiskIndex::default()),
            changes: tokio::sync::Mutex::new(()),
            evictions: std::sync::atomic::AtomicU64::new(0),
            full_events: AtomicU64::new(0),
            pending: Mutex::new(Some(Pending::default())),
            progress: Progress::new(),
            #[cfg(test)]
            faults: Mutex::new(std::collections::VecDeque::new()),
            #[cfg(test)]
            index_faults: Mutex::new(std::collections::VecDeque::new()),
        })
    }

    pub fn max_object_size(&self) -> u64 {
        self.max_object_size
    }

    /// Bytes accounted: content once per distinct body, plus each key's index line.
    pub fn usage(&self) -> u64 {
        self.lock().total()
    }

    /// Objects, bytes, byte limit and evictions so far.
    pub fn stats(&self) -> super::TierStats {
        let (objects, bytes) = {
            let ix = self.lock();
            (u64::try_from(ix.len()).unwrap_or(u64::MAX), ix.total())
        };
        super::TierStats {
            objects,
            bytes,
            max_bytes: self.max_size,
            evictions: self.evictions.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// `key`'s stored head, without touching use order.
    pub fn peek(&self, key: &str) -> Option<Arc<StoredHead>> {
        self.lock().get(key).map(|e| e.head)
    }

    /// The cache directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Finds `key`; bodies of at most `whole_up_to` bytes are read whole now.
    ///
    /// A damaged entry (missing content, wrong size, or content failing its first check)
    /// is removed and reported as a miss; any other failure (no file descriptors left, the
    /// runtime shutting down) is only a miss.
    pub async fn lookup(self: &Arc<Self>, key: &str, whole_up_to: u64) -> Option<Found> {
        let entry = self.lock().read(key, clock::instant())?;
        let open = Open {
            dir: Arc::clone(&self.path),
            sri: entry.sri.clone(),
            len: entry.head.body_len,
            checked: entry.checked,
            whole_up_to,
        };
        // A checked file read moments ago is in the page cache: reading it here takes
        // microseconds, less than handing it to another thread and back (nginx reads all
        // its cache files this way). A file that may have to come from the disk, or whose
        // bytes must be hashed, is read on tokio's blocking pool instead.
        let inline = entry.hot && entry.checked.is_some();
        let first = if inline {
            open.run(false)
        } else {
            Ok(Opened::Unchecked(open))
        };
        let opened = match first {
            Ok(Opened::Unchecked(open)) => {
                match tokio::task::spawn_blocking(move || open.run(true)).await {
                    Ok(opened) => opened,
                    Err(e) => Err(io::Error::other(e)),
                }
            }
            other => other,
        };
        match opened {
            Ok(Opened::Whole(body, checked)) => {
                if let Some(stamp) = checked {
                    self.set_checked(&entry.sri, stamp);
                }
                Some(Found::Whole(entry.head, body, entry.sri))
            }
            Ok(Opened::Stream(source, checking)) => {
                let len = entry.head.body_len;
                let inline = entry.hot && checking.is_none();
                let of = EntryRef {
                    disk: Arc::clone(self) as Arc<dyn EntryOwner>,
                    key: key.to_owned(),
                    sri: entry.sri,
                };
                let body = DiskBody::new(source, len, of, checking, inline);
                Some(Found::Stream(entry.head, body))
            }
            // `run(true)` always reads or fails.
            Ok(Opened::Unchecked(_)) => None,
            Err(e) if is_damage(&e) => {
                tracing::warn!(key, error = %e, "removing damaged disk cache entry");
                self.remove_if(key, &entry.sri).await;
                None
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "disk cache read failed");
                None
            }
        }
    }

    /// Records that `sri`'s file, as `stamp` describes it, matched its hash.
    pub fn set_checked(&self, sri: &Integrity, stamp: Stamp) {
        self.lock().set_checked(sri, stamp);
    }

    /// Starts writing a body; the content is visible to no key until [`commit`](Self::commit).
    pub async fn begin(&self) -> io::Result<cacache::Writer> {
        WriteOpts::new()
            .open_hash(&self.path)
            .await
            .map_err(io_error)
    }

    /// Appends `chunk` to a content being written (a body streamed to disk).
    pub async fn write_content(
        &self,
        writer: &mut cacache::Writer,
        chunk: &[u8],
    ) -> io::Result<()> {
        #[cfg(test)]
        if let Some(e) = self.injected_fault() {
            return Err(e);
        }
        writer.write_all(chunk).await
    }

    /// Writes `body` as one content file in one blocking job (cacache's async writer makes
    /// the temporary file, each write and the commit a blocking job of their own).
    async fn write_whole(&self, body: Bytes) -> io::Result<Integrity> {
        #[cfg(test)]
        if let Some(e) = self.injected_fault() {
            return Err(e);
        }
        let path = Arc::clone(&self.path);
        tokio::task::spawn_blocking(move || cacache::write_hash_sync(&*path, &body))
            .await
            .map_err(io::Error::other)?
            .map_err(io_error)
    }

    /// [`write_whole`](Self::write_whole) and then, once the content is written,
    /// [`insert_line`](Self::insert_line) for a key with no line yet, in one blocking job
    /// instead of two hand-offs to the pool and back (the head's JSON is made there too).
    async fn write_whole_and_append(
        &self,
        key: &str,
        body: Bytes,
        head: &Arc<StoredHead>,
    ) -> Fused {
        #[cfg(test)]
        if let Some(e) = self.injected_fault() {
            return Fused::Unwritten(e);
        }
        let index_fault = self.injected_index_fault();
        let path = Arc::clone(&self.path);
        let key = key.to_owned();
        let head = Arc::clone(head);
        let job = tokio::task::spawn_blocking(move || {
            let sri = match cacache::write_hash_sync(&*path, &body) {
                Ok(sri) => sri,
                Err(e) => return Fused::Unwritten(io_error(e)),
            };
            if let Some(e) = index_fault {
                return Fused::Indexed(sri, Err(e));
            }
            let inserted = line_opts(&sri, &head).and_then(|opts| append_line(&path, &key, opts));
            Fused::Indexed(sri, inserted)
        });
        job.await
            .unwrap_or_else(|e| Fused::Unwritten(io::Error::other(e)))
    }

    /// The next error a content write fails with, when a test put one there.
    #[cfg(test)]
    fn injected_fault(&self) -> Option<io::Error> {
        next_fault(&self.faults)
    }

    /// The next error an index line written with its content fails with, when a test put one
    /// there (always `None` outside tests).
    fn injected_index_fault(&self) -> Option<io::Error> {
        #[cfg(test)]
        return next_fault(&self.index_faults);
        #[cfg(not(test))]
        None
    }

    /// Writes that found the disk full so far.
    pub fn full_events(&self) -> u64 {
        self.full_events.load(Ordering::Relaxed)
    }

    /// The disk is full while writing an object of `needed` bytes: counts it, and evicts
    /// least recently used entries worth at least that much (and at least [`MIN_ROOM`]).
    pub async fn make_room(&self, needed: u64) {
        let _changes = self.changes.lock().await;
        self.evict_for_full_disk(needed).await;
    }

    /// [`make_room`](Self::make_room) for callers holding `changes`.
    async fn evict_for_full_disk(&self, needed: u64) {
        let count = self.full_events.fetch_add(1, Ordering::Relaxed) + 1;
        let target = self.lock().total().saturating_sub(needed.max(MIN_ROOM));
        let evicted = self.lock().evict(target);
        tracing::warn!(
            count,
            evicted = evicted.len(),
            "disk cache: the file system is full; evicting to make room"
        );
        for removed in evicted {
            self.delete(removed).await;
        }
    }

    /// Finishes `writer`'s content and points `key` at it with `head`; then evicts.
    /// A full disk while recording the entry makes room and tries once more.
    pub async fn commit(
        &self,
        key: &str,
        writer: cacache::Writer,
        head: &Arc<StoredHead>,
    ) -> io::Result<()> {
        let _changes = self.changes.lock().await;
        self.settle(key);
        let sri = match writer.commit().await.map_err(io_error) {
            Ok(sri) => sri,
            Err(e) => {
                // The content is gone with its writer: make room for the next object.
                if is_disk_full(&e) {
                    self.evict_for_full_disk(head.body_len).await;
                }
                return Err(e);
            }
        };
        self.point(key, sri, head).await
    }

    /// Writes `body` (held whole in memory) as `key`'s content in one go and points `key` at
    /// it with `head`; then evicts. A full disk makes room once and the body is written again
    /// (the rule of a streamed body's chunks, `Writer::write`); a second failure stores no
    /// disk copy.
    pub async fn commit_whole(
        &self,
        key: &str,
        body: Bytes,
        head: &Arc<StoredHead>,
    ) -> io::Result<()> {
        let _changes = self.changes.lock().await;
        self.settle(key);
        // Under `changes`, like a streamed writer's commit: an eviction of the same content
        // for another key cannot delete the file between its write and its index line.
        if !self.replaces(key) {
            // The usual miss: a key with no line yet gets its content and its line in one
            // blocking job. What fails takes the separate steps' ways below.
            match self.write_whole_and_append(key, body.clone(), head).await {
                Fused::Indexed(sri, inserted) => {
                    return self.pointed(key, sri, head, inserted).await
                }
                Fused::Unwritten(e) if is_disk_full(&e) => {
                    self.evict_for_full_disk(head.body_len).await;
                    let sri = self.write_whole(body).await?;
                    return self.point(key, sri, head).await;
                }
                Fused::Unwritten(e) => return Err(e),
            }
        }
        let sri = match self.write_whole(body.clone()).await {
            Err(e) if is_disk_full(&e) => {
                self.evict_for_full_disk(head.body_len).await;
                self.write_whole(body).await?
            }
            written => written?,
        };
        self.point(key, sri, head).await
    }

    /// Whether `key`'s index line must replace one (its bucket rewritten) rather than be
    /// appended: a new key appends its line; a stored one has its bucket rewritten, so the
    /// index keeps one line per key. While the index loads, a key not loaded yet may have a
    /// line on disk too: its bucket is rewritten as well (see `record`).
    fn replaces(&self, key: &str) -> bool {
        self.lock().contains(key) || self.pending_is_some()
    }

    /// The end of a commit, `changes` held: `key`'s index line names `sri`'s content.
    async fn point(&self, key: &str, sri: Integrity, head: &Arc<StoredHead>) -> io::Result<()> {
        let inserted = self.record(key, &sri, head, self.replaces(key)).await;
        self.pointed(key, sri, head, inserted).await
    }

    /// [`point`](Self::point) once the index line was written, or failed to be (`inserted`):
    /// a full disk makes room and the line is written again; a line that cannot be written
    /// leaves no content behind; a written one enters the in-memory index.
    async fn pointed(
        &self,
        key: &str,
        sri: Integrity,
        head: &Arc<StoredHead>,
        mut inserted: io::Result<()>,
    ) -> io::Result<()> {
        if inserted.as_ref().is_err_and(is_disk_full) {
            self.evict_for_full_disk(head.body_len).await;
            inserted = self.record(key, &sri, head, self.replaces(key)).await;
        }
        if let Err(e) = inserted {
            if !self.lock().references(&sri) {
                remove_content(&self.path, &sri).await;
            }
            return Err(e);
        }
        let previous = self.lock().insert(key.to_owned(), sri, Arc::clone(head));
        if let Some(old) = previous.filter(|old| old.orphaned) {
            remove_content(&self.path, &old.sri).await;
        }
        self.evict().await;
        Ok(())
    }

    /// Replaces `key`'s head, keeping its content; false if the key is not stored.
    pub async fn update_head(&self, key: &str, mut head: StoredHead) -> bool {
        let _changes = self.changes.lock().await;
        let Some(entry) = self.lock().get(key) else {
            return false;
        };
        head.body_len = entry.size;
        if let Err(e) = self.record(key, &entry.sri, &head, true).await {
            tracing::warn!(key, error = %e, "disk cache head update failed");
            return false;
        }
        self.lock().set_head(key, Arc::new(head));
        self.evict().await;
        true
    }

    /// Removes `key`; true if it was stored. While the index loads, a key not loaded yet is
    /// removed from cacache's index too (and never loaded).
    pub async fn remove(&self, key: &str) -> bool {
        let _changes = self.changes.lock().await;
        let loading = self.pending_is_some();
        self.settle(key);
        let removed = self.lock().remove(key);
        match removed {
            Some(removed) => {
                self.delete(removed).await;
                true
            }
            None if loading => match self.rewrite_bucket(key, None).await {
                Ok(Some(old)) => {
                    if let Some(sri) = old.integrity.and_then(|i| i.parse().ok()) {
                        self.maybe_orphan(sri);
                    }
                    true
                }
                Ok(None) => false,
                Err(e) => {
                    tracing::warn!(key, error = %e, "disk cache index delete failed");
                    false
                }
            },
            None => false,
        }
    }

    pub(super) fn pending_is_some(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Removes `key` only while it still names `sri`, as a damaged read found it.
    pub async fn remove_if(&self, key: &str, sri: &Integrity) {
        let _changes = self.changes.lock().await;
        self.settle(key);
        let removed = self.lock().remove_if(key, sri);
        if let Some(removed) = removed {
            self.delete(removed).await;
        }
    }

    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.lock().keys_with_prefix(prefix)
    }

    /// True if the index holds `key` (a lookup would open it), without counting it as a read.
    pub fn has(&self, key: &str) -> bool {
        self.lock().contains(key)
    }

    /// True while `key` still names `sri` (it has not been replaced or removed).
    pub fn holds(&self, key: &str, sri: &Integrity) -> bool {
        self.lock().holds(key, sri)
    }

    /// Records `key → sri` with `head` in cacache's index: rewrites the key's bucket when it
    /// is `stored` (so the old line goes), else appends a line.
    async fn record(
        &self,
        key: &str,
        sri: &Integrity,
        head: &StoredHead,
        stored: bool,
    ) -> io::Result<()> {
        if !stored {
            return self.insert_line(key, sri, head).await;
        }
        let replaced = self.rewrite_bucket(key, line_for(key, sri, head)).await?;
        // While loading, the content the replaced line named may have no key left once the
        // load ends (the loader never sees that line now): noted, deleted then unless named.
        let old_sri = replaced
            .and_then(|line| line.integrity)
            .and_then(|i| i.parse::<Integrity>().ok());
        if let Some(old_sri) = old_sri.filter(|old| old != sri) {
            self.maybe_orphan(old_sri);
        }
        Ok(())
    }

    /// Rewrites `key`'s bucket with `line` as its only line for `key` (none: removed);
    /// returns the line it replaced.
    pub(super) async fn rewrite_bucket(
        &self,
        key: &str,
        line: Option<Line>,
    ) -> io::Result<Option<Line>> {
        let path = Arc::clone(&self.path);
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || bucket::rewrite(&path, &key, line.as_ref()))
            .await
            .map_err(io::Error::other)?
    }

    /// Appends `key → sri` with `head` to cacache's index, in one blocking job: cacache's
    /// async insert makes each of its file operations (directory, open, write, flush) a
    /// blocking job of its own, a hand-off to a pool thread and back every time.
    async fn insert_line(&self, key: &str, sri: &Integrity, head: &StoredHead) -> io::Result<()> {
        let opts = line_opts(sri, head)?;
        let path = Arc::clone(&self.path);
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || append_line(&path, &key, opts))
            .await
            .map_err(io::Error::other)?
    }

    /// Evicts until within `max_size`. Callers hold `changes`.
    pub(super) async fn evict(&self) {
        let evicted = self.lock().evict(self.max_size);
        self.evictions.fetch_add(
            u64::try_from(evicted.len()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
        for removed in evicted {
            tracing::debug!(key = removed.key, "evicting from disk cache");
            self.delete(removed).await;
        }
    }

    /// Deletes a key that left the index from cacache (and its content if orphaned): its
    /// line goes from its bucket, and the bucket with it when it was the only key.
    async fn delete(&self, removed: Removed) {
        if let Err(e) = self.rewrite_bucket(&removed.key, None).await {
            tracing::warn!(key = removed.key, error = %e, "disk cache index delete failed");
        }
        if removed.orphaned {
            remove_content(&self.path, &removed.sri).await;
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, DiskIndex> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Deletes a content file; a file already gone is fine.
pub(super) async fn remove_content(path: &Path, sri: &Integrity) {
    if let Err(e) = cacache::remove_hash(path, sri).await {
        tracing::debug!(error = %e, "disk cache content already gone");
    }
}

/// The index line naming `sri` with `head` for `key`, written now.
pub(super) fn line_for(key: &str, sri: &Integrity, head: &StoredHead) -> Option<Line> {
    use crate::clock::Clock as _;
    let time = crate::clock::SystemClock
        .now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Some(Line {
        key: key.to_owned(),
        integrity: Some(sri.to_string()),
        time,
        size: head.body_len,
        metadata: head.to_json(),
    })
}

impl EntryOwner for Disk {
    fn remove_damaged(self: Arc<Self>, key: String, sri: Integrity) -> BoxFuture {
        Box::pin(async move { self.remove_if(&key, &sri).await })
    }

    fn set_checked(&self, sri: &Integrity, stamp: Stamp) {
        Disk::set_checked(self, sri, stamp);
    }
}
