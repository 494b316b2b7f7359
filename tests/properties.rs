//! Property tests over the parsers a client, an origin or an operator feeds: `Cache-Control`,
//! HTTP dates, the Vary secondary key, the config loader and the access-log formatter.
//!
//! Issue 11 asks for fuzzing; cargo-fuzz needs a nightly toolchain, so these run the same
//! functions under `proptest` on stable, in the normal suite. Case counts are small so the file
//! runs in a few seconds; run longer with e.g. `PROPTEST_CASES=100000 cargo test --release
//! --test properties` (the environment variable overrides every `cases` below).

use std::time::{Duration, UNIX_EPOCH};

use cuttle::cache::key::{secondary_key, vary_fields, VarySpec};
use cuttle::cache::policy::cache_control::{RequestDirectives, ResponseDirectives};
use cuttle::cache::policy::fields::parse_http_date;
use cuttle::config::load_str;
use cuttle::log::{AccessRecord, Format, LineFormat};
use http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL};
use proptest::prelude::*;

/// Cases per property unless `PROPTEST_CASES` says otherwise.
fn cases(n: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    ProptestConfig {
        cases: n,
        ..ProptestConfig::default()
    }
}

/// Header-ish text: mostly the bytes that matter to a list parser, plus anything at all.
fn field_text() -> impl Strategy<Value = Vec<u8>> {
    let interesting = prop::sample::select(b"=,;\"\\ \t-0123456789aAzZ".to_vec());
    let word = prop::sample::select(vec![
        &b"max-age"[..],
        b"s-maxage",
        b"no-cache",
        b"private",
        b"public",
        b"no-store",
        b"must-revalidate",
        b"stale-while-revalidate",
        b"stale-if-error",
        b"max-stale",
        b"min-fresh",
        b"only-if-cached",
        b"4294967296",
        b"-1",
        b"1.5",
        b"\"a,b\"",
    ])
    .prop_map(<[u8]>::to_vec);
    prop::collection::vec(
        prop_oneof![
            4 => interesting.prop_map(|b| vec![b]),
            3 => word,
            1 => any::<u8>().prop_map(|b| vec![b]),
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

/// A header map with one or more lines of `name`, each any bytes a `HeaderValue` accepts.
fn headers_with(name: HeaderName, lines: &[Vec<u8>]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in lines {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            h.append(name.clone(), v);
        }
    }
    h
}

/// One well-formed response directive and its canonical text.
fn directive() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("no-store".to_owned()),
        Just("public".to_owned()),
        Just("must-revalidate".to_owned()),
        Just("proxy-revalidate".to_owned()),
        Just("immutable".to_owned()),
        (0u32..100_000).prop_map(|n| format!("max-age={n}")),
        (0u32..100_000).prop_map(|n| format!("s-maxage={n}")),
        (0u32..1000).prop_map(|n| format!("stale-while-revalidate={n}")),
        (0u32..1000).prop_map(|n| format!("stale-if-error={n}")),
        Just("no-cache".to_owned()),
        Just("private".to_owned()),
        prop::sample::subsequence(vec!["set-cookie", "x-a", "authorization"], 1..3)
            .prop_map(|names| format!("no-cache=\"{}\"", names.join(", "))),
        prop::sample::subsequence(vec!["set-cookie", "x-a", "authorization"], 1..3)
            .prop_map(|names| format!("private=\"{}\"", names.join(","))),
        Just("x-unknown=\"q\"".to_owned()),
    ]
}

/// `text` re-spelt as a peer may: random letter case of names, OWS around commas and `=`-free
/// spots, and split over several field lines.
fn respell(list: &[String], upper: &[bool], split: &[bool], ows: &[bool]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = vec![Vec::new()];
    for (i, d) in list.iter().enumerate() {
        let (name, arg) = match d.split_once('=') {
            Some((n, a)) => (n.to_owned(), Some(a)),
            None => (d.clone(), None),
        };
        let name = if upper.get(i).copied().unwrap_or(false) {
            name.to_ascii_uppercase()
        } else {
            name
        };
        let mut item = name;
        if let Some(a) = arg {
            item.push('=');
            item.push_str(a);
        }
        let new_line = i > 0 && split.get(i).copied().unwrap_or(false);
        if new_line {
            lines.push(Vec::new());
        }
        let Some(line) = lines.last_mut() else {
            continue;
        };
        if !line.is_empty() {
            line.extend_from_slice(if ows.get(i).copied().unwrap_or(false) {
                b" ,\t "
            } else {
                b","
            });
        }
        line.extend_from_slice(item.as_bytes());
    }
    lines
}

proptest! {
    #![proptest_config(cases(400))]

    /// RFC 9111 §5.2: whatever the bytes, parsing `Cache-Control` never panics, request or
    /// response side, one line or several.
    #[test]
    fn cache_control_never_panics(lines in prop::collection::vec(field_text(), 0..4)) {
        let h = headers_with(CACHE_CONTROL, &lines);
        let _ = ResponseDirectives::from_headers(&h);
        let _ = RequestDirectives::from_headers(&h);
    }

    /// Directives compare case-insensitively, OWS around commas does not matter, and a list split
    /// over several field lines means the same as one line (RFC 9110 §5.3): every spelling of a
    /// directive list parses to what its canonical one-line spelling parses to.
    #[test]
    fn cache_control_spellings_of_one_list_parse_alike(
        list in prop::collection::vec(directive(), 1..8),
        upper in prop::collection::vec(any::<bool>(), 8),
        split in prop::collection::vec(any::<bool>(), 8),
        ows in prop::collection::vec(any::<bool>(), 8),
    ) {
        let canonical = headers_with(CACHE_CONTROL, &[list.join(", ").into_bytes()]);
        let respelt = headers_with(CACHE_CONTROL, &respell(&list, &upper, &split, &ows));
        prop_assert_eq!(
            ResponseDirectives::from_headers(&canonical),
            ResponseDirectives::from_headers(&respelt)
        );
        prop_assert_eq!(
            RequestDirectives::from_headers(&canonical),
            RequestDirectives::from_headers(&respelt)
        );
    }

    /// The date parser never panics on any text, whatever the clock says.
    #[test]
    fn http_date_never_panics(
        s in ".{0,80}",
        b in prop::collection::vec(any::<u8>(), 0..80),
        now in any::<u64>(),
    ) {
        let now = UNIX_EPOCH + Duration::from_secs(now % 253_402_300_799);
        let _ = parse_http_date(&s, now);
        let _ = parse_http_date(&String::from_utf8_lossy(&b), now);
    }

    /// Every IMF-fixdate cuttle (or anyone) formats parses back to the same second, in any
    /// letter case and with surrounding OWS (RFC 9110 §5.6.7, RFC 9111 §4.2).
    #[test]
    fn formatted_dates_parse_back(
        secs in 0u64..253_402_300_799,
        lower in any::<bool>(),
        pad in prop::sample::select(vec!["", " ", "\t", " \t "]),
    ) {
        let t = UNIX_EPOCH + Duration::from_secs(secs);
        let mut text = httpdate::fmt_http_date(t);
        if lower {
            text = text.to_ascii_lowercase();
        }
        let padded = format!("{pad}{text}{pad}");
        prop_assert_eq!(parse_http_date(&padded, t), Some(t), "{:?}", padded);
    }

    /// The Vary parser and the secondary-key builder never panic, and equal requests give equal
    /// keys (RFC 9111 §4.1); `Vary: *` gives no key at all.
    #[test]
    fn vary_and_secondary_key_never_panic_and_are_deterministic(
        vary in prop::collection::vec(field_text(), 0..3),
        names in prop::collection::vec(
            prop::sample::select(vec!["accept", "accept-encoding", "x-a", "cookie"]), 0..6),
        values in prop::collection::vec(field_text(), 6),
    ) {
        let spec = vary_fields(&headers_with(http::header::VARY, &vary));
        let mut req = HeaderMap::new();
        for (name, value) in names.iter().zip(&values) {
            if let Ok(v) = HeaderValue::from_bytes(value) {
                req.append(HeaderName::from_static(name), v);
            }
        }
        let a = secondary_key(&spec, &req);
        let b = secondary_key(&spec, &req.clone());
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.is_none(), spec == VarySpec::Star);
        if let Some(k) = a {
            // The key is text with one line per nominated field: no raw control bytes can
            // make two different requests collide through a separator.
            prop_assert!(k.bytes().all(|c| c == b'\n' || !c.is_ascii_control()), "{:?}", k);
        }
    }

    /// Two requests whose nominated fields differ only in OWS around commas and line splitting
    /// share a secondary key (§4.1 "combining multiple field lines ... normalizing whitespace").
    #[test]
    fn secondary_key_ignores_ows_and_line_splits(
        items in prop::collection::vec(
            prop::sample::select(vec!["gzip", "br", "deflate", "q=0.5", "text/html"]), 1..5),
        ows in prop::collection::vec(any::<bool>(), 5),
        split_at in 0usize..5,
    ) {
        let spec = VarySpec::Fields(vec![http::header::ACCEPT_ENCODING]);
        let mut one = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&items.join(",")) {
            one.append(http::header::ACCEPT_ENCODING, v);
        }
        let mut spaced = String::new();
        let mut split = HeaderMap::new();
        for (i, item) in items.iter().enumerate() {
            if i == split_at && !spaced.is_empty() {
                if let Ok(v) = HeaderValue::from_str(&spaced) {
                    split.append(http::header::ACCEPT_ENCODING, v);
                }
                spaced.clear();
            }
            if !spaced.is_empty() {
                spaced.push_str(if ows[i] { " , " } else { "," });
            }
            spaced.push_str(item);
        }
        if let Ok(v) = HeaderValue::from_str(&format!(" {spaced}\t")) {
            split.append(http::header::ACCEPT_ENCODING, v);
        }
        prop_assert_eq!(secondary_key(&spec, &one), secondary_key(&spec, &split));
    }
}

/// TOML-ish text: fragments of real config keys and values glued with TOML punctuation.
fn config_text() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "\n",
        "\n",
        "[",
        "]",
        "[[",
        "]]",
        "=",
        " = ",
        "\"",
        "'",
        "#",
        ",",
        "{",
        "}",
        ".",
        "port",
        "http_port",
        "[[http_port]]",
        "[[http_port]]\nport = 0\n",
        "mode = \"reverse\"",
        "mode = \"forward\"",
        "[cache]",
        "memory_size = \"64 MiB\"",
        "max_object_size = \"-1\"",
        "[[acl]]",
        "name = \"x\"",
        "src = [\"10.0.0.0/8\"]",
        "dst = [\"999.1.1.1\"]",
        "[[http_access]]",
        "allow = [\"all\"]",
        "deny = [\"nope\"]",
        "timeout = \"30s\"",
        "timeout = \"forever\"",
        "[upstream]",
        "[[site]]",
        "hosts = [\"a.example\"]",
        "path_prefix = \"/p/\"",
        "upstream = \"x\"",
        "refresh_pattern",
        "0",
        "65536",
        "-1",
        "true",
        "1e999",
        "\u{e9}",
        "\0",
        "\r",
    ]);
    prop::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(cases(300))]

    /// Any text given as a config either loads or fails with `file:line: key: reason` (the
    /// line inside the text): the loader never panics.
    #[test]
    fn config_loader_never_panics_and_locates_errors(text in config_text()) {
        match load_str("prop.toml", &text) {
            Ok(_) => {}
            Err(e) => {
                let shown = e.to_string();
                prop_assert!(shown.starts_with("prop.toml"), "{}", shown);
                prop_assert!(!e.reason.is_empty(), "{}", shown);
                // `file:line: key: reason`: every error points at a line inside the text.
                prop_assert!(e.line.is_some(), "no line: {} for {:?}", shown, text);
                if let Some(line) = e.line {
                    prop_assert!(line >= 1 && line <= text.lines().count().max(1) + 1,
                        "line {} outside the text: {}", line, shown);
                }
            }
        }
    }

    /// Any record formats as exactly one line in every format: Squid's as printable ASCII
    /// with its ten fields, `combined` with no control character, `json` as one parseable
    /// object. No client, origin or peer can forge a log line or shift a field (an
    /// operator's log parser reads fields by position or line by line).
    #[test]
    fn access_log_line_is_one_line_in_every_format(
        secs in any::<u32>(),
        millis in any::<u64>(),
        status in any::<u16>(),
        bytes in any::<u64>(),
        method in "[A-Za-z!#$%&'*+.^_`|~-]{1,12}",
        url in ".{0,60}",
        user in prop::option::of(".{0,20}"),
        peer in prop::option::of(".{0,20}"),
        ctype in prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
        agent in prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
        strip in any::<bool>(),
    ) {
        let header = |bytes: Option<Vec<u8>>| bytes.and_then(|b| HeaderValue::from_bytes(&b).ok());
        let rec = AccessRecord {
            time: UNIX_EPOCH + Duration::from_secs(u64::from(secs)),
            elapsed: Duration::from_millis(millis),
            client: "127.0.0.1".into(),
            code: "TCP_MISS",
            status,
            bytes,
            body_bytes: bytes / 2,
            method: http::Method::from_bytes(method.as_bytes()).unwrap_or(http::Method::GET),
            url,
            origin_form: false,
            version: http::Version::HTTP_11,
            user,
            hierarchy: "HIER_DIRECT",
            peer,
            upstream_addr: None,
            upstream_wait: None,
            content_type: header(ctype),
            cache_status: None,
            referer: None,
            user_agent: header(agent),
        };
        for format in Format::ALL {
            let mut line = String::new();
            LineFormat { format, strip_query_terms: strip }.write(&rec, &mut line);
            let body = line.strip_suffix('\n');
            prop_assert!(body.is_some(), "ends with a newline: {:?}", line);
            let body = body.unwrap_or_default();
            prop_assert!(
                !body.chars().any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}'),
                "{:?}: {:?}", format, line
            );
            match format {
                Format::Squid => {
                    prop_assert!(body.is_ascii(), "{:?}", line);
                    let fields: Vec<&str> = body.split(' ').filter(|f| !f.is_empty()).collect();
                    prop_assert_eq!(fields.len(), 10, "{:?}", line);
                }
                Format::Json => {
                    let parsed = serde_json::from_str::<serde_json::Value>(body);
                    prop_assert!(parsed.is_ok_and(|v| v.is_object()), "{:?}", line);
                }
                Format::Combined => {}
            }
        }
    }
}
