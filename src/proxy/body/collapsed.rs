//! The body of a request collapsed behind a fill in progress (read-while-writer): it reads the
//! fill's [`Tap`](crate::cache::tap::Tap) from its own offset, so it streams at the origin's
//! pace from its first byte. Fallen out of the tap's window, it carries on from the committed
//! entry at the same offset. An aborted fill (or one not stored while this reader needed the
//! stored copy) ends the body with an error: hyper then aborts the response (a chunked body
//! without its last chunk, a connection closed short of `Content-Length`), never a clean EOF.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

use super::DiskSlice;
use crate::cache::collapse::Attached;
use crate::cache::store::{Hit, HitBody, Store};
use crate::cache::tap::Read;
use crate::error::BoxError;

/// Why a collapsed response ended early.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CollapsedFailed(&'static str);

type Lookup = Pin<Box<dyn Future<Output = Option<Hit>> + Send>>;

/// A waiter's end of a fill.
pub(super) struct TapReader {
    /// The fill's tap; holding it keeps this request counted as waiting on the fill.
    attached: Attached,
    /// Where the committed entry is looked up when the tap no longer holds our bytes.
    store: Store,
    /// Bytes delivered so far.
    offset: u64,
    /// The announced body length.
    length: u64,
    source: Source,
}

enum Source {
    Tap,
    Looking(Lookup),
    Memory(Option<Bytes>),
    Disk(DiskSlice),
}

impl std::fmt::Debug for TapReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapReader")
            .field("key", &self.attached.tap.key())
            .field("offset", &self.offset)
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl TapReader {
    pub(super) fn new(attached: Attached, store: Store) -> Self {
        let length = attached.tap.head().body_len;
        Self {
            attached,
            store,
            offset: 0,
            length,
            source: Source::Tap,
        }
    }

    pub(super) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = self.poll_inner(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            self.offset += frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        polled
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            match &mut self.source {
                Source::Tap => match ready!(self.attached.tap.poll_read(self.offset, cx)) {
                    Read::Data(bytes) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                    Read::End if self.offset == self.length => return Poll::Ready(None),
                    Read::End => return failed("the collapsed fill ended short"),
                    Read::Aborted => return failed("the collapsed fill was aborted"),
                    Read::Behind => {
                        let store = self.store.clone();
                        let key = self.attached.tap.key().to_owned();
                        tracing::debug!(
                            offset = self.offset,
                            "collapsed reader resumes from the store"
                        );
                        self.source =
                            Source::Looking(Box::pin(async move { store.lookup(&key).await }));
                    }
                },
                Source::Looking(lookup) => {
                    let hit = ready!(lookup.as_mut().poll(cx));
                    let tap = &self.attached.tap;
                    let Some(hit) = hit.filter(|hit| tap.is_entry(&hit.head, self.length)) else {
                        return failed(
                            "the cached copy a slow client was to carry on from is gone",
                        );
                    };
                    self.source = match hit.body {
                        HitBody::Memory(bytes) => {
                            let start = usize::try_from(self.offset)
                                .unwrap_or(bytes.len())
                                .min(bytes.len());
                            Source::Memory(Some(bytes.slice(start..)).filter(|b| !b.is_empty()))
                        }
                        HitBody::Disk(body) => Source::Disk(DiskSlice {
                            body,
                            skip: self.offset,
                            remaining: u64::MAX,
                        }),
                    };
                }
                Source::Memory(bytes) => {
                    return Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b))));
                }
                Source::Disk(slice) => return slice.poll_next(cx),
            }
        }
    }

    pub(super) fn is_end_stream(&self) -> bool {
        self.offset >= self.length
    }

    pub(super) fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.length.saturating_sub(self.offset))
    }
}

fn failed(why: &'static str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    Poll::Ready(Some(Err(Box::new(CollapsedFailed(why)))))
}
