//! The Apache/nginx `combined` line, as nginx writes it with its default `escape=default`:
//!
//! ```text
//! $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
//! ```
//! Every `$variable` above is escaped as nginx does (`ngx_http_log_escape`): `"`, `\`, control
//! bytes, DEL and every non-ASCII byte become `\xHH` (upper-case hex), so no value can close
//! its quotes or break the line; a missing value is `-`. `$time_local` is written in UTC
//! (`+0000`) since the log has no time-zone database; nginx writes the server's zone.

use http::HeaderValue;

use super::super::record::AccessRecord;
use super::time::{push2, Civil};
use super::{origin_form_target, version_text};

/// Appends one combined line (with a trailing newline) for `rec`, showing `url`.
pub fn write(rec: &AccessRecord, url: &str, out: &mut String) {
    let mut num = itoa::Buffer::new();
    push_escaped(out, rec.client.as_bytes());
    out.push_str(" - ");
    match &rec.user {
        Some(user) => push_escaped(out, user.as_bytes()),
        None => out.push('-'),
    }
    out.push_str(" [");
    push_time_local(out, &Civil::of(rec.time), &mut num);
    out.push_str("] \"");
    // $request: the request line as the client sent it.
    push_escaped(out, rec.method.as_str().as_bytes());
    out.push(' ');
    let target = if rec.origin_form {
        origin_form_target(url)
    } else {
        url
    };
    push_escaped(out, target.as_bytes());
    out.push(' ');
    out.push_str(version_text(rec.version));
    out.push_str("\" ");
    // %03ui: nginx writes 000 when no status was sent.
    let status = num.format(rec.status);
    for _ in status.len()..3 {
        out.push('0');
    }
    out.push_str(status);
    out.push(' ');
    out.push_str(num.format(rec.body_bytes));
    out.push_str(" \"");
    push_header(out, rec.referer.as_ref());
    out.push_str("\" \"");
    push_header(out, rec.user_agent.as_ref());
    out.push_str("\"\n");
}

/// `$time_local`'s `10/Oct/2000:13:55:36 +0000`.
fn push_time_local(out: &mut String, t: &Civil, num: &mut itoa::Buffer) {
    push2(out, t.day);
    out.push('/');
    out.push_str(t.month_name());
    out.push('/');
    out.push_str(num.format(t.year));
    out.push(':');
    push2(out, t.hour);
    out.push(':');
    push2(out, t.minute);
    out.push(':');
    push2(out, t.second);
    out.push_str(" +0000");
}

/// A request field's value, or `-` when the request had none (an empty field stays empty).
fn push_header(out: &mut String, value: Option<&HeaderValue>) {
    match value {
        Some(value) => push_escaped(out, value.as_bytes()),
        None => out.push('-'),
    }
}

/// Whether nginx's default log escaping rewrites `b`.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\' || b >= 0x7f
}

/// `value` with [`needs_escape`] bytes as `\xHH`; the runs between them are printable ASCII
/// and go in whole.
fn push_escaped(out: &mut String, value: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut rest = value;
    while let Some(at) = rest.iter().position(|&b| needs_escape(b)) {
        push_ascii(out, &rest[..at]);
        let b = rest[at];
        out.push_str("\\x");
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
        rest = &rest[at + 1..];
    }
    push_ascii(out, rest);
}

/// Bytes known to be printable ASCII.
fn push_ascii(out: &mut String, run: &[u8]) {
    out.push_str(std::str::from_utf8(run).unwrap_or_default());
}
