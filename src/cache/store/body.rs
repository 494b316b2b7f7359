//! A disk hit's body, streamed from its content file in chunks, one blocking read each.
//!
//! The file must hold exactly the recorded length, which is only known once the whole file
//! has been read, so the last chunk is held back until end of file: a file that turns out
//! shorter, longer or (on a content's first read, see `file`) not matching its hash ends
//! the body in an error before the client has all of its bytes (the proxy then aborts the
//! response), and the entry is removed so the next request is a miss. A first read that
//! ends cleanly records the content as checked.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use cacache::Integrity;
use hyper::body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

use super::failure::is_damage;
use super::file::{Source, Stamp};

/// Streams a stored body from disk; implements [`hyper::body::Body`].
pub struct DiskBody {
    state: State,
    /// Length recorded in the head; the file must hold exactly this many bytes.
    len: u64,
    read: u64,
    sent: u64,
    /// The final chunk, released only after the end-of-file checks.
    held: Option<Bytes>,
    /// The entry this body is read from: removed if the content turns out damaged.
    entry: Option<EntryRef>,
    /// The file's stamp when this read started, if it checks the hash as it goes: recorded
    /// as the content's check once the body ends cleanly.
    checking: Option<Stamp>,
    /// That removal under way, and the error to yield once it is done.
    removing: Option<(JoinHandle<()>, io::Error)>,
    /// Read on the polling thread (a checked file in the page cache, see `disk`) rather
    /// than on the blocking pool.
    inline: bool,
}

/// Where the reading stands. The file is boxed to keep `HitBody` small.
enum State {
    Idle(Box<Source>),
    /// A blocking read under way; it hands the file back with the chunk.
    Reading(JoinHandle<(Box<Source>, io::Result<Bytes>)>),
    /// Ended or failed.
    Done,
}

/// The tier holding a streamed entry, as its body sees it: the disk tier implements this, so a
/// body can report a damaged or a checked content without importing the tier that opened it.
pub(super) trait EntryOwner: Send + Sync {
    /// Removes `key` only while it still names `sri` (the body found it damaged).
    fn remove_damaged(self: Arc<Self>, key: String, sri: Integrity) -> BoxFuture;
    /// Records that `sri`'s file, as `stamp` describes it, matched its hash.
    fn set_checked(&self, sri: &Integrity, stamp: Stamp);
}

/// The removal [`EntryOwner::remove_damaged`] starts.
pub(super) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Which entry a body belongs to.
pub(super) struct EntryRef {
    pub disk: Arc<dyn EntryOwner>,
    pub key: String,
    pub sri: Integrity,
}

impl DiskBody {
    pub(super) fn new(
        source: Source,
        len: u64,
        entry: EntryRef,
        checking: Option<Stamp>,
        inline: bool,
    ) -> Self {
        Self {
            state: State::Idle(Box::new(source)),
            len,
            read: 0,
            sent: 0,
            held: None,
            entry: Some(entry),
            checking,
            removing: None,
            inline,
        }
    }

    /// Ends the stream with `e`. If `e` shows damage, the entry's removal is spawned (so it
    /// completes even if the body is dropped) and awaited before the error is yielded;
    /// `Some(e)` when there is nothing to await.
    fn fail(&mut self, e: io::Error) -> Option<io::Error> {
        self.state = State::Done;
        self.held = None;
        let entry = self.entry.take().filter(|_| is_damage(&e));
        match (entry, tokio::runtime::Handle::try_current()) {
            (Some(c), Ok(rt)) => {
                tracing::warn!(key = c.key, error = %e, "removing damaged disk cache entry");
                let task = rt.spawn(c.disk.remove_damaged(c.key, c.sri));
                self.removing = Some((task, e));
                None
            }
            _ => Some(e),
        }
    }

    /// End of file: check length and (on a first read) the hash; then the held chunk may go.
    fn finish(&mut self, source: Source) -> io::Result<Option<Bytes>> {
        if self.read != self.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stored body is shorter than recorded",
            ));
        }
        source.check()?;
        if let (Some(stamp), Some(entry)) = (self.checking.take(), &self.entry) {
            entry.disk.set_checked(&entry.sri, stamp);
        }
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
            let (source, chunk) = match &mut self.state {
                State::Done => return Poll::Ready(Ok(None)),
                State::Reading(task) => {
                    let joined = ready!(Pin::new(task).poll(cx));
                    self.state = State::Done;
                    joined.map_err(io::Error::other)?
                }
                State::Idle(_) => {
                    let State::Idle(mut source) = std::mem::replace(&mut self.state, State::Done)
                    else {
                        return Poll::Ready(Ok(None));
                    };
                    if self.inline {
                        let chunk = source.read_chunk();
                        (source, chunk)
                    } else {
                        let rt = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
                        self.state = State::Reading(rt.spawn_blocking(move || {
                            let chunk = source.read_chunk();
                            (source, chunk)
                        }));
                        continue;
                    }
                }
            };
            let chunk = chunk?;
            if chunk.is_empty() {
                return Poll::Ready(self.finish(*source));
            }
            self.state = State::Idle(source);
            self.read = self
                .read
                .saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
            if self.read > self.len {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "stored body is longer than recorded",
                )));
            }
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
        matches!(self.state, State::Done) && self.held.is_none() && self.removing.is_none()
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
            .field("open", &!matches!(self.state, State::Done))
            .field("checking", &self.checking.is_some())
            .finish()
    }
}
