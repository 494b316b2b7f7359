//! A request's content on our HTTP/1 server: the decoder for its framing (RFC 9112 §6; chunked
//! bodies through `crate::chunked`, §7.1) and the one-frame hand-over from the connection task
//! to the service's body.
//!
//! The connection task owns the socket, so it reads and decodes; the body the service polls
//! ([`H1Body`]) only takes what the connection put in the slot. As in hyper, the connection
//! reads content only once the body asks for it ("want"): an `Expect: 100-continue` is
//! answered when the content is first wanted, and content nobody reads is never pulled off
//! the socket.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};

use super::read::{Framing, MAX_HEADERS};
use crate::chunked;

/// An error reading a request's content: the connection closes after the response.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the client closed the connection before the request body ended")]
    Incomplete,
    #[error("invalid chunked encoding: {0}")]
    Chunked(chunked::Error),
    #[error("reading the request body failed: {0}")]
    Io(#[source] io::Error),
}

/// Where the decoder is in the content.
#[derive(Debug)]
enum State {
    /// Bytes left of a Content-Length body.
    Length(u64),
    /// A chunked body (RFC 9112 §7.1), before its end.
    Chunked(chunked::Decoder),
    Done,
}

/// Decodes one request's content from the connection's read buffer.
#[derive(Debug)]
pub struct Decoder {
    state: State,
}

impl Decoder {
    /// A decoder for `framing` (never `Framing::None`: such a request has no body); a trailer
    /// section may have `max_trailers` bytes (the head limit) and [`MAX_HEADERS`] fields, as
    /// in hyper.
    pub fn new(framing: Framing, max_trailers: usize) -> Self {
        let state = match framing {
            Framing::None => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(chunked::Decoder::new(chunked::Limits {
                trailer_bytes: max_trailers,
                trailer_fields: MAX_HEADERS,
            })),
        };
        Self { state }
    }

    /// True once the whole content has been decoded.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Bytes still to come, when the framing says.
    fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            State::Chunked(_) => None,
        }
    }

    /// The next frame from `buf`: `Ok(None)` when `buf` holds too little (read more) or the
    /// content ended without a trailers frame, an empty data frame never. Data frames are split
    /// off `buf` without a copy.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame<Bytes>>, BodyError> {
        match &mut self.state {
            State::Done => Ok(None),
            State::Length(left) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                *left -= take as u64;
                if *left == 0 {
                    self.state = State::Done;
                }
                Ok(Some(Frame::data(buf.split_to(take).freeze())))
            }
            State::Chunked(decoder) => match decoder.decode(buf).map_err(BodyError::Chunked)? {
                chunked::Step::Data(data) => Ok(Some(Frame::data(data))),
                chunked::Step::More => Ok(None),
                chunked::Step::End => {
                    self.state = State::Done;
                    Ok(None)
                }
                chunked::Step::Trailers(fields) => {
                    self.state = State::Done;
                    Ok(Some(Frame::trailers(fields)))
                }
            },
        }
    }
}

/// The slot between the connection task and the service's body.
#[derive(Debug, Default)]
struct Slot {
    /// A decoded frame (or the error that ended the content) not yet taken.
    item: Option<Result<Frame<Bytes>, BodyError>>,
    /// The connection has put the content's last frame (or an error).
    ended: bool,
    /// The body was polled and found the slot empty.
    want: bool,
    /// The body was dropped: the connection stops feeding it.
    dropped: bool,
    /// Bytes still to come, for `size_hint`.
    remaining: Option<u64>,
    body_waker: Option<Waker>,
    conn_waker: Option<Waker>,
}

/// The body the service reads; the connection side is [`Feed`].
#[derive(Debug)]
pub struct H1Body {
    /// `None`: the request has no content.
    slot: Option<Arc<Mutex<Slot>>>,
}

impl H1Body {
    /// The body of a request without content.
    pub fn empty() -> Self {
        Self { slot: None }
    }
}

/// The connection's side of a request body.
#[derive(Debug)]
pub struct Feed {
    slot: Arc<Mutex<Slot>>,
    pub decoder: Decoder,
    /// `100 Continue` is still owed once the content is wanted.
    pub expect_continue: bool,
}

/// A body and its feed for content framed by `framing`.
pub fn channel(framing: Framing, max_trailers: usize, expect_continue: bool) -> (H1Body, Feed) {
    let decoder = Decoder::new(framing, max_trailers);
    let slot = Arc::new(Mutex::new(Slot {
        remaining: decoder.remaining(),
        ..Slot::default()
    }));
    (
        H1Body {
            slot: Some(Arc::clone(&slot)),
        },
        Feed {
            slot,
            decoder,
            expect_continue,
        },
    )
}

/// What the connection may do for the body now.
#[derive(Debug, PartialEq, Eq)]
pub enum Demand {
    /// Decode (and read) the next frame.
    Frame,
    /// Nothing until woken (the last frame is not taken, or the body has not asked).
    Wait,
    /// The body is gone before the end: drain what is cheap, else close after the response.
    Dropped,
}

impl Feed {
    /// Whether the body wants a frame; registers `cx` to be woken when that changes.
    pub fn demand(&self, cx: &mut Context<'_>) -> Demand {
        let Ok(mut slot) = self.slot.lock() else {
            return Demand::Dropped;
        };
        if slot.dropped {
            return Demand::Dropped;
        }
        if slot.item.is_some() || !slot.want || slot.ended {
            slot.conn_waker = Some(cx.waker().clone());
            return Demand::Wait;
        }
        Demand::Frame
    }

    /// Hands the body `item`; an error or the decoder's end ends the content.
    pub fn put(&mut self, item: Result<Frame<Bytes>, BodyError>) {
        let ended = item.is_err() || self.decoder.is_done();
        let remaining = self.decoder.remaining();
        let waker = self.slot.lock().ok().and_then(|mut slot| {
            slot.item = Some(item);
            slot.ended = ended;
            slot.want = false;
            slot.remaining = remaining;
            slot.body_waker.take()
        });
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Marks the content ended without a further frame (a chunked body's empty trailers).
    pub fn end(&mut self) {
        let waker = self.slot.lock().ok().and_then(|mut slot| {
            slot.ended = true;
            slot.remaining = Some(0);
            slot.body_waker.take()
        });
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// True once the body has everything (the connection may read the next request).
    pub fn is_done(&self) -> bool {
        self.decoder.is_done()
    }
}

impl Drop for Feed {
    /// A connection that goes away mid-content leaves the body an error, not a silent end.
    fn drop(&mut self) {
        let waker = self.slot.lock().ok().and_then(|mut slot| {
            if !slot.ended && slot.item.is_none() {
                slot.item = Some(Err(BodyError::Incomplete));
                slot.ended = true;
            }
            slot.body_waker.take()
        });
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Drop for H1Body {
    fn drop(&mut self) {
        let Some(slot) = &self.slot else {
            return;
        };
        let waker = slot.lock().ok().and_then(|mut slot| {
            slot.dropped = true;
            slot.conn_waker.take()
        });
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(slot) = &self.slot else {
            return Poll::Ready(None);
        };
        let Ok(mut slot) = slot.lock() else {
            return Poll::Ready(None);
        };
        if let Some(item) = slot.item.take() {
            return Poll::Ready(Some(item));
        }
        if slot.ended {
            return Poll::Ready(None);
        }
        slot.want = true;
        slot.body_waker = Some(cx.waker().clone());
        let conn = slot.conn_waker.take();
        drop(slot);
        if let Some(waker) = conn {
            waker.wake();
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.slot.as_ref().is_none_or(|slot| {
            slot.lock()
                .map_or(true, |slot| slot.ended && slot.item.is_none())
        })
    }

    fn size_hint(&self) -> SizeHint {
        let Some(slot) = &self.slot else {
            return SizeHint::with_exact(0);
        };
        let remaining = slot.lock().ok().and_then(|slot| slot.remaining);
        match remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;

    fn decode_all(
        framing: Framing,
        wire: &[u8],
    ) -> Result<(Vec<u8>, Option<HeaderMap>), BodyError> {
        let mut decoder = Decoder::new(framing, 1024);
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut trailers = None;
        // One byte at a time: every state must survive a split anywhere.
        for &byte in wire {
            buf.extend_from_slice(&[byte]);
            while let Some(frame) = decoder.decode(&mut buf)? {
                match frame.into_data() {
                    Ok(bytes) => data.extend_from_slice(&bytes),
                    Err(frame) => trailers = frame.into_trailers().ok(),
                }
            }
        }
        assert!(decoder.is_done(), "content not finished");
        assert!(buf.is_empty(), "left {buf:?}");
        Ok((data, trailers))
    }

    #[test]
    fn lengths_and_chunks_decode_across_any_split() {
        assert_eq!(
            decode_all(Framing::Length(5), b"hello").unwrap().0,
            b"hello"
        );
        let (data, trailers) =
            decode_all(Framing::Chunked, b"5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\n\r\n").unwrap();
        assert_eq!(data, b"hello!");
        assert!(trailers.is_none());
        let (data, trailers) =
            decode_all(Framing::Chunked, b"3\r\nabc\r\n0\r\nx-sum: 1\r\n\r\n").unwrap();
        assert_eq!(data, b"abc");
        assert_eq!(trailers.unwrap()["x-sum"], "1");
    }

    #[test]
    fn broken_chunks_are_errors() {
        for wire in [
            &b"z\r\n"[..],
            b"3\r\nabcX\r\n",
            b"3\r\nabc\r\n0\r\nbad field\r\n\r\n",
        ] {
            let mut decoder = Decoder::new(Framing::Chunked, 1024);
            let mut buf = BytesMut::from(wire);
            let result = (0..8).try_for_each(|_| decoder.decode(&mut buf).map(drop));
            assert!(result.is_err(), "{wire:?}");
        }
    }
}
