//! Small, panic-free helpers for reading HTTP field values.
//!
//! Every policy module needs the same few primitives — walking all lines of a
//! field, splitting comma lists without breaking quoted strings, unquoting, and
//! reading date fields (parsed by [`super::date`]) — so they live here once instead of being
//! re-implemented (slightly differently) in each module.

use http::header::{HeaderMap, HeaderName};
use std::time::SystemTime;

pub use super::date::parse_http_date;

/// RFC 9111 §1.2.2: "the cache MUST consider the value to be 2147483648 (2^31)".
pub const DELTA_SECONDS_CAP: u32 = 2_147_483_648;

/// Returns each line of field `name` as text (lossy for obs-text bytes).
pub fn field_lines(headers: &HeaderMap, name: &HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// Returns the value of a singleton field when exactly one line is present.
pub fn single_value(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut it = headers.get_all(name).iter();
    let first = it.next()?;
    if it.next().is_some() {
        return None;
    }
    Some(String::from_utf8_lossy(first.as_bytes()).trim().to_owned())
}

/// Splits a `#rule` list on commas that are outside quoted strings.
///
/// RFC 9110 §5.6.1.2: "a recipient MUST accept empty list elements" and ignore
/// them, so empty elements are dropped; elements are trimmed of OWS.
pub fn split_list(value: &str) -> Vec<&str> {
    list_items(value).collect()
}

/// The elements [`split_list`] gives, one by one, without collecting them.
pub fn list_items(value: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(value);
    std::iter::from_fn(move || loop {
        let text = rest?;
        let mut in_quotes = false;
        let mut escaped = false;
        let mut end = None;
        for (i, c) in text.char_indices() {
            if in_quotes {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_quotes = false;
                }
                continue;
            }
            match c {
                '"' => in_quotes = true,
                ',' => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let part = match end {
            Some(comma) => {
                rest = text.get(comma.saturating_add(1)..);
                text.get(..comma).unwrap_or("")
            }
            None => {
                rest = None;
                text
            }
        };
        let part = part.trim_matches(|c| c == ' ' || c == '\t');
        if !part.is_empty() {
            return Some(part);
        }
    })
}

/// [`unquote`] that borrows `value` when it is not quoted (the usual directive argument).
pub fn unquoted(value: &str) -> std::borrow::Cow<'_, str> {
    if value.starts_with('"') {
        std::borrow::Cow::Owned(unquote(value))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

/// Removes the quotes and backslash escapes of a quoted-string (RFC 9110 §5.6.4).
///
/// A value that is not quoted is returned unchanged; an unterminated quote is
/// treated leniently as if it were terminated at the end of the input.
pub fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"') else {
        return value.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '"' => break,
            _ => out.push(c),
        }
    }
    out
}

/// True when `s` is a non-empty RFC 9110 §5.6.2 token.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// RFC 9110 §5.6.2 `tchar`, as one `match` (a search of the symbol list per byte cost a
/// `memchr` call for each `.` and `:` of every `host` forwarded in `Forwarded`).
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Parses delta-seconds (RFC 9111 §1.2.2), capping overflow at 2^31.
///
/// Returns None unless the input is `1*DIGIT`; signs, decimals and blanks are invalid.
pub fn parse_delta_seconds(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut acc: u64 = 0;
    for b in s.bytes() {
        acc = acc
            .saturating_mul(10)
            .saturating_add(u64::from(b.saturating_sub(b'0')));
        if acc > u64::from(DELTA_SECONDS_CAP) {
            return Some(DELTA_SECONDS_CAP);
        }
    }
    Some(u32::try_from(acc).unwrap_or(DELTA_SECONDS_CAP))
}

/// Parses the single-line HTTP-date field `name`; None when absent, repeated or invalid.
/// `now` places rfc850's two-digit years (see [`parse_http_date`]).
pub fn date_field(headers: &HeaderMap, name: &HeaderName, now: SystemTime) -> Option<SystemTime> {
    single_value(headers, name).and_then(|v| parse_http_date(&v, now))
}

/// Whole seconds from `earlier` to `later`, or 0 when `later` is not after `earlier`.
pub fn secs_between(later: SystemTime, earlier: SystemTime) -> u64 {
    later
        .duration_since(earlier)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_list_keeps_commas_inside_quoted_strings() {
        assert_eq!(
            split_list(r#"a, no-cache="x, y", b"#),
            vec!["a", r#"no-cache="x, y""#, "b"]
        );
    }

    #[test]
    fn split_list_ignores_empty_elements() {
        // RFC 9110 §5.6.1.2: empty list elements do not count.
        assert_eq!(split_list(" , a ,, b , "), vec!["a", "b"]);
    }

    #[test]
    fn split_list_handles_escaped_quote_in_quoted_string() {
        assert_eq!(split_list(r#""a\",b", c"#), vec![r#""a\",b""#, "c"]);
    }

    #[test]
    fn unquote_removes_backslash_escapes() {
        assert_eq!(unquote(r#""a\"b\\c""#), r#"a"b\c"#);
        assert_eq!(unquote("token"), "token");
    }

    #[test]
    fn delta_seconds_overflow_caps_at_2_pow_31() {
        assert_eq!(
            parse_delta_seconds("99999999999999999999999"),
            Some(DELTA_SECONDS_CAP)
        );
        assert_eq!(parse_delta_seconds("2147483649"), Some(DELTA_SECONDS_CAP));
        assert_eq!(parse_delta_seconds("2147483647"), Some(2_147_483_647));
    }

    #[test]
    fn delta_seconds_rejects_non_digits() {
        for bad in ["", "-1", "+1", "1.5", "abc", " 1"] {
            assert_eq!(parse_delta_seconds(bad), None, "{bad:?}");
        }
    }
}
