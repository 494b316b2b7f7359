//! Slice mode (nginx `slice`, issue 14): which objects are fetched and stored as fixed-size
//! blocks, and how large the blocks are. The grid arithmetic is in `policy::partial`; the
//! request path in `proxy::caching::slice`.

/// Smallest block accepted in config: smaller ones cost more in requests than they save.
pub const MIN_BLOCK: u64 = 64 << 10;
/// Largest block accepted in config: a block is fetched whole before its bytes are served.
pub const MAX_BLOCK: u64 = 64 << 20;

/// One `[[cache.slice]]` rule. Both matchers, when given, must match.
#[derive(Debug, Clone)]
pub struct SliceRule {
    pub url_regex: Option<regex::Regex>,
    pub site: Option<SiteMatch>,
    /// Block size in bytes.
    pub size: u64,
}

/// A host name, exact or `*.suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteMatch {
    Exact(String),
    /// `*.example.com`: `example.com` and every name under it; held as `.example.com`.
    Suffix(String),
}

impl SiteMatch {
    /// Parses `dl.example.com` or `*.example.com`; None for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase();
        let (suffix, name) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, text),
        };
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid {
            return None;
        }
        Some(if suffix {
            Self::Suffix(format!(".{name}"))
        } else {
            Self::Exact(name)
        })
    }

    /// Whether `host` (lower case, no port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => host == name,
            Self::Suffix(dotted) => host.ends_with(dotted.as_str()) || host == &dotted[1..],
        }
    }
}

impl SliceRule {
    /// Whether the rule applies to `url` (an absolute URL).
    pub fn matches(&self, url: &str) -> bool {
        self.site
            .as_ref()
            .is_none_or(|site| host_of(url).is_some_and(|h| site.matches(&h)))
            && self.url_regex.as_ref().is_none_or(|re| re.is_match(url))
    }
}

/// The host of an absolute URL, lower case, without user info or port.
fn host_of(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split_inclusive(']').next()?
    } else {
        host.split(':').next()?
    };
    Some(host.to_ascii_lowercase())
}

/// The block size for `url` under the first matching rule; None when it is not sliced.
pub fn block_size_for(rules: &[SliceRule], url: &str) -> Option<u64> {
    rules.iter().find(|r| r.matches(url)).map(|r| r.size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_and_regex_match() {
        let rule = SliceRule {
            url_regex: Some(regex::Regex::new(r"\.iso$").unwrap()),
            site: SiteMatch::parse("*.example.com"),
            size: 1 << 20,
        };
        assert!(rule.matches("http://dl.example.com/a.iso"));
        assert!(rule.matches("http://user@EXAMPLE.com:8080/a.iso"));
        assert!(!rule.matches("http://dl.example.com/a.txt"));
        assert!(!rule.matches("http://badexample.com/a.iso"));
        assert_eq!(
            block_size_for(&[rule], "http://x.example.com/b.iso"),
            Some(1 << 20)
        );
        assert_eq!(SiteMatch::parse("a b"), None);
    }
}
