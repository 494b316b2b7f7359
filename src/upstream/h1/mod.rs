//! Our own HTTP/1.1 client codec: one request and its response on one upstream connection,
//! with no task, channel or dispatcher between the proxy and the socket.
//!
//! hyper's `client::conn::http1` cost a miss ~19k instructions of dispatch (a connection task,
//! a request channel, a body channel and their wake-ups) around work that is small: write one
//! head, parse one head with `httparse`, slice the body out of the read buffer. Here the
//! request's own task does all of it: an [`Exchange`] writes the head ([`write`]) and, as the
//! client sends it, the body, while it reads the response head ([`read`], interim 1xx heads
//! going to the request's [`OnInformational`](super::informational::OnInformational)), within
//! the read timeout when the pool gives one (`upstream::read_deadline`, on a timer the
//! connection keeps); the response [`Body`] then reads straight off the connection and hands
//! it back to the pool through [`Keep`] the moment it ends cleanly (RFC 9112 §9.3: both sides
//! keep alive, the request was sent in full, nothing unexpected follows). The head waits for the end of the runtime's
//! pass (`crate::pass`), so the requests of connections that became ready together are
//! written together.
//!
//! Left to hyper (see `upstream::pool`): requests with `Upgrade` and CONNECT, whose
//! connection may switch protocols (`with_upgrades`), and HTTP/2.

mod body;
pub mod read;
pub mod write;

#[cfg(test)]
pub(crate) mod test_origin;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use http::header::{self, HeaderMap};
use http::{Method, Request, Response, Uri};
use hyper_util::client::legacy::connect::{Connected, HttpInfo};
use tokio::io::{AsyncRead as _, ReadBuf};

pub use body::Body;
use read::{Head, Parsed};
pub use write::Form;
use write::Writer;

use super::informational::OnInformational;
use super::read_deadline::ReadDeadline;
use super::request_body::RequestBody;
use super::stream::Counted;
use crate::error::{Error, ErrorKind};
use crate::field_names::NameMemo;
use crate::pass::EndOfPass;

/// First read size; doubled while reads fill it, up to [`MAX_READ`], halved after a read of
/// less than a quarter of it (as hyper's adaptive read buffer).
const FIRST_READ: usize = 8 * 1024;
const MAX_READ: usize = 128 * 1024;
/// An idle connection keeps at most this much read buffer: one that grew for a large body
/// gives it back when it goes idle.
const MAX_IDLE_BUFFER: usize = 2 * FIRST_READ;

/// An HTTP/1.1 connection to a server, idle or carrying one exchange.
#[derive(Debug)]
pub struct Connection {
    io: Counted,
    /// Bytes read and not yet consumed; empty whenever the connection is idle.
    buf: BytesMut,
    /// The next read's size.
    read_size: usize,
    /// The socket's addresses, for hyper when the connection is handed to it.
    info: Arc<Connected>,
    /// The server's address, read from `info` once, for each response's [`Body`].
    remote: Option<SocketAddr>,
    /// The field names this server sent, by position (it sends the same ones every time).
    names: NameMemo,
    /// The read timeout's timer, made by the first exchange that waits and kept for the next
    /// (`ReadDeadline::poll_expired`).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// What an idle connection goes back to: the pool that keeps it, under the request's URI.
pub trait Keep: Send + Sync + std::fmt::Debug {
    fn keep(&self, uri: &Uri, conn: Connection);
}

/// Where a response's connection returns once its body ended cleanly.
#[derive(Debug)]
pub struct Home {
    pub pool: Arc<dyn Keep>,
    pub uri: Uri,
}

/// A request ready to be written: its head encoded, its body framed.
#[derive(Debug)]
pub struct Message {
    /// Decides which responses have no body (RFC 9112 §6.3).
    method: Method,
    writer: Writer,
    /// We asked the server to close after this exchange (RFC 9112 §9.6).
    close: bool,
    /// The request's header map once its head is encoded, emptied: the response's fields are
    /// read into it, so a miss allocates no map for them and frees none for the request.
    spare: HeaderMap,
    on_informational: Option<OnInformational>,
    /// The head is written at the end of the runtime's pass (`crate::pass`).
    pass: EndOfPass,
}

impl Connection {
    /// A new connection over `io`.
    pub fn new(io: Counted, info: Arc<Connected>) -> Self {
        let mut extras = http::Extensions::new();
        info.get_extras(&mut extras);
        let remote = extras.get::<HttpInfo>().map(HttpInfo::remote_addr);
        Self {
            io,
            buf: BytesMut::new(),
            read_size: FIRST_READ,
            info,
            remote,
            names: NameMemo::default(),
            timer: None,
        }
    }

    /// The socket, for hyper (only ever taken from an idle connection: nothing is buffered).
    pub fn into_parts(self) -> (Counted, Arc<Connected>) {
        (self.io, self.info)
    }

    /// Whether an idle connection may still carry a request: the server has not closed it
    /// nor sent anything unasked (one non-blocking read that must find nothing).
    pub fn is_usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 1];
        let mut probe = ReadBuf::new(&mut byte);
        Pin::new(&mut self.io)
            .poll_read(&mut cx, &mut probe)
            .is_pending()
    }

    /// Reads more into the buffer; `0` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, Error>> {
        if self.buf.capacity() - self.buf.len() < self.read_size / 4 {
            self.buf.reserve(self.read_size);
        }
        let room = self.buf.capacity() - self.buf.len();
        let n = std::task::ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.buf
        ))
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidResponse,
                format!("upstream connection failed: {e}"),
            )
        })?;
        if n >= room && self.read_size < MAX_READ {
            self.read_size *= 2;
        } else if n < self.read_size / 4 && self.read_size > FIRST_READ {
            self.read_size /= 2;
        }
        Poll::Ready(Ok(n))
    }

    /// Lets go of a read buffer grown beyond what an idle connection keeps.
    fn trim(&mut self) {
        if self.buf.capacity() > MAX_IDLE_BUFFER {
            self.buf = BytesMut::new();
            self.read_size = FIRST_READ;
        }
    }
}

impl Message {
    /// Encodes `req` for `uri` (absolute; `req`'s own URI is not read) with its target in
    /// `form`; `Host` is already set. Interim responses go to `on_informational`, or to the
    /// one in `req`'s extensions.
    pub fn new(
        req: Request<RequestBody>,
        uri: &Uri,
        form: Form,
        on_informational: Option<OnInformational>,
    ) -> Self {
        let (mut parts, body) = req.into_parts();
        let encoder = write::frame_body(&parts.method, parts.version, &mut parts.headers, &body);
        let head = write::encode_head(&parts.method, uri, form, parts.version, &parts.headers);
        let close = parts.headers.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
        });
        let mut spare = parts.headers;
        spare.clear();
        Self {
            writer: Writer::new(head, body, encoder),
            close,
            spare,
            on_informational: on_informational
                .or_else(|| parts.extensions.remove::<OnInformational>()),
            method: parts.method,
            pass: EndOfPass::default(),
        }
    }
}

/// One request on its way over one connection: `msg` sent on `conn` while the response head
/// is read ([`poll_head`](Self::poll_head)); then the response, whose body streams from the
/// connection ([`into_response`](Self::into_response)). The caller's own future holds it: no
/// future of its own to be built and moved into the caller's.
///
/// Nothing is repeated here: a request that failed may have been received (whether another
/// next hop may get it is `upstream::retry`'s decision).
#[derive(Debug)]
pub struct Exchange {
    conn: Connection,
    msg: Message,
    /// The head (and the body, if the client sent it all) has gone out.
    written: bool,
}

impl Exchange {
    pub fn new(conn: Connection, msg: Message) -> Self {
        Self {
            conn,
            msg,
            written: false,
        }
    }

    /// Writes what it can and reads until the final response head (a head over `max_head`
    /// bytes is an error), within `deadline` if one is given.
    pub fn poll_head(
        &mut self,
        max_head: usize,
        deadline: Option<&ReadDeadline>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Head, Error>> {
        if !self.written {
            // The requests of one pass go out together (`crate::pass`). The task is polled
            // again at the end of this pass: no deadline to watch before that.
            std::task::ready!(self.msg.pass.poll(cx));
        }
        match exchange(
            &mut self.conn,
            &mut self.msg,
            &mut self.written,
            max_head,
            cx,
        ) {
            Poll::Pending => match deadline {
                Some(deadline) => deadline.poll_expired(&mut self.conn.timer, cx).map(Err),
                None => Poll::Pending,
            },
            done => done,
        }
    }

    /// The response to `head`, its body reading on from the connection, which goes `home`
    /// once the body ended cleanly.
    pub fn into_response(mut self, head: Head, home: Option<Home>) -> Response<Body> {
        super::read_deadline::release_waker(&mut self.conn.timer);
        let Head {
            parts,
            framing,
            keep_alive,
        } = head;
        let keep_alive = keep_alive && !self.msg.close;
        let writer = (!self.written).then_some(self.msg.writer);
        // The server's address rides on the body (`Body::remote_addr`), not in the
        // extensions: hyper-util's `HttpInfo` there cost each response a map and a boxed copy.
        let body = Body::new(self.conn, framing, writer, keep_alive, home);
        Response::from_parts(parts, body)
    }
}

/// One turn of an exchange (its pass over): writes what it can, reads until the final
/// response head.
fn exchange(
    conn: &mut Connection,
    msg: &mut Message,
    written: &mut bool,
    max_head: usize,
    cx: &mut Context<'_>,
) -> Poll<Result<Head, Error>> {
    if !*written {
        match msg.writer.poll(&mut conn.io, cx) {
            Poll::Ready(Ok(())) => *written = true,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
    }
    loop {
        if !conn.buf.is_empty() {
            match read::parse(
                &mut conn.buf,
                &msg.method,
                max_head,
                &mut msg.spare,
                &mut conn.names,
            )? {
                Parsed::Final(head) => return Poll::Ready(Ok(head)),
                Parsed::Interim(parts) => {
                    // RFC 9110 §15.2: a client "MUST be able to parse one or more 1xx
                    // responses received prior to a final response".
                    if let Some(on) = &msg.on_informational {
                        on.call(parts.status, &parts.headers);
                    }
                    continue;
                }
                Parsed::Partial => {}
            }
        }
        if std::task::ready!(conn.poll_fill(cx))? == 0 {
            return Poll::Ready(Err(Error::new(
                ErrorKind::InvalidResponse,
                "the upstream closed the connection before sending a complete response",
            )));
        }
    }
}
