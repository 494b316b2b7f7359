//! Header fields of a stored response in a compact form.
//!
//! A `HeaderMap` costs ~104 bytes per field (hash, name, value and links) plus a quarter of
//! spare slots, so a typical 9-field response head took ~1.3 KiB of index on top of its bytes:
//! more than a 1 KiB body. A stored head keeps its fields instead as one buffer of records, each
//! a 7-byte length prefix, the name and the value. A hit rebuilds the `HeaderMap` it sends from
//! that buffer; values are shared slices of it, not copies.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Header fields as stored, in their original order (repeated names stay separate fields).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct StoredFields {
    /// For each field: [`PREFIX`] bytes (sensitive flag, name length, value length), the name
    /// bytes, then the value bytes.
    buf: Bytes,
    /// Number of records in `buf`.
    count: u32,
}

/// Bytes before each record's name: 1 flag byte, the name length (u16 LE) and the value
/// length (u32 LE).
const PREFIX: usize = 7;
const SENSITIVE: u8 = 1;

impl StoredFields {
    /// The fields of `map`, copied into one exact-size buffer. Values hyper parsed are slices
    /// of a connection's read buffer (8 KiB and up), so keeping them would keep that alive.
    /// A field too long to be described here (a name over 64 KiB or a value over 4 GiB,
    /// which no parser this proxy uses lets through) is left out.
    pub fn from_map(map: &HeaderMap) -> Self {
        let lens = |name: &HeaderName, value: &HeaderValue| {
            Some((
                u16::try_from(name.as_str().len()).ok()?,
                u32::try_from(value.len()).ok()?,
            ))
        };
        let total: usize = map
            .iter()
            .filter(|(n, v)| lens(n, v).is_some())
            .map(|(n, v)| PREFIX + n.as_str().len() + v.len())
            .sum();
        let mut buf = BytesMut::with_capacity(total);
        let mut count = 0u32;
        for (name, value) in map {
            let Some((name_len, value_len)) = lens(name, value) else {
                continue;
            };
            buf.extend_from_slice(&[if value.is_sensitive() { SENSITIVE } else { 0 }]);
            buf.extend_from_slice(&name_len.to_le_bytes());
            buf.extend_from_slice(&value_len.to_le_bytes());
            buf.extend_from_slice(name.as_str().as_bytes());
            buf.extend_from_slice(value.as_bytes());
            count = count.saturating_add(1);
        }
        Self {
            buf: buf.freeze(),
            count,
        }
    }

    /// Number of fields (a name sent twice counts twice).
    pub fn len(&self) -> usize {
        usize::try_from(self.count).unwrap_or(usize::MAX)
    }

    /// True if there are no fields.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the stored form (names, values and record prefixes).
    pub fn bytes_len(&self) -> usize {
        self.buf.len()
    }

    /// Each field as (name bytes, value range in `buf`, sensitive). `from_map` wrote every
    /// record whole, so the walk never stops early in practice; a short record ends it.
    fn raw(&self) -> impl Iterator<Item = (&[u8], std::ops::Range<usize>, bool)> + '_ {
        let mut at = 0usize;
        std::iter::from_fn(move || {
            let &[flags, n0, n1, v0, v1, v2, v3] = self.buf.get(at..at + PREFIX)? else {
                return None;
            };
            let sensitive = flags & SENSITIVE != 0;
            let name_len = usize::from(u16::from_le_bytes([n0, n1]));
            let value_len = u32::from_le_bytes([v0, v1, v2, v3]);
            let name_start = at + PREFIX;
            let name_end = name_start + name_len;
            let value_end = name_end.checked_add(usize::try_from(value_len).ok()?)?;
            if value_end > self.buf.len() {
                return None;
            }
            at = value_end;
            let name = self.buf.get(name_start..name_end)?;
            Some((name, name_end..value_end, sensitive))
        })
    }

    fn value(&self, range: std::ops::Range<usize>, sensitive: bool) -> Option<HeaderValue> {
        let mut value = HeaderValue::from_maybe_shared(self.buf.slice(range)).ok()?;
        value.set_sensitive(sensitive);
        Some(value)
    }

    /// Every field in order. Names and values were valid when stored, so none is skipped in
    /// practice; one that no longer parses would be left out rather than fail a hit.
    pub fn iter(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
        self.raw().filter_map(|(name, range, sensitive)| {
            Some((
                HeaderName::from_bytes(name).ok()?,
                self.value(range, sensitive)?,
            ))
        })
    }

    /// The fields as a map, with room for `extra` more names (the ones a hit adds).
    pub fn to_map_with_room(&self, extra: usize) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.len().saturating_add(extra));
        for (name, value) in self.iter() {
            map.append(name, value);
        }
        map
    }

    /// The fields as a map.
    pub fn to_map(&self) -> HeaderMap {
        self.to_map_with_room(0)
    }

    /// True if a field is named `name` (lowercase, as field names are stored).
    pub fn contains_key(&self, name: impl AsRef<str>) -> bool {
        let want = name.as_ref().as_bytes();
        self.raw().any(|(n, _, _)| n == want)
    }

    /// The first value of `name` (lowercase, as field names are stored).
    pub fn get(&self, name: impl AsRef<str>) -> Option<HeaderValue> {
        let want = name.as_ref().as_bytes();
        self.raw()
            .find(|(n, _, _)| *n == want)
            .and_then(|(_, range, sensitive)| self.value(range, sensitive))
    }
}

impl From<&HeaderMap> for StoredFields {
    fn from(map: &HeaderMap) -> Self {
        Self::from_map(map)
    }
}

impl std::fmt::Debug for StoredFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert("content-type", HeaderValue::from_static("text/plain"));
        map.append("set-cookie", HeaderValue::from_static("a=1"));
        map.append("set-cookie", HeaderValue::from_static("b=2"));
        map.insert("x-custom", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        map.insert("etag", HeaderValue::from_static("\"v1\""));
        let mut secret = HeaderValue::from_static("s3cret");
        secret.set_sensitive(true);
        map.insert("x-secret", secret);
        map
    }

    #[test]
    fn round_trips_every_field_in_order_with_repeats_and_obs_text() {
        let map = sample();
        let fields = StoredFields::from_map(&map);
        assert_eq!(fields.len(), 6);
        assert_eq!(fields.to_map(), map);
        let names: Vec<String> = fields.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "set-cookie",
                "set-cookie",
                "x-custom",
                "etag",
                "x-secret"
            ]
        );
        assert!(fields
            .to_map()
            .get("x-secret")
            .is_some_and(HeaderValue::is_sensitive));
        assert!(!fields.to_map()["etag"].is_sensitive());
    }

    #[test]
    fn one_exact_buffer_that_does_not_keep_the_parsed_one_alive() {
        let big = Bytes::from(vec![b'v'; 8192]);
        let mut map = HeaderMap::new();
        map.insert(
            "etag",
            HeaderValue::from_maybe_shared(big.slice(0..4)).unwrap(),
        );
        let fields = StoredFields::from_map(&map);
        assert_eq!(fields.bytes_len(), PREFIX + "etag".len() + 4);
        let value = fields.get(&http::header::ETAG).unwrap();
        assert!(!big.as_ptr_range().contains(&value.as_bytes().as_ptr()));
        drop(map);
        drop(big);
        assert_eq!(value, "vvvv");
    }

    #[test]
    fn lookups_by_name() {
        let fields = StoredFields::from_map(&sample());
        assert!(fields.contains_key(&http::header::ETAG));
        assert!(!fields.contains_key(&http::header::VARY));
        assert_eq!(fields.get(&http::header::SET_COOKIE).unwrap(), "a=1");
        assert_eq!(
            fields.get("x-custom").unwrap(),
            HeaderValue::from_bytes(b"caf\xe9").unwrap()
        );
        assert_eq!(fields.get(&http::header::VARY), None);
        assert!(StoredFields::default().is_empty());
    }

    #[test]
    fn room_for_the_fields_a_hit_adds() {
        let fields = StoredFields::from_map(&sample());
        let map = fields.to_map_with_room(3);
        assert!(map.capacity() >= fields.len() + 3);
    }
}
