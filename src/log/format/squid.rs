//! Squid's native access-log line:
//! `%ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt`, that is time, elapsed ms,
//! client, code/status, bytes, method, URL, user, hierarchy/peer, content type.

use http::HeaderValue;

use super::super::record::AccessRecord;

/// Appends one Squid-native line for `rec` with its URL as recorded (no query stripping).
pub fn format_squid(rec: &AccessRecord, out: &mut String) {
    write(rec, &rec.url, out);
}

/// Appends one Squid-native line (with a trailing newline) for `rec`, showing `url`.
///
/// Written field by field with `itoa` rather than `format!`: this runs once per request.
pub fn write(rec: &AccessRecord, url: &str, out: &mut String) {
    let since_epoch = rec
        .time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut num = itoa::Buffer::new();
    // %ts.%03tu
    out.push_str(num.format(since_epoch.as_secs()));
    out.push('.');
    push_padded(out, num.format(since_epoch.subsec_millis()), 3, '0');
    out.push(' ');
    // %6tr
    push_padded(out, num.format(rec.elapsed.as_millis()), 6, ' ');
    out.push(' ');
    out.push_str(&rec.client);
    out.push(' ');
    out.push_str(rec.code);
    out.push('/');
    push_padded(out, num.format(rec.status), 3, '0');
    out.push(' ');
    out.push_str(num.format(rec.bytes));
    out.push(' ');
    push_text_word(out, rec.method.as_str());
    out.push(' ');
    push_url(out, url);
    out.push(' ');
    push_text_word(out, rec.user.as_deref().unwrap_or(""));
    out.push(' ');
    out.push_str(rec.hierarchy);
    out.push('/');
    push_text_word(out, rec.peer.as_deref().unwrap_or(""));
    out.push(' ');
    push_word(
        out,
        rec.content_type
            .as_ref()
            .map_or(&b""[..], HeaderValue::as_bytes),
    );
    out.push('\n');
}

/// `digits` right-aligned in `width` columns, padded with `pad`.
fn push_padded(out: &mut String, digits: &str, width: usize, pad: char) {
    for _ in digits.len()..width {
        out.push(pad);
    }
    out.push_str(digits);
}

/// [`push_word`] for a field that is text already (method, user, peer): the usual word, all
/// printable, is copied whole without checking again that it is UTF-8 (callgrind: that check
/// was most of the cost of these three fields, and this runs for every request).
fn push_text_word(out: &mut String, value: &str) {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic()) {
        out.push_str(value);
        return;
    }
    push_word(out, value.as_bytes());
}

/// A free-text field as one log word: `-` when empty, runs of whitespace as `+`, and bytes that
/// are not printable ASCII dropped (the line must stay one line of ASCII words).
fn push_word(out: &mut String, value: &[u8]) {
    // The usual word (a method, a media type) is all printable: copied whole.
    if !value.is_empty() && value.iter().all(u8::is_ascii_graphic) {
        if let Ok(text) = std::str::from_utf8(value) {
            out.push_str(text);
            return;
        }
    }
    let start = out.len();
    let mut gap = false;
    for &b in value {
        if b.is_ascii_whitespace() {
            gap = out.len() > start;
        } else if b.is_ascii_graphic() {
            if gap {
                out.push('+');
                gap = false;
            }
            out.push(char::from(b));
        }
    }
    if out.len() == start {
        out.push('-');
    }
}

/// URLs may not contain spaces or line breaks in a log line (they would split the fields):
/// such bytes, and any that are not ASCII, are percent-encoded.
fn push_url(out: &mut String, url: &str) {
    // An empty field would shift every later one.
    if url.is_empty() {
        out.push('-');
        return;
    }
    let unsafe_byte = |b: u8| b.is_ascii_whitespace() || b.is_ascii_control() || !b.is_ascii();
    if !url.bytes().any(unsafe_byte) {
        out.push_str(url);
        return;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in url.bytes() {
        if unsafe_byte(b) {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        } else {
            out.push(char::from(b));
        }
    }
}
