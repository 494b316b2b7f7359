//! Golden lines for each format: a fixed record, the exact text expected.

use std::time::Duration;

use http::HeaderValue;

use super::json::KEYS;
use super::*;
use crate::log::record::sample;

fn line(format: Format, strip_query_terms: bool, rec: &AccessRecord) -> String {
    let mut out = String::new();
    LineFormat {
        format,
        strip_query_terms,
    }
    .write(rec, &mut out);
    out
}

/// A record whose client-controlled fields hold quotes, backslashes, spaces, control bytes,
/// non-ASCII UTF-8 and a byte that is not UTF-8 at all.
fn hostile() -> AccessRecord {
    let mut rec = sample();
    rec.url = "http://example.com/caf\u{e9}/\r\nx \"y\"?q=secret".into();
    rec.user = Some("a\"b".into());
    rec.user_agent =
        Some(HeaderValue::from_bytes(b"Mozilla \"evil\" \\ caf\xc3\xa9\tend\xff").unwrap());
    rec.referer = Some(HeaderValue::from_static(""));
    rec.content_type = Some(HeaderValue::from_bytes(b"text/plain;\t charset=\xff x").unwrap());
    rec.method = http::Method::from_bytes(b"PURGE").unwrap();
    rec.elapsed = Duration::from_micros(1_234_567_891);
    rec
}

fn with_query() -> AccessRecord {
    let mut rec = sample();
    rec.url = "http://example.com/search?q=secret&page=2".into();
    rec
}

// === squid ===

#[test]
fn squid_native_line() {
    assert_eq!(
        line(Format::Squid, true, &sample()),
        "1700000000.123     45 127.0.0.1 TCP_MISS/200 1234 GET http://example.com/a%20b - HIER_DIRECT/example.com text/html;+charset=utf-8\n"
    );
    let mut legacy = String::new();
    format_squid(&sample(), &mut legacy);
    assert_eq!(legacy, line(Format::Squid, true, &sample()));
}

#[test]
fn squid_missing_fields_are_dashes() {
    let mut rec = sample();
    rec.peer = None;
    rec.content_type = None;
    rec.hierarchy = "HIER_NONE";
    rec.code = "TCP_DENIED";
    rec.status = 403;
    let out = line(Format::Squid, true, &rec);
    assert!(
        out.ends_with("TCP_DENIED/403 1234 GET http://example.com/a%20b - HIER_NONE/- -\n"),
        "{out}"
    );
}

#[test]
fn squid_odd_fields_stay_one_ascii_word_each() {
    assert_eq!(
        line(Format::Squid, false, &hostile()),
        "1700000000.123 1234567 127.0.0.1 TCP_MISS/200 1234 PURGE http://example.com/caf%C3%A9/%0D%0Ax%20\"y\"?q=secret a\"b HIER_DIRECT/example.com text/plain;+charset=+x\n"
    );
}

#[test]
fn squid_text_fields_with_spaces_or_non_ascii_stay_one_word() {
    // Method, user and peer are text already: the usual word is copied whole, the others
    // take the same rules as header bytes (whitespace runs as `+`, non-ASCII dropped).
    let mut rec = sample();
    rec.user = Some(" Ren\u{e9}e  Dupont ".into());
    rec.peer = Some("origin\tone".into());
    rec.method = http::Method::from_bytes(b"PROPFIND").unwrap();
    assert_eq!(
        line(Format::Squid, false, &rec),
        "1700000000.123     45 127.0.0.1 TCP_MISS/200 1234 PROPFIND http://example.com/a%20b Rene+Dupont HIER_DIRECT/origin+one text/html;+charset=utf-8\n"
    );
    rec.user = Some(String::new());
    rec.peer = Some("\u{e9}".into());
    assert!(line(Format::Squid, false, &rec).ends_with(
        " PROPFIND http://example.com/a%20b - HIER_DIRECT/- text/html;+charset=utf-8\n"
    ));
}

#[test]
fn squid_strip_query_terms_keeps_the_question_mark() {
    assert_eq!(
        line(Format::Squid, true, &with_query()),
        "1700000000.123     45 127.0.0.1 TCP_MISS/200 1234 GET http://example.com/search? - HIER_DIRECT/example.com text/html;+charset=utf-8\n"
    );
    assert_eq!(
        line(Format::Squid, false, &with_query()),
        "1700000000.123     45 127.0.0.1 TCP_MISS/200 1234 GET http://example.com/search?q=secret&page=2 - HIER_DIRECT/example.com text/html;+charset=utf-8\n"
    );
}

// === combined ===

#[test]
fn combined_line() {
    assert_eq!(
        line(Format::Combined, true, &sample()),
        "127.0.0.1 - - [14/Nov/2023:22:13:20 +0000] \"GET http://example.com/a b HTTP/1.1\" 200 1000 \"http://example.com/\" \"curl/8.5.0\"\n"
    );
}

#[test]
fn combined_escapes_as_nginx_does() {
    // nginx's escape=default: `"`, `\`, bytes below 0x20 and from 0x7f up as \xHH; an empty
    // field stays empty between its quotes.
    assert_eq!(
        line(Format::Combined, false, &hostile()),
        "127.0.0.1 - a\\x22b [14/Nov/2023:22:13:20 +0000] \"PURGE http://example.com/caf\\xC3\\xA9/\\x0D\\x0Ax \\x22y\\x22?q=secret HTTP/1.1\" 200 1000 \"\" \"Mozilla \\x22evil\\x22 \\x5C caf\\xC3\\xA9\\x09end\\xFF\"\n"
    );
}

#[test]
fn combined_request_line_has_the_target_as_sent() {
    let mut rec = with_query();
    rec.origin_form = true;
    rec.version = http::Version::HTTP_2;
    rec.status = 0;
    rec.body_bytes = 0;
    rec.referer = None;
    rec.user_agent = None;
    assert_eq!(
        line(Format::Combined, true, &rec),
        "127.0.0.1 - - [14/Nov/2023:22:13:20 +0000] \"GET /search? HTTP/2.0\" 000 0 \"-\" \"-\"\n"
    );
    assert!(
        line(Format::Combined, false, &rec).contains("\"GET /search?q=secret&page=2 HTTP/2.0\"")
    );
    rec.url = "/never-routed?x".into();
    assert!(line(Format::Combined, false, &rec).contains("\"GET /never-routed?x HTTP/2.0\""));
    rec.url = "http://example.com".into();
    assert!(line(Format::Combined, false, &rec).contains("\"GET / HTTP/2.0\""));
    let mut connect = sample();
    connect.method = http::Method::CONNECT;
    connect.url = "example.com:443".into();
    assert!(line(Format::Combined, true, &connect).contains("\"CONNECT example.com:443 HTTP/1.1\""));
}

// === json ===

#[test]
fn json_line() {
    assert_eq!(
        line(Format::Json, true, &sample()),
        concat!(
            r#"{"time":"2023-11-14T22:13:20.123Z","unix":1700000000.123,"elapsed_ms":45.0,"#,
            r#""client":"127.0.0.1","method":"GET","url":"http://example.com/a b","#,
            r#""http_version":"HTTP/1.1","status":200,"bytes":1234,"body_bytes":1000,"#,
            r#""result_code":"TCP_MISS","hierarchy_code":"HIER_DIRECT","peer":"example.com","#,
            r#""upstream_addr":"192.0.2.7:80","upstream_wait_ms":12.0,"#,
            r#""cache_status":"cuttle; fwd=miss; stored","#,
            r#""content_type":"text/html; charset=utf-8","user":null,"#,
            r#""referer":"http://example.com/","user_agent":"curl/8.5.0"}"#,
            "\n"
        )
    );
}

#[test]
fn json_escapes_and_round_trips() {
    let out = line(Format::Json, false, &hostile());
    assert_eq!(out.matches('\n').count(), 1, "one line: {out}");
    assert!(
        out.contains(r#""url":"http://example.com/café/\r\nx \"y\"?q=secret""#),
        "{out}"
    );
    assert!(
        out.contains(
            r#""user_agent":"Mozilla \"evil\" \\ café\tend\u{fffd}""#
                .replace("\\u{fffd}", "\u{fffd}")
                .as_str()
        ),
        "{out}"
    );
    assert!(out.contains(r#""elapsed_ms":1234567.891,"#), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["url"],
        "http://example.com/caf\u{e9}/\r\nx \"y\"?q=secret"
    );
    assert_eq!(v["user"], "a\"b");
    assert_eq!(v["referer"], "");
    assert_eq!(
        v["user_agent"],
        "Mozilla \"evil\" \\ caf\u{e9}\tend\u{fffd}"
    );
    assert_eq!(v["method"], "PURGE");
}

#[test]
fn json_has_every_documented_key_in_order_and_nulls_for_unknowns() {
    let mut rec = sample();
    rec.peer = None;
    rec.upstream_addr = None;
    rec.upstream_wait = None;
    rec.cache_status = None;
    rec.content_type = None;
    rec.referer = None;
    rec.user_agent = None;
    for rec in [sample(), rec.clone()] {
        let out = line(Format::Json, true, &rec);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let object = v.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut documented = KEYS.to_vec();
        documented.sort_unstable();
        assert_eq!(keys, documented);
        let positions: Vec<usize> = KEYS
            .iter()
            .map(|k| out.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{out}");
    }
    let out = line(Format::Json, true, &rec);
    for key in [
        "peer",
        "upstream_addr",
        "upstream_wait_ms",
        "cache_status",
        "content_type",
        "referer",
        "user_agent",
    ] {
        assert!(out.contains(&format!("\"{key}\":null")), "{key}: {out}");
    }
}

#[test]
fn json_strip_query_terms() {
    let v: serde_json::Value =
        serde_json::from_str(&line(Format::Json, true, &with_query())).unwrap();
    assert_eq!(v["url"], "http://example.com/search?");
    let v: serde_json::Value =
        serde_json::from_str(&line(Format::Json, false, &with_query())).unwrap();
    assert_eq!(v["url"], "http://example.com/search?q=secret&page=2");
}

#[test]
fn json_unix_time_prints_its_milliseconds_exactly() {
    for ms in [
        0u64,
        1,
        999,
        1_700_000_000_001,
        1_700_000_000_123,
        4_102_444_800_999,
    ] {
        let mut rec = sample();
        rec.time = std::time::UNIX_EPOCH + Duration::from_millis(ms);
        let v: serde_json::Value = serde_json::from_str(&line(Format::Json, true, &rec)).unwrap();
        let text = v["unix"].to_string();
        let (secs, frac) = text.split_once('.').unwrap_or((&text, "0"));
        assert_eq!(secs.parse::<u64>().unwrap(), ms / 1000, "{text}");
        assert_eq!(
            format!("{frac:0<3}").parse::<u64>().unwrap(),
            ms % 1000,
            "{text}"
        );
    }
}

// === shared ===

#[test]
fn strip_query_terms_is_squids() {
    let mut rec = sample();
    for (url, logged) in [
        ("http://h/p?a=1", "http://h/p?"),
        ("http://h/p?a?b", "http://h/p?"),
        ("http://h/p?", "http://h/p?"),
        ("http://h/p", "http://h/p"),
    ] {
        rec.url = url.into();
        assert_eq!(logged_url(&rec, true), logged);
        assert_eq!(logged_url(&rec, false), url);
    }
    rec.method = http::Method::CONNECT;
    rec.url = "h:443".into();
    assert_eq!(logged_url(&rec, true), "h:443");
}

#[test]
fn format_names_parse_and_unknown_ones_list_the_valid_ones() {
    for format in Format::ALL {
        assert_eq!(format.as_str().parse::<Format>().unwrap(), format);
    }
    let err = "xml".parse::<Format>().unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown access-log format \"xml\" (expected squid, combined or json)"
    );
}

// === every format ===

/// U+0085 and U+2028/2029 end a line for some readers (Python's `splitlines`, log shippers),
/// and an empty field shifts every later one: neither may reach a line raw.
#[test]
fn unicode_line_ends_and_an_empty_url_never_split_or_shift_a_line() {
    let mut rec = sample();
    rec.url = "http://example.com/\u{85}a\u{2028}b\u{2029}c".into();
    rec.user_agent = Some(HeaderValue::from_bytes("ua\u{2028}x".as_bytes()).unwrap());
    for format in Format::ALL {
        let out = line(format, false, &rec);
        assert_eq!(out.matches('\n').count(), 1, "{format:?}: {out:?}");
        assert!(
            !out.contains(['\u{85}', '\u{2028}', '\u{2029}']),
            "{format:?}: {out:?}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(line(Format::Json, false, &rec).trim_end()).unwrap();
    assert_eq!(json["url"], "http://example.com/\u{85}a\u{2028}b\u{2029}c");
    assert!(line(Format::Squid, false, &rec).contains(" http://example.com/%C2%85a%E2%80%A8b"));
    rec.url = String::new();
    assert!(line(Format::Squid, false, &rec).contains(" GET - - HIER_DIRECT/"));
}
