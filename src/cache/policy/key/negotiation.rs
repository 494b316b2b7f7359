//! Vary normalisation for the two negotiation fields whose spelling varies most between
//! clients, so a browser finds what curl cached (RFC 9111 §4.1).
//!
//! §4.1 lets a cache match selecting fields after "normalizing both header field values in a
//! way that is known to have identical semantics, according to the header field's
//! specification", and, when several stored responses could be used, choose one by the field's
//! own mechanism ("qvalues on Accept and similar request header fields").
//!
//! * `Accept-Encoding` (RFC 9110 §12.5.3) is keyed by what the *response* is: its content coding
//!   (`gzip`, `br`, ... or `identity`). A request is then matched against every stored coding it
//!   accepts, in its own order of preference, so `gzip, deflate`, `deflate, gzip` and Chrome's
//!   `gzip, deflate, br, zstd` all find a stored gzip copy, and a client that accepts no coding
//!   only ever gets an identity copy.
//! * `Accept-Language` (RFC 9110 §12.5.4) is case-insensitive (language ranges, RFC 4647) and
//!   its order carries no meaning beyond the q-values, so it is compared as a set of
//!   (lower-cased range, weight) pairs, sorted.

use http::header::{HeaderMap, ACCEPT_ENCODING, CONTENT_ENCODING};

use super::super::fields::{field_lines, split_list};

/// The value `identity` has in keys: the representation carries no content coding.
pub const IDENTITY: &str = "identity";

/// Codings a `*` in Accept-Encoding stands for, in the order this cache prefers to serve them
/// when a client weighs them equally (smallest first).
const KNOWN_CODINGS: [&str; 5] = ["br", "zstd", "gzip", "deflate", "compress"];

/// Most stored codings one request is matched against (bounds the store probes of a lookup).
pub const MAX_CODINGS: usize = 6;

/// The coding a stored response is keyed under: its `Content-Encoding`, normalised
/// (lower case, `x-gzip` → `gzip`, RFC 9110 §8.4.1), `identity` when it has none.
pub fn response_coding(resp_headers: &HeaderMap) -> String {
    let codings: Vec<String> = field_lines(resp_headers, &CONTENT_ENCODING)
        .iter()
        .flat_map(|line| {
            split_list(line)
                .into_iter()
                .map(canonical_coding)
                .collect::<Vec<_>>()
        })
        .filter(|c| c != IDENTITY)
        .collect();
    if codings.is_empty() {
        IDENTITY.to_owned()
    } else {
        codings.join(",")
    }
}

/// The stored codings a request accepts, most preferred first (RFC 9110 §12.5.3).
///
/// Without the field, or with an empty one, only `identity` is offered: §12.5.3 lets an absent
/// field mean "anything", but clients that send none (curl without `--compressed`, most
/// scripts) cannot decode what they did not ask for. Codings weighted `q=0` are refused;
/// `identity` is acceptable unless refused by name or by `*;q=0`. Equal weights are broken by
/// [`KNOWN_CODINGS`]' order, `identity` last, other named codings before it.
pub fn accepted_codings(req_headers: &HeaderMap) -> Vec<String> {
    let lines = field_lines(req_headers, &ACCEPT_ENCODING);
    let mut listed: Vec<(String, u16)> = Vec::new();
    let mut star: Option<u16> = None;
    for line in &lines {
        for member in split_list(line) {
            let mut parts = member.split(';');
            let coding = canonical_coding(parts.next().unwrap_or(""));
            if coding.is_empty() {
                continue;
            }
            let Some(weight) = weight(parts) else {
                // An unreadable weight: the member is ignored rather than guessed at.
                continue;
            };
            if coding == "*" {
                star = Some(star.map_or(weight, |w| w.max(weight)));
            } else if let Some(entry) = listed.iter_mut().find(|(c, _)| *c == coding) {
                entry.1 = entry.1.max(weight);
            } else {
                listed.push((coding, weight));
            }
        }
    }
    let mut offered: Vec<(String, u16)> = listed.iter().filter(|(_, w)| *w > 0).cloned().collect();
    if let Some(w) = star.filter(|w| *w > 0) {
        for known in KNOWN_CODINGS {
            if !listed.iter().any(|(c, _)| c == known) {
                offered.push((known.to_owned(), w));
            }
        }
    }
    let identity_refused = listed
        .iter()
        .find(|(c, _)| c == IDENTITY)
        .map_or(star == Some(0), |(_, w)| *w == 0);
    if !identity_refused && !offered.iter().any(|(c, _)| c == IDENTITY) {
        // Implicitly acceptable (§12.5.3), and preferred least.
        offered.push((IDENTITY.to_owned(), 0));
    }
    offered.sort_by(|a, b| b.1.cmp(&a.1).then(rank(&a.0).cmp(&rank(&b.0))));
    offered.truncate(MAX_CODINGS);
    offered.into_iter().map(|(c, _)| c).collect()
}

/// Tie-break order: known codings in [`KNOWN_CODINGS`] order, then others, `identity` last.
fn rank(coding: &str) -> usize {
    if coding == IDENTITY {
        return usize::MAX;
    }
    KNOWN_CODINGS
        .iter()
        .position(|k| *k == coding)
        .unwrap_or(KNOWN_CODINGS.len())
}

/// Lower case, and the aliases RFC 9110 §8.4.1.1/§8.4.1.3 declare equivalent.
fn canonical_coding(token: &str) -> String {
    let token = token.trim().to_ascii_lowercase();
    match token.as_str() {
        "x-gzip" => "gzip".to_owned(),
        "x-compress" => "compress".to_owned(),
        _ => token,
    }
}

/// The weight of a member in thousandths (RFC 9110 §12.4.2), 1000 without a `q` parameter;
/// `None` for a malformed weight.
fn weight<'a>(params: impl Iterator<Item = &'a str>) -> Option<u16> {
    let mut weight = 1000;
    for param in params {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("q") {
            weight = parse_qvalue(value.trim())?;
        }
    }
    Some(weight)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value = format!("{frac:0<3}").parse::<u16>().ok()?;
    match int {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

/// `Accept-Language` as a sorted set of `range;q=thousandths` (weights first, then the range),
/// lower-cased. `None` when a member is malformed: the caller then compares the value as
/// received (never matching more than it should).
pub fn normalised_language(lines: &[&[u8]]) -> Option<String> {
    let mut ranges: Vec<(String, u16)> = Vec::new();
    for line in lines {
        let line = std::str::from_utf8(line).ok()?;
        for member in split_list(line) {
            let mut parts = member.split(';');
            let range = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            if range.is_empty()
                || !range
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
            {
                return None;
            }
            let weight = weight(parts)?;
            match ranges.iter_mut().find(|(r, _)| *r == range) {
                Some(entry) => entry.1 = entry.1.max(weight),
                None => ranges.push((range, weight)),
            }
        }
    }
    ranges.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut out = String::new();
    for (i, (range, weight)) in ranges.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(range);
        if *weight != 1000 {
            out.push_str(";q=");
            out.push_str(itoa::Buffer::new().format(*weight));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;

    fn req(ae: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = ae {
            h.insert(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn accepted(ae: Option<&str>) -> Vec<String> {
        accepted_codings(&req(ae))
    }

    #[test]
    fn order_and_case_do_not_matter_and_identity_comes_last() {
        assert_eq!(
            accepted(Some("gzip, deflate")),
            ["gzip", "deflate", "identity"]
        );
        assert_eq!(
            accepted(Some("deflate, GZIP")),
            ["gzip", "deflate", "identity"]
        );
        assert_eq!(
            accepted(Some("gzip, deflate, br, zstd")),
            ["br", "zstd", "gzip", "deflate", "identity"]
        );
    }

    #[test]
    fn weights_decide_before_the_tie_break() {
        assert_eq!(
            accepted(Some("br;q=0.5, gzip;q=0.9, identity;q=1")),
            ["identity", "gzip", "br"]
        );
    }

    #[test]
    fn refused_codings_and_identity() {
        assert_eq!(accepted(Some("gzip, br;q=0")), ["gzip", "identity"]);
        assert_eq!(accepted(Some("gzip, identity;q=0")), ["gzip"]);
        assert_eq!(accepted(Some("gzip, *;q=0")), ["gzip"]);
        assert_eq!(
            accepted(Some("gzip, *;q=0, identity")),
            ["gzip", "identity"]
        );
    }

    #[test]
    fn absent_or_empty_field_means_identity_only() {
        assert_eq!(accepted(None), ["identity"]);
        assert_eq!(accepted(Some("")), ["identity"]);
    }

    #[test]
    fn star_offers_the_known_codings_not_listed() {
        assert_eq!(
            accepted(Some("*, gzip;q=0.5")),
            ["br", "zstd", "deflate", "compress", "gzip", "identity"]
        );
    }

    #[test]
    fn aliases_and_malformed_weights() {
        assert_eq!(accepted(Some("x-gzip")), ["gzip", "identity"]);
        // A malformed weight drops the member, never widens the match.
        assert_eq!(accepted(Some("br;q=2, gzip")), ["gzip", "identity"]);
        assert_eq!(parse_qvalue("0.123"), Some(123));
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        assert_eq!(parse_qvalue("1.5"), None);
        assert_eq!(parse_qvalue("0.1234"), None);
    }

    #[test]
    fn response_coding_is_normalised() {
        let mut h = HeaderMap::new();
        assert_eq!(response_coding(&h), "identity");
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("X-Gzip"));
        assert_eq!(response_coding(&h), "gzip");
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip, br"));
        assert_eq!(response_coding(&h), "gzip,br");
    }

    #[test]
    fn language_case_and_order_are_normalised() {
        let a = normalised_language(&[b"en-GB, fr;q=0.5, de".as_slice()]).unwrap();
        let b = normalised_language(&[b"de, FR;q=0.50, en-gb".as_slice()]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, "de,en-gb,fr;q=500");
        // Different weights are different preferences.
        let c = normalised_language(&[b"en-GB, fr;q=0.6, de".as_slice()]).unwrap();
        assert_ne!(a, c);
        assert_eq!(normalised_language(&[b"en; q=x".as_slice()]), None);
    }
}
