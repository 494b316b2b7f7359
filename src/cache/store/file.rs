//! Content files: where cacache keeps a body, and reading one with plain blocking reads.
//!
//! A hit opens the content file itself instead of going through cacache, whose async
//! reader hashes every byte and sends every read through tokio's blocking pool. Here one
//! step opens the file, compares its size and mtime with what was recorded when it was last
//! checked ([`Stamp`]), and, for a small body, reads it whole; a large body is then read in
//! [`CHUNK`]s, one step each (see `body`). Each step is plain blocking I/O; `disk` decides
//! whether it runs on the worker thread (a file read moments ago, so in the page cache) or
//! on tokio's blocking pool.
//!
//! Integrity is checked on a content's first read (after it is written, and after every
//! start) and remembered with the file's stamp; later reads trust a file whose stamp is
//! unchanged and only check its length, as nginx and Squid trust their cache files. The
//! stamp is size, mtime, ctime and inode: any change made through the file system (a write,
//! even one whose mtime is then put back, which itself sets ctime; a replaced file) makes
//! the next read check the hash again, at the cost of nothing more than the `fstat` every
//! read already makes. Not noticed after the first read: damage below the file system (bit
//! rot on the medium under an unchanged inode), which a checksumming file system reports.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use cacache::Integrity;

use super::failure::io_error;

/// Bytes asked of the file per read when streaming.
pub(super) const CHUNK: usize = 64 * 1024;

/// What a content file looked like when it was checked; a change means "check again".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    pub len: u64,
    pub modified: SystemTime,
    /// Status change time (seconds, nanoseconds): set by the kernel on every write and every
    /// `utimensat`, so a rewrite that restores mtime still changes it.
    pub changed: (i64, i64),
    /// (device, inode): a file replaced under the same name is another file.
    pub inode: (u64, u64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> io::Result<Stamp> {
        #[cfg(unix)]
        let (changed, inode) = {
            use std::os::unix::fs::MetadataExt as _;
            ((meta.ctime(), meta.ctime_nsec()), (meta.dev(), meta.ino()))
        };
        // Elsewhere only size and mtime are compared.
        #[cfg(not(unix))]
        let (changed, inode) = ((0, 0), (0, 0));
        Ok(Stamp {
            len: meta.len(),
            modified: meta.modified()?,
            changed,
            inode,
        })
    }
}

/// Where cacache 13 keeps the content for `sri` (its `content/path.rs`, content format v2):
/// `<dir>/content-v2/<algorithm>/<hex[0..2]>/<hex[2..4]>/<hex[4..]>`, the hex being that of
/// the first hash in `sri`. `None` if `sri` (read back from cacache's index) has no hash or
/// a digest that is not base64: cacache's own `Integrity::to_hex` would panic on those.
pub(super) fn content_path(dir: &Path, sri: &Integrity) -> Option<PathBuf> {
    let hash = sri.hashes.first()?;
    let digest = base64::engine::general_purpose::STANDARD
        .decode(&hash.digest)
        .ok()?;
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(digest.len().saturating_mul(2));
    for byte in digest {
        for nibble in [byte >> 4, byte & 0xf] {
            hex.push(char::from(DIGITS[usize::from(nibble)]));
        }
    }
    let mut path = dir.join("content-v2");
    path.push(hash.algorithm.to_string());
    path.push(hex.get(0..2)?);
    path.push(hex.get(2..4)?);
    path.push(hex.get(4..).filter(|rest| !rest.is_empty())?);
    Some(path)
}

/// Which content to open and how.
pub(super) struct Open {
    pub dir: Arc<Path>,
    pub sri: Integrity,
    /// The body length recorded in the head: the file must hold exactly this many bytes.
    pub len: u64,
    /// The stamp recorded at the content's last check, if any.
    pub checked: Option<Stamp>,
    /// Bodies up to this many bytes are read whole.
    pub whole_up_to: u64,
}

/// An opened content file.
pub(super) enum Opened {
    /// The whole body; the stamp if it was checked against the hash just now.
    Whole(Bytes, Option<Stamp>),
    /// A reader at the start of the body; the stamp if it checks the hash as it goes (to
    /// be recorded once the stream ends cleanly).
    Stream(Source, Option<Stamp>),
    /// Only from `run(false)`: the file needs checking, which was left to the caller.
    Unchecked(Open),
}

/// Where a streamed body's bytes come from.
pub(super) enum Source {
    /// A file checked before: its bytes are trusted.
    Trusted(std::fs::File),
    /// A file not checked yet: cacache's reader hashes as it reads.
    Checking(Box<cacache::SyncReader>),
}

impl Open {
    /// Opens the file and reads it whole or prepares to stream it (blocking). With
    /// `may_check` false, a file not checked yet, or changed since, is left unread.
    ///
    /// Errors if the file is missing, its size is not `len`, or a whole body fails its
    /// hash: the entry is damaged.
    pub fn run(self, may_check: bool) -> io::Result<Opened> {
        let path = content_path(&self.dir, &self.sri)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed integrity"))?;
        let mut file = std::fs::File::open(&path)?;
        let stamp = Stamp::of(&file.metadata()?)?;
        if stamp.len != self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "content file size differs from the recorded length",
            ));
        }
        let trusted = self.checked == Some(stamp);
        if !trusted && !may_check {
            return Ok(Opened::Unchecked(self));
        }
        if self.len <= self.whole_up_to {
            let cap = usize::try_from(self.len).map_err(io::Error::other)?;
            let body = read_up_to(&mut file, cap)?;
            if body.len() != cap {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "content file is shorter than recorded",
                ));
            }
            if trusted {
                return Ok(Opened::Whole(body, None));
            }
            self.sri.check(&body).map_err(|e| io_error(e.into()))?;
            return Ok(Opened::Whole(body, Some(stamp)));
        }
        if trusted {
            return Ok(Opened::Stream(Source::Trusted(file), None));
        }
        drop(file);
        let reader = cacache::SyncReader::open_hash(&self.dir, self.sri).map_err(io_error)?;
        Ok(Opened::Stream(
            Source::Checking(Box::new(reader)),
            Some(stamp),
        ))
    }
}

impl Source {
    /// Reads the next chunk (blocking); empty at end of file.
    pub fn read_chunk(&mut self) -> io::Result<Bytes> {
        match self {
            Source::Trusted(file) => read_up_to(file, CHUNK),
            Source::Checking(reader) => read_up_to(&mut **reader, CHUNK),
        }
    }

    /// At end of file: does what was read match the hash? (Trusted files: yes.)
    pub fn check(self) -> io::Result<()> {
        match self {
            Source::Trusted(_) => Ok(()),
            Source::Checking(reader) => reader.check().map(drop).map_err(io_error),
        }
    }
}

/// Reads until `max` bytes or end of file, into one buffer of exactly `max` bytes: one read
/// call for a file in the page cache.
fn read_up_to(reader: &mut impl Read, max: usize) -> io::Result<Bytes> {
    let mut buf = vec![0; max];
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled = filled.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(Bytes::from(buf))
}
