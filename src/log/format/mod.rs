//! Access-log line formats: pure functions from an [`AccessRecord`] to one line of text.
//!
//! Each format appends exactly one `\n`-terminated line and escapes whatever the client or the
//! origin controls, so a field can never split a line or forge another one. No I/O and no
//! clock here: the writer task calls [`LineFormat::write`] off the request path.
//!
//! | format | shape |
//! |---|---|
//! | [`squid`] | Squid's native `access.log` line |
//! | [`combined`] | Apache/nginx `combined`, byte for byte as nginx writes it |
//! | [`json`] | one JSON object per line, every key always present |

pub mod combined;
pub mod json;
pub mod squid;
mod time;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

pub use squid::format_squid;

use super::record::AccessRecord;

/// An access-log line format (`log.access_log_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// Squid's native format.
    #[default]
    Squid,
    /// The Apache/nginx combined format.
    Combined,
    /// One JSON object per line.
    Json,
}

impl Format {
    /// Every format, in the order the config documents them.
    pub const ALL: [Self; 3] = [Self::Squid, Self::Combined, Self::Json];

    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Squid => "squid",
            Self::Combined => "combined",
            Self::Json => "json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name that is not one of [`Format::ALL`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFormat(pub String);

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown access-log format {:?} (expected squid, combined or json)",
            self.0
        )
    }
}

impl std::error::Error for UnknownFormat {}

impl FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownFormat(s.to_owned()))
    }
}

/// How the writer turns records into lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineFormat {
    pub format: Format,
    /// Squid's `strip_query_terms`: log URLs without their query (see [`logged_url`]).
    pub strip_query_terms: bool,
}

impl Default for LineFormat {
    /// Squid's defaults: the native format, query terms stripped.
    fn default() -> Self {
        Self {
            format: Format::Squid,
            strip_query_terms: true,
        }
    }
}

impl LineFormat {
    /// Appends one line (with its trailing newline) for `rec` to `out`.
    pub fn write(&self, rec: &AccessRecord, out: &mut String) {
        let url = logged_url(rec, self.strip_query_terms);
        match self.format {
            Format::Squid => squid::write(rec, url, out),
            Format::Combined => combined::write(rec, url, out),
            Format::Json => json::write(rec, url, out),
        }
    }
}

/// The URL as the log shows it. With `strip_query_terms`, everything after the first `?` is
/// dropped and the `?` itself kept, as Squid does (`urlCanonicalClean`), so a reader still sees
/// that there was a query; CONNECT targets (`host:port`) have none and stay whole.
pub fn logged_url(rec: &AccessRecord, strip_query_terms: bool) -> &str {
    if !strip_query_terms || rec.method == http::Method::CONNECT {
        return &rec.url;
    }
    match rec.url.find('?') {
        Some(at) => &rec.url[..=at],
        None => &rec.url,
    }
}

/// The version as a request line writes it (`HTTP/2.0`, as nginx logs HTTP/2 requests).
pub fn version_text(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The request target as an origin-form client wrote it: `url`'s path and query, without
/// `scheme://authority`.
fn origin_form_target(url: &str) -> &str {
    if url.starts_with('/') {
        return url;
    }
    let Some(after_scheme) = url.find("://").map(|at| &url[at + 3..]) else {
        return url;
    };
    match after_scheme.find(['/', '?']) {
        Some(at) => &after_scheme[at..],
        None => "/",
    }
}
