//! Turning a stored response into the response for this request: `Age`, client conditionals
//! (304/412), HEAD, and ranges (206/416), without touching the body bytes.
//!
//! The result is a head plus a [`BodyPlan`] saying which bytes of the stored body to send; the
//! proxy maps the plan onto the stored body (shared `Bytes` slices for memory hits, a skipping
//! stream for disk hits), so serving a hit never copies a body.

use std::time::SystemTime;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use super::meta::{Carried, StoredHead, WireFields};
use super::policy::{
    evaluate_client_conditional, plan_range, range, ConditionalOutcome, MultipartLayout, RangePlan,
};

/// Which bytes of the stored body to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyPlan {
    /// No body (HEAD, 304, 412, 416).
    Empty,
    /// The whole stored body.
    Full,
    /// Bytes `start..=end`.
    Range { start: u64, end: u64 },
    /// multipart/byteranges: each part's header, its bytes, then the closing delimiter.
    Multipart(MultipartLayout),
}

/// The response to send for a stored entry.
#[derive(Debug)]
pub struct Served {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: BodyPlan,
    /// Whether the stored head had a `Via` or `Cache-Status` for ours to be merged into.
    pub carried: Carried,
}

/// The head of a plain hit (see [`plain_hit`]) for the HTTP/1 writer: the stored field lines
/// and the fields this hit adds, without a `HeaderMap`. Carried to the writer by the body of a
/// response whose own map is empty (`proxy::body::ProxyBody::plain_hit`);
/// `proxy::h1::write::encode_hit_head` writes it.
#[derive(Debug, Clone)]
pub struct HitHead {
    /// A clone of the entry's (its lines are shared, not copied).
    pub fields: WireFields,
    /// This hit's `Age` (RFC 9111 §5.1), sent where the first stored one was.
    pub age: HeaderValue,
    /// Fields sent after the stored ones, in this order (the cache's `Via`, `Cache-Status`
    /// and `X-Cache`, none of them stored).
    pub added: [Option<(HeaderName, HeaderValue)>; 3],
}

impl HitHead {
    /// The first `Content-Type`, as the access log reads it from a response.
    pub fn content_type(&self) -> Option<HeaderValue> {
        self.fields.content_type()
    }

    /// The added value of `name`.
    pub fn added(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.added
            .iter()
            .flatten()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// The bytes of the field lines (name, ": ", value, CRLF each), as counted over a map.
    pub fn fields_len(&self) -> usize {
        let added: usize = self
            .added
            .iter()
            .flatten()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum();
        self.fields.lines().len() + "age".len() + self.age.len() + 4 + added
    }
}

/// The stored fields of `head` as lines a hit can send as they are, when the hit is a plain
/// one: a GET or HEAD of a stored 200 with none of the fields that would change its status or
/// its fields (RFC 9110 §13.1 preconditions, §14.2 `Range`; `If-Range` only matters with a
/// `Range`). Made on the first such hit and kept with the head's derived facts, so `None`
/// also when those were not worked out (the hit is then served from the map).
pub fn plain_hit(method: &Method, request: &HeaderMap, head: &StoredHead) -> Option<WireFields> {
    if (*method != Method::GET && *method != Method::HEAD) || head.status != StatusCode::OK {
        return None;
    }
    let asks = request.iter().any(|(name, _)| {
        matches!(
            *name,
            header::IF_MATCH
                | header::IF_NONE_MATCH
                | header::IF_MODIFIED_SINCE
                | header::IF_UNMODIFIED_SINCE
                | header::RANGE
        )
    });
    if asks {
        return None;
    }
    let derived = head.derived.get()?;
    derived
        .wire
        .get_or_init(|| WireFields::of(&head.headers))
        .clone()
}

/// Fields a 304 carries (RFC 9110 §15.4.5: "Content-Location, Date, ETag, and Vary;
/// Cache-Control and Expires" when they would be sent in a 200), plus Last-Modified and Age.
const NOT_MODIFIED_FIELDS: [HeaderName; 8] = [
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::VARY,
    header::LAST_MODIFIED,
    header::AGE,
];

/// Builds the response for `method`/`request` from `head`, `age` seconds old.
/// `multipart` says the body source can serve several ranges (memory hits); `now` reads the
/// request's date preconditions (see [`super::policy::date`]).
pub fn serve_stored(
    method: &Method,
    request: &HeaderMap,
    head: &StoredHead,
    age: u64,
    multipart: bool,
    now: SystemTime,
) -> Served {
    serve_stored_as(
        method,
        request,
        head,
        HeaderValue::from(age),
        |_| false,
        multipart,
        now,
    )
}

/// [`serve_stored`] with the `Age` value made by the caller and the stored fields `drop`
/// says no to left out, in the one pass that builds the head (a hit drops what only the
/// cache may see: see `invalidate::stripped_for_client`).
pub fn serve_stored_as(
    method: &Method,
    request: &HeaderMap,
    head: &StoredHead,
    age: HeaderValue,
    drop: impl Fn(&HeaderName) -> bool,
    multipart: bool,
    now: SystemTime,
) -> Served {
    // Room for the fields every hit adds besides Age: Cache-Status and Via by the proxy.
    // RFC 9111 §5.1: a cache sends Age on every response it serves from storage.
    let (mut headers, carried) = head.headers.to_served_map(age, 2, drop);
    match evaluate_client_conditional(method, request, head.status, &headers, now) {
        ConditionalOutcome::NotModified => {
            let mut kept = HeaderMap::new();
            for name in NOT_MODIFIED_FIELDS {
                for value in headers.get_all(&name) {
                    kept.append(name.clone(), value.clone());
                }
            }
            return Served {
                status: StatusCode::NOT_MODIFIED,
                headers: kept,
                body: BodyPlan::Empty,
                carried,
            };
        }
        ConditionalOutcome::PreconditionFailed => {
            return bodiless(StatusCode::PRECONDITION_FAILED, headers, carried);
        }
        ConditionalOutcome::Proceed => {}
    }
    if method == Method::HEAD {
        return Served {
            status: head.status,
            headers,
            body: BodyPlan::Empty,
            carried,
        };
    }
    if head.status != StatusCode::OK {
        return Served {
            status: head.status,
            headers,
            body: BodyPlan::Full,
            carried,
        };
    }
    let len = head.body_len;
    match plan_range(method, request, &headers, len, now) {
        RangePlan::Full => Served {
            status: head.status,
            headers,
            body: BodyPlan::Full,
            carried,
        },
        RangePlan::Single { start, end } => {
            set(
                &mut headers,
                header::CONTENT_RANGE,
                &range::content_range(start, end, len),
            );
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start + 1));
            Served {
                status: StatusCode::PARTIAL_CONTENT,
                headers,
                body: BodyPlan::Range { start, end },
                carried,
            }
        }
        RangePlan::Multi(ranges) if multipart => {
            let boundary = boundary_for(head, &ranges);
            match range::multipart_layout(
                &ranges,
                len,
                headers.get(header::CONTENT_TYPE),
                &boundary,
            ) {
                Some(layout) => {
                    set(&mut headers, header::CONTENT_TYPE, &layout.content_type);
                    headers.insert(
                        header::CONTENT_LENGTH,
                        HeaderValue::from(layout.content_length),
                    );
                    Served {
                        status: StatusCode::PARTIAL_CONTENT,
                        headers,
                        body: BodyPlan::Multipart(layout),
                        carried,
                    }
                }
                None => Served {
                    status: head.status,
                    headers,
                    body: BodyPlan::Full,
                    carried,
                },
            }
        }
        // RFC 9110 §14.2: a server MAY ignore Range; disk entries send the whole body.
        RangePlan::Multi(_) => Served {
            status: head.status,
            headers,
            body: BodyPlan::Full,
            carried,
        },
        RangePlan::Unsatisfiable => {
            set(
                &mut headers,
                header::CONTENT_RANGE,
                &range::unsatisfied_content_range(len),
            );
            bodiless(StatusCode::RANGE_NOT_SATISFIABLE, headers, carried)
        }
    }
}

fn bodiless(status: StatusCode, mut headers: HeaderMap, carried: Carried) -> Served {
    headers.remove(header::CONTENT_TYPE);
    headers.remove(header::CONTENT_ENCODING);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
    Served {
        status,
        headers,
        body: BodyPlan::Empty,
        carried,
    }
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// A boundary that cannot occur in the body parts' headers: derived from the entry and ranges.
fn boundary_for(head: &StoredHead, ranges: &[(u64, u64)]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(head.url.as_bytes());
    for (start, end) in ranges {
        feed(&start.to_le_bytes());
        feed(&end.to_le_bytes());
    }
    format!("cuttle-{hash:016x}")
}
