//! Our own HTTP/1.1 server connection: reads request heads with `httparse`, calls the
//! service for each request in turn, and writes each response, doing what hyper's `http1`
//! server did for us (hyper still serves HTTP/2).
//!
//! One loop per connection, one request at a time (RFC 9112 §9.3.2 pipelining: the next
//! request's bytes wait in the read buffer until the response before it is written):
//!
//! ```text
//! read head ─▶ service(request) ─▶ write head ─▶ write body ─▶ keep-alive? ─▶ read head
//!   │ (parse error: 400/414/431, close)   │ (content read only when the body wants it;
//!   │                                     │  `100 Continue` then, RFC 9110 §10.1.1)
//!   └ idle, EOF or shutdown: close        └ 101 / 2xx to CONNECT: hand the socket over
//! ```
//!
//! A response is written at the end of the runtime's pass (`crate::pass`): the responses of
//! the connections that became ready together go out together.
//!
//! The socket is a `client_conn::ClientIo`, so the header, idle and write deadlines, the
//! interim heads of the outbox and the lingering close all apply as before. `read` parses
//! heads (reading `Proxy-Connection: keep-alive` as `Connection`, see `proxy_connection`),
//! `body` decodes content, `write` encodes response heads, `send` puts responses on the
//! socket, `upgrade` hands the connection over. A request whose content is not read to its end
//! makes the connection close after its response, unless the rest is already buffered (as in
//! hyper).

mod body;
mod read;
mod send;
mod upgrade;
mod write;

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use hyper::body::Body;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::io::poll_read_buf;

pub use body::{BodyError, H1Body};
pub use upgrade::{OnUpgrade, Upgraded};

use super::client_conn::ClientIo;
use crate::cache::serve::HitHead;
use crate::error::BoxError;
use crate::field_names::NameMemo;
use crate::pass::EndOfPass;
use read::{FieldAt, Framing, HeadError};
use send::{Out, Writing};
use write::{BodyLength, Encoder, ForRequest};

/// The least free space a read is given.
const READ_SIZE: usize = 8192;
/// The bytes of an automatic `100 Continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The largest request head (request line and fields); larger is 431.
    pub max_head: usize,
}

/// A response body that may bring its response's head as the stored lines of a plain cache
/// hit ([`HitHead`]), written instead of the response's (then empty) map.
pub trait HitHeadBody {
    /// Takes the head out, if the body carries one.
    fn take_hit_head(&mut self) -> Option<Box<HitHead>>;
}

impl HitHeadBody for crate::proxy::body::ProxyBody {
    fn take_hit_head(&mut self) -> Option<Box<HitHead>> {
        crate::proxy::body::ProxyBody::take_hit_head(self)
    }
}

/// Bodies of other services on this server (tests, tools) carry no hit head.
impl<E> HitHeadBody for http_body_util::combinators::BoxBody<Bytes, E> {
    fn take_hit_head(&mut self) -> Option<Box<HitHead>> {
        None
    }
}

/// Serves HTTP/1.x on `io` until the client or the service ends the connection, or `stop`
/// is set (graceful shutdown: an idle connection closes; a busy one after its response).
pub async fn serve<T, S, F, B>(
    io: ClientIo<T>,
    settings: Settings,
    stop: Arc<AtomicBool>,
    mut service: S,
) -> io::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: FnMut(Request<H1Body>) -> F,
    F: Future<Output = Response<B>>,
    B: Body<Data = Bytes> + HitHeadBody + Unpin,
    B::Error: Into<BoxError>,
{
    let mut conn = Conn::new(io, settings, stop);
    loop {
        let head = match poll_fn(|cx| conn.poll_head(cx)).await {
            Ok(Some(head)) => head,
            Ok(None) => return conn.close().await,
            Err(Failed::Head(err)) => return conn.refuse(err).await,
            Err(Failed::Io(e)) => return Err(e),
        };
        match conn.exchange(head, &mut service).await? {
            Next::KeepAlive => {}
            Next::Close => return conn.close().await,
            Next::Switch(handover) => {
                // Nobody may take it (the service gave up): it is then dropped, closed.
                let Conn { io, rbuf, .. } = conn;
                handover.send(Box::new(io), rbuf.freeze());
                return Ok(());
            }
        }
    }
}

/// Why no request head was read.
enum Failed {
    Head(HeadError),
    Io(io::Error),
}

/// What follows a response.
enum Next {
    KeepAlive,
    Close,
    /// The socket goes to whoever holds the request's `OnUpgrade` (CONNECT, `Upgrade`).
    Switch(upgrade::Handover),
}

/// One connection's state between requests.
struct Conn<T> {
    io: ClientIo<T>,
    /// Bytes read and not yet consumed: the rest of a head, content, a pipelined request.
    rbuf: BytesMut,
    /// Bytes to write.
    out: Out,
    /// Scratch space for the parser.
    fields: Vec<FieldAt>,
    /// The client's field names, by position (it sends the same ones on every request).
    names: NameMemo,
    /// The last response's header map, cleared, for the next request (saves its allocation).
    headers: Option<HeaderMap>,
    /// The client sent EOF.
    read_eof: bool,
    settings: Settings,
    stop: Arc<AtomicBool>,
}

impl<T> Conn<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn new(io: ClientIo<T>, settings: Settings, stop: Arc<AtomicBool>) -> Self {
        Conn {
            io,
            rbuf: BytesMut::with_capacity(READ_SIZE),
            out: Out::default(),
            fields: Vec::new(),
            names: NameMemo::default(),
            headers: None,
            read_eof: false,
            settings,
            stop,
        }
    }

    /// Reads until a whole request head is buffered; `None`: the connection ends quietly
    /// (EOF between requests, or shutdown while idle).
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<read::Head>, Failed>> {
        loop {
            if !self.rbuf.is_empty() {
                let headers = self.headers.take().unwrap_or_default();
                match read::parse(
                    &mut self.rbuf,
                    self.settings.max_head,
                    headers,
                    &mut self.fields,
                    &mut self.names,
                ) {
                    Ok(Some(head)) => return Poll::Ready(Ok(Some(head))),
                    Ok(None) => {}
                    Err(err) => return Poll::Ready(Err(Failed::Head(err))),
                }
            }
            if self.stop.load(Ordering::Relaxed) {
                return Poll::Ready(Ok(None));
            }
            if self.read_eof {
                if self.rbuf.is_empty() {
                    return Poll::Ready(Ok(None));
                }
                return Poll::Ready(Err(Failed::Io(io::ErrorKind::UnexpectedEof.into())));
            }
            match self.poll_read(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Failed::Io(e))),
                Poll::Pending => {
                    if self.io.take_release() {
                        self.release();
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Lets go of the buffers while the connection awaits its next request (after
    /// `client_conn::RELEASE_AFTER`): 8 KiB to read, the write buffer, the parser's scratch
    /// and the reused header map. An idle keep-alive connection then holds only its task.
    fn release(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
        self.out.release();
        self.fields = Vec::new();
        self.headers = None;
    }

    /// One read into the buffer; EOF sets `read_eof`.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.rbuf.capacity() == 0 {
            return self.poll_read_released(cx);
        }
        if self.rbuf.capacity() - self.rbuf.len() < READ_SIZE / 2 {
            self.rbuf.reserve(READ_SIZE);
        }
        match poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf) {
            Poll::Ready(Ok(0)) => {
                self.read_eof = true;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// [`poll_read`](Self::poll_read) with no buffer (let go, `release`): into the stack, so
    /// a wakeup with nothing to read allocates nothing; bytes that come get a buffer again.
    #[inline(never)]
    fn poll_read_released(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut scratch = [0u8; READ_SIZE];
        let mut buf = ReadBuf::new(&mut scratch);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        let read = buf.filled();
        if read.is_empty() {
            self.read_eof = true;
        } else {
            self.rbuf = BytesMut::with_capacity(READ_SIZE);
            self.rbuf.extend_from_slice(read);
        }
        Poll::Ready(Ok(()))
    }

    /// Serves one request: the service's response, written while its content is fed.
    async fn exchange<S, F, B>(&mut self, head: read::Head, service: &mut S) -> io::Result<Next>
    where
        S: FnMut(Request<H1Body>) -> F,
        F: Future<Output = Response<B>>,
        B: Body<Data = Bytes> + HitHeadBody + Unpin,
        B::Error: Into<BoxError>,
    {
        let read::Head {
            method,
            uri,
            version,
            headers,
            framing,
            mut keep_alive,
            expect_continue,
            wants_upgrade,
        } = head;
        self.io.interim_for(version == Version::HTTP_11);
        let (body, mut feed) = match framing {
            Framing::None => (H1Body::empty(), None),
            framing => {
                let (body, feed) = body::channel(framing, self.settings.max_head, expect_continue);
                (body, Some(feed))
            }
        };
        let mut request = Request::new(body);
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri;
        *request.version_mut() = version;
        *request.headers_mut() = headers;
        let handover = wants_upgrade.then(|| {
            let (handover, on_upgrade) = upgrade::pair();
            request.extensions_mut().insert(on_upgrade);
            handover
        });
        // The content must be read to its end before the next request (or be cheap to
        // drain); otherwise the connection closes after this response. Content dropped unread
        // before the head is written also says so in the head (`Connection: close`, as hyper
        // did); a broken one does not.
        let mut unread = false;
        let mut broken = false;
        let response = {
            let mut pending = pin!(service(request));
            poll_fn(|cx| {
                if let Poll::Ready(response) = pending.as_mut().poll(cx) {
                    return Poll::Ready(response);
                }
                // Interim heads queued by the request path go out while it waits.
                let _ = self.io.poll_interim_while_busy(cx);
                if let Some(f) = feed.as_mut() {
                    match self.poll_feed(cx, f, false) {
                        Fed::Busy => {}
                        Fed::Done => feed = None,
                        Fed::Broken => {
                            broken = true;
                            feed = None;
                        }
                        Fed::Abandoned => {
                            unread = true;
                            feed = None;
                        }
                    }
                }
                if !self.out.is_empty() || self.out.unflushed {
                    let _ = self.poll_out(cx);
                }
                Poll::Pending
            })
            .await
        };
        let (mut parts, mut body) = response.into_parts();
        let length = if body.is_end_stream() {
            BodyLength::Empty
        } else {
            body.size_hint()
                .exact()
                .map_or(BodyLength::Unknown, BodyLength::Known)
        };
        keep_alive &= !unread && !self.stop.load(Ordering::Relaxed);
        let req = ForRequest { method: &method };
        let mut status = parts.status;
        // A plain cache hit brings its head as stored lines rather than a map.
        let written = if let Some(hit) = body.take_hit_head() {
            write::encode_hit_head(
                req,
                version,
                parts.version,
                status,
                &hit,
                length,
                keep_alive,
                &mut self.out.buf,
            )
        } else {
            let resp_version =
                write::enforce_version(version, parts.version, &mut parts.headers, &mut keep_alive);
            let reason = parts
                .extensions
                .get::<hyper::ext::ReasonPhrase>()
                .map(|r| r.as_bytes());
            if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
                // hyper answers a 1xx final response with a 500 (there is no body to send).
                status = StatusCode::INTERNAL_SERVER_ERROR;
                parts.headers.clear();
            }
            write::encode_head(
                req,
                resp_version,
                status,
                reason,
                &parts.headers,
                length,
                keep_alive,
                &mut self.out.buf,
            )
        };
        let encoded = match written {
            Ok(encoded) => encoded,
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        };
        parts.headers.clear();
        self.headers = Some(parts.headers);
        let mut writing = Writing {
            encoder: encoded.encoder,
            done: false,
        };
        // A body of length 0 that is not at its end yet is read to its end before the head
        // goes out (see `poll_response`): an upstream body filling the cache ends only once the
        // entry is committed, and the head is that response's whole message. Any other body
        // with nothing to send (HEAD, 204, 304, CONNECT) is not read.
        if length == BodyLength::Empty
            || (writing.encoder == Encoder::Length(0) && length != BodyLength::Known(0))
        {
            writing.done = true;
        }
        // The responses of one pass go out together (`crate::pass`).
        let mut pass = EndOfPass::default();
        poll_fn(|cx| {
            ready!(pass.poll(cx));
            if let Some(f) = feed.as_mut() {
                match self.poll_feed(cx, f, true) {
                    Fed::Busy => {}
                    Fed::Done => feed = None,
                    Fed::Broken | Fed::Abandoned => {
                        broken = true;
                        feed = None;
                    }
                }
            }
            self.poll_response(cx, &mut body, &mut writing)
        })
        .await?;
        drop(body);
        let switching = status == StatusCode::SWITCHING_PROTOCOLS
            || (method == Method::CONNECT && status.is_success());
        if switching {
            if let Some(handover) = handover {
                return Ok(Next::Switch(handover));
            }
        }
        // The response is out; content the body still wants is read before the next head.
        if let Some(mut f) = feed.take() {
            match poll_fn(|cx| match self.poll_feed(cx, &mut f, true) {
                Fed::Busy => Poll::Pending,
                done => Poll::Ready(done),
            })
            .await
            {
                Fed::Done => {}
                _ => broken = true,
            }
        }
        let closing = encoded.is_last
            || writing.encoder == Encoder::CloseDelimited
            || !keep_alive
            || broken
            || self.stop.load(Ordering::Relaxed);
        Ok(if closing {
            Next::Close
        } else {
            Next::KeepAlive
        })
    }

    /// Feeds the request body what it wants; `head_written`: too late for `100 Continue`.
    fn poll_feed(
        &mut self,
        cx: &mut Context<'_>,
        feed: &mut body::Feed,
        head_written: bool,
    ) -> Fed {
        loop {
            match feed.demand(cx) {
                body::Demand::Wait => return Fed::Busy,
                body::Demand::Dropped => return self.drain(cx, feed),
                body::Demand::Frame => {}
            }
            if feed.expect_continue {
                feed.expect_continue = false;
                if !head_written {
                    self.out.buf.extend_from_slice(CONTINUE);
                    let _ = self.poll_out(cx);
                }
            }
            match feed.decoder.decode(&mut self.rbuf) {
                Ok(Some(frame)) => {
                    feed.put(Ok(frame));
                    if feed.is_done() {
                        // The last frame is in the slot: nothing more to read.
                        return Fed::Done;
                    }
                }
                Ok(None) if feed.is_done() => {
                    feed.end();
                    return Fed::Done;
                }
                Ok(None) => {
                    if self.read_eof {
                        feed.put(Err(BodyError::Incomplete));
                        return Fed::Broken;
                    }
                    match self.poll_read(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => {
                            feed.put(Err(BodyError::Io(e)));
                            return Fed::Broken;
                        }
                        Poll::Pending => return Fed::Busy,
                    }
                }
                Err(e) => {
                    feed.put(Err(e));
                    return Fed::Broken;
                }
            }
        }
    }

    /// The body was dropped before its end: discards what is already buffered (and what one
    /// more read brings); anything still missing closes the connection after the response.
    fn drain(&mut self, cx: &mut Context<'_>, feed: &mut body::Feed) -> Fed {
        let mut read_once = false;
        loop {
            match feed.decoder.decode(&mut self.rbuf) {
                Ok(Some(_)) => continue,
                Ok(None) if feed.is_done() => return Fed::Done,
                Ok(None) if !read_once && !self.read_eof => {
                    read_once = true;
                    match self.poll_read(cx) {
                        Poll::Ready(Ok(())) => continue,
                        _ => return Fed::Abandoned,
                    }
                }
                _ => return Fed::Abandoned,
            }
        }
    }

    /// Answers a head that could not be read, then closes (hyper's automatic replies).
    async fn refuse(mut self, err: HeadError) -> io::Result<()> {
        if let Some(status) = err.status() {
            write::error_head(status, &mut self.out.buf);
            poll_fn(|cx| self.poll_out(cx)).await?;
            return self.close().await;
        }
        Ok(())
    }

    /// Ends the connection: what is queued goes out, then the lingering close.
    async fn close(mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_out(cx)).await?;
        poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)).await
    }
}

/// What feeding the request body came to.
#[derive(Debug, PartialEq, Eq)]
enum Fed {
    /// More is to come, or the body has not asked.
    Busy,
    /// The whole content was read.
    Done,
    /// The body was dropped before the end, and the rest is not at hand.
    Abandoned,
    /// The content is broken (bad chunk, read error, EOF before its end).
    Broken,
}

#[cfg(test)]
mod tests {
    use std::task::Waker;
    use std::time::Duration;

    use http_body_util::{BodyExt as _, Full};
    use tokio::io::{AsyncWriteExt as _, ReadBuf};

    use super::*;
    use crate::pass::CountWakes;
    use crate::proxy::client_conn::ConnActivity;

    /// What the client side of the connection can read now, without waiting.
    fn readable_now<T: AsyncRead + Unpin>(client: &mut T) -> Vec<u8> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut space = [0u8; 1024];
        let mut buf = ReadBuf::new(&mut space);
        match Pin::new(client).poll_read(&mut cx, &mut buf) {
            Poll::Ready(result) => {
                result.unwrap();
                buf.filled().to_vec()
            }
            Poll::Pending => Vec::new(),
        }
    }

    #[tokio::test]
    async fn the_response_is_written_at_the_end_of_the_runtimes_pass() {
        let (mut client, server) = tokio::io::duplex(4096);
        let wait = Duration::from_secs(5);
        let io = ClientIo::new(server, ConnActivity::new(wait, wait, wait));
        let respond = |_req: Request<H1Body>| async {
            Response::new(Full::new(Bytes::from_static(b"ok")).boxed())
        };
        let stop = Arc::new(AtomicBool::new(false));
        let settings = Settings { max_head: 8192 };
        let mut conn = pin!(serve(io, settings, stop, respond));
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .unwrap();
        let (wakes, waker) = CountWakes::waker();
        let mut cx = Context::from_waker(&waker);

        // First poll: the request is read and answered, but nothing is written yet; the
        // task is queued again behind the others of this pass.
        assert!(conn.as_mut().poll(&mut cx).is_pending());
        assert_eq!(wakes.count(), 1);
        assert_eq!(readable_now(&mut client), b"");

        // Second poll: the response goes out, and the connection waits for the next request.
        assert!(conn.as_mut().poll(&mut cx).is_pending());
        let written = String::from_utf8(readable_now(&mut client)).unwrap();
        assert!(written.starts_with("HTTP/1.1 200 OK\r\n"), "{written}");
        assert!(written.ends_with("\r\n\r\nok"), "{written}");
    }

    /// Sends a request for `path` and reads its head on `conn`.
    async fn request(
        client: &mut tokio::io::DuplexStream,
        conn: &mut Conn<tokio::io::DuplexStream>,
        path: &str,
    ) -> read::Head {
        let text = format!("GET {path} HTTP/1.1\r\nhost: a\r\n\r\n");
        client.write_all(text.as_bytes()).await.unwrap();
        let head = poll_fn(|cx| conn.poll_head(cx)).await;
        head.ok().flatten().expect("a request head")
    }

    /// After `RELEASE_AFTER` awaiting its next request, a connection holds no buffer (and not
    /// before: a busy one keeps its own); the next request is read as well as ever.
    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_lets_its_buffers_go_and_reads_on() {
        use crate::proxy::client_conn::RELEASE_AFTER;
        let (mut client, server) = tokio::io::duplex(4096);
        let (header, idle) = (Duration::from_secs(5), Duration::from_secs(60));
        let activity = ConnActivity::new(header, idle, idle);
        let io = ClientIo::new(server, Arc::clone(&activity));
        let stop = Arc::new(AtomicBool::new(false));
        let mut conn = Conn::new(io, Settings { max_head: 8192 }, stop);
        let head = request(&mut client, &mut conn, "/one").await;
        assert_eq!(head.uri, "/one");
        conn.headers = Some(head.headers); // as `exchange` hands a map back for reuse
        drop(activity.begin()); // served: the connection now awaits its next request

        let almost = RELEASE_AFTER - Duration::from_millis(10);
        let waited = tokio::time::timeout(almost, poll_fn(|cx| conn.poll_head(cx))).await;
        assert!(waited.is_err(), "no request came");
        assert!(
            conn.rbuf.capacity() >= READ_SIZE / 2,
            "kept before RELEASE_AFTER"
        );
        assert!(conn.headers.is_some() && conn.fields.capacity() > 0);

        let waited =
            tokio::time::timeout(Duration::from_millis(20), poll_fn(|cx| conn.poll_head(cx))).await;
        assert!(waited.is_err(), "no request came");
        assert_eq!(conn.rbuf.capacity(), 0, "the read buffer went");
        assert!(conn.headers.is_none() && conn.fields.capacity() == 0);
        assert_eq!(conn.out.buf.capacity(), 0);

        let head = request(&mut client, &mut conn, "/two").await;
        assert_eq!(head.uri, "/two");
        assert!(
            conn.rbuf.capacity() >= READ_SIZE / 2,
            "a buffer again (the head split off its front)"
        );
    }
}
