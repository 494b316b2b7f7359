//! `[tls_intercept]` as written and as built: the CA files, the origin trust, the bump / splice
//! / deny rules over the `[acl]` table, and the built-in splice list.
//!
//! Kept beside `build` rather than in it so the section reads as one piece: the raw serde
//! structs (unknown keys refused like everywhere else) and the checks that turn them into a
//! [`crate::tls_intercept::Intercept`], every error naming `file:line: tls_intercept.key`.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::build::{build_acls, expand_home, Ctx};
use super::error::ConfigError;
use super::file::AclDef;
use super::locate::Seg;
use crate::tls_intercept::ca::{self, CaError};
use crate::tls_intercept::mint::Minter;
use crate::tls_intercept::rules::{self, Action, Rule, Rules};
use crate::tls_intercept::Intercept;
use crate::upstream::tls::{ClientTls, Protocols, Roots, Settings, SetupError};

/// `[tls_intercept]`: bump CONNECT tunnels with certificates from a local CA.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsIntercept {
    /// The CA certificate (PEM), as written by `cuttle ca init`.
    pub ca_cert: String,
    /// The CA's private key (PEM, mode 0600).
    pub ca_key: String,
    /// Trust only these roots for origins of bumped connections (default: the system's).
    pub tls_ca_file: Option<String>,
    /// Where minted certificates are kept across restarts (default: `minted/` beside ca_cert;
    /// `"none"`: memory only).
    pub cert_cache_dir: Option<String>,
    /// Built-in splice categories in force (default: all; `[]`: none).
    pub builtin_splice: Option<Vec<String>>,
    /// `[[tls_intercept.rule]]`: first match wins; no match splices.
    #[serde(default)]
    pub rule: Vec<RawInterceptRule>,
}

/// `{ bump = [...] }`, `{ splice = [...] }` or `{ deny = [...] }`: ACL names, all must match.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInterceptRule {
    pub bump: Option<Vec<String>>,
    pub splice: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
}

const EXAMPLE: &str =
    "expected like [tls_intercept] ca_cert = \"/etc/cuttle/ca/cuttle-ca.pem\", ca_key = \"/etc/cuttle/ca/cuttle-ca.key\"";

/// Builds the section, if present.
pub(super) fn build(
    cx: &Ctx<'_>,
    raw: Option<&RawTlsIntercept>,
    acls: &std::collections::BTreeMap<String, AclDef>,
) -> Result<Option<Arc<Intercept>>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let at = |key: &'static str| [Seg::Key("tls_intercept"), Seg::Key(key)];
    let path = |key: &'static str, value: &str| -> Result<PathBuf, ConfigError> {
        if value.trim().is_empty() {
            return Err(cx.err(&at(key), format!("is empty; {EXAMPLE}")));
        }
        expand_home(value).ok_or_else(|| cx.err(&at(key), "starts with `~/` but HOME is not set"))
    };
    let cert = path("ca_cert", &raw.ca_cert)?;
    let key = path("ca_key", &raw.ca_key)?;
    let now = crate::clock::Clock::now(&crate::clock::SystemClock);
    let ca = ca::load(&cert, &key, now).map_err(|e| match e {
        CaError::Cert(reason) => cx.err(&at("ca_cert"), reason),
        CaError::Key(reason) => cx.err(&at("ca_key"), reason),
    })?;
    let roots = match &raw.tls_ca_file {
        None => Roots::System,
        Some(file) => Roots::File(path("tls_ca_file", file)?),
    };
    // Strict: bumped origins are verified as the client itself would (no tls_verify here).
    let upstream_tls = ClientTls::new(&Settings {
        roots,
        server_name: None,
        verify: true,
        protocols: Protocols::HTTP1,
    })
    .map_err(|e| match e {
        SetupError::CaFile(reason) => cx.err(&at("tls_ca_file"), reason),
        other => cx.err(&at("tls_ca_file"), other.to_string()),
    })?;
    let cache_dir = match raw.cert_cache_dir.as_deref() {
        Some("none") => None,
        Some(dir) => Some(path("cert_cache_dir", dir)?),
        None => cert.parent().map(|p| p.join("minted")),
    };
    let builtin = match &raw.builtin_splice {
        None => rules::category_names().map(str::to_owned).collect(),
        Some(names) => {
            for (i, name) in names.iter().enumerate() {
                if !rules::category_names().any(|c| c == name) {
                    let known: Vec<&str> = rules::category_names().collect();
                    return Err(cx.err(
                        &[Seg::Key("tls_intercept"), Seg::Key("builtin_splice"), Seg::Index(i)],
                        format!("`{name}` is not a built-in category; expected some of {known:?} (or [] for none)"),
                    ));
                }
            }
            names.clone()
        }
    };
    let (table, index) = build_acls(cx, acls)?;
    let mut compiled = Vec::with_capacity(raw.rule.len());
    for (i, rule) in raw.rule.iter().enumerate() {
        let rule_at = |rest: &[Seg<'static>]| {
            let mut p = vec![Seg::Key("tls_intercept"), Seg::Key("rule"), Seg::Index(i)];
            p.extend_from_slice(rest);
            p
        };
        let (action, names, word) = match (&rule.bump, &rule.splice, &rule.deny) {
            (Some(n), None, None) => (Action::Bump, n, "bump"),
            (None, Some(n), None) => (Action::Splice, n, "splice"),
            (None, None, Some(n)) => (Action::Deny, n, "deny"),
            _ => {
                return Err(cx.err(
                    &rule_at(&[]),
                    "each rule needs exactly one of `bump`, `splice` or `deny`; expected like { bump = [\"registries\"] }",
                ))
            }
        };
        if names.is_empty() {
            return Err(cx.err(
                &rule_at(&[Seg::Key(word)]),
                "a rule needs at least one ACL name (use \"all\" to match everything)",
            ));
        }
        let mut conditions = Vec::with_capacity(names.len());
        for (j, name) in names.iter().enumerate() {
            let (negated, bare) = match name.strip_prefix('!') {
                Some(bare) => (true, bare),
                None => (false, name.as_str()),
            };
            let Some(&acl) = index.get(bare) else {
                return Err(cx.err(
                    &rule_at(&[Seg::Key(word), Seg::Index(j)]),
                    format!("unknown ACL `{bare}` (define it under [acl], e.g. registries = {{ \"ssl::server_name\" = [\".npmjs.org\"] }})"),
                ));
            };
            conditions.push((acl, negated));
        }
        compiled.push(Rule {
            action,
            conditions,
            text: format!("{word} {}", names.join(" ")),
        });
    }
    let minter = Minter::new(ca, cache_dir.as_deref())
        .map_err(|reason| cx.err(&at("ca_key"), format!("cannot sign with this CA: {reason}")))?;
    Ok(Some(Arc::new(Intercept {
        rules: Rules::new(table, compiled, &builtin),
        minter,
        upstream_tls: Arc::new(upstream_tls),
    })))
}
