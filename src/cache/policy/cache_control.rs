//! `Cache-Control` parsing into typed request and response directives.
//!
//! Every other policy decision (storability, freshness, reuse) reads these
//! structs rather than raw header text, so all the lenient-but-safe parsing
//! rules (RFC 9111 §5.2, §4.2.1, §1.2.2) are decided once, here.
//!
//! Choices where the RFC leaves room (all resolve toward the more restrictive
//! reading, per RFC 9111 §4.2.1 "the most restrictive directive should be honored"):
//! - conflicting duplicate `max-age`/`s-maxage` → [`Delta::Invalid`] (stale);
//!   identical duplicates are harmless and kept;
//! - an invalid `max-age`/`s-maxage` value (`abc`, `-1`, `1.5`, missing) → Invalid;
//! - duplicate `stale-while-revalidate`/`stale-if-error` → the smallest value;
//!   invalid values → directive ignored (they only grant permissions);
//! - request `max-age` invalid → 0, duplicates → smallest; request `min-fresh`
//!   duplicates → largest, invalid → ignored; request `max-stale` invalid → ignored;
//! - `no-cache`/`private` with an empty or unusable field list → unqualified;
//!   an unqualified occurrence anywhere wins over qualified ones.

use super::fields::{field_lines, is_token, list_items, parse_delta_seconds, split_list, unquoted};
use http::header::{HeaderMap, CACHE_CONTROL, PRAGMA};

/// Lower-cased field names of a qualified `no-cache`/`private`; empty = unqualified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldNames(pub Vec<String>);

impl FieldNames {
    /// The unqualified form (no argument).
    pub fn unqualified() -> Self {
        FieldNames(Vec::new())
    }

    /// True for the unqualified form.
    pub fn is_unqualified(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `name` (any case) is listed.
    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// Parses a `#field-name` argument; None when it yields no valid names.
    pub fn parse(arg: &str) -> Option<Self> {
        let mut names: Vec<String> = Vec::new();
        for item in split_list(arg) {
            if !is_token(item) {
                continue;
            }
            let lower = item.to_ascii_lowercase();
            if !names.contains(&lower) {
                names.push(lower);
            }
        }
        if names.is_empty() {
            None
        } else {
            Some(FieldNames(names))
        }
    }

    /// Merges two occurrences: unqualified absorbs everything, lists union.
    pub fn merge(&mut self, other: FieldNames) {
        if self.is_unqualified() {
            return;
        }
        if other.is_unqualified() {
            self.0.clear();
            return;
        }
        for n in other.0 {
            if !self.0.contains(&n) {
                self.0.push(n);
            }
        }
    }
}

/// A delta-seconds directive value: capped seconds, or Invalid ("treat as stale").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta {
    /// A valid value, capped at 2147483648 (RFC 9111 §1.2.2).
    Secs(u32),
    /// Unparseable or conflicting; the response must be treated as stale.
    Invalid,
}

impl Delta {
    /// Seconds to use in freshness arithmetic (Invalid → 0, i.e. already stale).
    pub fn secs(self) -> u32 {
        match self {
            Delta::Secs(s) => s,
            Delta::Invalid => 0,
        }
    }

    fn from_arg(arg: Option<&str>) -> Delta {
        arg.and_then(parse_delta_seconds)
            .map_or(Delta::Invalid, Delta::Secs)
    }

    /// RFC 9111 §4.2.1: duplicates "either the first occurrence should be used
    /// or the response should be considered stale" — we pick stale on conflict.
    fn merge(existing: Option<Delta>, new: Delta) -> Delta {
        match existing {
            None => new,
            Some(old) if old == new => old,
            Some(_) => Delta::Invalid,
        }
    }
}

/// Request `max-stale`: any staleness, or at most N seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxStale {
    /// `max-stale` without a value: "will accept a stale response of any age".
    Any,
    /// `max-stale=N`.
    Secs(u32),
}

/// Parsed response cache directives (RFC 9111 §5.2.2, RFC 5861, RFC 8246).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    /// `no-store` (§5.2.2.5).
    pub no_store: bool,
    /// `no-cache` (§5.2.2.4); empty list = unqualified.
    pub no_cache: Option<FieldNames>,
    /// `private` (§5.2.2.7); empty list = unqualified.
    pub private: Option<FieldNames>,
    /// `public` (§5.2.2.9).
    pub public: bool,
    /// `max-age` (§5.2.2.1).
    pub max_age: Option<Delta>,
    /// `s-maxage` (§5.2.2.10).
    pub s_maxage: Option<Delta>,
    /// `must-revalidate` (§5.2.2.2).
    pub must_revalidate: bool,
    /// `proxy-revalidate` (§5.2.2.8).
    pub proxy_revalidate: bool,
    /// `must-understand` (§5.2.2.3).
    pub must_understand: bool,
    /// `immutable` (RFC 8246).
    pub immutable: bool,
    /// `no-transform` (§5.2.2.6).
    pub no_transform: bool,
    /// `stale-while-revalidate` seconds (RFC 5861 §3).
    pub stale_while_revalidate: Option<u32>,
    /// `stale-if-error` seconds (RFC 5861 §4).
    pub stale_if_error: Option<u32>,
    /// True when parsed from an RFC 9213 targeted field: Expires is then ignored (§2.2).
    pub targeted: bool,
}

/// Parsed request cache directives (RFC 9111 §5.2.1, RFC 5861 §4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `max-age` (§5.2.1.1).
    pub max_age: Option<u32>,
    /// `max-stale` (§5.2.1.2).
    pub max_stale: Option<MaxStale>,
    /// `min-fresh` (§5.2.1.3).
    pub min_fresh: Option<u32>,
    /// `no-cache` (§5.2.1.4), or `Pragma: no-cache` without Cache-Control.
    pub no_cache: bool,
    /// `no-store` (§5.2.1.5).
    pub no_store: bool,
    /// `only-if-cached` (§5.2.1.7).
    pub only_if_cached: bool,
    /// `no-transform` (§5.2.1.6).
    pub no_transform: bool,
    /// `stale-if-error` seconds (RFC 5861 §4, request scope).
    pub stale_if_error: Option<u32>,
}

/// Splits every Cache-Control line into (lower-cased name, unquoted argument).
///
/// §5.2: "Cache directives are identified by a token, to be compared
/// case-insensitively, and have an optional argument that can use both token
/// and quoted-string syntax."
pub fn parse_directives(headers: &HeaderMap) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for_each_directive(headers, |name, arg| {
        out.push((name.to_owned(), arg.map(str::to_owned)));
    });
    out
}

/// [`parse_directives`] handed to `visit` one directive at a time (name lowercased, argument
/// unquoted), copying a name or an argument only when it has to be changed: this runs for
/// every response fetched and every request that has `Cache-Control`.
pub fn for_each_directive(headers: &HeaderMap, mut visit: impl FnMut(&str, Option<&str>)) {
    for value in headers.get_all(CACHE_CONTROL) {
        let line = String::from_utf8_lossy(value.as_bytes());
        for item in list_items(&line) {
            let (name, arg) = match item.split_once('=') {
                Some((n, a)) => (n, Some(a)),
                None => (item, None),
            };
            let name = name.trim_matches(|c| c == ' ' || c == '\t');
            if !is_token(name) {
                continue;
            }
            let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                std::borrow::Cow::Owned(name.to_ascii_lowercase())
            } else {
                std::borrow::Cow::Borrowed(name)
            };
            let arg = arg.map(|a| unquoted(a.trim_matches(|c| c == ' ' || c == '\t')));
            visit(&name, arg.as_deref());
        }
    }
}

fn merge_min(existing: Option<u32>, new: u32) -> Option<u32> {
    Some(existing.map_or(new, |old| old.min(new)))
}

fn field_names_arg(arg: Option<&str>) -> FieldNames {
    arg.and_then(FieldNames::parse)
        .unwrap_or_else(FieldNames::unqualified)
}

impl ResponseDirectives {
    /// Parses all `Cache-Control` lines of a response.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut d = ResponseDirectives::default();
        for_each_directive(headers, |name, arg| {
            match name {
                "no-store" => d.no_store = true,
                "no-cache" => d.merge_no_cache(field_names_arg(arg)),
                "private" => d.merge_private(field_names_arg(arg)),
                "public" => d.public = true,
                "max-age" => d.max_age = Some(Delta::merge(d.max_age, Delta::from_arg(arg))),
                "s-maxage" => d.s_maxage = Some(Delta::merge(d.s_maxage, Delta::from_arg(arg))),
                "must-revalidate" => d.must_revalidate = true,
                "proxy-revalidate" => d.proxy_revalidate = true,
                "must-understand" => d.must_understand = true,
                "immutable" => d.immutable = true,
                "no-transform" => d.no_transform = true,
                "stale-while-revalidate" => {
                    if let Some(v) = arg.and_then(parse_delta_seconds) {
                        d.stale_while_revalidate = merge_min(d.stale_while_revalidate, v);
                    }
                }
                "stale-if-error" => {
                    if let Some(v) = arg.and_then(parse_delta_seconds) {
                        d.stale_if_error = merge_min(d.stale_if_error, v);
                    }
                }
                // §5.2.3: "A cache MUST ignore unrecognized cache directives."
                _ => {}
            }
        });
        d
    }

    /// Adds a `no-cache` occurrence (unqualified absorbs qualified lists).
    pub fn merge_no_cache(&mut self, names: FieldNames) {
        match &mut self.no_cache {
            Some(existing) => existing.merge(names),
            None => self.no_cache = Some(names),
        }
    }

    /// Adds a `private` occurrence (unqualified absorbs qualified lists).
    pub fn merge_private(&mut self, names: FieldNames) {
        match &mut self.private {
            Some(existing) => existing.merge(names),
            None => self.private = Some(names),
        }
    }

    /// True for unqualified `no-cache`: every reuse needs validation (§5.2.2.4).
    pub fn has_unqualified_no_cache(&self) -> bool {
        self.no_cache
            .as_ref()
            .is_some_and(FieldNames::is_unqualified)
    }

    /// True when a shared cache must not serve this response stale.
    ///
    /// §4.2.4: a stale response MUST NOT be generated when prohibited "by a
    /// no-cache response directive, a must-revalidate response directive, or
    /// an applicable s-maxage or proxy-revalidate response directive".
    pub fn forbids_stale(&self) -> bool {
        self.must_revalidate
            || self.proxy_revalidate
            || self.s_maxage.is_some()
            || self.no_cache.is_some()
    }
}

impl RequestDirectives {
    /// Parses request `Cache-Control`, falling back to `Pragma: no-cache`.
    ///
    /// RFC 9111 §5.4 deprecates Pragma; following RFC 7234 §5.4 ("When the
    /// Cache-Control header field is also present and understood in a request,
    /// Pragma is ignored") it is only honoured when Cache-Control is absent.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut d = RequestDirectives::default();
        if !headers.contains_key(CACHE_CONTROL) {
            d.no_cache = field_lines(headers, &PRAGMA).iter().any(|line| {
                split_list(line)
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case("no-cache"))
            });
            return d;
        }
        for_each_directive(headers, |name, arg| {
            let value = arg.and_then(parse_delta_seconds);
            match name {
                // Invalid request max-age is read as 0: the conservative
                // interpretation (forces validation rather than widening reuse).
                "max-age" => d.max_age = merge_min(d.max_age, value.unwrap_or(0)),
                "max-stale" => match (arg, value) {
                    (None, _) => {
                        if d.max_stale.is_none() {
                            d.max_stale = Some(MaxStale::Any);
                        }
                    }
                    (Some(_), Some(v)) => {
                        d.max_stale = match d.max_stale {
                            None => Some(MaxStale::Secs(v)),
                            Some(MaxStale::Any) => Some(MaxStale::Secs(v)),
                            Some(MaxStale::Secs(old)) => Some(MaxStale::Secs(old.min(v))),
                        }
                    }
                    (Some(_), None) => {}
                },
                "min-fresh" => {
                    if let Some(v) = value {
                        d.min_fresh = Some(d.min_fresh.map_or(v, |old| old.max(v)));
                    }
                }
                "no-cache" => d.no_cache = true,
                "no-store" => d.no_store = true,
                "only-if-cached" => d.only_if_cached = true,
                "no-transform" => d.no_transform = true,
                "stale-if-error" => {
                    if let Some(v) = value {
                        d.stale_if_error = merge_min(d.stale_if_error, v);
                    }
                }
                _ => {}
            }
        });
        d
    }
}

#[cfg(test)]
mod tests;
