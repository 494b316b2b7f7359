//! Header fields of a stored response in a compact form.
//!
//! A `HeaderMap` costs ~104 bytes per field (hash, name, value and links) plus a quarter of
//! spare slots, so a typical 9-field response head took ~1.3 KiB of index on top of its bytes:
//! more than a 1 KiB body. A stored head keeps its fields instead as one buffer of records. A
//! name the `http` crate knows is stored as its one-byte index in [`KNOWN`] (rebuilding it on a
//! hit is a copy, not a parse); any other name is stored as its bytes. A hit that is not a
//! plain HTTP/1 one (see `wire`) rebuilds the `HeaderMap` it sends from the buffer; values are
//! shared slices of it, not copies.

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Header fields as stored, in their original order (repeated names stay separate fields).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct StoredFields {
    /// One record per field: [`PREFIX`] bytes (flags, name code, value length as u32 LE);
    /// for a [`CUSTOM`] name, its length (u16 LE) and bytes; then the value bytes.
    buf: Bytes,
    /// Number of records in `buf`.
    count: u32,
}

/// Which fields a cache adds to what it serves were stored with the response (see
/// [`StoredFields::to_served_map`]): ours is then merged into theirs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Carried {
    /// A `Via` field was stored (RFC 9110 §7.6.3).
    pub via: bool,
    /// A `Cache-Status` field was stored (RFC 9211).
    pub cache_status: bool,
}

/// At most this many fields are kept: a `HeaderMap` panics past 32 768 entries, and a
/// served head adds a few. hyper lets no more than 100 through from an upstream.
pub const MAX_FIELDS: usize = 16 * 1024;

/// Bytes at the start of each record.
const PREFIX: usize = 6;
/// Flag bit: the value is sensitive (HPACK never-indexed).
const SENSITIVE: u8 = 1;
/// Name code of a name that is not in [`KNOWN`]: its bytes follow.
const CUSTOM: u8 = u8::MAX;

/// The names the `http` crate has constants for, indexed by their name code. Append only:
/// the codes are not written to disk (the disk form is JSON), but keep them stable anyway.
static KNOWN: [HeaderName; KNOWN_LEN] = [
    header::ACCEPT,
    header::ACCEPT_CHARSET,
    header::ACCEPT_ENCODING,
    header::ACCEPT_LANGUAGE,
    header::ACCEPT_RANGES,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
    header::ACCESS_CONTROL_REQUEST_HEADERS,
    header::ACCESS_CONTROL_REQUEST_METHOD,
    header::AGE,
    header::ALLOW,
    header::ALT_SVC,
    header::AUTHORIZATION,
    header::CACHE_CONTROL,
    header::CACHE_STATUS,
    header::CDN_CACHE_CONTROL,
    header::CONNECTION,
    header::CONTENT_DISPOSITION,
    header::CONTENT_ENCODING,
    header::CONTENT_LANGUAGE,
    header::CONTENT_LENGTH,
    header::CONTENT_LOCATION,
    header::CONTENT_RANGE,
    header::CONTENT_SECURITY_POLICY,
    header::CONTENT_SECURITY_POLICY_REPORT_ONLY,
    header::CONTENT_TYPE,
    header::COOKIE,
    header::DNT,
    header::DATE,
    header::ETAG,
    header::EXPECT,
    header::EXPIRES,
    header::FORWARDED,
    header::FROM,
    header::HOST,
    header::IF_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_NONE_MATCH,
    header::IF_RANGE,
    header::IF_UNMODIFIED_SINCE,
    header::LAST_MODIFIED,
    header::LINK,
    header::LOCATION,
    header::MAX_FORWARDS,
    header::ORIGIN,
    header::PRAGMA,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::PUBLIC_KEY_PINS,
    header::PUBLIC_KEY_PINS_REPORT_ONLY,
    header::RANGE,
    header::REFERER,
    header::REFERRER_POLICY,
    header::REFRESH,
    header::RETRY_AFTER,
    header::SEC_WEBSOCKET_ACCEPT,
    header::SEC_WEBSOCKET_EXTENSIONS,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::SEC_WEBSOCKET_VERSION,
    header::SERVER,
    header::SET_COOKIE,
    header::STRICT_TRANSPORT_SECURITY,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::USER_AGENT,
    header::UPGRADE,
    header::UPGRADE_INSECURE_REQUESTS,
    header::VARY,
    header::VIA,
    header::WARNING,
    header::WWW_AUTHENTICATE,
    header::X_CONTENT_TYPE_OPTIONS,
    header::X_DNS_PREFETCH_CONTROL,
    header::X_FRAME_OPTIONS,
    header::X_XSS_PROTECTION,
];
const KNOWN_LEN: usize = 81;

/// A stored field's name: a known one or the bytes of another.
#[derive(Clone, Copy)]
enum Name<'a> {
    Known(&'a HeaderName),
    Custom(&'a [u8]),
}

impl<'a> Name<'a> {
    /// The name's bytes, borrowed for as long as the stored fields are.
    fn as_bytes(self) -> &'a [u8] {
        match self {
            Name::Known(name) => name.as_str().as_bytes(),
            Name::Custom(bytes) => bytes,
        }
    }

    fn to_header_name(self) -> Option<HeaderName> {
        match self {
            Name::Known(name) => Some(name.clone()),
            Name::Custom(bytes) => HeaderName::from_bytes(bytes).ok(),
        }
    }
}

fn code_of(name: &HeaderName) -> Option<u8> {
    KNOWN
        .iter()
        .position(|known| known == name)
        .and_then(|i| u8::try_from(i).ok())
}

impl StoredFields {
    /// The fields of `map`, copied into one exact-size buffer. Values hyper parsed are slices
    /// of a connection's read buffer (8 KiB and up), so keeping them would keep that alive.
    /// A field too long to be described here (a name over 64 KiB or a value over 4 GiB,
    /// which no parser this proxy uses lets through) is left out, and so is every field past
    /// [`MAX_FIELDS`].
    pub fn from_map(map: &HeaderMap) -> Self {
        Self::from_map_without(map, |_| false)
    }

    /// As [`from_map`](Self::from_map), leaving out every field whose name `skip` says yes
    /// to: what a stored head is built with, instead of a clone of the response's map to
    /// remove fields from (two short-lived blocks a store fewer).
    pub fn from_map_without(map: &HeaderMap, skip: impl Fn(&HeaderName) -> bool) -> Self {
        // (name code, custom name length, value length) for each field that fits.
        let shape = |name: &HeaderName, value: &HeaderValue| {
            let value_len = u32::try_from(value.len()).ok()?;
            match code_of(name) {
                Some(code) => Some((code, None, value_len)),
                None => Some((
                    CUSTOM,
                    Some(u16::try_from(name.as_str().len()).ok()?),
                    value_len,
                )),
            }
        };
        let fields = || map.iter().filter(|(n, _)| !skip(n)).take(MAX_FIELDS);
        let total: usize = fields()
            .filter_map(|(n, v)| {
                let (_, custom, _) = shape(n, v)?;
                Some(PREFIX + custom.map_or(0, |len| 2 + usize::from(len)) + v.len())
            })
            .sum();
        let mut buf = BytesMut::with_capacity(total);
        let mut count = 0u32;
        for (name, value) in fields() {
            let Some((code, custom, value_len)) = shape(name, value) else {
                continue;
            };
            let flags = if value.is_sensitive() { SENSITIVE } else { 0 };
            buf.extend_from_slice(&[flags, code]);
            buf.extend_from_slice(&value_len.to_le_bytes());
            if let Some(name_len) = custom {
                buf.extend_from_slice(&name_len.to_le_bytes());
                buf.extend_from_slice(name.as_str().as_bytes());
            }
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

    /// Bytes of the stored form (record prefixes, custom names and values).
    pub fn bytes_len(&self) -> usize {
        self.buf.len()
    }

    /// Each field as (name, value range in `buf`, sensitive). `from_map` wrote every record
    /// whole, so the walk never stops early in practice; a short or unknown record ends it.
    fn raw(&self) -> impl Iterator<Item = (Name<'_>, std::ops::Range<usize>, bool)> + '_ {
        let mut at = 0usize;
        std::iter::from_fn(move || {
            let &[flags, code, v0, v1, v2, v3] = self.buf.get(at..at + PREFIX)? else {
                return None;
            };
            at += PREFIX;
            let name = if code == CUSTOM {
                let &[n0, n1] = self.buf.get(at..at + 2)? else {
                    return None;
                };
                let start = at + 2;
                at = start + usize::from(u16::from_le_bytes([n0, n1]));
                Name::Custom(self.buf.get(start..at)?)
            } else {
                Name::Known(KNOWN.get(usize::from(code))?)
            };
            let value_len = usize::try_from(u32::from_le_bytes([v0, v1, v2, v3])).ok()?;
            let value_end = at.checked_add(value_len)?;
            if value_end > self.buf.len() {
                return None;
            }
            let value = at..value_end;
            at = value_end;
            Some((name, value, flags & SENSITIVE != 0))
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
            Some((name.to_header_name()?, self.value(range, sensitive)?))
        })
    }

    /// Every field as (name, value) bytes in order, read in place: unlike [`iter`](Self::iter),
    /// it builds no `HeaderValue`, whose first one would make the buffer shared (an allocation
    /// kept for as long as the entry).
    pub fn iter_bytes(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.raw()
            .filter_map(|(name, range, _)| Some((name.as_bytes(), self.buf.get(range)?)))
    }

    /// As [`iter_bytes`](Self::iter_bytes), with whether each name is one the `http` crate has
    /// no constant for (stored as its bytes).
    pub(super) fn iter_named(&self) -> impl Iterator<Item = (&[u8], &[u8], bool)> + '_ {
        self.raw().filter_map(|(name, range, _)| {
            Some((
                name.as_bytes(),
                self.buf.get(range)?,
                matches!(name, Name::Custom(_)),
            ))
        })
    }

    /// The fields as a map, with room for `extra` more names (the ones a hit adds).
    pub fn to_map_with_room(&self, extra: usize) -> HeaderMap {
        // `with_capacity` and `append` panic past the map's size limit. `from_map` stores at
        // most [`MAX_FIELDS`], far below it, so the fallbacks here are only belts and braces.
        let mut map =
            HeaderMap::try_with_capacity(self.len().saturating_add(extra)).unwrap_or_default();
        for (name, value) in self.iter() {
            if map.try_append(name, value).is_err() {
                break;
            }
        }
        map
    }

    /// The fields as the head of a response served from storage, in one pass: `age` is the
    /// `Age` value (RFC 9111 §5.1), put where the first stored `Age` was or after the other
    /// fields when none was stored (where `HeaderMap::insert` would put it); fields `drop`
    /// says no to are left out; the map has room for `extra` more fields. Also says whether
    /// a `Via` or `Cache-Status` was stored, so the caller can add its own without looking
    /// them up when none was (the usual case).
    pub fn to_served_map(
        &self,
        age: HeaderValue,
        extra: usize,
        drop: impl Fn(&HeaderName) -> bool,
    ) -> (HeaderMap, Carried) {
        // As in `to_map_with_room`: the fallbacks below are never taken with at most
        // [`MAX_FIELDS`] stored.
        let room = self.len().saturating_add(extra).saturating_add(1);
        let mut map = HeaderMap::try_with_capacity(room).unwrap_or_default();
        let mut age = Some(age);
        let mut carried = Carried::default();
        for (name, range, sensitive) in self.raw() {
            let Some(name) = name.to_header_name() else {
                continue;
            };
            let value = if name == header::AGE {
                // Only the first stored `Age` is replaced; `insert` drops the others.
                match age.take() {
                    Some(age) => age,
                    None => continue,
                }
            } else {
                if drop(&name) {
                    continue;
                }
                carried.via |= name == header::VIA;
                carried.cache_status |= name == header::CACHE_STATUS;
                match self.value(range, sensitive) {
                    Some(value) => value,
                    None => continue,
                }
            };
            if map.try_append(name, value).is_err() {
                break;
            }
        }
        if let Some(age) = age {
            let _ = map.try_append(header::AGE, age);
        }
        (map, carried)
    }

    /// The fields as a map.
    pub fn to_map(&self) -> HeaderMap {
        self.to_map_with_room(0)
    }

    /// True if a field is named `name` (lowercase, as field names are stored).
    pub fn contains_key(&self, name: impl AsRef<str>) -> bool {
        let want = name.as_ref().as_bytes();
        self.raw().any(|(n, _, _)| n.as_bytes() == want)
    }

    /// The first value of `name` (lowercase, as field names are stored).
    pub fn get(&self, name: impl AsRef<str>) -> Option<HeaderValue> {
        let want = name.as_ref().as_bytes();
        self.raw()
            .find(|(n, _, _)| n.as_bytes() == want)
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
    fn bytes_in_place_match_the_built_fields() {
        let fields = StoredFields::from_map(&sample());
        let built: Vec<(Vec<u8>, Vec<u8>)> = fields
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        let in_place: Vec<(Vec<u8>, Vec<u8>)> = fields
            .iter_bytes()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(in_place, built);
        assert_eq!(in_place.len(), 6);
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
    fn fields_left_out_by_name_take_no_room_and_the_rest_keep_their_order() {
        let skip = |n: &HeaderName| n == http::header::SET_COOKIE || n.as_str() == "x-secret";
        let fields = StoredFields::from_map_without(&sample(), skip);
        let names: Vec<String> = fields.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(names, ["content-type", "x-custom", "etag"]);
        let mut kept = sample();
        kept.remove("set-cookie");
        kept.remove("x-secret");
        assert_eq!(fields.to_map(), kept);
        assert_eq!(
            fields.bytes_len(),
            StoredFields::from_map(&kept).bytes_len(),
            "the buffer is sized to the fields kept"
        );
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
        assert_eq!(
            fields.bytes_len(),
            PREFIX + 4,
            "a known name is stored as its code"
        );
        let value = fields.get(&http::header::ETAG).unwrap();
        assert!(!big.as_ptr_range().contains(&value.as_bytes().as_ptr()));
        drop(map);
        drop(big);
        assert_eq!(value, "vvvv");
    }

    #[test]
    fn every_known_name_is_stored_as_its_code_and_comes_back() {
        for name in &KNOWN {
            let mut map = HeaderMap::new();
            map.insert(name.clone(), HeaderValue::from_static("v"));
            let fields = StoredFields::from_map(&map);
            assert_eq!(fields.bytes_len(), PREFIX + 1, "{name}");
            assert_eq!(fields.to_map(), map, "{name}");
        }
        let distinct: std::collections::HashSet<_> = KNOWN.iter().collect();
        assert_eq!(distinct.len(), KNOWN_LEN);
        assert!(KNOWN_LEN < usize::from(CUSTOM));
    }

    #[test]
    fn other_names_are_stored_as_their_bytes() {
        let mut map = HeaderMap::new();
        map.insert("x-custom", HeaderValue::from_static("abc"));
        let fields = StoredFields::from_map(&map);
        assert_eq!(fields.bytes_len(), PREFIX + 2 + "x-custom".len() + 3);
        assert_eq!(fields.to_map(), map);
        assert!(fields.contains_key("x-custom"));
        assert!(!fields.contains_key("x-custo"));
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
    fn keeps_at_most_max_fields_so_the_rebuilt_map_cannot_overflow() {
        let mut map = HeaderMap::new();
        for _ in 0..MAX_FIELDS + 10 {
            map.append("x-many", HeaderValue::from_static("1"));
        }
        let fields = StoredFields::from_map(&map);
        assert_eq!(fields.len(), MAX_FIELDS);
        let mut rebuilt = fields.to_map_with_room(3);
        assert_eq!(rebuilt.len(), MAX_FIELDS);
        rebuilt.insert(http::header::AGE, HeaderValue::from_static("1"));
    }

    /// The one-pass build gives what building the map and then inserting `Age` and removing
    /// the dropped fields gave.
    #[test]
    fn served_map_is_the_map_with_age_inserted_and_dropped_fields_removed() {
        let mark = HeaderName::from_static("cuttle-purged");
        let cases: Vec<Vec<(&str, &str)>> = vec![
            vec![("content-type", "a"), ("etag", "\"x\"")],
            vec![("age", "100"), ("content-type", "a"), ("age", "7")],
            vec![
                ("content-type", "a"),
                ("cuttle-purged", "1"),
                ("via", "1.1 x"),
            ],
            vec![
                ("cache-status", "up; hit"),
                ("age", "3"),
                ("surrogate-key", "k"),
            ],
            vec![],
        ];
        for fields in cases {
            let mut map = HeaderMap::new();
            for (name, value) in &fields {
                map.append(*name, HeaderValue::from_static(value));
            }
            let stored = StoredFields::from_map(&map);
            let drop = |name: &HeaderName| *name == mark || name == "surrogate-key";
            let age = HeaderValue::from_static("42");
            let (served, carried) = stored.to_served_map(age.clone(), 2, drop);
            let mut expected = stored.to_map_with_room(3);
            expected.insert(header::AGE, age);
            expected.remove(&mark);
            expected.remove("surrogate-key");
            let order = |m: &HeaderMap| {
                m.iter()
                    .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
                    .collect::<Vec<_>>()
            };
            // `HeaderMap::remove` moves the last field into the removed one's place, so
            // where a field was dropped only the order within each name is the same (field
            // lines of different names carry no order, RFC 9110 §5.3); elsewhere all of it.
            let dropped = fields
                .iter()
                .any(|(n, _)| drop(&HeaderName::from_static(n)));
            if dropped {
                let by_name = |m: &HeaderMap| {
                    let mut lines = order(m);
                    lines.sort_by(|a, b| a.split(':').next().cmp(&b.split(':').next()));
                    lines
                };
                assert_eq!(by_name(&served), by_name(&expected), "{fields:?}");
            } else {
                assert_eq!(order(&served), order(&expected), "{fields:?}");
            }
            assert_eq!(carried.via, map.contains_key(header::VIA), "{fields:?}");
            assert_eq!(
                carried.cache_status,
                map.contains_key(header::CACHE_STATUS),
                "{fields:?}"
            );
            assert!(served.capacity() >= served.len() + 2);
        }
    }

    #[test]
    fn room_for_the_fields_a_hit_adds() {
        let fields = StoredFields::from_map(&sample());
        let map = fields.to_map_with_room(3);
        assert!(map.capacity() >= fields.len() + 3);
    }
}
