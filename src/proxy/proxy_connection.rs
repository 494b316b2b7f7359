//! `Proxy-Connection: keep-alive` from HTTP/1.0 clients, read as `Connection: keep-alive`.
//!
//! Old clients (and some current tools) speaking HTTP/1.0 to a proxy ask for a persistent
//! connection with the non-standard `Proxy-Connection: keep-alive` (RFC 9112 Appendix C.2.2).
//! The HTTP/1 server (`h1`, like hyper's before it) only reads `Connection`, and decides
//! persistence while parsing the head, so the field is renamed in the bytes before they are
//! parsed: `Proxy-Connection:` and
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
//! proxy's own option is taken at its word, and the server only keeps the connection when the
//! response has a self-defined length, which §9.3 requires in any case.

const NAME: &[u8] = b"proxy-connection:";
const RENAMED: &[u8; 17] = b"Connection:      ";
const VALUE: &[u8] = b"keep-alive";

/// Renames `Proxy-Connection: keep-alive` fields in the head at the start of `bytes`.
///
/// One pass over the line breaks (this runs on every read a connection makes while it awaits
/// a request): each line that follows a CRLF is a field line until the empty line.
pub fn rename_in_head(bytes: &mut [u8]) {
    let mut from = 0;
    while let Some(found) = bytes[from..].iter().position(|&b| b == b'\n') {
        let lf = from + found;
        from = lf + 1;
        if lf == 0 || bytes[lf - 1] != b'\r' {
            continue;
        }
        let line = &mut bytes[from..];
        if line.starts_with(b"\r\n") {
            // The empty line: the head ends here.
            return;
        }
        if line.len() < NAME.len() || !line[..NAME.len()].eq_ignore_ascii_case(NAME) {
            continue;
        }
        let rest = &line[NAME.len()..];
        let spaces = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        let value = &rest[spaces..];
        let is_keep_alive = value.len() >= VALUE.len() + 2
            && value[..VALUE.len()].eq_ignore_ascii_case(VALUE)
            && value[VALUE.len()..].starts_with(b"\r\n");
        if is_keep_alive {
            line[..NAME.len()].copy_from_slice(RENAMED);
        }
    }
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

    /// The scan before the one-pass version: a window search for the head's end, then for
    /// each `CRLF Proxy-Connection:` in it.
    fn renamed_by_windows(text: &str) -> String {
        let mut bytes = text.as_bytes().to_vec();
        let head_end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(bytes.len(), |at| at + 2);
        let head = &mut bytes[..head_end];
        let mut at = 0;
        while let Some(found) = head[at..]
            .windows(NAME.len() + 2)
            .position(|w| w.starts_with(b"\r\n") && w[2..].eq_ignore_ascii_case(NAME))
        {
            let start = at + found + 2;
            let value_start = start + NAME.len();
            let rest = &head[value_start..];
            let spaces = rest
                .iter()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count();
            let value = &rest[spaces..];
            if value.len() >= VALUE.len() + 2
                && value[..VALUE.len()].eq_ignore_ascii_case(VALUE)
                && value[VALUE.len()..].starts_with(b"\r\n")
            {
                head[start..start + NAME.len()].copy_from_slice(RENAMED);
            }
            at = value_start;
        }
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn the_one_pass_scan_renames_what_the_window_scan_did() {
        let lines = [
            "GET http://a/ HTTP/1.0",
            "Host: a",
            "Proxy-Connection: keep-alive",
            "proxy-connection:\tKEEP-ALIVE",
            "Proxy-Connection: keep-alive, x",
            "Proxy-Connection:keep-alive",
            "X-Proxy-Connection: keep-alive",
            "Proxy-Connection: keep-aliv",
            "",
            "Proxy-Connection: keep-alive",
        ];
        // Every sequence of up to four of these lines, joined with CRLF, bare LF or nothing
        // at the end, and every prefix of each (a head split across reads).
        let mut cases = 0;
        for a in 0..lines.len() {
            for b in 0..lines.len() {
                for c in 0..lines.len() {
                    for sep in ["\r\n", "\n"] {
                        let text = [lines[a], lines[b], lines[c], "", ""].join(sep);
                        for cut in 0..=text.len() {
                            let prefix = &text[..cut];
                            assert_eq!(renamed(prefix), renamed_by_windows(prefix), "{prefix:?}");
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert!(cases > 10_000);
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
