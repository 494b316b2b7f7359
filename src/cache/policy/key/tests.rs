use super::*;
use http::header::HeaderValue;

fn uri(s: &str) -> Uri {
    s.parse().unwrap()
}

fn hm(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

#[test]
fn primary_key_lowercases_scheme_and_host() {
    assert_eq!(
        primary_key(&uri("HTTP://Example.COM/A/B?Q=1")).as_deref(),
        Some("http://example.com/A/B?Q=1")
    );
}

#[test]
fn primary_key_drops_default_port() {
    assert_eq!(
        primary_key(&uri("http://ex.com:80/x")).as_deref(),
        Some("http://ex.com/x")
    );
    assert_eq!(
        primary_key(&uri("https://ex.com:443/x")).as_deref(),
        Some("https://ex.com/x")
    );
    assert_eq!(
        primary_key(&uri("http://ex.com:080/x")).as_deref(),
        Some("http://ex.com/x")
    );
}

#[test]
fn primary_key_keeps_non_default_port() {
    assert_eq!(
        primary_key(&uri("https://ex.com:8443/x")).as_deref(),
        Some("https://ex.com:8443/x")
    );
    assert_eq!(
        primary_key(&uri("http://ex.com:443/")).as_deref(),
        Some("http://ex.com:443/")
    );
}

#[test]
fn primary_key_empty_path_is_slash() {
    assert_eq!(
        primary_key(&uri("http://ex.com")).as_deref(),
        Some("http://ex.com/")
    );
    assert_eq!(
        primary_key(&uri("http://ex.com?a")).as_deref(),
        Some("http://ex.com/?a")
    );
}

#[test]
fn primary_key_equivalent_uris_from_rfc9110_example() {
    // RFC 9110 §4.2.3: these three URIs are equivalent.
    let a = primary_key(&uri("http://example.com:80/~smith/home.html"));
    let b = primary_key(&uri("http://EXAMPLE.com/%7Esmith/home.html"));
    let c = primary_key(&uri("http://EXAMPLE.com:/%7esmith/home.html"));
    assert!(a.is_some());
    assert_eq!(a, b);
    assert_eq!(a, c);
}

#[test]
fn primary_key_keeps_reserved_percent_encoding_but_uppercases_hex() {
    assert_eq!(
        primary_key(&uri("http://ex.com/a%2fb%3F")).as_deref(),
        Some("http://ex.com/a%2Fb%3F")
    );
}

#[test]
fn primary_key_path_is_case_sensitive() {
    assert_ne!(
        primary_key(&uri("http://ex.com/A")),
        primary_key(&uri("http://ex.com/a"))
    );
}

#[test]
fn primary_key_ignores_userinfo() {
    assert_eq!(
        primary_key(&uri("http://u:p@ex.com/")).as_deref(),
        Some("http://ex.com/")
    );
}

#[test]
fn primary_key_none_for_origin_form() {
    assert_eq!(primary_key(&uri("/just/a/path")), None);
}

#[test]
fn primary_key_ipv6_host() {
    assert_eq!(
        primary_key(&uri("http://[::1]:80/")).as_deref(),
        Some("http://[::1]/")
    );
}

#[test]
fn vary_fields_are_lowercased_deduplicated_sorted() {
    let h = hm(&[
        ("vary", "User-Agent, accept-encoding"),
        ("vary", "Accept-Encoding"),
    ]);
    assert_eq!(
        vary_fields(&h),
        VarySpec::Fields(vec![
            HeaderName::from_static("accept-encoding"),
            HeaderName::from_static("user-agent"),
        ])
    );
}

#[test]
fn vary_star_anywhere_is_star() {
    assert_eq!(vary_fields(&hm(&[("vary", "accept, *")])), VarySpec::Star);
}

#[test]
fn no_vary_means_no_fields() {
    assert_eq!(vary_fields(&hm(&[])), VarySpec::Fields(vec![]));
    assert_eq!(
        secondary_key(&vary_fields(&hm(&[])), &hm(&[("accept", "x")])).as_deref(),
        Some("")
    );
}

#[test]
fn secondary_key_none_for_vary_star() {
    // §4.1: "A stored response with a Vary header field value containing a
    // member "*" always fails to match."
    assert_eq!(secondary_key(&VarySpec::Star, &hm(&[])), None);
    assert!(!vary_matches(&VarySpec::Star, "", &hm(&[])));
}

#[test]
fn absent_field_differs_from_empty_field() {
    let spec = vary_fields(&hm(&[("vary", "accept-language")]));
    let absent = secondary_key(&spec, &hm(&[])).unwrap();
    let empty = secondary_key(&spec, &hm(&[("accept-language", "")])).unwrap();
    assert_ne!(absent, empty);
}

#[test]
fn vary_match_tolerates_whitespace_around_commas() {
    let spec = vary_fields(&hm(&[("vary", "accept-encoding")]));
    let stored = secondary_key(&spec, &hm(&[("accept-encoding", "gzip,  br")])).unwrap();
    assert!(vary_matches(
        &spec,
        &stored,
        &hm(&[("accept-encoding", " gzip , br ")])
    ));
}

#[test]
fn vary_match_combines_multiple_field_lines() {
    // §4.1: "combining multiple header field lines with the same field name".
    let spec = vary_fields(&hm(&[("vary", "accept-encoding")]));
    let stored = secondary_key(&spec, &hm(&[("accept-encoding", "gzip, br")])).unwrap();
    assert!(vary_matches(
        &spec,
        &stored,
        &hm(&[("accept-encoding", "gzip"), ("accept-encoding", "br")])
    ));
}

#[test]
fn vary_mismatch_on_different_value_or_case() {
    let spec = vary_fields(&hm(&[("vary", "accept-language")]));
    let stored = secondary_key(&spec, &hm(&[("accept-language", "en")])).unwrap();
    assert!(!vary_matches(
        &spec,
        &stored,
        &hm(&[("accept-language", "fr")])
    ));
    // Language ranges are case-insensitive (RFC 4647 §2), so case is folded for this field.
    assert!(vary_matches(
        &spec,
        &stored,
        &hm(&[("accept-language", "EN")])
    ));
    assert!(!vary_matches(&spec, &stored, &hm(&[])));
    // Only whitespace normalisation is generic: other fields keep their case.
    let spec = vary_fields(&hm(&[("vary", "x-q")]));
    let stored = secondary_key(&spec, &hm(&[("x-q", "en")])).unwrap();
    assert!(!vary_matches(&spec, &stored, &hm(&[("x-q", "EN")])));
}

#[test]
fn accept_encoding_is_matched_by_the_stored_coding() {
    // RFC 9111 §4.1: curl's `deflate, gzip` stores a gzip copy a browser then finds.
    let spec = vary_fields(&hm(&[("vary", "Accept-Encoding")]));
    let stored = stored_secondary_key(
        &spec,
        &hm(&[("accept-encoding", "deflate, gzip")]),
        &hm(&[("content-encoding", "gzip")]),
    )
    .unwrap();
    for accepting in ["gzip, deflate", "gzip, deflate, br, zstd", "GZIP;q=0.5, br"] {
        assert!(
            vary_matches(&spec, &stored, &hm(&[("accept-encoding", accepting)])),
            "{accepting}"
        );
    }
    // A client that does not accept gzip never gets the gzip copy.
    assert!(!vary_matches(&spec, &stored, &hm(&[])));
    assert!(!vary_matches(
        &spec,
        &stored,
        &hm(&[("accept-encoding", "br")])
    ));
    assert!(!vary_matches(
        &spec,
        &stored,
        &hm(&[("accept-encoding", "gzip;q=0, br")])
    ));
    // An identity copy serves everyone who does not refuse identity.
    let plain = stored_secondary_key(&spec, &hm(&[("accept-encoding", "br")]), &hm(&[])).unwrap();
    assert!(vary_matches(&spec, &plain, &hm(&[])));
    assert!(vary_matches(
        &spec,
        &plain,
        &hm(&[("accept-encoding", "gzip, br")])
    ));
    assert!(!vary_matches(
        &spec,
        &plain,
        &hm(&[("accept-encoding", "gzip, identity;q=0")])
    ));
}

#[test]
fn accept_encoding_keys_keep_the_other_fields() {
    let spec = vary_fields(&hm(&[("vary", "accept-encoding, accept-language")]));
    let stored = stored_secondary_key(
        &spec,
        &hm(&[("accept-encoding", "gzip"), ("accept-language", "en")]),
        &hm(&[("content-encoding", "gzip")]),
    )
    .unwrap();
    assert!(vary_matches(
        &spec,
        &stored,
        &hm(&[("accept-encoding", "br, gzip"), ("accept-language", "EN")])
    ));
    assert!(!vary_matches(
        &spec,
        &stored,
        &hm(&[("accept-encoding", "br, gzip"), ("accept-language", "fr")])
    ));
}

#[test]
fn quoted_strings_keep_inner_whitespace() {
    let spec = vary_fields(&hm(&[("vary", "x-q")]));
    let a = secondary_key(&spec, &hm(&[("x-q", r#""a  ,  b""#)])).unwrap();
    let b = secondary_key(&spec, &hm(&[("x-q", r#""a , b""#)])).unwrap();
    assert_ne!(a, b);
}

#[test]
fn secondary_key_covers_every_nominated_field() {
    let spec = vary_fields(&hm(&[("vary", "b-field, a-field")]));
    let k = secondary_key(&spec, &hm(&[("a-field", "1")])).unwrap();
    assert_eq!(k, "a-field=1\nb-field!");
}

#[test]
fn non_ascii_values_are_escaped_injectively() {
    let spec = vary_fields(&hm(&[("vary", "x-b")]));
    let mut h1 = HeaderMap::new();
    h1.insert("x-b", HeaderValue::from_bytes(b"\xfe").unwrap());
    let mut h2 = HeaderMap::new();
    h2.insert("x-b", HeaderValue::from_bytes(b"\xff").unwrap());
    let k1 = secondary_key(&spec, &h1).unwrap();
    assert_ne!(k1, secondary_key(&spec, &h2).unwrap());
    assert_eq!(k1, "x-b=%FE");
}

#[test]
fn primary_key_keeps_raw_non_ascii_apart_from_other_spellings() {
    // Bytes a client sent raw (hyper accepts them in the target) must not be reread as
    // Latin-1 when the path also has a `%`: "/%41" + "é" used to become "/AÃ©".
    let key = |target: &[u8]| {
        let uri = Uri::try_from([b"http://h".as_slice(), target].concat()).unwrap();
        primary_key(&uri).unwrap()
    };
    let raw_e_acute = key(b"/%41\xc3\xa9");
    assert_eq!(raw_e_acute, "http://h/A\u{e9}");
    assert_eq!(raw_e_acute, key(b"/A\xc3\xa9"), "%41 is an unreserved A");
    assert_ne!(raw_e_acute, key(b"/A\xc3\x83\xc2\xa9"));
    assert_ne!(
        raw_e_acute,
        key(b"/A%C3%A9"),
        "raw and encoded are not §6.2.2-equivalent"
    );
    assert_eq!(key(b"/A%c3%a9"), key(b"/A%C3%A9"), "hex case is");
    assert_ne!(key(b"/a?x=%e9\xc3\xa9"), key(b"/a?x=%E9\xc3\x83\xc2\xa9"));
}

/// RFC 3986 §6.2.2 equivalence stated on bytes: a path is a sequence of (byte, encoded) where
/// the encoded flag is dropped for unreserved bytes (§6.2.2.2) and hex case is irrelevant
/// (§6.2.2.1); raw characters are their UTF-8 bytes, never reread.
fn equivalence_class(path: &str) -> Vec<(u8, bool)> {
    let bytes = path.as_bytes();
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let (hi, lo) = (bytes[i + 1], bytes[i + 2]);
            if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() {
                let hex = [hi, lo];
                let b = u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap();
                out.push((b, !unreserved(b)));
                i += 3;
                continue;
            }
        }
        out.push((bytes[i], false));
        i += 1;
    }
    out
}

#[test]
fn property_two_paths_share_a_key_exactly_when_rfc3986_makes_them_equivalent() {
    const PIECES: &[&str] = &[
        "a", "A", "-", ".", "~", "/", ";", "=", "%41", "%61", "%2F", "%2f", "%7E", "%7e", "%2E",
        "%C3", "%c3", "%A9", "%a9", "%83", "%C2", "\u{e9}", "\u{c3}", "\u{a9}", "%", "%4", "%zz",
        "\u{20ac}",
    ];
    // splitmix64: deterministic, so a failure reproduces.
    let mut state: u64 = 0x5EED;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut paths: Vec<String> = Vec::new();
    while paths.len() < 700 {
        let len = 1 + (next() % 4) as usize;
        let mut path = String::from("/");
        for _ in 0..len {
            path.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
        }
        paths.push(path);
    }
    let keyed: Vec<(String, Vec<(u8, bool)>)> = paths
        .iter()
        .filter_map(|p| {
            let uri = Uri::try_from(format!("http://h{p}")).ok()?;
            Some((primary_key(&uri)?, equivalence_class(uri.path())))
        })
        .collect();
    assert!(keyed.len() > 500, "most generated paths are URIs");
    let mut shared = 0;
    for (i, (key_a, class_a)) in keyed.iter().enumerate() {
        for (key_b, class_b) in &keyed[i + 1..] {
            assert_eq!(key_a == key_b, class_a == class_b, "{key_a:?} vs {key_b:?}");
            shared += usize::from(key_a == key_b);
        }
    }
    assert!(shared > 0, "the generator produces equivalent pairs too");
}

/// RFC 3986 §6.2.2.1 and §6.2.3 over whole URLs: scheme and host compare case-insensitively,
/// an empty or default port is the same as none, an empty path is "/", leading zeros of a
/// port do not matter; the path and query are compared as [`equivalence_class`] states.
/// Two generated URLs share a key exactly when those rules make them equivalent.
type UrlClass = (
    String,
    String,
    Option<u16>,
    Vec<(u8, bool)>,
    Option<Vec<(u8, bool)>>,
);

fn url_class(uri: &Uri) -> UrlClass {
    let scheme = uri.scheme_str().unwrap().to_ascii_lowercase();
    let port = uri.port_u16().or_else(|| default_port(&scheme));
    let path = if uri.path().is_empty() {
        "/"
    } else {
        uri.path()
    };
    (
        scheme,
        uri.host().unwrap().to_ascii_lowercase(),
        port,
        equivalence_class(path),
        uri.query().map(equivalence_class),
    )
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300)))]

    #[test]
    fn property_two_urls_share_a_key_exactly_when_rfc3986_makes_them_equivalent(
        parts in proptest::collection::vec((
            proptest::sample::select(vec!["http", "HTTP", "Http", "https"]),
            proptest::sample::select(vec!["h", "H", "a.example", "A.Example"]),
            proptest::sample::select(vec!["", ":", ":80", ":080", ":443", ":8080", ":08080"]),
            proptest::sample::select(vec!["", "/", "/a", "/%61", "/A", "/%2f", "/%2F", "/a/"]),
            proptest::sample::select(vec!["", "?", "?q", "?%71", "?Q", "?a=%7e", "?a=~", "?%3D"]),
        ), 2..12),
    ) {
        let uris: Vec<Uri> = parts
            .iter()
            .map(|(s, h, p, path, q)| Uri::try_from(format!("{s}://{h}{p}{path}{q}")).unwrap())
            .collect();
        for a in &uris {
            for b in &uris {
                let (ka, kb) = (primary_key(a).unwrap(), primary_key(b).unwrap());
                proptest::prop_assert_eq!(ka == kb, url_class(a) == url_class(b), "{} vs {}", a, b);
            }
        }
    }
}

#[test]
fn host_and_port_are_what_http_gives() {
    for text in [
        "example.com",
        "example.com:8080",
        "Example.COM:80",
        "user:pw@example.com:81",
        "a@b@example.com",
        "127.0.0.1:3128",
        "[::1]",
        "[::1]:8080",
        "u@[2001:db8::5]:443",
        "example.com:99999",
        "example.com:",
        "h:+80",
    ] {
        let Ok(authority) = text.parse::<http::uri::Authority>() else {
            continue;
        };
        assert_eq!(host_of(text), authority.host(), "{text}");
        assert_eq!(port_of(text), authority.port_u16(), "{text}");
    }
}
