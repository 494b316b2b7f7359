//! `Proxy-Connection: keep-alive` from HTTP/1.0 clients, read as `Connection: keep-alive`.
//!
//! Old clients (and some current tools) speaking HTTP/1.0 to a proxy ask for a persistent
//! connection with the non-standard `Proxy-Connection: keep-alive` (RFC 9112 Appendix C.2.2).
//! hyper's server only reads `Connection`, and decides persistence while parsing the head, so
//! the field is renamed in the bytes before hyper parses them: `Proxy-Connection:` and
//! `Connection:` plus six spaces have the same length, and spaces after the colon are optional
//! whitespace (RFC 9112 §5.1), so the head keeps its size and framing. Only the exact
//! `keep-alive` value is renamed, only in a request head (the bytes up to the first empty
//! line of what a connection reads while it awaits a request), so body bytes and other options
//! are never touched. A field split across two reads is left alone (the connection then
//! closes after the response, as before).
//!
//! RFC 9112 §9.3 says "A proxy server MUST NOT maintain a persistent connection with an
//! HTTP/1.0 client", because an HTTP/1.0 proxy in front that did not understand `Connection`
//! would have forwarded the client's option and would hang waiting for the close. cuttle
//! follows Squid (`client_persistent_connections on`) instead: a client that names this
//! proxy's own option is taken at its word, and hyper only keeps the connection when the
//! response has a self-defined length, which §9.3 requires in any case.

const NAME: &[u8] = b"proxy-connection:";
const RENAMED: &[u8; 17] = b"Connection:      ";
const VALUE: &[u8] = b"keep-alive";

/// Renames `Proxy-Connection: keep-alive` fields in the head at the start of `bytes`.
pub fn rename_in_head(bytes: &mut [u8]) {
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |at| at + 2);
    let head = &mut bytes[..head_end];
    let mut at = 0;
    while let Some(found) = find_line_starting(&head[at..]) {
        let start = at + found;
        let value_start = start + NAME.len();
        let rest = &head[value_start..];
        let spaces = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        let value = &rest[spaces..];
        let is_keep_alive = value.len() >= VALUE.len() + 2
            && value[..VALUE.len()].eq_ignore_ascii_case(VALUE)
            && value[VALUE.len()..].starts_with(b"\r\n");
        if is_keep_alive {
            head[start..start + NAME.len()].copy_from_slice(RENAMED);
        }
        at = value_start;
    }
}

/// Where a line starting with `Proxy-Connection:` (any case) begins in `bytes`.
fn find_line_starting(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(NAME.len() + 2)
        .position(|w| w.starts_with(b"\r\n") && w[2..].eq_ignore_ascii_case(NAME))
        .map(|at| at + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renamed(text: &str) -> String {
        let mut bytes = text.as_bytes().to_vec();
        rename_in_head(&mut bytes);
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn keep_alive_is_renamed_with_the_same_length() {
        let head = "GET http://a/ HTTP/1.0\r\nHost: a\r\nProxy-Connection: Keep-Alive\r\n\r\n";
        let out = renamed(head);
        assert_eq!(out.len(), head.len());
        assert_eq!(
            out,
            "GET http://a/ HTTP/1.0\r\nHost: a\r\nConnection:       Keep-Alive\r\n\r\n"
        );
    }

    #[test]
    fn other_values_bodies_and_lookalikes_are_left_alone() {
        for text in [
            "GET / HTTP/1.0\r\nProxy-Connection: close\r\n\r\n",
            "GET / HTTP/1.0\r\nProxy-Connection: keep-alive, foo\r\n\r\n",
            "GET / HTTP/1.0\r\nX-Proxy-Connection: keep-alive\r\n\r\n",
            "POST / HTTP/1.0\r\nContent-Length: 31\r\n\r\n\r\nProxy-Connection: keep-alive\r\n",
        ] {
            assert_eq!(renamed(text), text);
        }
    }
}
