//! The stored response head: what a cache entry keeps besides its body.
//!
//! RFC 9111 §4.2.3 computes an entry's age from `request_time` and `response_time`, so
//! both are kept next to the status and header fields. On disk the head is the cacache
//! index metadata, a JSON value tagged with a version: a head written by another
//! version, or damaged, fails [`StoredHead::from_json`] and the store treats the entry as
//! a miss. Header values are arbitrary bytes (obs-text is legal in a field value), so a
//! value that is not printable ASCII is kept as an array of bytes rather than a string.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use serde_json::{json, Map, Value};

mod fields;
mod wire;
pub use fields::{Carried, StoredFields};
pub use wire::WireFields;

/// The internal field that marks a soft-purged stored head (see `invalidate::soft`; never sent
/// to clients, stripped from upstream responses). Here, with the head it marks, so the head's
/// own update (a 304 clears it) needs nothing from `invalidate`.
pub const SOFT_PURGE_MARK: &str = "cuttle-purged";

/// Version tag of the JSON form; bump it when the layout changes.
const VERSION: u64 = 1;

/// Bytes charged per header field on top of its stored bytes, as HPACK does (RFC 7541 §4.1).
/// (A known name is stored as a one-byte code, so it is charged the overhead only.)
const FIELD_OVERHEAD: u64 = 32;

/// A response head as stored in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHead {
    pub status: StatusCode,
    /// Response header fields as stored (hop-by-hop fields already removed by the caller).
    pub headers: StoredFields,
    /// When the request that produced this response was sent (RFC 9111 §4.2.3).
    pub request_time: SystemTime,
    /// When the response was received (RFC 9111 §4.2.3).
    pub response_time: SystemTime,
    /// Effective request URI, for PURGE and logs. Shared: when it is also the entry's key (the
    /// usual case), the store keeps this one string for the key, the index and the head.
    pub url: std::sync::Arc<str>,
    /// Exact length of the stored body; the store sets it from the bytes it committed.
    pub body_len: u64,
    /// What the cache derives from this head alone (directives, lifetime, age inputs), worked
    /// out on the first hit and reused by the following ones. Not part of the head's value:
    /// ignored by `==`, emptied by `clone` (a clone is made to be changed), never stored.
    pub derived: Memo<Derived>,
}

/// Freshness facts that depend only on a stored head and the cache's fixed settings
/// (RFC 9111 §4.2.1 lifetime, §4.2.3 age inputs, and the directives they came from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    pub response: crate::cache::policy::ResponseDirectives,
    pub lifetime: crate::cache::policy::Lifetime,
    pub age_inputs: crate::cache::policy::AgeInputs,
    /// The head's field lines as an HTTP/1 hit writes them (`None`: served from the map),
    /// made by the first hit that can use them (see `cache::serve::plain_hit`).
    pub wire: Memo<Option<WireFields>>,
}

/// A value computed at most once, on first use; see [`StoredHead::derived`].
pub struct Memo<T>(std::sync::OnceLock<Box<T>>);

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Self(std::sync::OnceLock::new())
    }
}

impl<T> Memo<T> {
    /// The value, if it was computed.
    pub fn get(&self) -> Option<&T> {
        self.0.get().map(|b| &**b)
    }

    /// The value, computing it with `init` the first time.
    pub fn get_or_init(&self, init: impl FnOnce() -> T) -> &T {
        self.0.get_or_init(|| Box::new(init()))
    }
}

impl<T> Clone for Memo<T> {
    fn clone(&self) -> Self {
        Self(std::sync::OnceLock::new())
    }
}

impl<T> PartialEq for Memo<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> Eq for Memo<T> {}

impl<T> std::fmt::Debug for Memo<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Memo(set)"
        } else {
            "Memo(empty)"
        })
    }
}

/// Why a stored head could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// Written by a layout this build does not know (`None`: no version tag at all).
    #[error("unsupported stored head version {0:?}")]
    Version(Option<u64>),
    /// A field is missing or has the wrong shape.
    #[error("malformed stored head: bad `{0}`")]
    Malformed(&'static str),
}

impl StoredHead {
    /// The versioned JSON form kept as cacache metadata.
    pub fn to_json(&self) -> Value {
        let headers: Vec<Value> = self
            .headers
            .iter()
            .map(|(name, value)| json!([name.as_str(), value_to_json(&value)]))
            .collect();
        json!({
            "v": VERSION,
            "status": self.status.as_u16(),
            "headers": headers,
            "request_time": time_to_json(self.request_time),
            "response_time": time_to_json(self.response_time),
            "url": &*self.url,
            "body_len": self.body_len,
        })
    }

    /// Reads back what [`to_json`](Self::to_json) wrote.
    pub fn from_json(v: &Value) -> Result<Self, MetaError> {
        let obj = v.as_object().ok_or(MetaError::Malformed("head"))?;
        match obj.get("v").map(Value::as_u64) {
            Some(Some(VERSION)) => {}
            Some(Some(other)) => return Err(MetaError::Version(Some(other))),
            _ => return Err(MetaError::Version(None)),
        }
        let status = field(obj, "status")?
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .ok_or(MetaError::Malformed("status"))?;
        let list = field(obj, "headers")?
            .as_array()
            .ok_or(MetaError::Malformed("headers"))?;
        // A damaged index entry must not reach the map's size limit (it panics past it).
        if list.len() > fields::MAX_FIELDS {
            return Err(MetaError::Malformed("headers"));
        }
        let mut headers = HeaderMap::with_capacity(list.len());
        for pair in list {
            let (name, value) = header_from_json(pair).ok_or(MetaError::Malformed("headers"))?;
            headers.append(name, value);
        }
        Ok(Self {
            status,
            headers: StoredFields::from_map(&headers),
            request_time: time_from_json(field(obj, "request_time")?)
                .ok_or(MetaError::Malformed("request_time"))?,
            response_time: time_from_json(field(obj, "response_time")?)
                .ok_or(MetaError::Malformed("response_time"))?,
            url: field(obj, "url")?
                .as_str()
                .ok_or(MetaError::Malformed("url"))?
                .into(),
            body_len: field(obj, "body_len")?
                .as_u64()
                .ok_or(MetaError::Malformed("body_len"))?,
            derived: Memo::default(),
        })
    }

    /// This head freshened by a 304 or matching HEAD response (RFC 9111 §4.3.4, §4.3.5):
    /// its fields updated from `update`, its times those of the validating exchange.
    pub fn freshened(
        &self,
        update: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> StoredHead {
        let mut headers = crate::cache::policy::freshen_headers(&self.headers.to_map(), update);
        // Validated: no longer soft-purged.
        headers.remove(SOFT_PURGE_MARK);
        StoredHead {
            headers: StoredFields::from_map(&headers),
            request_time,
            response_time,
            ..self.clone()
        }
    }

    /// Approximate bytes this head occupies, for the memory weigher and disk accounting.
    pub fn approx_size(&self) -> u64 {
        let count = u64::try_from(self.headers.len()).unwrap_or(u64::MAX);
        let fields = u64::try_from(self.headers.bytes_len())
            .unwrap_or(u64::MAX)
            .saturating_add(count.saturating_mul(FIELD_OVERHEAD));
        let fixed = std::mem::size_of::<Self>().saturating_add(self.url.len());
        fields.saturating_add(u64::try_from(fixed).unwrap_or(u64::MAX))
    }
}

fn field<'a>(obj: &'a Map<String, Value>, name: &'static str) -> Result<&'a Value, MetaError> {
    obj.get(name).ok_or(MetaError::Malformed(name))
}

/// Printable ASCII (plus SP and HTAB) as a string; anything else as an array of bytes.
fn value_to_json(value: &HeaderValue) -> Value {
    let bytes = value.as_bytes();
    if bytes
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        Value::String(String::from_utf8_lossy(bytes).into_owned())
    } else {
        Value::Array(bytes.iter().map(|&b| Value::from(b)).collect())
    }
}

fn header_from_json(pair: &Value) -> Option<(HeaderName, HeaderValue)> {
    let [name, value] = pair.as_array()?.as_slice() else {
        return None;
    };
    let name = HeaderName::from_bytes(name.as_str()?.as_bytes()).ok()?;
    let value = match value {
        Value::String(s) => HeaderValue::from_bytes(s.as_bytes()).ok()?,
        Value::Array(bytes) => {
            let bytes: Option<Vec<u8>> = bytes
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            HeaderValue::from_bytes(&bytes?).ok()?
        }
        _ => return None,
    };
    Some((name, value))
}

/// `[seconds, nanoseconds]` since the Unix epoch; earlier times are stored as the epoch.
fn time_to_json(t: SystemTime) -> Value {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    json!([d.as_secs(), d.subsec_nanos()])
}

fn time_from_json(v: &Value) -> Option<SystemTime> {
    let [secs, nanos] = v.as_array()?.as_slice() else {
        return None;
    };
    let nanos = u32::try_from(nanos.as_u64()?).ok()?;
    if nanos >= 1_000_000_000 {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::new(secs.as_u64()?, nanos))
}

#[cfg(test)]
mod tests;
