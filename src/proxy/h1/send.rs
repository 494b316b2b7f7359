//! Putting a response on the socket: the head and each body chunk queued without copying
//! the chunk (one vectored write for a head and a body held in memory), framed by the head's
//! encoder (`write`), flushed at the end.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use hyper::body::Body;
use tokio::io::{AsyncRead, AsyncWrite};

use super::write::{self, Encoder};
use super::Conn;
use crate::error::BoxError;

/// Bytes on their way to the socket: a framing buffer (head, chunk size), a data chunk
/// shared with its body (never copied), and a static suffix (a chunk's CRLF).
#[derive(Default)]
pub(super) struct Out {
    pub(super) buf: Vec<u8>,
    /// Bytes of `buf` already written.
    pos: usize,
    data: Bytes,
    suffix: &'static [u8],
    /// Bytes were written since the last flush.
    pub(super) unflushed: bool,
}

impl Out {
    pub(super) fn is_empty(&self) -> bool {
        self.pos == self.buf.len() && self.data.is_empty() && self.suffix.is_empty()
    }

    /// Gives the buffer's memory back; only when everything was written (`is_empty`).
    pub(super) fn release(&mut self) {
        if self.is_empty() {
            self.buf = Vec::new();
            self.pos = 0;
        }
    }

    /// Drops `n` written bytes from the front.
    fn advance(&mut self, mut n: usize) {
        let head = (self.buf.len() - self.pos).min(n);
        self.pos += head;
        n -= head;
        let data = self.data.len().min(n);
        self.data.advance(data);
        n -= data;
        let suffix = self.suffix.len().min(n);
        self.suffix = &self.suffix[suffix..];
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }
}

impl<T> Conn<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Writes what is queued, then flushes; `Ready(Ok)` once everything is on the socket.
    pub(super) fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let slices = [
                io::IoSlice::new(&self.out.buf[self.out.pos..]),
                io::IoSlice::new(&self.out.data),
                io::IoSlice::new(self.out.suffix),
            ];
            match Pin::new(&mut self.io).poll_write_vectored(cx, &slices) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.out.advance(n);
                    self.out.unflushed = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.out.unflushed {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.out.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes the response body after its head; `Ready(Ok)` once all of it is flushed. The
    /// head waits for the first body frame when that is ready at once, so a response held in
    /// memory goes out in one write.
    pub(super) fn poll_response<B>(
        &mut self,
        cx: &mut Context<'_>,
        body: &mut B,
        writing: &mut Writing,
    ) -> Poll<io::Result<()>>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        loop {
            if writing.done {
                return self.poll_out(cx);
            }
            if !self.out.data.is_empty() || !self.out.suffix.is_empty() {
                // A chunk is queued: it goes before the next is asked for.
                ready!(self.poll_out(cx))?;
            }
            let frame = match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(Some(Err(e))) => {
                    let e: BoxError = e.into();
                    return Poll::Ready(Err(io::Error::other(e)));
                }
                Poll::Ready(None) => {
                    self.end_body(writing)?;
                    continue;
                }
                Poll::Pending if writing.encoder == Encoder::Length(0) => {
                    // Nothing of the body is to be sent, so the head is the whole message:
                    // it waits for the body's end (an empty response whose cache entry is
                    // being committed, see `ProxyBody`), so that a client that has it finds
                    // the entry stored on its next request.
                    return Poll::Pending;
                }
                Poll::Pending => {
                    // The head (or the last chunk) goes out while the body waits.
                    ready!(self.poll_out(cx))?;
                    return Poll::Pending;
                }
            };
            match frame.into_data() {
                Ok(data) => {
                    if data.is_empty() {
                        continue;
                    }
                    let end = body.is_end_stream();
                    self.body_data(writing, data);
                    if end {
                        self.end_body(writing)?;
                    }
                }
                Err(frame) => {
                    if let (Encoder::Chunked(allowed), Ok(trailers)) =
                        (&writing.encoder, frame.into_trailers())
                    {
                        write::encode_trailers(allowed.as_deref(), &trailers, &mut self.out.buf);
                        writing.done = true;
                    }
                }
            }
        }
    }

    /// Queues one data chunk, framed by the encoder.
    fn body_data(&mut self, writing: &mut Writing, mut data: Bytes) {
        match &mut writing.encoder {
            Encoder::Length(left) => {
                // A body longer than its declared length is cut there (as hyper does).
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                data.truncate(take);
                *left -= take as u64;
                if *left == 0 {
                    writing.done = true;
                }
                self.out.data = data;
            }
            Encoder::Chunked(_) => {
                let mut size = [0u8; 16];
                let hex = hex(data.len(), &mut size);
                self.out.buf.extend_from_slice(hex);
                self.out.buf.extend_from_slice(b"\r\n");
                self.out.data = data;
                self.out.suffix = b"\r\n";
            }
            Encoder::CloseDelimited => self.out.data = data,
        }
    }

    /// The body ended: the last chunk, or an error when it fell short of its length.
    fn end_body(&mut self, writing: &mut Writing) -> io::Result<()> {
        if writing.done {
            return Ok(());
        }
        match writing.encoder {
            Encoder::Length(0) | Encoder::CloseDelimited => {}
            Encoder::Length(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "response body ended before its Content-Length",
                ))
            }
            Encoder::Chunked(_) => {
                if self.out.suffix.is_empty() {
                    self.out.buf.extend_from_slice(b"0\r\n\r\n");
                } else {
                    // After a chunk's data: its CRLF, then the last chunk.
                    self.out.suffix = b"\r\n0\r\n\r\n";
                }
            }
        }
        writing.done = true;
        Ok(())
    }
}

/// How far the response body is written.
pub(super) struct Writing {
    pub(super) encoder: Encoder,
    /// Everything the body may send has been queued.
    pub(super) done: bool,
}

/// `n` in lower-case hexadecimal, written into `buf`.
fn hex(mut n: usize, buf: &mut [u8; 16]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = DIGITS[n & 0xf];
        n >>= 4;
        if n == 0 || at == 0 {
            break;
        }
    }
    &buf[at..]
}
