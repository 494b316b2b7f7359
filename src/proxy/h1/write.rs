//! Writing a response head and framing its body, byte for byte as hyper's HTTP/1 server did
//! (`Server::encode`): lower-case field names in the map's order, repeated `Connection`,
//! `Transfer-Encoding` and `Trailer` lines joined, `Content-Length` when the body's size is
//! exact, chunked when it is not (HTTP/1.1), close-delimited on HTTP/1.0, no body on `HEAD`,
//! 1xx, 204, 304 and a 2xx to CONNECT (RFC 9112 §6.3, RFC 9110 §9.3.6), and `Date` when the
//! response has none (RFC 9110 §6.6.1).

use std::cell::RefCell;
use std::time::UNIX_EPOCH;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

use super::read::{has_token, last_is_chunked};
use crate::clock::Clock as _;

/// What the body's `size_hint` and `is_end_stream` say about its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// The body is already at its end.
    Empty,
    Known(u64),
    Unknown,
}

/// How the body bytes go on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoder {
    /// Exactly this many bytes still (0: nothing is written).
    Length(u64),
    /// Chunked, with the trailer fields the `Trailer` field announced.
    Chunked(Option<Vec<HeaderName>>),
    /// Until the connection closes.
    CloseDelimited,
}

/// A head written into the output buffer: how to frame the body and whether the connection
/// ends after this response.
#[derive(Debug)]
pub struct Encoded {
    pub encoder: Encoder,
    pub is_last: bool,
}

/// The head could not be written (contradictory framing fields): hyper then wrote nothing
/// and closed the connection.
#[derive(Debug, thiserror::Error)]
#[error("invalid response framing fields")]
pub struct InvalidHead;

/// The request facts the response head depends on.
#[derive(Debug, Clone, Copy)]
pub struct ForRequest<'a> {
    pub method: &'a Method,
}

/// Adjusts persistence fields for the client's version (hyper's `enforce_version`); returns
/// the version of the status line. `keep_alive` is the connection's wish so far.
pub fn enforce_version(
    req_version: Version,
    resp_version: Version,
    headers: &mut HeaderMap,
    keep_alive: &mut bool,
) -> Version {
    if req_version == Version::HTTP_10 {
        let says_keep_alive = headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v, "keep-alive"));
        if !says_keep_alive {
            match resp_version {
                Version::HTTP_10 => *keep_alive = false,
                Version::HTTP_11 if *keep_alive => {
                    headers.append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
                }
                _ => {}
            }
        }
        return Version::HTTP_10;
    }
    if !*keep_alive
        && !headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v, "close"))
    {
        headers.append(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if resp_version == Version::HTTP_10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    }
}

/// A body may follow the head.
/// Writes one value of a field the encoder reads (framing, `Connection`, `Trailer`): the start of
/// its line, or a further value of the line already open for that name, joined with ", " as one
/// combined field line (RFC 9110 §5.3).
fn fold_into(dst: &mut Vec<u8>, continues: bool, line_start: &[u8], value: &HeaderValue) {
    dst.extend_from_slice(if continues { b", " } else { line_start });
    dst.extend_from_slice(value.as_bytes());
}

fn can_chunk(method: &Method, status: StatusCode) -> bool {
    if *method == Method::HEAD
        || (*method == Method::CONNECT && status.is_success())
        || status.is_informational()
    {
        return false;
    }
    !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
}

/// The head may carry a `Content-Length`.
fn can_have_length(method: &Method, status: StatusCode) -> bool {
    if status.is_informational() || (*method == Method::CONNECT && status.is_success()) {
        return false;
    }
    !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
}

/// Writes the status line and fields of a response into `dst`.
// The arguments are the parts of the response head, borrowed separately from the `Parts` the
// caller keeps (its header map is reused for the next request).
#[allow(clippy::too_many_lines, clippy::too_many_arguments)]
pub fn encode_head(
    req: ForRequest<'_>,
    version: Version,
    status: StatusCode,
    reason: Option<&[u8]>,
    headers: &HeaderMap,
    body: BodyLength,
    keep_alive: bool,
    dst: &mut Vec<u8>,
) -> Result<Encoded, InvalidHead> {
    let method = req.method;
    let mut wrote_len = false;
    let mut is_last = !keep_alive;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        is_last = true;
    } else if *method == Method::CONNECT && status.is_success() {
        // RFC 9110 §9.3.6: "A server MUST NOT send any Transfer-Encoding or Content-Length
        // header fields in a 2xx (Successful) response to CONNECT."
        wrote_len = true;
        is_last = true;
    }
    dst.reserve(30 + headers.len() * 30);
    if version == Version::HTTP_11 && status == StatusCode::OK && reason.is_none() {
        dst.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        dst.extend_from_slice(if version == Version::HTTP_10 {
            b"HTTP/1.0 "
        } else {
            b"HTTP/1.1 "
        });
        dst.extend_from_slice(status.as_str().as_bytes());
        dst.push(b' ');
        match reason {
            Some(reason) => dst.extend_from_slice(reason),
            None => dst.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes()),
        }
        dst.extend_from_slice(b"\r\n");
    }
    let http10 = version == Version::HTTP_10;
    let mut encoder = Encoder::Length(0);
    let mut trailer_fields: Option<Vec<HeaderName>> = None;
    let mut wrote_date = false;
    // A joined line is open (its CRLF not yet written), and whether it must end in chunked.
    let mut open: Option<&HeaderName> = None;
    let mut must_chunk = false;
    let mut prev_len: Option<u64> = None;
    let close_open = |dst: &mut Vec<u8>, open: &mut Option<&HeaderName>, must_chunk: bool| {
        if open.take().is_some() {
            dst.extend_from_slice(if must_chunk {
                b", chunked\r\n"
            } else {
                b"\r\n"
            });
        }
    };
    for (name, value) in headers {
        let continues = open.is_some_and(|o| o == name);
        if !continues {
            close_open(dst, &mut open, must_chunk);
        }
        match *name {
            header::CONTENT_LENGTH => {
                if wrote_len && !continues {
                    return Err(InvalidHead);
                }
                let len = match body {
                    BodyLength::Empty => {
                        if *method != Method::HEAD {
                            continue;
                        }
                        // A HEAD response keeps the length a GET would have had.
                        wrote_len = true;
                        None
                    }
                    BodyLength::Known(_) if continues => continue,
                    BodyLength::Known(len) => Some(len),
                    BodyLength::Unknown => {
                        let Some(len) = digits(value.as_bytes()) else {
                            return Err(InvalidHead);
                        };
                        if let Some(prev) = prev_len {
                            if prev != len {
                                return Err(InvalidHead);
                            }
                            continue;
                        }
                        prev_len = Some(len);
                        Some(len)
                    }
                };
                if let Some(len) = len {
                    encoder = Encoder::Length(len);
                    wrote_len = true;
                    open = Some(name);
                    must_chunk = false;
                    fold_into(dst, false, b"content-length: ", value);
                    continue;
                }
            }
            header::TRANSFER_ENCODING => {
                if wrote_len && !continues {
                    return Err(InvalidHead);
                }
                if http10 || !can_chunk(method, status) {
                    continue;
                }
                wrote_len = true;
                must_chunk = !last_is_chunked(value);
                if !continues {
                    encoder = Encoder::Chunked(None);
                    open = Some(name);
                }
                fold_into(dst, continues, b"transfer-encoding: ", value);
                continue;
            }
            header::CONNECTION => {
                if !is_last && has_token(value, "close") {
                    is_last = true;
                }
                if !continues {
                    open = Some(name);
                    must_chunk = false;
                }
                fold_into(dst, continues, b"connection: ", value);
                continue;
            }
            header::DATE => wrote_date = true,
            header::TRAILER => {
                if http10 || !can_chunk(method, status) {
                    continue;
                }
                if !continues {
                    open = Some(name);
                    must_chunk = false;
                }
                fold_into(dst, continues, b"trailer: ", value);
                if let Ok(text) = value.to_str() {
                    let names = text
                        .split(',')
                        .filter_map(|s| HeaderName::from_bytes(s.trim().as_bytes()).ok());
                    trailer_fields.get_or_insert_with(Vec::new).extend(names);
                }
                continue;
            }
            _ => {}
        }
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    close_open(dst, &mut open, must_chunk);
    if !wrote_len {
        encoder = match body {
            BodyLength::Unknown => {
                if http10 || !can_chunk(method, status) {
                    Encoder::CloseDelimited
                } else {
                    dst.extend_from_slice(b"transfer-encoding: chunked\r\n");
                    Encoder::Chunked(None)
                }
            }
            BodyLength::Empty | BodyLength::Known(0) => {
                if can_have_length(method, status) && *method != Method::HEAD {
                    dst.extend_from_slice(b"content-length: 0\r\n");
                }
                Encoder::Length(0)
            }
            BodyLength::Known(len) => {
                if can_have_length(method, status) {
                    dst.extend_from_slice(b"content-length: ");
                    dst.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
                    dst.extend_from_slice(b"\r\n");
                    Encoder::Length(len)
                } else {
                    Encoder::Length(0)
                }
            }
        };
    }
    if !can_chunk(method, status) {
        encoder = Encoder::Length(0);
    }
    if wrote_date {
        dst.extend_from_slice(b"\r\n");
    } else {
        dst.extend_from_slice(b"date: ");
        DATE.with(|date| date.borrow_mut().extend(dst));
        dst.extend_from_slice(b"\r\n\r\n");
    }
    if let (Encoder::Chunked(allowed), Some(fields)) = (&mut encoder, trailer_fields) {
        *allowed = Some(fields);
    }
    Ok(Encoded { encoder, is_last })
}

/// The head hyper answered a request it could not parse with.
pub fn error_head(status: StatusCode, dst: &mut Vec<u8>) {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    let req = ForRequest {
        method: &Method::GET,
    };
    // A fixed, valid head: this cannot fail.
    let _ = encode_head(
        req,
        Version::HTTP_11,
        status,
        None,
        &headers,
        BodyLength::Empty,
        false,
        dst,
    );
}

/// The trailer section of a chunked body: the fields `Trailer` announced, or none.
pub fn encode_trailers(allowed: Option<&[HeaderName]>, trailers: &HeaderMap, dst: &mut Vec<u8>) {
    dst.extend_from_slice(b"0\r\n");
    if let Some(allowed) = allowed {
        for (name, value) in trailers {
            if allowed.contains(name) && is_valid_trailer(name) {
                dst.extend_from_slice(name.as_str().as_bytes());
                dst.extend_from_slice(b": ");
                dst.extend_from_slice(value.as_bytes());
                dst.extend_from_slice(b"\r\n");
            }
        }
    }
    dst.extend_from_slice(b"\r\n");
}

/// RFC 9110 §6.5.1: framing, routing and control fields never go in a trailer section.
fn is_valid_trailer(name: &HeaderName) -> bool {
    !matches!(
        *name,
        header::AUTHORIZATION
            | header::CACHE_CONTROL
            | header::CONTENT_ENCODING
            | header::CONTENT_LENGTH
            | header::CONTENT_RANGE
            | header::CONTENT_TYPE
            | header::HOST
            | header::MAX_FORWARDS
            | header::SET_COOKIE
            | header::TRAILER
            | header::TRANSFER_ENCODING
            | header::TE
    )
}

/// A decimal length (see `read`).
fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// An IMF-fixdate is always this long.
const DATE_LEN: usize = 29;

thread_local! {
    /// The `Date` value, formatted once per second per thread (as hyper does).
    static DATE: RefCell<CachedDate> = const { RefCell::new(CachedDate { second: u64::MAX, text: [0; DATE_LEN] }) };
}

/// The current second's HTTP date.
#[derive(Debug)]
struct CachedDate {
    second: u64,
    text: [u8; DATE_LEN],
}

impl CachedDate {
    fn extend(&mut self, dst: &mut Vec<u8>) {
        let now = crate::clock::SystemClock.now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == DATE_LEN {
                self.text.copy_from_slice(text.as_bytes());
                self.second = second;
            } else {
                dst.extend_from_slice(text.as_bytes());
                return;
            }
        }
        dst.extend_from_slice(&self.text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(
        method: &Method,
        req_version: Version,
        status: u16,
        fields: &[(&str, &str)],
        body: BodyLength,
    ) -> (String, Encoded) {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers.insert(header::DATE, HeaderValue::from_static("D"));
        let mut keep_alive = true;
        let version = enforce_version(req_version, Version::HTTP_11, &mut headers, &mut keep_alive);
        let mut dst = Vec::new();
        let req = ForRequest { method };
        let status = StatusCode::from_u16(status).unwrap();
        let encoded = encode_head(
            req, version, status, None, &headers, body, keep_alive, &mut dst,
        )
        .unwrap();
        (String::from_utf8(dst).unwrap(), encoded)
    }

    #[test]
    fn exact_bodies_get_a_length_and_unknown_ones_chunks() {
        let (text, enc) = head(
            &Method::GET,
            Version::HTTP_11,
            200,
            &[],
            BodyLength::Known(5),
        );
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ndate: D\r\ncontent-length: 5\r\n\r\n"
        );
        assert_eq!(enc.encoder, Encoder::Length(5));
        let (text, enc) = head(
            &Method::GET,
            Version::HTTP_11,
            200,
            &[],
            BodyLength::Unknown,
        );
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        assert_eq!(enc.encoder, Encoder::Chunked(None));
        let (text, enc) = head(
            &Method::GET,
            Version::HTTP_10,
            200,
            &[],
            BodyLength::Unknown,
        );
        assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
        assert!(!text.contains("transfer-encoding"), "{text}");
        assert_eq!(enc.encoder, Encoder::CloseDelimited);
    }

    #[test]
    fn bodiless_statuses_and_head() {
        for status in [204, 304] {
            let (text, enc) = head(
                &Method::GET,
                Version::HTTP_11,
                status,
                &[],
                BodyLength::Empty,
            );
            assert!(!text.contains("content-length"), "{text}");
            assert_eq!(enc.encoder, Encoder::Length(0));
        }
        let (text, enc) = head(
            &Method::HEAD,
            Version::HTTP_11,
            200,
            &[],
            BodyLength::Known(7),
        );
        assert!(text.contains("content-length: 7"), "{text}");
        assert_eq!(enc.encoder, Encoder::Length(0));
        let (text, _) = head(&Method::GET, Version::HTTP_11, 404, &[], BodyLength::Empty);
        assert!(text.contains("content-length: 0"), "{text}");
    }

    #[test]
    fn joined_lines_and_a_missing_final_chunked() {
        let fields = [
            ("connection", "x"),
            ("connection", "close"),
            ("transfer-encoding", "gzip"),
        ];
        let (text, enc) = head(
            &Method::GET,
            Version::HTTP_11,
            200,
            &fields,
            BodyLength::Unknown,
        );
        assert!(text.contains("connection: x, close\r\n"), "{text}");
        assert!(
            text.contains("transfer-encoding: gzip, chunked\r\n"),
            "{text}"
        );
        assert!(enc.is_last);
    }
}
