//! Filling the store: a body arrives in chunks and becomes visible only at commit.
//!
//! The body goes to every tier whose object limit it fits: accumulated for memory (until
//! it outgrows the memory limit) and copied to disk (the disk copy makes small objects
//! survive a restart, too). While the memory copy holds every byte, the disk copy waits
//! for the commit and is written there whole, in one blocking job; a body that outgrows
//! memory is streamed into a cacache writer from then on, starting with what memory held.
//! Nothing is visible before [`Writer::commit`], which checks the length; dropping the
//! writer instead discards everything (cacache deletes its temporary file when its writer
//! drops).
//!
//! A full disk (ENOSPC, EDQUOT) abandons the partial file, has the disk tier evict room
//! for the object, and retries once by writing the body so far again, which is possible
//! while the memory copy still holds all of it; a larger body's disk copy is given up (the
//! room made serves the next objects). A second failure gives the disk copy up too.

use std::fmt;
use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::failure::is_disk_full;
use super::Inner;
use crate::cache::meta::StoredHead;

/// An entry being stored; see [`Store::writer`](super::Store::writer).
pub struct Writer {
    inner: Arc<Inner>,
    /// Shared with the memory tier's entry and the invalidation index once committed.
    key: Arc<str>,
    head: StoredHead,
    /// The announced length (Content-Length), if any: commit requires exactly this many bytes.
    expected_len: Option<u64>,
    written: u64,
    /// The body so far for the memory tier; `None` once it is too large for memory.
    memory: Option<BytesMut>,
    disk: Sink,
    /// Set by the first error: the store is abandoned.
    failed: bool,
    /// Tests: runs between the epoch check and the entry becoming visible.
    #[cfg(test)]
    pub(super) pause_before_commit:
        Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

/// Where the disk copy stands.
enum Sink {
    /// No disk tier, too large for it, or its write failed.
    Off,
    /// Not opened yet: written whole at commit while the memory copy holds every byte,
    /// else opened when the body outgrows memory (or at commit for an empty body).
    Pending,
    /// Boxed: cacache's writer is large and most of a writer's life is spent elsewhere.
    Open(Box<cacache::Writer>),
}

impl Writer {
    pub(super) fn new(
        inner: Arc<Inner>,
        key: &str,
        mut head: StoredHead,
        expected_len: Option<u64>,
    ) -> Option<Self> {
        let fits = |max: u64| expected_len.is_none_or(|n| n <= max);
        let memory = fits(inner.memory.max_object_size()).then(|| {
            // Known length: one exact allocation (bounded by the memory object limit).
            let cap = expected_len.and_then(|n| usize::try_from(n).ok());
            BytesMut::with_capacity(cap.unwrap_or(0))
        });
        let disk = match &inner.disk {
            Some(disk) if fits(disk.max_object_size()) => Sink::Pending,
            _ => Sink::Off,
        };
        if memory.is_none() && matches!(disk, Sink::Off) {
            return None;
        }
        let key: Arc<str> = Arc::from(key);
        // The usual entry is keyed by its URL: then the head keeps the key's string too.
        if *head.url == *key {
            head.url = Arc::clone(&key);
        }
        Some(Self {
            inner,
            key,
            head,
            expected_len,
            written: 0,
            memory,
            disk,
            failed: false,
            #[cfg(test)]
            pause_before_commit: None,
        })
    }

    /// Adds `chunk` to the body. An error means no tier can take the object any more
    /// (too large, longer than announced, or disk failure): the caller abandons the store.
    /// The key the entry will be visible under once committed.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// When the stored response arrived: with the key and length, what tells this entry from
    /// a later one stored under the same key.
    pub fn response_time(&self) -> std::time::SystemTime {
        self.head.response_time
    }

    /// The length the body must have to be committed, when it was announced.
    pub fn expected_len(&self) -> Option<u64> {
        self.expected_len
    }

    /// The head the entry is stored with (read-while-writer serves it to waiters).
    pub fn head(&self) -> &StoredHead {
        &self.head
    }

    pub async fn write(&mut self, chunk: &Bytes) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("cache write already abandoned"));
        }
        let len = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        let total = self.written.saturating_add(len);
        if self.expected_len.is_some_and(|n| total > n) {
            return Err(self.fail(io::ErrorKind::InvalidData, "body longer than announced"));
        }
        let mut disk_result = Ok(());
        if total > self.inner.memory.max_object_size() {
            if let Some(so_far) = self.memory.take() {
                // The disk copy waited for the commit while memory held every byte: it is
                // streamed from now on, starting with those bytes.
                if matches!(self.disk, Sink::Pending) && !so_far.is_empty() {
                    disk_result = self.write_disk(&so_far.freeze(), self.written).await;
                }
            }
        }
        if let Some(buf) = &mut self.memory {
            buf.extend_from_slice(chunk);
        }
        if disk_result.is_ok() {
            disk_result = self.write_disk(chunk, total).await;
        }
        if let Err(e) = &disk_result {
            tracing::warn!(key = &*self.key, error = %e, "disk cache write failed");
            self.disk = Sink::Off;
        }
        if self.memory.is_none() && matches!(self.disk, Sink::Off) {
            self.failed = true;
            return Err(disk_result.err().unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::FileTooLarge, "object too large to cache")
            }));
        }
        self.written = total;
        Ok(())
    }

    async fn write_disk(&mut self, chunk: &Bytes, total: u64) -> io::Result<()> {
        let Some(disk) = &self.inner.disk else {
            return Ok(());
        };
        if total > disk.max_object_size() {
            // Dropping the cacache writer deletes its temporary file.
            self.disk = Sink::Off;
            return Ok(());
        }
        if matches!(self.disk, Sink::Pending) {
            if self.memory.is_some() {
                // Written whole at commit (`Disk::commit_whole`).
                return Ok(());
            }
            self.disk = Sink::Open(Box::new(disk.begin().await?));
        }
        let Sink::Open(w) = &mut self.disk else {
            return Ok(());
        };
        let Err(e) = disk.write_content(w, chunk).await else {
            return Ok(());
        };
        if is_disk_full(&e) {
            // A streamed body has outgrown memory, so nothing holds it to be written again:
            // the partial file goes first (its bytes count against the full disk too), then
            // room is made for the next objects. (A body memory holds whole is retried by
            // `Disk::commit_whole`.)
            self.disk = Sink::Off;
            let disk = std::sync::Arc::clone(disk);
            disk.make_room(self.expected_len.unwrap_or(total)).await;
        }
        Err(e)
    }

    /// Commits (see [`commit`](Self::commit)) unless the URL `epoch` belongs to was
    /// invalidated after `epoch` began; the check and the commit are one step for an
    /// invalidation (see `epoch`). An invalidated fill stores nothing and fails.
    pub async fn commit_unless_invalidated(
        #[allow(unused_mut)] mut self,
        epoch: super::Epoch,
    ) -> io::Result<()> {
        let inner = Arc::clone(&self.inner);
        let tags =
            || crate::cache::invalidate::tags::of_head(&self.head.headers, &inner.tag_fields);
        let Some(_gate) = inner.epochs.admit_commit(&epoch, tags).await else {
            return Err(io::Error::other(
                "the URL was invalidated while its response arrived",
            ));
        };
        #[cfg(test)]
        if let Some(pause) = self.pause_before_commit.take() {
            pause.await;
        }
        self.commit().await
    }

    /// Makes the entry visible in every tier that took it, replacing what `key` held.
    ///
    /// Fails (storing nothing) after an abandoned write, or if fewer bytes than announced
    /// arrived. `head.body_len` is set to the number of bytes written.
    pub async fn commit(mut self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("cache write already abandoned"));
        }
        if self.expected_len.is_some_and(|n| n != self.written) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "body shorter than announced",
            ));
        }
        self.head.body_len = self.written;
        let Self {
            inner,
            key,
            head,
            memory,
            disk: sink,
            written,
            ..
        } = self;
        let head = Arc::new(head);
        let memory = memory.map(freeze);
        // Listed before it becomes visible (a purge meanwhile finds it) and again after (a
        // sweep meanwhile may have dropped it).
        inner.register((&key).into(), &head, false);
        if let Some(disk) = &inner.disk {
            match (sink, &memory) {
                (Sink::Open(w), _) => disk.commit(&key, *w, &head).await?,
                (Sink::Pending, Some(body)) => {
                    if let Err(e) = disk.commit_whole(&key, body.clone(), &head).await {
                        // As for a streamed body's failed write: memory keeps it, and an
                        // older disk copy must not outlive it.
                        tracing::warn!(key = &*key, error = %e, "disk cache write failed");
                        disk.remove(&key).await;
                    }
                }
                (Sink::Pending, None) if written <= disk.max_object_size() => {
                    let w = disk.begin().await?;
                    disk.commit(&key, w, &head).await?;
                }
                // An older copy must not outlive the memory copy and come back later.
                _ => {
                    disk.remove(&key).await;
                }
            }
        }
        match memory {
            Some(body) => {
                inner.memory.insert(&key, Arc::clone(&head), body).await;
            }
            // Likewise an older memory copy would shadow the new disk copy.
            None => {
                inner.memory.remove(&key).await;
            }
        }
        inner.register((&key).into(), &head, false);
        Ok(())
    }

    fn fail(&mut self, kind: io::ErrorKind, msg: &'static str) -> io::Error {
        self.failed = true;
        self.memory = None;
        self.disk = Sink::Off;
        io::Error::new(kind, msg)
    }
}

/// The accumulated body as `Bytes`, copied once if growth left much unused capacity.
fn freeze(buf: BytesMut) -> Bytes {
    if buf.capacity() > buf.len().saturating_add(buf.len() / 8) {
        Bytes::copy_from_slice(&buf)
    } else {
        buf.freeze()
    }
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("key", &self.key)
            .field("written", &self.written)
            .field("expected_len", &self.expected_len)
            .field("memory", &self.memory.is_some())
            .field("disk", &!matches!(self.disk, Sink::Off))
            .finish()
    }
}
