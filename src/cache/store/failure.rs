//! How the disk tier reads I/O errors: which mean a damaged entry, which a full disk, and
//! cacache's errors as `io::Error`s. A leaf, so `disk`, `file`, `body` and `writer` share it
//! without importing each other.

use std::io;

/// True for a write that failed because the file system is out of space or over quota.
pub(super) fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// True for the errors reading a content file gives when the entry itself is damaged: the
/// file is gone, or its size or hash is not what was recorded (see `file` and `body`).
pub(super) fn is_damage(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
    )
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
