//! A response body read straight off its connection, which goes back to the pool the moment
//! the body has ended cleanly on a connection both sides keep alive.
//!
//! Data frames are slices of the connection's read buffer (no copy). Chunked bodies are decoded
//! by `crate::chunked` (RFC 9112 §7.1, the decoder our HTTP/1 server uses for request bodies);
//! their trailer fields (§7.1.2) are handed on as a trailers frame as hyper did, within
//! [`MAX_TRAILERS`] bytes and [`MAX_TRAILER_FIELDS`] fields. Until the request body is written
//! in full, polling the response body also writes it. A body dropped before its end closes its
//! connection.
//!
//! A failure (a body cut short, bad chunked framing) is reported one poll after the one that
//! found it, as it was when hyper's connection task delivered it: a server relaying this body
//! first writes out what came before (hyper's server drops a response head it has not flushed
//! when the body fails in the same turn, and the client would get no response at all instead of
//! a short one).

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

use super::read::Framing;
use super::write::Writer;
use super::{Connection, Home};
use crate::chunked::{self, Step};
use crate::error::{Error, ErrorKind};

/// Largest trailer section.
pub const MAX_TRAILERS: usize = 16 * 1024;
/// Most trailer fields.
const MAX_TRAILER_FIELDS: usize = 64;

/// The body of a response read by an [`Exchange`](super::Exchange).
#[derive(Debug)]
pub struct Body {
    /// `None` once the body ended (or failed): the connection is back in the pool or closed.
    /// Boxed: the response carrying this body is moved a dozen times on its way from the
    /// codec to the client (each layer's `Result`, `Upstreamed`, the relay), and at ~400
    /// bytes the connection's state was most of every move; one allocation costs less.
    live: Option<Box<Live>>,
    /// The server's address (for the access log).
    remote: Option<SocketAddr>,
    /// The body failed: it never ends cleanly; the error waits here for the next poll.
    failed: Option<Option<Error>>,
}

#[derive(Debug)]
struct Live {
    conn: Connection,
    decoder: Decoder,
    /// The request body, when it was still being sent as the response head arrived.
    writer: Option<Writer>,
    /// Both sides allow another exchange on the connection.
    keep_alive: bool,
    /// Where the connection goes back to.
    home: Option<Home>,
}

#[derive(Debug, Clone, Copy)]
enum Decoder {
    Length(u64),
    Chunked(chunked::Decoder),
    Close,
}

impl Body {
    /// The body of a response framed by `framing`; with none, the connection is given back at
    /// once.
    pub(super) fn new(
        conn: Connection,
        framing: Framing,
        writer: Option<Writer>,
        keep_alive: bool,
        home: Option<Home>,
    ) -> Self {
        let decoder = match framing {
            Framing::Length(len) => Decoder::Length(len),
            Framing::Chunked => Decoder::Chunked(chunked::Decoder::new(chunked::Limits {
                trailer_bytes: MAX_TRAILERS,
                trailer_fields: MAX_TRAILER_FIELDS,
            })),
            Framing::Close => Decoder::Close,
        };
        let remote = conn.remote;
        if framing == Framing::Length(0) {
            let clean = keep_alive && writer.is_none() && conn.buf.is_empty();
            give_back(clean, conn, home);
            return Self {
                live: None,
                remote,
                failed: None,
            };
        }
        Self {
            live: Some(Box::new(Live {
                conn,
                decoder,
                writer,
                keep_alive,
                home,
            })),
            remote,
            failed: None,
        }
    }

    /// The address of the server that sent this response.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote
    }

    fn finish(&mut self) {
        if let Some(live) = self.live.take() {
            // Only the connection and its home move out of the box (a move of the whole
            // `Live` copied ~450 bytes per response).
            let clean = live.clean();
            let Live { conn, home, .. } = *live;
            give_back(clean, conn, home);
        }
    }

    /// Closes the connection and reports `error` on the next poll.
    fn fail(
        &mut self,
        error: Error,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.live = None;
        self.failed = Some(Some(error));
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Live {
    /// The connection may carry another exchange: both sides keep it alive, the request was
    /// all sent, nothing unread is left, and the body was not framed by the close.
    fn clean(&self) -> bool {
        self.keep_alive
            && self.writer.is_none()
            && self.conn.buf.is_empty()
            && !matches!(self.decoder, Decoder::Close)
    }

    fn ended(&self) -> bool {
        matches!(self.decoder, Decoder::Length(0))
    }

    /// Decodes what is buffered.
    fn decode(&mut self) -> Result<Step, Error> {
        let buf = &mut self.conn.buf;
        match &mut self.decoder {
            Decoder::Length(0) => Ok(Step::End),
            Decoder::Length(left) => {
                if buf.is_empty() {
                    return Ok(Step::More);
                }
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                *left -= n as u64;
                Ok(Step::Data(buf.split_to(n).freeze()))
            }
            Decoder::Close if buf.is_empty() => Ok(Step::More),
            Decoder::Close => Ok(Step::Data(buf.split().freeze())),
            Decoder::Chunked(decoder) => {
                let step = decoder.decode(buf).map_err(bad_chunk)?;
                if matches!(step, Step::Trailers(_) | Step::End) {
                    self.decoder = Decoder::Length(0);
                }
                Ok(step)
            }
        }
    }
}

/// Gives `conn` back to its pool when `clean`; otherwise it closes (dropped).
fn give_back(clean: bool, mut conn: Connection, home: Option<Home>) {
    if let (true, Some(home)) = (clean, home) {
        conn.trim();
        home.pool.keep(&home.uri, conn);
    }
}

fn bad_chunk(what: chunked::Error) -> Error {
    Error::new(
        ErrorKind::InvalidResponse,
        format!("the upstream sent an invalid chunked body ({what})"),
    )
}

fn cut_short() -> Error {
    Error::new(
        ErrorKind::InvalidResponse,
        "the upstream closed the connection before the end of the body",
    )
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if let Some(failed) = this.failed.as_mut() {
            return Poll::Ready(failed.take().map(Err));
        }
        let Some(live) = this.live.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(writer) = live.writer.as_mut() {
            match writer.poll(&mut live.conn.io, cx) {
                Poll::Ready(Ok(())) => live.writer = None,
                Poll::Ready(Err(e)) => return this.fail(e, cx),
                Poll::Pending => {}
            }
        }
        loop {
            match live.decode() {
                Ok(Step::Data(data)) => {
                    if live.ended() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::Trailers(trailers)) => {
                    this.finish();
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Ok(Step::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::More) => {}
                Err(e) => return this.fail(e, cx),
            }
            match live.conn.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) if matches!(live.decoder, Decoder::Close) => {
                    // RFC 9112 §6.3 rule 8: the close ends the body.
                    this.live = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => return this.fail(cut_short(), cx),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return this.fail(e, cx),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.live.is_none() && self.failed.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.live.as_ref().map(|l| l.decoder) {
            None if self.failed.is_some() => SizeHint::default(),
            None => SizeHint::with_exact(0),
            Some(Decoder::Length(left)) => SizeHint::with_exact(left),
            Some(_) => SizeHint::default(),
        }
    }
}
