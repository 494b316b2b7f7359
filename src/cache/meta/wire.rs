//! A stored head's field lines as an HTTP/1 server writes them, for plain hits.
//!
//! A hit's head is the stored fields in their stored order with the few a cache adds (RFC 9111
//! §5.1 `Age`, RFC 9110 §7.6.3 `Via`, RFC 9211 `Cache-Status`). Rebuilding a `HeaderMap` from
//! the compact stored form and encoding it again costs more than the rest of a small hit, so
//! the first hit on a head keeps its field lines here, as bytes, and an HTTP/1 hit copies them
//! with only the per-hit fields spliced in (`proxy::h1::write::encode_hit_head`). A head with a
//! field that the writer or the cache must look at one by one has no wire form: it is served
//! from the map as before (see [`WireFields::of`]).

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use http::header::HeaderValue;

use super::{StoredFields, SOFT_PURGE_MARK};

/// The field lines of a stored head, `name: value\r\n` each, in the stored order, without its
/// `Age` fields (a hit sends its own, where the first stored one was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireFields {
    lines: Bytes,
    /// Where in `lines` the `Age` line goes: where the first stored `Age` was, else the end.
    age_at: u32,
    /// The stored `Content-Length` line (there is at most one) as a range of `lines`, and
    /// where its value starts (it ends before the line's CRLF); `(0, 0, 0)`: none.
    length: (u32, u32, u32),
    /// A `Date` was stored (then the writer adds none, RFC 9110 §6.6.1).
    date: bool,
    /// Some field has a name the `http` crate has no constant for (tag fields are such names).
    custom: bool,
    /// An `X-Cache` was stored (Squid's field, replaced by ours when that is configured).
    x_cache: bool,
    /// The first `Content-Type` value, as a range of `lines` (empty: none).
    content_type: (u32, u32),
}

/// Names whose stored lines the HTTP/1 writer or the cache treats one by one: framing and
/// connection fields (RFC 9112 §6, §9.6; `Trailer`, RFC 9110 §6.6.2), and those a hit merges
/// its own into (RFC 9110 §7.6.3 `Via`, RFC 9211 `Cache-Status`) or never sends (the
/// soft-purge mark). A head with one of them is served from the map.
const BY_FIELD: [&[u8]; 6] = [
    b"connection",
    b"transfer-encoding",
    b"trailer",
    b"via",
    b"cache-status",
    SOFT_PURGE_MARK.as_bytes(),
];

impl WireFields {
    /// The wire form of `fields`, or `None` when one of them must be handled field by field
    /// (see [`BY_FIELD`]), there is more than one `Content-Length`, or a name comes back after
    /// another (a `HeaderMap`, which the map path builds, groups a name's lines together).
    pub fn of(fields: &StoredFields) -> Option<Self> {
        // Exactly the lines' size: the buffer is kept for as long as the entry.
        let size: usize = fields
            .iter_named()
            .filter(|(name, _, _)| *name != b"age")
            .map(|(name, value, _)| name.len() + value.len() + 4)
            .sum();
        let mut lines = BytesMut::with_capacity(size);
        let mut age_at = None;
        let mut length = None;
        let mut date = false;
        let mut custom = false;
        let mut x_cache = false;
        let mut content_type = None;
        let at = |n: usize| u32::try_from(n).ok();
        let mut seen: Vec<&[u8]> = Vec::with_capacity(fields.len());
        for (name, value, is_custom) in fields.iter_named() {
            if seen.last() != Some(&name) {
                if seen.contains(&name) {
                    return None;
                }
                seen.push(name);
            }
            if BY_FIELD.contains(&name) {
                return None;
            }
            match name {
                b"age" => {
                    if age_at.is_none() {
                        age_at = Some(at(lines.len())?);
                    }
                    continue;
                }
                b"content-length" => {
                    if length.is_some() {
                        return None;
                    }
                    let start = lines.len();
                    let value_start = start + name.len() + 2;
                    let end = value_start + value.len() + 2;
                    length = Some((at(start)?, at(end)?, at(value_start)?));
                }
                b"date" => date = true,
                b"x-cache" => x_cache = true,
                b"content-type" if content_type.is_none() => {
                    let start = lines.len() + name.len() + 2;
                    content_type = Some((at(start)?, at(start + value.len())?));
                }
                _ => {}
            }
            custom |= is_custom;
            lines.extend_from_slice(name);
            lines.extend_from_slice(b": ");
            lines.extend_from_slice(value);
            lines.extend_from_slice(b"\r\n");
        }
        let lines = lines.freeze();
        Some(Self {
            age_at: age_at.map_or_else(|| at(lines.len()), Some)?,
            lines,
            length: length.unwrap_or_default(),
            date,
            custom,
            x_cache,
            content_type: content_type.unwrap_or_default(),
        })
    }

    /// The stored field lines (without `Age`).
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// Where in [`lines`](Self::lines) the `Age` line goes.
    pub fn age_at(&self) -> usize {
        widen(self.age_at)
    }

    /// The stored `Content-Length` line (range of [`lines`](Self::lines)) and its value.
    pub fn length(&self) -> Option<(Range<usize>, &[u8])> {
        let (start, end, value) = self.length;
        if end == 0 {
            return None;
        }
        let line = widen(start)..widen(end);
        Some((
            line,
            self.lines.get(widen(value)..widen(end).checked_sub(2)?)?,
        ))
    }

    /// A `Date` was stored.
    pub fn has_date(&self) -> bool {
        self.date
    }

    /// Some field name is not one the `http` crate knows (a tag field may be among them).
    pub fn has_custom_names(&self) -> bool {
        self.custom
    }

    /// An `X-Cache` was stored.
    pub fn has_x_cache(&self) -> bool {
        self.x_cache
    }

    /// The first stored `Content-Type` (a slice of the lines, not a copy).
    pub fn content_type(&self) -> Option<HeaderValue> {
        let (start, end) = self.content_type;
        if end == 0 {
            return None;
        }
        HeaderValue::from_maybe_shared(self.lines.slice(widen(start)..widen(end))).ok()
    }
}

/// An offset into the lines (`u32` when kept, to keep the form small).
fn widen(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn fields(list: &[(&str, &str)]) -> StoredFields {
        let mut map = HeaderMap::new();
        for (name, value) in list {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        StoredFields::from_map(&map)
    }

    #[test]
    fn lines_in_order_without_age_with_its_place_and_the_length_line() {
        let wire = WireFields::of(&fields(&[
            ("cache-control", "max-age=60"),
            ("age", "7"),
            ("content-type", "text/plain"),
            ("content-length", "10"),
            ("date", "D"),
        ]))
        .unwrap();
        let text = std::str::from_utf8(wire.lines()).unwrap();
        assert_eq!(
            text,
            "cache-control: max-age=60\r\ncontent-type: text/plain\r\ncontent-length: 10\r\ndate: D\r\n"
        );
        assert_eq!(&text[..wire.age_at()], "cache-control: max-age=60\r\n");
        let (line, value) = wire.length().unwrap();
        assert_eq!(&text[line], "content-length: 10\r\n");
        assert_eq!(value, b"10");
        assert!(wire.has_date());
        assert!(!wire.has_custom_names());
        assert_eq!(wire.content_type().unwrap(), "text/plain");
    }

    #[test]
    fn without_age_it_goes_after_the_stored_lines() {
        let wire = WireFields::of(&fields(&[("etag", "\"x\""), ("x-tag", "a")])).unwrap();
        assert_eq!(wire.age_at(), wire.lines().len());
        assert!(wire.has_custom_names());
        assert!(!wire.has_date());
        assert!(wire.length().is_none());
    }

    #[test]
    fn heads_handled_field_by_field_have_no_wire_form() {
        for name in [
            "connection",
            "transfer-encoding",
            "trailer",
            "via",
            "cache-status",
            SOFT_PURGE_MARK,
        ] {
            assert_eq!(WireFields::of(&fields(&[(name, "x")])), None, "{name}");
        }
        let two = fields(&[("content-length", "1"), ("content-length", "1")]);
        assert_eq!(WireFields::of(&two), None);
    }
}
