//! The field names an HTTP/1 peer sends, remembered per connection by their position.
//!
//! A client or a server on a keep-alive connection spells the same field names in the same
//! order message after message, and turning a name's bytes into a [`HeaderName`] (folding its
//! case, matching it against the standard names, copying a name that is not one of them) is
//! the largest share of building a message's header map. [`NameMemo`] compares the bytes at a
//! position with those seen there last time and hands out the name parsed then; different
//! bytes are parsed and take the position over. The same bytes always make the same name, so
//! a memo changes nothing but the work.

use http::header::{HeaderName, InvalidHeaderName};

/// Positions remembered; the fields after them are parsed every time.
const POSITIONS: usize = 24;

/// Longer names are parsed every time (and keep the memo small).
const LONGEST: usize = 48;

/// One connection's memo: a few hundred bytes at most, two allocations on its first message.
#[derive(Debug, Default)]
pub struct NameMemo {
    /// The names' bytes one after another, as the peer spelled them.
    spelled: Vec<u8>,
    /// For each position from the first: where its spelling ends in `spelled`, and its name.
    names: Vec<(usize, HeaderName)>,
}

impl NameMemo {
    /// The name spelled `raw` at position `at` of a message's fields.
    pub fn name(&mut self, at: usize, raw: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
        if let Some((end, name)) = self.names.get(at) {
            if self.spelled.get(self.start_of(at)..*end) == Some(raw) {
                return Ok(name.clone());
            }
        }
        let name = HeaderName::from_bytes(raw)?;
        self.remember(at, raw, &name);
        Ok(name)
    }

    /// Positions remembered, for tests of the codecs that use a memo.
    #[cfg(test)]
    pub fn remembered(&self) -> usize {
        self.names.len()
    }

    /// Where position `at`'s spelling starts in `spelled`.
    fn start_of(&self, at: usize) -> usize {
        at.checked_sub(1)
            .and_then(|before| self.names.get(before))
            .map_or(0, |(end, _)| *end)
    }

    /// Makes `name`, spelled `raw`, position `at`'s, forgetting the positions after it: the
    /// spellings stay one after another. A position past the remembered ones is not kept.
    fn remember(&mut self, at: usize, raw: &[u8], name: &HeaderName) {
        if at > self.names.len() || at >= POSITIONS || raw.len() > LONGEST {
            return;
        }
        let start = self.start_of(at);
        self.names.truncate(at);
        self.spelled.truncate(start);
        self.spelled.extend_from_slice(raw);
        self.names.push((self.spelled.len(), name.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    fn names(memo: &mut NameMemo, message: &[&str]) -> Vec<HeaderName> {
        message
            .iter()
            .enumerate()
            .map(|(at, raw)| memo.name(at, raw.as_bytes()).unwrap())
            .collect()
    }

    #[test]
    fn a_repeated_message_gets_the_names_parsed_the_first_time() {
        let mut memo = NameMemo::default();
        let message = ["Content-Type", "X-Request-Id", "content-length"];
        let first = names(&mut memo, &message);
        assert_eq!(
            first,
            [
                header::CONTENT_TYPE,
                HeaderName::from_static("x-request-id"),
                header::CONTENT_LENGTH
            ]
        );
        assert_eq!(memo.names.len(), 3);
        assert_eq!(memo.spelled, b"Content-TypeX-Request-Idcontent-length");
        assert_eq!(names(&mut memo, &message), first);
        assert_eq!(memo.spelled, b"Content-TypeX-Request-Idcontent-length");
    }

    #[test]
    fn different_bytes_at_a_position_are_parsed_and_take_it_over() {
        let mut memo = NameMemo::default();
        names(&mut memo, &["Host", "Accept", "Cookie"]);
        // Another spelling of a name is still that name; another name is another name.
        let second = names(&mut memo, &["host", "Accept-Encoding", "Cookie"]);
        assert_eq!(
            second,
            [header::HOST, header::ACCEPT_ENCODING, header::COOKIE]
        );
        assert_eq!(memo.spelled, b"hostAccept-EncodingCookie");
        // A shorter message, then the longer one again.
        assert_eq!(names(&mut memo, &["Host"]), [header::HOST]);
        assert_eq!(
            names(&mut memo, &["Host", "Accept"]),
            [header::HOST, header::ACCEPT]
        );
        assert_eq!(memo.spelled, b"HostAccept");
    }

    #[test]
    fn invalid_names_are_errors_and_never_remembered() {
        let mut memo = NameMemo::default();
        assert!(memo.name(0, b"Bad Name").is_err());
        assert!(memo.name(0, b"").is_err());
        assert!(memo.names.is_empty());
        assert_eq!(memo.name(0, b"Age").unwrap(), header::AGE);
        assert!(memo.name(0, b"Ag e").is_err());
        assert_eq!(memo.name(0, b"Age").unwrap(), header::AGE);
    }

    #[test]
    fn long_names_and_late_positions_are_parsed_every_time() {
        let mut memo = NameMemo::default();
        let long = "x".repeat(LONGEST + 1);
        assert_eq!(memo.name(0, long.as_bytes()).unwrap().as_str(), long);
        assert!(memo.names.is_empty());
        // Nothing is kept past a position that was not.
        assert_eq!(memo.name(1, b"Vary").unwrap(), header::VARY);
        assert!(memo.names.is_empty());
        let many: Vec<String> = (0..POSITIONS + 2).map(|i| format!("x-f{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let parsed = names(&mut memo, &refs);
        assert_eq!(parsed.len(), POSITIONS + 2);
        assert_eq!(parsed[POSITIONS + 1].as_str(), "x-f25");
        assert_eq!(memo.names.len(), POSITIONS);
    }
}
