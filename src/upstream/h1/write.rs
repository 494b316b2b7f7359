//! Writing a request: its head in one exact-size buffer, then its body framed by
//! `Content-Length` or chunked, streamed frame by frame as the client sends it.
//!
//! Which framing a body gets follows hyper's client (`proto::h1::role::Client::set_length`), so
//! origins see the same messages as before: a `Content-Length` the proxy kept is used as is; a
//! body of known size without one gets one; a body of unknown size is chunked (RFC 9112 §7.1)
//! except on GET, HEAD and CONNECT, whose body, if any, is not sent; HTTP/1.0 never chunks.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Uri, Version};
use hyper::body::Body as _;
use tokio::io::AsyncWrite;

use crate::error::{Error, ErrorKind};
use crate::upstream::request_body::{ClientBodyError, RequestBody};

/// How the request-target is written (RFC 9112 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Path and query only, to an origin (§3.2.1).
    Origin,
    /// The whole URI, to a peer cache (§3.2.2).
    Absolute,
}

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoder {
    /// Exactly this many bytes still to send (0: no body).
    Length(u64),
    /// Chunked transfer coding (RFC 9112 §7.1).
    Chunked,
}

/// The head of a request, written into one buffer of its exact size.
pub fn encode_head(
    method: &Method,
    uri: &Uri,
    form: Form,
    version: Version,
    headers: &HeaderMap,
) -> Vec<u8> {
    let path = match uri.path_and_query().map(http::uri::PathAndQuery::as_str) {
        Some(p) if !p.is_empty() => p,
        _ => "/",
    };
    let (scheme, authority) = match form {
        Form::Origin => ("", ""),
        Form::Absolute => (
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map_or("", http::uri::Authority::as_str),
        ),
    };
    let fields: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    let target = if form == Form::Absolute {
        scheme.len() + 3 + authority.len() + path.len()
    } else {
        path.len()
    };
    let size = method.as_str().len() + 1 + target + 1 + 8 + 2 + fields + 2;
    let mut head = Vec::with_capacity(size);
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    if form == Form::Absolute {
        head.extend_from_slice(scheme.as_bytes());
        head.extend_from_slice(b"://");
        head.extend_from_slice(authority.as_bytes());
    }
    head.extend_from_slice(path.as_bytes());
    head.extend_from_slice(if version == Version::HTTP_10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Chooses the body's framing and sets the fields that announce it, as hyper's client did.
pub fn frame_body(
    method: &Method,
    version: Version,
    headers: &mut HeaderMap,
    body: &RequestBody,
) -> Encoder {
    if body.is_end_stream() {
        headers.remove(header::TRANSFER_ENCODING);
        return Encoder::Length(0);
    }
    let declared = content_length(headers);
    let exact = body.size_hint().exact();
    if version == Version::HTTP_10 {
        headers.remove(header::TRANSFER_ENCODING);
        return match (declared, exact) {
            (Some(len), _) => Encoder::Length(len),
            (None, Some(len)) => set_content_length(headers, len),
            // An HTTP/1.0 request without a length cannot carry a body at all.
            (None, None) => Encoder::Length(0),
        };
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        // RFC 9112 §6.1: chunked must be the final coding of a request.
        if !super::read::chunked_last(headers) {
            headers.append(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        headers.remove(header::CONTENT_LENGTH);
        return Encoder::Chunked;
    }
    match (declared, exact) {
        (Some(len), _) => Encoder::Length(len),
        (None, Some(len)) => set_content_length(headers, len),
        (None, None) if matches!(*method, Method::GET | Method::HEAD | Method::CONNECT) => {
            Encoder::Length(0)
        }
        (None, None) => {
            headers.remove(header::CONTENT_LENGTH);
            headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
            Encoder::Chunked
        }
    }
}

fn set_content_length(headers: &mut HeaderMap, len: u64) -> Encoder {
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Encoder::Length(len)
}

/// The one value of `Content-Length` (several equal ones count as one), or `None`.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut found: Option<u64> = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let n = content_length_list(value.as_bytes())?;
        if found.is_some_and(|f| f != n) {
            return None;
        }
        found = Some(n);
    }
    found
}

/// The one value of a `Content-Length` field line that may be a list of equal values.
pub fn content_length_list(line: &[u8]) -> Option<u64> {
    let mut found: Option<u64> = None;
    for part in line.split(|b| *b == b',') {
        let n = digits(part.trim_ascii())?;
        if found.is_some_and(|f| f != n) {
            return None;
        }
        found = Some(n);
    }
    found
}

/// A decimal length without sign or other characters (RFC 9110 §8.6: `1*DIGIT`).
pub fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, b| match b {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(b - b'0')),
        _ => None,
    })
}

/// Sends a request's head and body: the pieces waiting to be written and the body still to
/// read. Polled by the exchange until the response head arrives, then by the response body,
/// so an upload goes on while the response streams back (RFC 9112 §9.5).
#[derive(Debug)]
pub struct Writer {
    /// The request head.
    head: Bytes,
    /// How much of `head` was written.
    head_written: usize,
    /// Body bytes to write after the head, in order: chunk size lines, data, CRLFs.
    queue: VecDeque<Bytes>,
    body: Option<RequestBody>,
    encoder: Encoder,
    /// Everything is queued (the body ended or none is sent).
    queued_all: bool,
    /// Bytes were written since the last flush.
    unflushed: bool,
}

/// At most this many body pieces are queued before they are written.
const QUEUE: usize = 3;

impl Writer {
    /// Writes `head`, then `body` as `encoder` frames it.
    pub fn new(head: Vec<u8>, body: RequestBody, encoder: Encoder) -> Self {
        let send_body = encoder != Encoder::Length(0);
        Self {
            head: Bytes::from(head),
            head_written: 0,
            queue: VecDeque::new(),
            body: send_body.then_some(body),
            encoder,
            queued_all: !send_body,
            unflushed: false,
        }
    }

    /// Writes what it can; ready once the whole request is written and flushed.
    pub fn poll<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Error>> {
        loop {
            // Gather what the body has ready first, so that the head and a first frame leave
            // in one write.
            while !self.queued_all && self.queue.len() < QUEUE {
                match self.poll_body(cx)? {
                    Poll::Ready(()) => {}
                    Poll::Pending => break,
                }
            }
            let head = &self.head[self.head_written..];
            if head.is_empty() && self.queue.is_empty() {
                if self.unflushed {
                    std::task::ready!(Pin::new(&mut *io).poll_flush(cx)).map_err(io_error)?;
                    self.unflushed = false;
                }
                return if self.queued_all {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                };
            }
            let written = if self.queue.is_empty() {
                std::task::ready!(Pin::new(&mut *io).poll_write(cx, head)).map_err(io_error)?
            } else {
                let mut slices = [IoSlice::new(&[]); QUEUE + 1];
                slices[0] = IoSlice::new(head);
                for (slice, piece) in slices[1..].iter_mut().zip(&self.queue) {
                    *slice = IoSlice::new(piece);
                }
                let n = 1 + self.queue.len().min(QUEUE);
                std::task::ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]))
                    .map_err(io_error)?
            };
            if written == 0 {
                return Poll::Ready(Err(Error::new(
                    ErrorKind::InvalidResponse,
                    "upstream connection failed: the connection closed while the request was \
                     being written",
                )));
            }
            self.unflushed = true;
            self.advance(written);
        }
    }

    fn advance(&mut self, mut written: usize) {
        let head = (self.head.len() - self.head_written).min(written);
        self.head_written += head;
        written -= head;
        while written > 0 {
            let Some(front) = self.queue.front_mut() else {
                return;
            };
            if written >= front.len() {
                written -= front.len();
                self.queue.pop_front();
            } else {
                let _ = front.split_to(written);
                written = 0;
            }
        }
    }

    /// Queues the body's next frame, framed; `Pending` when the body has none ready.
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Result<Poll<()>, Error> {
        let Some(body) = self.body.as_mut() else {
            self.queued_all = true;
            return Ok(Poll::Ready(()));
        };
        let frame = match Pin::new(body).poll_frame(cx) {
            Poll::Pending => return Ok(Poll::Pending),
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => {
                self.body = None;
                return Err(body_error(&*e));
            }
            Poll::Ready(None) => {
                self.body = None;
                self.queued_all = true;
                match self.encoder {
                    Encoder::Chunked => self.queue.push_back(Bytes::from_static(b"0\r\n\r\n")),
                    Encoder::Length(0) => {}
                    Encoder::Length(left) => {
                        return Err(Error::new(
                            ErrorKind::InvalidRequest,
                            format!("the request body ended {left} bytes short of its length"),
                        ))
                    }
                }
                return Ok(Poll::Ready(()));
            }
        };
        // Trailer fields of a request are not sent: `Trailer`, which would announce them, is
        // hop-by-hop and removed (hyper sent only announced ones).
        let Ok(data) = frame.into_data() else {
            return Ok(Poll::Ready(()));
        };
        if data.is_empty() {
            return Ok(Poll::Ready(()));
        }
        match &mut self.encoder {
            Encoder::Length(left) => {
                let len = data.len() as u64;
                if len > *left {
                    self.body = None;
                    return Err(Error::new(
                        ErrorKind::InvalidRequest,
                        "the request body is longer than its length",
                    ));
                }
                *left -= len;
                self.queue.push_back(data);
                if *left == 0 {
                    // Whatever else the body holds is not sent.
                    self.body = None;
                    self.queued_all = true;
                }
            }
            Encoder::Chunked => {
                let mut line = Vec::with_capacity(18);
                line.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                self.queue.push_back(Bytes::from(line));
                self.queue.push_back(data);
                self.queue.push_back(Bytes::from_static(b"\r\n"));
            }
        }
        Ok(Poll::Ready(()))
    }
}

/// A write failure on the upstream connection.
fn io_error(e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::InvalidResponse,
        format!("upstream connection failed: {e}"),
    )
}

/// The client's body failing is the client's fault (see `request_body`).
fn body_error(e: &(dyn std::error::Error + Send + Sync + 'static)) -> Error {
    if let Some(body) = e.downcast_ref::<ClientBodyError>() {
        return Error::new(ErrorKind::InvalidRequest, body.to_string());
    }
    Error::new(
        ErrorKind::InvalidRequest,
        format!("reading the client's request body failed: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Progress;

    #[test]
    fn the_head_is_written_in_one_buffer_of_its_exact_size() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("a.test:8080"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let uri = Uri::from_static("http://a.test:8080/x?y=1");
        let head = encode_head(&Method::GET, &uri, Form::Origin, Version::HTTP_11, &headers);
        assert_eq!(
            head,
            b"GET /x?y=1 HTTP/1.1\r\nhost: a.test:8080\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
        );
        assert_eq!(head.len(), head.capacity());
        let head = encode_head(
            &Method::GET,
            &uri,
            Form::Absolute,
            Version::HTTP_11,
            &headers,
        );
        assert!(head.starts_with(b"GET http://a.test:8080/x?y=1 HTTP/1.1\r\n"));
        assert_eq!(head.len(), head.capacity());
        let bare = Uri::from_static("http://a.test");
        let head = encode_head(
            &Method::GET,
            &bare,
            Form::Origin,
            Version::HTTP_10,
            &headers,
        );
        assert!(head.starts_with(b"GET / HTTP/1.0\r\n"));
        assert_eq!(head.len(), head.capacity());
    }

    #[test]
    fn bodies_are_framed_as_hyper_framed_them() {
        let empty = RequestBody::empty(Progress::new());
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        let framing = frame_body(&Method::POST, Version::HTTP_11, &mut headers, &empty);
        assert_eq!(framing, Encoder::Length(0));
        assert_eq!(headers[header::CONTENT_LENGTH], "0");
        assert_eq!(content_length(&headers), Some(0));
        let mut two = HeaderMap::new();
        two.append(header::CONTENT_LENGTH, HeaderValue::from_static("5, 5"));
        assert_eq!(content_length(&two), Some(5));
        two.append(header::CONTENT_LENGTH, HeaderValue::from_static("6"));
        assert_eq!(content_length(&two), None);
        assert_eq!(digits(b"+5"), None);
        assert_eq!(digits(b"99999999999999999999999"), None);
    }
}
