//! Decoding the chunked transfer coding (RFC 9112 §7.1): one state machine over a read
//! buffer, no I/O, shared by our HTTP/1 server (request content, `proxy::h1`) and our HTTP/1
//! client (response content, `upstream::h1`). Each side reads the socket, maps [`Error`] to its
//! own failure (a 400 and a close for a client, a 502 and a closed connection for a server) and
//! gives its own trailer [`Limits`].
//!
//! What it accepts, rule by rule:
//! - chunk-size is `1*HEXDIG` (§7.1): at least one digit, at most 16 (a `u64`; more is refused
//!   as an overflow, never wrapped), parsed by `httparse::parse_chunk_size`;
//! - chunk extensions (§7.1.1) are ignored, and bounded per message, all chunk-size lines
//!   together, by [`MAX_EXTENSIONS`] ("limit the total length of chunk extensions");
//! - every line ends in CRLF: a bare LF (§2.2 allows one only in the start line and the header
//!   section) or a bare CR is an error, so no one in front of us can read the framing otherwise
//!   (request smuggling, §11.2); the chunk data must be followed by exactly CRLF;
//! - the trailer section (§7.1.2) is handed on as a field map (the empty one as none), bounded
//!   in bytes and fields by the side's [`Limits`];
//! - nothing after the final CRLF is consumed (it is the next message on the connection).
//!
//! Data is split off the buffer without a copy.

use bytes::{Buf as _, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Most chunk-extension bytes one message may carry, over all its chunk-size lines (hyper's
/// limit, which both of our HTTP/1 sides had per line).
pub const MAX_EXTENSIONS: usize = 16 * 1024;
/// Most hex digits of a chunk size: 16 fill a `u64` (`httparse` refuses a 17th).
const MAX_SIZE_DIGITS: usize = 16;
/// Most trailer fields any side may allow (the slots `httparse` is given).
pub const MAX_TRAILER_FIELDS: usize = 100;

/// One side's bounds on the trailer section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of the trailer section, its closing empty line included.
    pub trailer_bytes: usize,
    /// Most trailer fields (at most [`MAX_TRAILER_FIELDS`]).
    pub trailer_fields: usize,
}

/// Why a chunked body is invalid; the message ends there and its connection with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid chunk size line")]
    SizeLine,
    #[error("chunk size too large")]
    Overflow,
    #[error("chunk extensions too long")]
    Extensions,
    #[error("chunk data not followed by CRLF")]
    DataEnd,
    #[error("invalid trailer section")]
    Trailers,
    #[error("trailer section too large")]
    TrailersTooLarge,
}

/// What the buffered bytes gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Content, split off the buffer (never empty).
    Data(Bytes),
    /// The trailer section's fields (never empty); the body has ended.
    Trailers(HeaderMap),
    /// The body has ended (no trailer fields).
    End,
    /// More bytes must be read first.
    More,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a chunk-size line.
    Size,
    /// This many bytes of chunk data left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
    /// The final CRLF was read.
    Done,
}

/// Decodes one chunked body from the buffer it is given, a piece at a time.
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    state: State,
    /// Chunk-extension bytes this message may still carry.
    extensions_left: usize,
    limits: Limits,
}

impl Decoder {
    /// A decoder at the start of a chunked body.
    pub fn new(limits: Limits) -> Self {
        Self {
            state: State::Size,
            extensions_left: MAX_EXTENSIONS,
            limits,
        }
    }

    /// True once the whole body, its trailer section included, has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The next step from `buf`, consuming what it decoded. [`Step::More`] leaves any partial
    /// line in `buf` for the next call; after the end every call is [`Step::End`].
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, Error> {
        loop {
            match self.state {
                State::Size => match self.size_line(buf)? {
                    Some(0) => self.state = State::Trailers,
                    Some(size) => self.state = State::Data(size),
                    None => return Ok(Step::More),
                },
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Step::Data(buf.split_to(take).freeze()));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Error::DataEnd);
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => {
                    let step = self.trailers(buf)?;
                    if step != Step::More {
                        self.state = State::Done;
                    }
                    return Ok(step);
                }
                State::Done => return Ok(Step::End),
            }
        }
    }

    /// Reads one chunk-size line: its size, or `None` while it is incomplete.
    fn size_line(&mut self, buf: &mut BytesMut) -> Result<Option<u64>, Error> {
        // chunk-size = 1*HEXDIG (§7.1): `httparse` would read an empty one as 0, the last
        // chunk.
        match buf.first() {
            None => return Ok(None),
            Some(b) if !b.is_ascii_hexdigit() => return Err(Error::SizeLine),
            Some(_) => {}
        }
        match httparse::parse_chunk_size(buf) {
            Ok(httparse::Status::Complete((used, size))) => {
                let line = &buf[..used];
                let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
                // What lies between the digits and the CRLF: whitespace and extensions.
                let extensions = used - digits - 2;
                if extensions > 0 {
                    if extensions > self.extensions_left {
                        return Err(Error::Extensions);
                    }
                    // `httparse` lets a bare LF through inside an extension (§7.1.1 has none).
                    if line[digits..used - 2].contains(&b'\n') {
                        return Err(Error::SizeLine);
                    }
                    self.extensions_left -= extensions;
                }
                buf.advance(used);
                Ok(Some(size))
            }
            // The line so far is digits, extensions and perhaps its CR.
            Ok(httparse::Status::Partial)
                if buf.len() > MAX_SIZE_DIGITS + self.extensions_left + 1 =>
            {
                Err(Error::Extensions)
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(_)
                if buf.iter().take_while(|b| b.is_ascii_hexdigit()).count() > MAX_SIZE_DIGITS =>
            {
                Err(Error::Overflow)
            }
            Err(_) => Err(Error::SizeLine),
        }
    }

    /// The trailer section (§7.1.2): the fields, the end of an empty one, or `More`.
    #[cold]
    #[inline(never)]
    fn trailers(&self, buf: &mut BytesMut) -> Result<Step, Error> {
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            return Ok(Step::End);
        }
        let mut slots = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
        let slots = &mut slots[..self.limits.trailer_fields.min(MAX_TRAILER_FIELDS)];
        match httparse::parse_headers(buf, slots) {
            Ok(httparse::Status::Complete((used, fields))) => {
                if used > self.limits.trailer_bytes {
                    return Err(Error::TrailersTooLarge);
                }
                // `httparse` ends lines at a bare LF too; the trailer section's lines end
                // in CRLF (§7.1.2), as does every other line of the body.
                let section = &buf[..used];
                let bare_lf = section.first() == Some(&b'\n')
                    || section.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r');
                if bare_lf {
                    return Err(Error::Trailers);
                }
                let mut map = HeaderMap::with_capacity(fields.len());
                for field in fields.iter() {
                    let name = HeaderName::from_bytes(field.name.as_bytes())
                        .map_err(|_| Error::Trailers)?;
                    let value =
                        HeaderValue::from_bytes(field.value).map_err(|_| Error::Trailers)?;
                    map.append(name, value);
                }
                buf.advance(used);
                Ok(if map.is_empty() {
                    Step::End
                } else {
                    Step::Trailers(map)
                })
            }
            // Still open after this many bytes: the whole section would be larger.
            Ok(httparse::Status::Partial) if buf.len() >= self.limits.trailer_bytes => {
                Err(Error::TrailersTooLarge)
            }
            Ok(httparse::Status::Partial) => Ok(Step::More),
            Err(httparse::Error::TooManyHeaders) => Err(Error::TrailersTooLarge),
            Err(_) => Err(Error::Trailers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        trailer_bytes: 1024,
        trailer_fields: 8,
    };

    /// What a decoder made of a whole message.
    #[derive(Debug, PartialEq, Eq)]
    struct Decoded {
        data: Vec<u8>,
        trailers: Option<HeaderMap>,
        /// Bytes after the message, left in the buffer.
        rest: Vec<u8>,
    }

    /// Feeds `wire` in the pieces `cuts` (offsets) makes, decoding after each.
    fn decode_cut(wire: &[u8], cuts: &[usize]) -> Result<Decoded, Error> {
        let mut decoder = Decoder::new(LIMITS);
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut trailers = None;
        let mut from = 0;
        for &to in cuts.iter().chain([&wire.len()]) {
            buf.extend_from_slice(&wire[from..to]);
            from = to;
            loop {
                match decoder.decode(&mut buf)? {
                    Step::Data(bytes) => {
                        assert!(!bytes.is_empty());
                        data.extend_from_slice(&bytes);
                    }
                    Step::Trailers(map) => {
                        assert!(trailers.replace(map).is_none(), "two trailer sections");
                        assert!(decoder.is_done());
                    }
                    Step::End => {
                        assert!(decoder.is_done());
                        break;
                    }
                    Step::More => break,
                }
            }
        }
        if !decoder.is_done() {
            return Ok(Decoded {
                data,
                trailers,
                rest: b"(unfinished)".to_vec(),
            });
        }
        // After the end: nothing more is taken.
        assert_eq!(decoder.decode(&mut buf), Ok(Step::End));
        Ok(Decoded {
            data,
            trailers,
            rest: buf.to_vec(),
        })
    }

    fn decode(wire: &[u8]) -> Result<Decoded, Error> {
        decode_cut(wire, &[])
    }

    fn done(data: &[u8]) -> Decoded {
        Decoded {
            data: data.to_vec(),
            trailers: None,
            rest: Vec::new(),
        }
    }

    const SAMPLE: &[u8] = b"5;name=value;other=\"q d\"\r\nhello\r\n\
        6 ; ext\r\n world\r\n\
        A\r\n0123456789\r\n\
        000;last\r\nx-sum: 21\r\nx-more: yes\r\n\r\n\
        GET /next HTTP/1.1\r\n";

    #[test]
    fn a_split_anywhere_gives_the_same_body() {
        let whole = decode(SAMPLE).unwrap();
        assert_eq!(whole.data, b"hello world0123456789");
        let trailers = whole.trailers.as_ref().unwrap();
        assert_eq!(trailers["x-sum"], "21");
        assert_eq!(trailers["x-more"], "yes");
        assert_eq!(whole.rest, b"GET /next HTTP/1.1\r\n");
        for cut in 0..=SAMPLE.len() {
            assert_eq!(decode_cut(SAMPLE, &[cut]).unwrap(), whole, "split at {cut}");
        }
        let every: Vec<usize> = (1..SAMPLE.len()).collect();
        assert_eq!(
            decode_cut(SAMPLE, &every).unwrap(),
            whole,
            "one byte at a time"
        );
    }

    #[test]
    fn chunk_sizes_are_hex_digits_and_never_overflow() {
        // §7.1 chunk-size = 1*HEXDIG, either case; last-chunk = 1*("0").
        assert_eq!(
            decode(b"a\r\n0123456789\r\n0\r\n\r\n").unwrap(),
            done(b"0123456789")
        );
        assert_eq!(
            decode(b"A\r\n0123456789\r\n00\r\n\r\n").unwrap(),
            done(b"0123456789")
        );
        for wire in [
            &b"\r\n\r\n"[..],
            b";ext\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"-1\r\nhello\r\n0\r\n\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"z\r\n",
        ] {
            assert_eq!(decode(wire), Err(Error::SizeLine), "{wire:?}");
        }
        // 16 digits fill a u64; a 17th is refused, never wrapped (§7.1).
        let mut decoder = Decoder::new(LIMITS);
        let mut buf = BytesMut::from(&b"ffffffffffffffff\r\nabc"[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Step::Data(Bytes::from_static(b"abc")))
        );
        assert_eq!(
            decode(b"fffffffffffffffff1\r\nhello\r\n0\r\n\r\n"),
            Err(Error::Overflow)
        );
        assert_eq!(
            decode_cut(b"10000000000000000\r\n", &[5, 16]),
            Err(Error::Overflow)
        );
    }

    #[test]
    fn extensions_are_ignored_and_bounded_per_message() {
        // §7.1.1: ignored, whitespace before the `;` included.
        assert_eq!(
            decode(b"5 ;a=b ; c=\"x;y\"\r\nhello\r\n0;end\r\n\r\n").unwrap(),
            done(b"hello")
        );
        let ext = |n: usize| format!(";{}", "e".repeat(n - 1));
        // Up to the bound in one line, or over many.
        let one = format!("1{}\r\nx\r\n0\r\n\r\n", ext(MAX_EXTENSIONS));
        assert_eq!(decode(one.as_bytes()).unwrap(), done(b"x"));
        let half = MAX_EXTENSIONS / 2;
        let two = format!("1{}\r\nx\r\n1{}\r\ny\r\n0\r\n\r\n", ext(half), ext(half));
        assert_eq!(decode(two.as_bytes()).unwrap(), done(b"xy"));
        // One byte more, in one line or over the message, is refused.
        let over = format!("1{}\r\nx\r\n0\r\n\r\n", ext(MAX_EXTENSIONS + 1));
        assert_eq!(decode(over.as_bytes()), Err(Error::Extensions));
        let over = format!("1{}\r\nx\r\n0{}\r\n\r\n", ext(half), ext(half + 1));
        assert_eq!(decode(over.as_bytes()), Err(Error::Extensions));
        // An unfinished line is refused once it cannot fit, without waiting for its end.
        let endless = format!("1{}", ext(MAX_EXTENSIONS + MAX_SIZE_DIGITS + 2));
        assert_eq!(decode(endless.as_bytes()), Err(Error::Extensions));
        let unfinished = format!("1{}", ext(MAX_EXTENSIONS));
        assert_eq!(decode(unfinished.as_bytes()).unwrap().rest, b"(unfinished)");
    }

    #[test]
    fn every_line_ends_in_crlf() {
        // A bare LF or CR ends no line of the body (§7.1; §2.2 allows a bare LF only in the
        // head).
        for (wire, error) in [
            (&b"5\nhello\r\n0\r\n\r\n"[..], Error::SizeLine),
            (b"5;a\nb\r\nhello\r\n0\r\n\r\n", Error::SizeLine),
            (b"5\rhello\r\n0\r\n\r\n", Error::SizeLine),
            (b"5;a\rb\r\nhello\r\n0\r\n\r\n", Error::SizeLine),
            (b"5\r\nhello\n0\r\n\r\n", Error::DataEnd),
            (b"5\r\nhelloXX0\r\n\r\n", Error::DataEnd),
            (b"3\r\nhello\r\n0\r\n\r\n", Error::DataEnd),
            (b"5\r\nhello\r\n0\n\r\n", Error::SizeLine),
            (b"5\r\nhello\r\n0\r\n\n", Error::Trailers),
            (b"5\r\nhello\r\n0\r\nx: 1\n\r\n", Error::Trailers),
            (b"5\r\nhello\r\n0\r\nx: 1\r\n\n", Error::Trailers),
            (b"5\r\nhello\r\n0\r\nx: 1\rx\r\n\r\n", Error::Trailers),
        ] {
            assert_eq!(
                decode(wire),
                Err(error),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn the_trailer_section_is_handed_on_and_bounded() {
        // §7.1.2: fields after the last chunk; none at all is the plain end.
        let got = decode(b"0\r\nx-a: 1\r\nx-a: 2\r\n\r\nrest").unwrap();
        let values: Vec<_> = got
            .trailers
            .as_ref()
            .unwrap()
            .get_all("x-a")
            .iter()
            .collect();
        assert_eq!(values, ["1", "2"]);
        assert_eq!(got.rest, b"rest");
        assert_eq!(decode(b"0\r\n\r\nrest").unwrap().trailers, None);
        for wire in [
            &b"0\r\nbad field\r\n\r\n"[..],
            b"0\r\n: empty name\r\n\r\n",
            b"0\r\nx-a: 1\r\n folded\r\n\r\n",
            b"0\r\nx-a : 1\r\n\r\n",
        ] {
            assert_eq!(decode(wire), Err(Error::Trailers), "{wire:?}");
        }
        // Bytes: the section with its empty line may be `trailer_bytes` long, not more,
        // whether it arrives whole or in pieces.
        let field = |len: usize| format!("x: {}\r\n\r\n", "v".repeat(len - 7));
        let fits = format!("0\r\n{}", field(LIMITS.trailer_bytes));
        assert!(decode(fits.as_bytes()).unwrap().trailers.is_some());
        let over = format!("0\r\n{}", field(LIMITS.trailer_bytes + 1));
        assert_eq!(decode(over.as_bytes()), Err(Error::TrailersTooLarge));
        assert_eq!(
            decode_cut(over.as_bytes(), &[3 + LIMITS.trailer_bytes]),
            Err(Error::TrailersTooLarge)
        );
        let open = "x: ".repeat(LIMITS.trailer_bytes);
        assert_eq!(
            decode(format!("0\r\n{open}").as_bytes()),
            Err(Error::TrailersTooLarge)
        );
        // Fields: `trailer_fields` of them, not more.
        let fields = |n: usize| (0..n).map(|i| format!("x-{i}: v\r\n")).collect::<String>();
        let fits = format!("0\r\n{}\r\n", fields(LIMITS.trailer_fields));
        let got = decode(fits.as_bytes()).unwrap();
        assert_eq!(got.trailers.unwrap().len(), LIMITS.trailer_fields);
        let over = format!("0\r\n{}\r\n", fields(LIMITS.trailer_fields + 1));
        assert_eq!(decode(over.as_bytes()), Err(Error::TrailersTooLarge));
    }
}
