//! Reading a response head with `httparse`, and deciding how long its body is.
//!
//! The head's field values are slices of one frozen buffer (no copy per field). The body's
//! length follows RFC 9112 §6.3 as hyper's client decided it: no body after HEAD or for 1xx,
//! 204 and 304; chunked when `Transfer-Encoding` ends in chunked (it overrides
//! `Content-Length`, which is then removed and the connection not reused); otherwise the one
//! valid `Content-Length`, several differing or a bad one being an invalid response; otherwise
//! the body runs until the connection closes. Obsolete line folding, bad field names, more
//! than [`MAX_FIELDS`] fields or a head over the limit are invalid responses too.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

use crate::error::{Error, ErrorKind};
use crate::field_names::NameMemo;

/// Most fields a response head may have (hyper's default).
pub const MAX_FIELDS: usize = 100;

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes (0: no body).
    Length(u64),
    /// Chunked transfer coding (RFC 9112 §7.1).
    Chunked,
    /// Until the server closes the connection (§6.3 rule 8).
    Close,
}

/// A parsed final response head.
#[derive(Debug)]
pub struct Head {
    pub parts: http::response::Parts,
    pub framing: Framing,
    /// The server allows another request on this connection (RFC 9112 §9.3).
    pub keep_alive: bool,
}

/// What the buffered bytes hold.
#[derive(Debug)]
pub enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// An interim (1xx) response, already consumed from the buffer.
    Interim(http::response::Parts),
    /// The final response head, consumed from the buffer.
    Final(Head),
}

/// Where a field's name and value are in the head, to slice them once it is frozen.
#[derive(Debug, Clone, Copy)]
struct Indices {
    name: (usize, usize),
    value: (usize, usize),
}

/// Parses a response head from the front of `buf`, which may hold at most `max` bytes of it.
/// The fields go into `spare` (taken from it once a head is complete): an empty map whose
/// allocation is reused, the request's own (see `Message`); their names come through the
/// connection's `names`.
pub fn parse(
    buf: &mut BytesMut,
    method: &Method,
    max: usize,
    spare: &mut HeaderMap,
    names: &mut NameMemo,
) -> Result<Parsed, Error> {
    // Sized to the fields parsed: a fixed array of MAX_FIELDS would be zeroed on every parse.
    let mut indices: Vec<Indices> = Vec::new();
    let (len, code, reason, version) = {
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let mut response = httparse::Response::new(&mut []);
        let bytes: &[u8] = buf;
        match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            bytes,
            &mut fields,
        ) {
            Ok(httparse::Status::Complete(len)) => {
                let start = bytes.as_ptr() as usize;
                indices.reserve_exact(response.headers.len());
                indices.extend(response.headers.iter().map(|field| {
                    let name = field.name.as_ptr() as usize - start;
                    let value = field.value.as_ptr() as usize - start;
                    Indices {
                        name: (name, name + field.name.len()),
                        value: (value, value + field.value.len()),
                    }
                }));
                // An empty reason may be a literal outside the buffer.
                let reason = match response.reason {
                    Some(r) if !r.is_empty() => (r.as_ptr() as usize - start, r.len()),
                    _ => (0, 0),
                };
                (
                    len,
                    response.code.unwrap_or(0),
                    reason,
                    response.version.unwrap_or(1),
                )
            }
            Ok(httparse::Status::Partial) if buf.len() >= max => return Err(too_large()),
            Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
            Err(httparse::Error::TooManyHeaders) => return Err(too_large()),
            Err(httparse::Error::Status) => return Err(bad_status()),
            Err(e) => return Err(invalid(&e.to_string())),
        }
    };
    if len > max {
        return Err(too_large());
    }
    let status = StatusCode::from_u16(code).map_err(|_| bad_status())?;
    let interim = status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS;
    let head = buf.split_to(len).freeze();
    let mut headers = std::mem::take(spare);
    headers.reserve(indices.len());
    let mut keep_alive = version == 1;
    let mut close = false;
    // The framing fields, noted on the way so that none is looked up again.
    let mut lengths = Lengths::None;
    let mut coded = false;
    for (position, at) in indices.iter().enumerate() {
        let raw = &head[at.name.0..at.name.1];
        // An interim head's names would take the final heads' positions over (a server that
        // sends 103 before every response would have the memo parse both every time).
        let name = if interim {
            HeaderName::from_bytes(raw)
        } else {
            names.name(position, raw)
        }
        .map_err(|_| invalid("invalid field name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(at.value.0..at.value.1))
            .map_err(|_| invalid("invalid field value"))?;
        // RFC 9112 §9.3: "close" ends the connection after this response, whatever came
        // before or after it; an HTTP/1.0 server keeps it only with "keep-alive".
        if name == header::CONNECTION {
            // The usual value, answered without splitting it.
            let usual = value.as_bytes().eq_ignore_ascii_case(b"keep-alive");
            if close || (!usual && has_token(&value, "close")) {
                close = true;
                keep_alive = false;
            } else if !keep_alive {
                keep_alive = usual || has_token(&value, "keep-alive");
            }
        } else if name == header::CONTENT_LENGTH {
            lengths = lengths.and(&value);
        } else if name == header::TRANSFER_ENCODING {
            coded = true;
        }
        headers.append(name, value);
    }
    let mut response = http::Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = if version == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    // A reason phrase other than the usual one goes on to the client, as hyper kept it.
    let reason = &head[reason.0..reason.0 + reason.1];
    if status.canonical_reason().map(str::as_bytes) != Some(reason) {
        if let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(reason) {
            response.extensions_mut().insert(phrase);
        }
    }
    *response.headers_mut() = headers;
    let (mut parts, ()) = response.into_parts();
    if interim {
        return Ok(Parsed::Interim(parts));
    }
    let (framing, reusable) = framing(&mut parts, method, lengths, coded)?;
    Ok(Parsed::Final(Head {
        parts,
        framing,
        keep_alive: keep_alive && reusable,
    }))
}

/// What the `Content-Length` fields of a head said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lengths {
    None,
    /// One length (several fields or list members, all equal, count as one).
    One(u64),
    /// Differing or invalid values.
    Invalid,
}

impl Lengths {
    /// Adds one `Content-Length` field line.
    fn and(self, value: &HeaderValue) -> Self {
        let bytes = value.as_bytes();
        // The usual single value, without splitting.
        let parsed = match super::write::digits(bytes) {
            Some(n) => Self::One(n),
            None => super::write::content_length_list(bytes).map_or(Self::Invalid, Self::One),
        };
        match (self, parsed) {
            (Self::None, next) => next,
            (Self::One(a), Self::One(b)) if a == b => self,
            _ => Self::Invalid,
        }
    }
}

/// The body's length (RFC 9112 §6.3), and whether the connection may carry another exchange
/// after it.
fn framing(
    parts: &mut http::response::Parts,
    method: &Method,
    lengths: Lengths,
    coded: bool,
) -> Result<(Framing, bool), Error> {
    match parts.status.as_u16() {
        // The connection now speaks another protocol (never asked for here: refused later).
        101 => return Ok((Framing::Length(0), false)),
        // §6.3 rule 1: "Any response to a HEAD request and any response with a 1xx
        // (Informational), 204 (No Content), or 304 (Not Modified) status code is always
        // terminated by the first empty line after the header fields".
        204 | 304 => return Ok((Framing::Length(0), true)),
        _ if *method == Method::HEAD => return Ok((Framing::Length(0), true)),
        // Rule 2: a 2xx to CONNECT is a tunnel.
        200..=299 if *method == Method::CONNECT => return Ok((Framing::Length(0), false)),
        _ => {}
    }
    let headers = &mut parts.headers;
    if coded {
        // RFC 9112 §6.1: "A server MUST NOT send a response containing Transfer-Encoding
        // unless the corresponding request indicates HTTP/1.1 (or later minor revisions)";
        // an HTTP/1.0 response carrying it cannot be framed with confidence.
        if parts.version == Version::HTTP_10 {
            return Err(invalid("Transfer-Encoding in an HTTP/1.0 response"));
        }
        // Rule 3: "If a message is received with both a Transfer-Encoding and a
        // Content-Length header field, the Transfer-Encoding overrides the Content-Length.
        // ... An intermediary that chooses to forward the message MUST first remove the
        // received Content-Length field" and the connection is not reused (§9.3: such a
        // message "ought to be handled as an error").
        let smuggled = lengths != Lengths::None;
        if smuggled {
            headers.remove(header::CONTENT_LENGTH);
        }
        // Rule 4: chunked last is chunked; otherwise the body runs to the close.
        return Ok(if chunked_last(headers) {
            (Framing::Chunked, !smuggled)
        } else {
            (Framing::Close, false)
        });
    }
    match lengths {
        // Rule 8: read until the connection closes.
        Lengths::None => Ok((Framing::Close, false)),
        Lengths::One(len) => Ok((Framing::Length(len), true)),
        // Rule 5: several differing values, or an invalid one, make the response invalid.
        Lengths::Invalid => Err(invalid("invalid Content-Length")),
    }
}

/// RFC 9112 §6.3 rule 4: whether the final transfer coding is chunked.
pub fn chunked_last(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

/// Whether a comma-separated field value holds `token` (case-insensitive, RFC 9110 §5.6.1).
fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// The messages match what `upstream::client::classify_hyper` gave for hyper's errors.
pub fn too_large() -> Error {
    Error::new(
        ErrorKind::InvalidResponse,
        "the upstream's response header is too large (limits.max_response_header_size)",
    )
}

fn bad_status() -> Error {
    Error::new(
        ErrorKind::InvalidResponse,
        "the upstream sent an invalid status line",
    )
}

pub fn invalid(what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidResponse,
        format!("the upstream sent an invalid HTTP response ({what})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `parse` with a fresh map and memo, heads up to 1 KiB.
    fn parse_fresh(buf: &mut BytesMut, method: &Method) -> Result<Parsed, Error> {
        parse(
            buf,
            method,
            1024,
            &mut HeaderMap::new(),
            &mut NameMemo::default(),
        )
    }

    fn head(bytes: &[u8], method: &Method) -> Result<Head, Error> {
        let mut buf = BytesMut::from(bytes);
        match parse_fresh(&mut buf, method)? {
            Parsed::Final(head) => Ok(head),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn message_length_follows_rfc_9112_section_6_3() {
        let get = Method::GET;
        let h = head(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", &get).unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(5), true));
        let h = head(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            &Method::HEAD,
        )
        .unwrap();
        assert_eq!(h.framing, Framing::Length(0));
        for status in ["204 No Content", "304 Not Modified"] {
            let bytes = format!("HTTP/1.1 {status}\r\ncontent-length: 5\r\n\r\n");
            let h = head(bytes.as_bytes(), &get).unwrap();
            assert_eq!((h.framing, h.keep_alive), (Framing::Length(0), true));
        }
        let te_cl = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n";
        let h = head(te_cl, &get).unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));
        assert!(!h.parts.headers.contains_key(header::CONTENT_LENGTH));
        let gzip = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n";
        assert_eq!(head(gzip, &get).unwrap().framing, Framing::Close);
        let close = head(b"HTTP/1.1 200 OK\r\n\r\n", &get).unwrap();
        assert_eq!((close.framing, close.keep_alive), (Framing::Close, false));
        let two = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n";
        assert_eq!(
            head(two, &get).unwrap_err().kind(),
            ErrorKind::InvalidResponse
        );
        let same = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n";
        assert_eq!(head(same, &get).unwrap().framing, Framing::Length(5));
        let bad = b"HTTP/1.1 200 OK\r\ncontent-length: -5\r\n\r\n";
        assert!(head(bad, &get).is_err());
        let old_te = b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(head(old_te, &get).is_err());
    }

    #[test]
    fn keep_alive_follows_rfc_9112_section_9_3() {
        let get = Method::GET;
        let cl = "content-length: 0\r\n";
        let cases = [
            ("HTTP/1.1 200 OK\r\n", "", true),
            ("HTTP/1.1 200 OK\r\n", "connection: close\r\n", false),
            (
                "HTTP/1.1 200 OK\r\n",
                "connection: Keep-Alive, Close\r\n",
                false,
            ),
            ("HTTP/1.0 200 OK\r\n", "", false),
            ("HTTP/1.0 200 OK\r\n", "connection: keep-alive\r\n", true),
        ];
        for (line, field, reuse) in cases {
            let bytes = format!("{line}{cl}{field}\r\n");
            assert_eq!(
                head(bytes.as_bytes(), &get).unwrap().keep_alive,
                reuse,
                "{bytes}"
            );
        }
    }

    #[test]
    fn a_connections_responses_share_its_name_memo_and_interim_heads_leave_it_alone() {
        let ok = b"HTTP/1.1 200 OK\r\nServer: s\r\nX-Id: 1\r\nContent-Length: 0\r\n\r\n";
        let hints = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n";
        let mut names = NameMemo::default();
        let next = |bytes: &[u8], names: &mut NameMemo| {
            let mut buf = BytesMut::from(bytes);
            parse(&mut buf, &Method::GET, 1024, &mut HeaderMap::new(), names).unwrap()
        };
        for _ in 0..2 {
            match next(hints, &mut names) {
                Parsed::Interim(parts) => assert_eq!(parts.headers["link"], "</a.css>"),
                other => panic!("{other:?}"),
            }
            match next(ok, &mut names) {
                Parsed::Final(head) => {
                    assert_eq!(head.parts.headers["x-id"], "1");
                    assert_eq!(head.parts.headers["content-length"], "0");
                }
                other => panic!("{other:?}"),
            }
        }
        // The final heads' three names, not the interim head's one over its first position.
        assert_eq!(names.remembered(), 3);
        next(hints, &mut names);
        assert_eq!(names.remembered(), 3);
    }

    #[test]
    fn interim_heads_bad_heads_and_the_size_limit() {
        let mut buf =
            BytesMut::from(&b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1"[..]);
        match parse_fresh(&mut buf, &Method::GET).unwrap() {
            Parsed::Interim(parts) => assert_eq!(parts.status, 103),
            other => panic!("{other:?}"),
        }
        assert_eq!(&buf[..], b"HTTP/1.1");
        assert!(matches!(
            parse_fresh(&mut buf, &Method::GET),
            Ok(Parsed::Partial)
        ));
        let folded = b"HTTP/1.1 200 OK\r\nx-a: 1\r\n  2\r\ncontent-length: 0\r\n\r\n";
        assert!(head(folded, &Method::GET).is_err());
        assert!(head(b"HTTP/1.1 2000 OK\r\n\r\n", &Method::GET).is_err());
        let mut big = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
        big.extend_from_slice(&[b'x'; 2048]);
        let err = parse_fresh(&mut big, &Method::GET).unwrap_err();
        assert!(err.cause().contains("too large"), "{err}");
        let odd = head(
            b"HTTP/1.1 200 Fine\r\ncontent-length: 0\r\n\r\n",
            &Method::GET,
        )
        .unwrap();
        let phrase = odd
            .parts
            .extensions
            .get::<hyper::ext::ReasonPhrase>()
            .unwrap();
        assert_eq!(phrase.as_bytes(), b"Fine");
    }
}
