//! The ICP version 2 message format (RFC 2186 §1, §2): decoding what arrives in a datagram and
//! encoding what we send. Pure: no sockets, no clock.
//!
//! Every datagram is untrusted input; [`decode`] refuses anything malformed with a
//! [`Malformed`] reason and never panics (the property tests feed it arbitrary bytes).

use std::fmt;

/// RFC 2186 §1: "The ICP version is 2".
pub const VERSION: u8 = 2;
/// The fixed header: opcode, version, length, request number, options, option data, sender.
pub const HEADER_LEN: usize = 20;
/// RFC 2186 §1: "the maximum ICP message size is 16,384 octets".
pub const MAX_MESSAGE: usize = 16_384;
/// RFC 2186 §3: "ICP_FLAG_HIT_OBJ 0x80000000" (we never send objects in replies).
pub const FLAG_HIT_OBJ: u32 = 0x8000_0000;
/// RFC 2186 §3: "ICP_FLAG_SRC_RTT 0x40000000".
pub const FLAG_SRC_RTT: u32 = 0x4000_0000;

/// ICP opcodes (RFC 2186 §2), Squid's names without the `ICP_OP_` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    Query,
    Hit,
    Miss,
    Err,
    Secho,
    Decho,
    MissNofetch,
    Denied,
    HitObj,
}

impl Opcode {
    /// The number on the wire.
    pub fn code(self) -> u8 {
        match self {
            Self::Query => 1,
            Self::Hit => 2,
            Self::Miss => 3,
            Self::Err => 4,
            Self::Secho => 10,
            Self::Decho => 11,
            Self::MissNofetch => 21,
            Self::Denied => 22,
            Self::HitObj => 23,
        }
    }

    /// The opcode numbered `code`; `None` for `ICP_OP_INVALID` (0) and the unused numbers.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Query,
            2 => Self::Hit,
            3 => Self::Miss,
            4 => Self::Err,
            10 => Self::Secho,
            11 => Self::Decho,
            21 => Self::MissNofetch,
            22 => Self::Denied,
            23 => Self::HitObj,
            _ => return None,
        })
    }

    /// Squid's name (`ICP_HIT`, ...), for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "ICP_QUERY",
            Self::Hit => "ICP_HIT",
            Self::Miss => "ICP_MISS",
            Self::Err => "ICP_ERR",
            Self::Secho => "ICP_SECHO",
            Self::Decho => "ICP_DECHO",
            Self::MissNofetch => "ICP_MISS_NOFETCH",
            Self::Denied => "ICP_DENIED",
            Self::HitObj => "ICP_HIT_OBJ",
        }
    }
}

/// One ICP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub opcode: Opcode,
    /// RFC 2186 §1: "an opaque identifier"; a reply carries the query's.
    pub request_number: u32,
    /// `FLAG_*` bits.
    pub options: u32,
    pub option_data: u32,
    /// RFC 2186 §1: "the IPv4 address of the host sending the ICP message" ("should probably
    /// not be trusted"); Squid sends 0, and so do we.
    pub sender: u32,
    /// Queries only (RFC 2186 §2, ICP_OP_QUERY): "the IPv4 address of the client that caused
    /// the query to be sent".
    pub requester: u32,
    /// The URL, without its terminating NUL.
    pub url: String,
}

/// Why a datagram is not an ICP v2 message we can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than the 20-octet header (plus the requester address for a query).
    TooShort,
    /// Longer than RFC 2186's 16,384 octets.
    TooLong,
    /// Not version 2.
    Version(u8),
    /// The Message Length field disagrees with the datagram.
    Length,
    /// `ICP_OP_INVALID` or an unassigned number.
    Opcode(u8),
    /// The URL is empty, not ASCII text, or holds white space or control characters.
    Url,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort => f.write_str("shorter than an ICP header"),
            Self::TooLong => f.write_str("longer than 16384 octets"),
            Self::Version(v) => write!(f, "ICP version {v}, not 2"),
            Self::Length => f.write_str("message length field disagrees with the datagram"),
            Self::Opcode(o) => write!(f, "unknown opcode {o}"),
            Self::Url => f.write_str("the URL is empty or not printable ASCII"),
        }
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u32::from_be_bytes(word)
}

/// Decodes one datagram.
pub fn decode(datagram: &[u8]) -> Result<Message, Malformed> {
    if datagram.len() < HEADER_LEN {
        return Err(Malformed::TooShort);
    }
    if datagram.len() > MAX_MESSAGE {
        return Err(Malformed::TooLong);
    }
    let version = datagram[1];
    if version != VERSION {
        return Err(Malformed::Version(version));
    }
    let opcode = Opcode::from_code(datagram[0]).ok_or(Malformed::Opcode(datagram[0]))?;
    // RFC 2186 §1: "Message Length: the total length of the ICP message". Trailing octets past
    // it are ignored; a length past the datagram means it was cut short.
    let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    if length < HEADER_LEN || length > datagram.len() {
        return Err(Malformed::Length);
    }
    let message = &datagram[..length];
    let mut payload = &message[HEADER_LEN..];
    let mut requester = 0;
    if opcode == Opcode::Query {
        if payload.len() < 4 {
            return Err(Malformed::TooShort);
        }
        requester = u32_at(payload, 0);
        payload = &payload[4..];
    }
    // The URL is NUL-terminated (RFC 2186 §2); a missing NUL ends it at the message's end.
    // ICP_OP_HIT_OBJ's object data after the NUL is not used.
    let end = payload
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(payload.len());
    let url = &payload[..end];
    if url.is_empty() || !url.iter().all(|&b| b.is_ascii_graphic()) {
        return Err(Malformed::Url);
    }
    Ok(Message {
        opcode,
        request_number: u32_at(message, 4),
        options: u32_at(message, 8),
        option_data: u32_at(message, 12),
        sender: u32_at(message, 16),
        requester,
        url: String::from_utf8_lossy(url).into_owned(),
    })
}

/// Encodes `message`; `None` when its URL does not fit in one ICP message.
pub fn encode(message: &Message) -> Option<Vec<u8>> {
    let extra = if message.opcode == Opcode::Query {
        4
    } else {
        0
    };
    let length = HEADER_LEN + extra + message.url.len() + 1;
    if length > MAX_MESSAGE {
        return None;
    }
    let mut out = Vec::with_capacity(length);
    out.push(message.opcode.code());
    out.push(VERSION);
    out.extend_from_slice(&u16::try_from(length).ok()?.to_be_bytes());
    out.extend_from_slice(&message.request_number.to_be_bytes());
    out.extend_from_slice(&message.options.to_be_bytes());
    out.extend_from_slice(&message.option_data.to_be_bytes());
    out.extend_from_slice(&message.sender.to_be_bytes());
    if message.opcode == Opcode::Query {
        out.extend_from_slice(&message.requester.to_be_bytes());
    }
    out.extend_from_slice(message.url.as_bytes());
    out.push(0);
    Some(out)
}

/// A query for `url` numbered `request_number`.
pub fn query(url: &str, request_number: u32) -> Message {
    Message {
        opcode: Opcode::Query,
        request_number,
        options: 0,
        option_data: 0,
        sender: 0,
        requester: 0,
        url: url.to_owned(),
    }
}

/// The reply `opcode` to `query`: its request number and URL, no options (RFC 2186 §2).
pub fn reply(query: &Message, opcode: Opcode) -> Message {
    Message {
        opcode,
        request_number: query.request_number,
        options: 0,
        option_data: 0,
        sender: 0,
        requester: 0,
        url: query.url.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A query as Squid 5 sends it (`icpCreateMessage`): header, a zero requester address, the
    /// URL and its NUL.
    fn squid_query() -> Vec<u8> {
        let url = b"http://example.com/a";
        let len = (20 + 4 + url.len() + 1) as u16;
        let mut b = vec![1, 2];
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(&7u32.to_be_bytes());
        b.extend_from_slice(&[0; 12]);
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(url);
        b.push(0);
        b
    }

    #[test]
    fn decodes_a_squid_query() {
        let m = decode(&squid_query()).unwrap();
        assert_eq!(m.opcode, Opcode::Query);
        assert_eq!(m.request_number, 7);
        assert_eq!(m.url, "http://example.com/a");
        assert_eq!(
            encode(&m).unwrap(),
            squid_query(),
            "round trip is byte-exact"
        );
    }

    #[test]
    fn a_reply_carries_the_request_number_and_url_and_no_requester_field() {
        let q = decode(&squid_query()).unwrap();
        let bytes = encode(&reply(&q, Opcode::Hit)).unwrap();
        assert_eq!(bytes[0], 2);
        assert_eq!(&bytes[4..8], &7u32.to_be_bytes());
        assert_eq!(&bytes[20..], b"http://example.com/a\0");
        assert_eq!(
            usize::from(u16::from_be_bytes([bytes[2], bytes[3]])),
            bytes.len()
        );
    }

    #[test]
    fn refuses_what_is_not_icp_v2() {
        let mut q = squid_query();
        q[1] = 3;
        assert_eq!(decode(&q), Err(Malformed::Version(3)));
        let mut q = squid_query();
        q[0] = 0;
        assert_eq!(decode(&q), Err(Malformed::Opcode(0)));
        let mut q = squid_query();
        q[3] += 1;
        assert_eq!(
            decode(&q),
            Err(Malformed::Length),
            "length past the datagram"
        );
        assert_eq!(decode(&q[..19]), Err(Malformed::TooShort));
        let mut q = squid_query();
        let at = q.len() - 3;
        q[at] = b' ';
        assert_eq!(decode(&q), Err(Malformed::Url));
        let mut q = squid_query();
        q.truncate(24);
        q[2..4].copy_from_slice(&24u16.to_be_bytes());
        assert_eq!(decode(&q), Err(Malformed::Url), "empty URL");
        assert!(encode(&query(&"a".repeat(MAX_MESSAGE), 1)).is_none());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_mangled_valid_headers(
            opcode in any::<u8>(),
            length in any::<u16>(),
            tail in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut bytes = vec![opcode, VERSION];
            bytes.extend_from_slice(&length.to_be_bytes());
            bytes.extend_from_slice(&[0; 16]);
            bytes.extend_from_slice(&tail);
            if let Ok(m) = decode(&bytes) {
                prop_assert!(usize::from(length) <= bytes.len());
                prop_assert!(!m.url.is_empty());
            }
        }

        #[test]
        fn encode_then_decode_round_trips(
            code in prop::sample::select(vec![1u8, 2, 3, 4, 10, 11, 21, 22, 23]),
            request_number in any::<u32>(),
            options in any::<u32>(),
            url in "[!-~]{1,200}",
        ) {
            let opcode = Opcode::from_code(code).unwrap();
            let m = Message {
                opcode,
                request_number,
                options,
                option_data: 0,
                sender: 0,
                requester: 0,
                url,
            };
            let bytes = encode(&m).unwrap();
            prop_assert_eq!(decode(&bytes), Ok(m));
        }
    }
}
