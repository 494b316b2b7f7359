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
use crate::cache::serve::HitHead;
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
    status_line(version, status, reason, dst);
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
    let encoder = end_head(
        req, status, http10, body, wrote_len, wrote_date, encoder, dst,
    );
    let encoder = match (encoder, trailer_fields) {
        (Encoder::Chunked(_), Some(fields)) => Encoder::Chunked(Some(fields)),
        (encoder, _) => encoder,
    };
    Ok(Encoded { encoder, is_last })
}

/// The status line.
fn status_line(version: Version, status: StatusCode, reason: Option<&[u8]>, dst: &mut Vec<u8>) {
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
}

/// After the fields: the framing field the response had none of (`wrote_len` false), then
/// `Date` unless one was written, then the blank line. Returns how the body is framed.
#[allow(clippy::too_many_arguments)]
fn end_head(
    req: ForRequest<'_>,
    status: StatusCode,
    http10: bool,
    body: BodyLength,
    wrote_len: bool,
    wrote_date: bool,
    mut encoder: Encoder,
    dst: &mut Vec<u8>,
) -> Encoder {
    let method = req.method;
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
    encoder
}

/// Writes the head of a plain hit (`cache::serve::HitHead`) byte for byte as [`enforce_version`]
/// and [`encode_head`] write the map `caching::reply` would have built for it: the stored lines
/// with `Age` where the first stored one was, then the added fields, the `Connection` the
/// client's version and `keep_alive` call for, the framing and `Date`. The stored lines hold no
/// `Connection`, `Transfer-Encoding` or `Trailer` and at most one `Content-Length`
/// (`WireFields::of`), so they need no look.
#[allow(clippy::too_many_arguments)]
pub fn encode_hit_head(
    req: ForRequest<'_>,
    req_version: Version,
    resp_version: Version,
    status: StatusCode,
    hit: &HitHead,
    body: BodyLength,
    mut keep_alive: bool,
    dst: &mut Vec<u8>,
) -> Result<Encoded, InvalidHead> {
    // `enforce_version` on a map without `Connection`.
    let mut connection: Option<&[u8]> = None;
    let version = if req_version == Version::HTTP_10 {
        match resp_version {
            Version::HTTP_10 => keep_alive = false,
            Version::HTTP_11 if keep_alive => connection = Some(b"connection: keep-alive\r\n"),
            _ => {}
        }
        Version::HTTP_10
    } else {
        if !keep_alive {
            connection = Some(b"connection: close\r\n");
        }
        if resp_version == Version::HTTP_10 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        }
    };
    let method = req.method;
    let fields = &hit.fields;
    let lines = fields.lines();
    dst.reserve(lines.len() + 200);
    status_line(version, status, None, dst);
    let http10 = version == Version::HTTP_10;
    let mut encoder = Encoder::Length(0);
    let mut wrote_len = false;
    // The stored Content-Length line, written in place or left out as `encode_head` does.
    let (length_line, write_length) = match fields.length() {
        None => (lines.len()..lines.len(), false),
        Some((line, value)) => {
            let write = match body {
                BodyLength::Empty => *method == Method::HEAD,
                BodyLength::Known(len) => {
                    encoder = Encoder::Length(len);
                    true
                }
                BodyLength::Unknown => {
                    let Some(len) = digits(value) else {
                        return Err(InvalidHead);
                    };
                    encoder = Encoder::Length(len);
                    true
                }
            };
            wrote_len = write;
            (line, write)
        }
    };
    let age_at = fields.age_at();
    let put = |dst: &mut Vec<u8>, range: std::ops::Range<usize>| {
        if let Some(bytes) = lines.get(range) {
            dst.extend_from_slice(bytes);
        }
    };
    let age = |dst: &mut Vec<u8>| {
        dst.extend_from_slice(b"age: ");
        dst.extend_from_slice(hit.age.as_bytes());
        dst.extend_from_slice(b"\r\n");
    };
    let length = |dst: &mut Vec<u8>| {
        if write_length {
            put(dst, length_line.clone());
        }
    };
    // The Age position is never inside the Content-Length line.
    if age_at <= length_line.start {
        put(dst, 0..age_at);
        age(dst);
        put(dst, age_at..length_line.start);
        length(dst);
        put(dst, length_line.end..lines.len());
    } else {
        put(dst, 0..length_line.start);
        length(dst);
        put(dst, length_line.end..age_at);
        age(dst);
        put(dst, age_at..lines.len());
    }
    for (name, value) in hit.added.iter().flatten() {
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    if let Some(line) = connection {
        dst.extend_from_slice(line);
    }
    let is_last = !keep_alive;
    let encoder = end_head(
        req,
        status,
        http10,
        body,
        wrote_len,
        fields.has_date(),
        encoder,
        dst,
    );
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

    /// A plain hit's head written from its stored lines is byte for byte the head written
    /// from the map the hit would otherwise build (stored fields with `Age` in the first stored
    /// one's place, then the added fields), for every client version, connection wish, method
    /// and body length, with and without a stored `Age`, `Content-Length` and `Date`.
    #[test]
    fn a_hit_head_from_lines_is_the_head_from_the_map() {
        use crate::cache::meta::{StoredFields, WireFields};
        let stored_sets: [&[(&str, &str)]; 5] = [
            &[("cache-control", "max-age=60"), ("content-type", "a/b")],
            &[
                ("age", "9"),
                ("content-length", "5"),
                ("date", "D0"),
                ("x-obs", "caf\u{e9}"),
            ],
            &[
                ("content-length", "5"),
                ("etag", "\"e\""),
                ("age", "1"),
                ("age", "2"),
                ("x-a", "1"),
                ("x-a", "2"),
            ],
            &[("date", "D1"), ("content-length", "0")],
            &[],
        ];
        for stored in stored_sets {
            let mut map = HeaderMap::new();
            for (name, value) in stored {
                map.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_bytes(value.as_bytes()).unwrap(),
                );
            }
            let fields = StoredFields::from_map(&map);
            let wire = WireFields::of(&fields).unwrap();
            let age = HeaderValue::from_static("42");
            let added = [
                Some((header::VIA, HeaderValue::from_static("1.1 us"))),
                Some((
                    HeaderName::from_static("cache-status"),
                    HeaderValue::from_static("us; hit"),
                )),
                None,
            ];
            let hit = HitHead {
                fields: wire,
                age: age.clone(),
                added: added.clone(),
            };
            for method in [Method::GET, Method::HEAD] {
                for req_version in [Version::HTTP_10, Version::HTTP_11] {
                    for keep_alive in [true, false] {
                        for body in [
                            BodyLength::Empty,
                            BodyLength::Known(5),
                            BodyLength::Known(0),
                            BodyLength::Unknown,
                        ] {
                            let (mut served, _) = fields.to_served_map(age.clone(), 2, |_| false);
                            for (name, value) in added.iter().flatten() {
                                served.append(name.clone(), value.clone());
                            }
                            // What the access log reads off the response is the same too.
                            let map_len: usize = served
                                .iter()
                                .map(|(n, v)| n.as_str().len() + v.len() + 4)
                                .sum();
                            assert_eq!(hit.fields_len(), map_len, "{stored:?}");
                            assert_eq!(
                                hit.content_type(),
                                served.get(header::CONTENT_TYPE).cloned()
                            );
                            let mut ka = keep_alive;
                            let version = enforce_version(
                                req_version,
                                Version::HTTP_11,
                                &mut served,
                                &mut ka,
                            );
                            let req = ForRequest { method: &method };
                            let mut want = Vec::new();
                            let from_map = encode_head(
                                req,
                                version,
                                StatusCode::OK,
                                None,
                                &served,
                                body,
                                ka,
                                &mut want,
                            );
                            let mut got = Vec::new();
                            let from_lines = encode_hit_head(
                                req,
                                req_version,
                                Version::HTTP_11,
                                StatusCode::OK,
                                &hit,
                                body,
                                keep_alive,
                                &mut got,
                            );
                            let case = format!(
                                "{stored:?} {method} {req_version:?} {keep_alive} {body:?}"
                            );
                            // `Date` is the clock's when none was stored: one second apart at most.
                            let text = |b: &[u8]| {
                                String::from_utf8_lossy(b)
                                    .lines()
                                    .map(|l| {
                                        if l.starts_with("date: ") && !l.starts_with("date: D") {
                                            "date: now".to_owned()
                                        } else {
                                            l.to_owned()
                                        }
                                    })
                                    .collect::<Vec<_>>()
                            };
                            assert_eq!(text(&got), text(&want), "{case}");
                            match (from_map, from_lines) {
                                (Ok(a), Ok(b)) => {
                                    assert_eq!(a.encoder, b.encoder, "{case}");
                                    assert_eq!(a.is_last, b.is_last, "{case}");
                                }
                                (Err(_), Err(_)) => {}
                                (a, b) => panic!("{case}: {a:?} vs {b:?}"),
                            }
                        }
                    }
                }
            }
        }
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
