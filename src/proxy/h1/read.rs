//! Reading a request head: `httparse` over the connection's read buffer, then the RFC 9112
//! framing decisions hyper's server made (the body's length, persistence, `Expect`, upgrades).
//!
//! The head's bytes are frozen once and shared: the URI and every field value are slices of
//! them (as in hyper), so a head costs no copy. Errors carry the status hyper answered with
//! (400, 414, 431), so a client sees the same reply from either server.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Uri, Version};

use super::super::proxy_connection;
use crate::field_names::NameMemo;

/// Most field lines a head may carry (hyper's `DEFAULT_MAX_HEADERS`); more is 431.
pub const MAX_HEADERS: usize = 100;
/// The longest request target hyper takes; longer is 414.
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;

/// How the request's content is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No content (no Content-Length, no Transfer-Encoding, or a length of 0).
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head and what the connection must do with it.
#[derive(Debug)]
pub struct Head {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The request lets the connection persist (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request with content (RFC 9110 §10.1.1).
    pub expect_continue: bool,
    /// CONNECT, or an HTTP/1.1 `Upgrade`: the connection may be handed over.
    pub wants_upgrade: bool,
}

/// Why a head could not be read; [`HeadError::status`] is the reply, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Malformed request line or field, bad framing fields: 400.
    Malformed,
    /// The head (or its field count) is over the limit: 431.
    TooLarge,
    /// The request target is over hyper's limit: 414.
    UriTooLong,
    /// An HTTP/2 connection preface on an HTTP/1 port: closed without a reply.
    H2Preface,
}

impl HeadError {
    /// The status the client is answered with before the connection closes.
    pub fn status(self) -> Option<http::StatusCode> {
        match self {
            Self::Malformed => Some(http::StatusCode::BAD_REQUEST),
            Self::TooLarge => Some(http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
            Self::UriTooLong => Some(http::StatusCode::URI_TOO_LONG),
            Self::H2Preface => None,
        }
    }
}

/// Offsets of one field line in the head's bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct FieldAt {
    name: (usize, usize),
    value: (usize, usize),
}

/// Parses the head at the start of `buf`; `Ok(None)` when more bytes are needed. A complete
/// head is split off `buf` (what follows, a body or a pipelined request, stays). `headers` is
/// an empty map to fill (the connection reuses one), `fields` scratch space, `names` the
/// connection's memo of its client's field names.
pub fn parse(
    buf: &mut BytesMut,
    max_head: usize,
    headers: HeaderMap,
    fields: &mut Vec<FieldAt>,
    names: &mut NameMemo,
) -> Result<Option<Head>, HeadError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let bytes: &[u8] = buf;
    let parsed = httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, bytes, &mut slots);
    let (len, path, method, version) = match parsed {
        Ok(httparse::Status::Complete(len)) => {
            if len > max_head {
                return Err(HeadError::TooLarge);
            }
            let (Some(path), Some(method), Some(version)) = (req.path, req.method, req.version)
            else {
                return Err(HeadError::Malformed);
            };
            if path.len() > MAX_URI_LEN {
                return Err(HeadError::UriTooLong);
            }
            let method = Method::from_bytes(method.as_bytes()).map_err(|_| HeadError::Malformed)?;
            fields.clear();
            for field in req.headers.iter() {
                fields.push(FieldAt {
                    name: offsets(bytes, field.name.as_bytes()),
                    value: offsets(bytes, field.value),
                });
            }
            (len, offsets(bytes, path.as_bytes()), method, version)
        }
        Ok(httparse::Status::Partial) => {
            if buf.len() >= max_head {
                return Err(HeadError::TooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) if buf.starts_with(b"PRI * HTTP/2.0") => return Err(HeadError::H2Preface),
        Err(_) => return Err(HeadError::Malformed),
    };
    let head = buf.split_to(len).freeze();
    let uri =
        Uri::from_maybe_shared(head.slice(path.0..path.1)).map_err(|_| HeadError::Malformed)?;
    frame(head, method, uri, version == 1, headers, fields, names).map(Some)
}

/// Where `part` (a slice of `whole`) lies in it.
fn offsets(whole: &[u8], part: &[u8]) -> (usize, usize) {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    (start, start + part.len())
}

/// Builds the header map from the head's bytes and decides the framing, as hyper's
/// `Server::parse` does (RFC 9112 §6.1, §6.3, §9.3).
fn frame(
    head: Bytes,
    method: Method,
    uri: Uri,
    http11: bool,
    mut headers: HeaderMap,
    fields: &[FieldAt],
    names: &mut NameMemo,
) -> Result<Head, HeadError> {
    let mut framing = Framing::None;
    let mut keep_alive = http11;
    let mut saw_close = false;
    let mut expect_continue = false;
    let mut content_length: Option<u64> = None;
    let mut is_cl = false;
    let mut is_te = false;
    let mut is_te_chunked = false;
    let mut wants_upgrade = method == Method::CONNECT;
    headers.reserve(fields.len());
    for (position, at) in fields.iter().enumerate() {
        let (name_bytes, value_bytes) =
            (&head[at.name.0..at.name.1], &head[at.value.0..at.value.1]);
        // Every name goes through the memo, `Proxy-Connection` too: a position it skipped
        // would end the memo there for this client (forward-mode browsers send it early).
        let parsed = names
            .name(position, name_bytes)
            .map_err(|_| HeadError::Malformed)?;
        let name = if proxy_connection::means_keep_alive(name_bytes, value_bytes) {
            header::CONNECTION
        } else {
            parsed
        };
        // httparse checked the value's bytes.
        let value = HeaderValue::from_maybe_shared(head.slice(at.value.0..at.value.1))
            .map_err(|_| HeadError::Malformed)?;
        match name {
            header::TRANSFER_ENCODING => {
                // RFC 9112 §6.1: HTTP/1.0 has no transfer codings; hyper refuses them there.
                if !http11 {
                    return Err(HeadError::Malformed);
                }
                is_te = true;
                // A Transfer-Encoding overrides any Content-Length (§6.3 item 3); the
                // length field is dropped so nothing downstream trusts it.
                if is_cl && content_length.take().is_some() {
                    headers.remove(header::CONTENT_LENGTH);
                }
                is_te_chunked = last_is_chunked(&value);
                if is_te_chunked {
                    framing = Framing::Chunked;
                }
            }
            header::CONTENT_LENGTH => {
                is_cl = true;
                if is_te {
                    continue;
                }
                let len = digits(value.as_bytes()).ok_or(HeadError::Malformed)?;
                if let Some(prev) = content_length {
                    // §6.3 item 5: differing lengths are unrecoverable; equal ones are one.
                    if prev != len {
                        return Err(HeadError::Malformed);
                    }
                    continue;
                }
                framing = if len == 0 {
                    Framing::None
                } else {
                    Framing::Length(len)
                };
                content_length = Some(len);
            }
            header::CONNECTION => {
                if saw_close || has_token(&value, "close") {
                    saw_close = true;
                    keep_alive = false;
                } else if !keep_alive {
                    keep_alive = has_token(&value, "keep-alive");
                }
            }
            header::EXPECT => {
                expect_continue = value.as_bytes().eq_ignore_ascii_case(b"100-continue");
            }
            header::UPGRADE => wants_upgrade = http11,
            _ => {}
        }
        headers.append(name, value);
    }
    // §6.3 item 4: a Transfer-Encoding whose final coding is not chunked cannot be delimited.
    if is_te && !is_te_chunked {
        return Err(HeadError::Malformed);
    }
    // §6.1: a message with both may be an attempt at request smuggling; "the server MUST
    // close the connection after responding to such a request".
    if is_te && is_cl {
        keep_alive = false;
    }
    let version = if http11 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    Ok(Head {
        method,
        uri,
        version,
        headers,
        framing,
        keep_alive,
        expect_continue: expect_continue && http11 && framing != Framing::None,
        wants_upgrade,
    })
}

/// A decimal length with no sign, space or list (hyper's `from_digits`).
fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// True when the last transfer coding named is `chunked`.
pub fn last_is_chunked(value: &HeaderValue) -> bool {
    value
        .to_str()
        .ok()
        .and_then(|text| text.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

/// True when the comma-separated `value` names `token` (case-insensitively).
pub fn has_token(value: &HeaderValue, token: &str) -> bool {
    value.to_str().is_ok_and(|text| {
        text.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(text: &str) -> Result<Option<Head>, HeadError> {
        parse_at_most(&mut BytesMut::from(text.as_bytes()), 64 * 1024)
    }

    /// `parse` with fresh scratch space and a head limit of `max`.
    fn parse_at_most(buf: &mut BytesMut, max: usize) -> Result<Option<Head>, HeadError> {
        parse(
            buf,
            max,
            HeaderMap::new(),
            &mut Vec::new(),
            &mut NameMemo::default(),
        )
    }

    #[test]
    fn proxy_connection_keeps_its_position_in_the_name_memo() {
        let text =
            "GET / HTTP/1.1\r\nHost: x\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n";
        let mut names = NameMemo::default();
        for _ in 0..2 {
            let head = parse(
                &mut BytesMut::from(text.as_bytes()),
                1024,
                HeaderMap::new(),
                &mut Vec::new(),
                &mut names,
            )
            .unwrap()
            .unwrap();
            assert_eq!(head.headers["connection"], "keep-alive");
            assert!(!head.headers.contains_key("proxy-connection"));
            assert_eq!(head.headers["accept"], "*/*");
        }
        assert_eq!(
            names.remembered(),
            3,
            "the fields after it are remembered too"
        );
    }

    #[test]
    fn a_simple_head_is_parsed_and_leaves_what_follows() {
        let mut buf = BytesMut::from(&b"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\nGET /next"[..]);
        let head = parse_at_most(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.uri, "/a?b");
        assert_eq!(head.headers["host"], "x");
        assert_eq!(head.framing, Framing::None);
        assert!(head.keep_alive);
        assert_eq!(&buf[..], b"GET /next");
    }

    #[test]
    fn partial_heads_wait_and_oversized_ones_are_431() {
        assert!(parse_all("GET / HTTP/1.1\r\nHost: x\r\n")
            .unwrap()
            .is_none());
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: xxxxxxxxxxxxxxxxxxxx"[..]);
        let err = parse_at_most(&mut buf, 16).unwrap_err();
        assert_eq!(err, HeadError::TooLarge);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x{i}: y\r\n")).collect();
        let err = parse_all(&format!("GET / HTTP/1.1\r\n{many}\r\n")).unwrap_err();
        assert_eq!(err.status().unwrap(), 431);
    }

    #[test]
    fn framing_follows_rfc_9112_section_6() {
        let head = parse_all("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, Framing::Length(5));
        let head = parse_all("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, Framing::Length(5));
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHo st: x\r\n\r\n",
            "GET /\x01 HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse_all(bad).unwrap_err(), HeadError::Malformed, "{bad:?}");
        }
        // TE and CL: chunked wins, the length is dropped, and the connection closes after.
        let head =
            parse_all("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        assert!(!head.headers.contains_key("content-length"));
        assert!(!head.keep_alive);
    }

    #[test]
    fn persistence_and_expectations() {
        let head = parse_all("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!head.keep_alive);
        let head = parse_all("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.keep_alive);
        // A proxy's HTTP/1.0 clients ask with `Proxy-Connection` (`proxy_connection`).
        let head = parse_all("GET http://a/ HTTP/1.0\r\nProxy-Connection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.keep_alive);
        assert_eq!(head.headers["connection"], "Keep-Alive");
        assert!(!head.headers.contains_key("proxy-connection"));
        let head = parse_all("GET http://a/ HTTP/1.0\r\nProxy-Connection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.keep_alive);
        assert_eq!(head.headers["proxy-connection"], "close");
        let head =
            parse_all("GET / HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(!head.keep_alive);
        let head = parse_all("PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.expect_continue);
        let head = parse_all("GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.expect_continue, "no content, nothing to continue");
        let head = parse_all("CONNECT a:443 HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.wants_upgrade);
        let head = parse_all("GET / HTTP/1.0\r\nUpgrade: websocket\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.wants_upgrade);
    }
}
