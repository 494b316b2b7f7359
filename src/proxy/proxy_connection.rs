//! `Proxy-Connection: keep-alive` from HTTP/1.0 clients, read as `Connection: keep-alive`.
//!
//! Old clients (and some current tools) speaking HTTP/1.0 to a proxy ask for a persistent
//! connection with the non-standard `Proxy-Connection: keep-alive` (RFC 9112 Appendix C.2.2).
//! The HTTP/1 server (`h1`) decides persistence from `Connection` while it reads the head, so
//! it reads such a field as `Connection: keep-alive` (the request path then sees, and drops as
//! hop-by-hop, a `Connection` field). Only the exact `keep-alive` value is taken; any other
//! `Proxy-Connection` stays what it is.
//!
//! RFC 9112 §9.3 says "A proxy server MUST NOT maintain a persistent connection with an
//! HTTP/1.0 client", because an HTTP/1.0 proxy in front that did not understand `Connection`
//! would have forwarded the client's option and would hang waiting for the close. cuttle
//! follows Squid (`client_persistent_connections on`) instead: a client that names this
//! proxy's own option is taken at its word, and the server only keeps the connection when the
//! response has a self-defined length, which §9.3 requires in any case.

const NAME: &[u8] = b"proxy-connection";
const VALUE: &[u8] = b"keep-alive";

/// True when the field line `name: value` (as received; `value` without surrounding
/// whitespace) is `Proxy-Connection: keep-alive`, to be read as `Connection: keep-alive`.
pub fn means_keep_alive(name: &[u8], value: &[u8]) -> bool {
    name.eq_ignore_ascii_case(NAME) && value.eq_ignore_ascii_case(VALUE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_keep_alive_is_taken() {
        assert!(means_keep_alive(b"Proxy-Connection", b"keep-alive"));
        assert!(means_keep_alive(b"proxy-connection", b"KEEP-ALIVE"));
        for (name, value) in [
            (&b"Proxy-Connection"[..], &b"close"[..]),
            (b"Proxy-Connection", b"keep-alive, foo"),
            (b"X-Proxy-Connection", b"keep-alive"),
            (b"Proxy-Connection", b"keep-aliv"),
            (b"Connection", b"keep-alive"),
        ] {
            assert!(!means_keep_alive(name, value), "{name:?}: {value:?}");
        }
    }
}
