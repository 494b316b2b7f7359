//! A disk hit's body, streamed from cacache in chunks and checked as it goes.
//!
//! Integrity is only known once the whole file has been read, so the last chunk is held
//! back until the end-of-file check passes: a damaged body ends in an error before the
//! client has all of its bytes (the proxy then aborts the response), and the entry is
//! removed so the next request is a miss.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use cacache::Integrity;
use hyper::body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;
use tokio_util::io::poll_read_buf;

use super::disk::{io_error, Disk};

/// Bytes asked of the file per read.
const CHUNK: usize = 64 * 1024;

/// Streams a stored body from disk; implements [`hyper::body::Body`].
pub struct DiskBody {
    /// `None` once the body ended or failed. Boxed to keep `HitBody` small.
    reader: Option<Box<cacache::Reader>>,
    buf: BytesMut,
    /// Length recorded in the head; the file must hold exactly this many bytes.
    len: u64,
    read: u64,
    sent: u64,
    /// The final chunk, released only after the integrity check.
    held: Option<Bytes>,
    /// Removes the entry if the content turns out damaged.
    on_corrupt: Option<Corrupt>,
    /// That removal under way, and the error to yield once it is done.
    removing: Option<(JoinHandle<()>, io::Error)>,
}

/// Which entry to remove when the body is damaged.
pub(super) struct Corrupt {
    pub disk: Arc<Disk>,
    pub key: String,
    pub sri: Integrity,
}

impl DiskBody {
    pub(super) fn new(reader: cacache::Reader, len: u64, on_corrupt: Corrupt) -> Self {
        Self {
            reader: Some(Box::new(reader)),
            buf: BytesMut::new(),
            len,
            read: 0,
            sent: 0,
            held: None,
            on_corrupt: Some(on_corrupt),
            removing: None,
        }
    }

    /// Ends the stream with `e`. The entry's removal is spawned (so it completes even if
    /// the body is dropped) and awaited before the error is yielded; `Some(e)` when there
    /// is nothing to await.
    fn fail(&mut self, e: io::Error) -> Option<io::Error> {
        self.reader = None;
        self.held = None;
        match (
            self.on_corrupt.take(),
            tokio::runtime::Handle::try_current(),
        ) {
            (Some(c), Ok(rt)) => {
                tracing::warn!(key = c.key, error = %e, "removing damaged disk cache entry");
                let task = rt.spawn(async move { c.disk.remove_if(&c.key, &c.sri).await });
                self.removing = Some((task, e));
                None
            }
            _ => Some(e),
        }
    }

    /// End of file: check length and integrity; then the held chunk may go.
    fn finish(&mut self) -> io::Result<Option<Bytes>> {
        let Some(reader) = self.reader.take() else {
            return Ok(None);
        };
        if self.read != self.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stored body is shorter than recorded",
            ));
        }
        reader.check().map_err(io_error)?;
        Ok(self.held.take())
    }

    fn frame(&mut self, chunk: Bytes) -> Frame<Bytes> {
        let n = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        self.sent = self.sent.saturating_add(n);
        Frame::data(chunk)
    }

    /// Reads the next chunk: `Ok(None)` at a checked end, `Ok(Some)` for data to send.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        loop {
            let Some(reader) = self.reader.as_mut() else {
                return Poll::Ready(Ok(None));
            };
            if self.buf.capacity() == 0 {
                self.buf = BytesMut::with_capacity(CHUNK);
            }
            let n = ready!(poll_read_buf(Pin::new(&mut **reader), cx, &mut self.buf))?;
            if n == 0 {
                return Poll::Ready(self.finish());
            }
            self.read = self
                .read
                .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
            if self.read > self.len {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "stored body is longer than recorded",
                )));
            }
            let chunk = std::mem::take(&mut self.buf).freeze();
            if self.read < self.len {
                return Poll::Ready(Ok(Some(chunk)));
            }
            // Read on to end of file before letting the last bytes go.
            self.held = Some(chunk);
        }
    }
}

impl Body for DiskBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = self.get_mut();
        loop {
            if let Some((task, _)) = this.removing.as_mut() {
                // A failed removal was logged by the task; the error goes out regardless.
                let _ = ready!(Pin::new(task).poll(cx));
                let error = this.removing.take().map(|(_, e)| e);
                return Poll::Ready(error.map(Err));
            }
            match ready!(this.poll_chunk(cx)) {
                Ok(Some(chunk)) => return Poll::Ready(Some(Ok(this.frame(chunk)))),
                Ok(None) => return Poll::Ready(None),
                Err(e) => {
                    if let Some(e) = this.fail(e) {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.reader.is_none() && self.held.is_none() && self.removing.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len.saturating_sub(self.sent))
    }
}

impl fmt::Debug for DiskBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskBody")
            .field("len", &self.len)
            .field("read", &self.read)
            .field("sent", &self.sent)
            .field("open", &self.reader.is_some())
            .finish()
    }
}
