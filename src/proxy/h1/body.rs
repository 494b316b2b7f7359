//! A request's content on our HTTP/1 server: the decoder for its framing (RFC 9112 §6, §7.1)
//! and the one-frame hand-over from the connection task to the service's body.
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

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};

use super::read::{Framing, MAX_HEADERS};

/// Longest chunk-size line, extensions included (hyper's chunk extension limit).
const MAX_CHUNK_LINE: usize = 16 * 1024;

/// An error reading a request's content: the connection closes after the response.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the client closed the connection before the request body ended")]
    Incomplete,
    #[error("invalid chunked encoding: {0}")]
    Chunked(&'static str),
    #[error("reading the request body failed: {0}")]
    Io(#[source] io::Error),
}

/// Where the decoder is in the content.
#[derive(Debug)]
enum State {
    /// Bytes left of a Content-Length body.
    Length(u64),
    /// Before a chunk-size line.
    ChunkSize,
    /// Bytes left of a chunk's data.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// The trailer section after the last chunk.
    Trailers,
    Done,
}

/// Decodes one request's content from the connection's read buffer.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    /// Longest trailer section (the head limit, as hyper).
    max_trailers: usize,
}

impl Decoder {
    /// A decoder for `framing` (never `Framing::None`: such a request has no body).
    pub fn new(framing: Framing, max_trailers: usize) -> Self {
        let state = match framing {
            Framing::None => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
        };
        Self {
            state,
            max_trailers,
        }
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
            _ => None,
        }
    }

    /// The next frame from `buf`: `Ok(None)` when `buf` holds too little (read more), an empty
    /// data frame never. Data frames are split off `buf` without a copy.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame<Bytes>>, BodyError> {
        loop {
            match &mut self.state {
                State::Done => return Ok(None),
                State::Length(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = State::Done;
                    }
                    return Ok(Some(Frame::data(buf.split_to(take).freeze())));
                }
                State::ChunkSize => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        self.state = if size == 0 {
                            State::Trailers
                        } else {
                            State::ChunkData(size)
                        };
                    }
                    Ok(httparse::Status::Partial) => {
                        if buf.len() > MAX_CHUNK_LINE {
                            return Err(BodyError::Chunked("chunk size line too long"));
                        }
                        return Ok(None);
                    }
                    Err(_) => return Err(BodyError::Chunked("invalid chunk size line")),
                },
                State::ChunkData(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = State::ChunkEnd;
                    }
                    return Ok(Some(Frame::data(buf.split_to(take).freeze())));
                }
                State::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(BodyError::Chunked("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers => return self.trailers(buf),
            }
        }
    }

    /// The trailer section (RFC 9112 §7.1.2): empty, or fields handed on as a trailers frame.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Option<Frame<Bytes>>, BodyError> {
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            self.state = State::Done;
            return Ok(None);
        }
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::parse_headers(buf, &mut slots) {
            Ok(httparse::Status::Complete((used, fields))) => {
                let mut map = HeaderMap::with_capacity(fields.len());
                for field in fields {
                    let name = http::HeaderName::from_bytes(field.name.as_bytes())
                        .map_err(|_| BodyError::Chunked("invalid trailer field name"))?;
                    let value = http::HeaderValue::from_bytes(field.value)
                        .map_err(|_| BodyError::Chunked("invalid trailer field value"))?;
                    map.append(name, value);
                }
                buf.advance(used);
                self.state = State::Done;
                Ok(Some(Frame::trailers(map)))
            }
            Ok(httparse::Status::Partial) if buf.len() < self.max_trailers => Ok(None),
            Ok(httparse::Status::Partial) => Err(BodyError::Chunked("trailer section too large")),
            Err(_) => Err(BodyError::Chunked("invalid trailer section")),
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
