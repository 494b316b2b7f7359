//! Which CONNECT tunnels are bumped, spliced or refused: `[[tls_intercept.rule]]` lists over the
//! `[acl]` table, and the built-in splice list.
//!
//! Rules are checked top to bottom like `http_access`; the first whose ACLs all match decides.
//! Unlike `http_access`, no match means `splice` (Squid's `ssl_bump` also tunnels what no rule
//! names), so a config can only ever bump what it names. A `bump` is then overruled by the
//! built-in splice list when the server name falls into one of its categories (banking,
//! health, OS updates with pinned certificates): sites users expect never to be read by a
//! middlebox, or that refuse any certificate but their own. `builtin_splice` chooses the
//! categories (all by default; `[]` turns the list off). Pure: no I/O, no clock.

use crate::access::{AccessRequest, Acl};

/// What happens to a CONNECT tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Terminate TLS with a minted certificate and serve the requests inside like any other.
    Bump,
    /// Relay the bytes untouched (what cuttle does without `[tls_intercept]`).
    Splice,
    /// Refuse the CONNECT (403).
    Deny,
}

impl Action {
    /// The config word for this action.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bump => "bump",
            Self::Splice => "splice",
            Self::Deny => "deny",
        }
    }
}

/// One `[[tls_intercept.rule]]`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub action: Action,
    /// (ACL index, negated); all must hold.
    pub conditions: Vec<(usize, bool)>,
    /// As written, for logs (`bump registries !banks`).
    pub text: String,
}

/// A decision and why it was made (for the debug log and the deny page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub reason: String,
}

/// A built-in splice category: its config name and its `dstdomain`-style name patterns.
pub struct Category {
    pub name: &'static str,
    pub patterns: &'static [&'static str],
}

/// The built-in splice list. Not exhaustive (no list of every bank is); it catches the common
/// cases and the dedicated top-level domains, and the README says to add rules for the rest.
pub const BUILTIN_SPLICE: &[Category] = &[
    Category {
        name: "banking",
        patterns: &[
            ".bank",
            ".paypal.com",
            ".stripe.com",
            ".chase.com",
            ".bankofamerica.com",
            ".wellsfargo.com",
            ".citi.com",
            ".hsbc.com",
            ".barclays.co.uk",
            ".lloydsbank.co.uk",
            ".santander.com",
            ".ing.com",
            ".bnpparibas",
            ".deutsche-bank.de",
            ".americanexpress.com",
            ".visa.com",
            ".mastercard.com",
        ],
    },
    Category {
        name: "health",
        patterns: &[
            ".health",
            ".nhs.uk",
            ".healthcare.gov",
            ".mychart.com",
            ".mychart.org",
            ".kaiserpermanente.org",
            ".doctolib.fr",
            ".doctolib.de",
            ".ameli.fr",
        ],
    },
    Category {
        name: "os-updates",
        patterns: &[
            ".windowsupdate.com",
            ".update.microsoft.com",
            ".delivery.mp.microsoft.com",
            ".swcdn.apple.com",
            ".swscan.apple.com",
            ".mesu.apple.com",
            ".push.apple.com",
            ".gs.apple.com",
            ".gdmf.apple.com",
        ],
    },
];

/// The names `builtin_splice` accepts.
pub fn category_names() -> impl Iterator<Item = &'static str> {
    BUILTIN_SPLICE.iter().map(|c| c.name)
}

/// Compiled rules over their ACL table, and the built-in categories in force.
#[derive(Debug, Clone)]
pub struct Rules {
    acls: Vec<Acl>,
    rules: Vec<Rule>,
    /// Indexes into [`BUILTIN_SPLICE`].
    builtin: Vec<usize>,
}

impl Rules {
    /// Rules over `acls` (conditions index into it); `builtin` names categories of
    /// [`BUILTIN_SPLICE`] (unknown names are the builder's to refuse, and are ignored here).
    pub fn new(acls: Vec<Acl>, rules: Vec<Rule>, builtin: &[String]) -> Self {
        let builtin = BUILTIN_SPLICE
            .iter()
            .enumerate()
            .filter(|(_, c)| builtin.iter().any(|b| b == c.name))
            .map(|(i, _)| i)
            .collect();
        Self {
            acls,
            rules,
            builtin,
        }
    }

    /// The names of the built-in categories in force (for start-up lines and summaries).
    pub fn builtin(&self) -> Vec<&'static str> {
        self.builtin
            .iter()
            .filter_map(|&i| BUILTIN_SPLICE.get(i).map(|c| c.name))
            .collect()
    }

    /// Decides for a CONNECT whose `facts.server_name` is the name it is for.
    pub fn decide(&self, req: &AccessRequest<'_>) -> Decision {
        let matched = self.rules.iter().find(|rule| {
            rule.conditions.iter().all(|&(index, negated)| {
                self.acls
                    .get(index)
                    .is_some_and(|acl| acl.matches(req) != negated)
            })
        });
        let Some(rule) = matched else {
            return Decision {
                action: Action::Splice,
                reason: "no tls_intercept rule matched (splice)".to_owned(),
            };
        };
        if rule.action == Action::Bump {
            if let Some(category) = self.builtin_category(req.facts.server_name.unwrap_or("")) {
                return Decision {
                    action: Action::Splice,
                    reason: format!(
                        "built-in splice list `{category}` (tls_intercept.builtin_splice)"
                    ),
                };
            }
        }
        Decision {
            action: rule.action,
            reason: format!("tls_intercept rule `{}`", rule.text),
        }
    }

    /// The built-in category `name` falls into, if any is in force.
    fn builtin_category(&self, name: &str) -> Option<&'static str> {
        let name = name.trim_end_matches('.');
        self.builtin
            .iter()
            .filter_map(|&i| BUILTIN_SPLICE.get(i))
            .find(|c| {
                c.patterns
                    .iter()
                    .any(|p| crate::access::acl::domain_matches(p, name))
            })
            .map(|c| c.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::RequestFacts;
    use http::Method;

    fn connect<'a>(name: &'a str, method: &'a Method) -> AccessRequest<'a> {
        AccessRequest {
            src: "127.0.0.1".parse().unwrap(),
            host: name,
            port: 443,
            method,
            dst: None,
            facts: RequestFacts {
                server_name: Some(name),
                ..RequestFacts::default()
            },
        }
    }

    fn rules(builtin: &[&str]) -> Rules {
        let acls = vec![
            Acl::All,
            Acl::SslServerName(vec![".registry.test".to_owned(), ".bank".to_owned()]),
            Acl::SslServerName(vec!["blocked.test".to_owned()]),
        ];
        let rule = |action, conditions: Vec<(usize, bool)>| Rule {
            action,
            conditions,
            text: action.as_str().to_owned(),
        };
        let builtin: Vec<String> = builtin.iter().map(|s| (*s).to_owned()).collect();
        Rules::new(
            acls,
            vec![
                rule(Action::Deny, vec![(2, false)]),
                rule(Action::Bump, vec![(1, false)]),
            ],
            &builtin,
        )
    }

    #[test]
    fn first_matching_rule_decides_and_no_match_splices() {
        let get = Method::CONNECT;
        let r = rules(&[]);
        assert_eq!(
            r.decide(&connect("npm.registry.test", &get)).action,
            Action::Bump
        );
        assert_eq!(
            r.decide(&connect("blocked.test", &get)).action,
            Action::Deny
        );
        assert_eq!(
            r.decide(&connect("example.test", &get)).action,
            Action::Splice
        );
    }

    #[test]
    fn the_builtin_list_overrules_bump_only_while_enabled() {
        let get = Method::CONNECT;
        let with = rules(&["banking", "health", "os-updates"]);
        let d = with.decide(&connect("www.mybank.bank", &get));
        assert_eq!(d.action, Action::Splice);
        assert!(d.reason.contains("banking"), "{}", d.reason);
        // Deny still denies; an unlisted name still bumps.
        assert_eq!(
            with.decide(&connect("blocked.test", &get)).action,
            Action::Deny
        );
        assert_eq!(
            with.decide(&connect("x.registry.test", &get)).action,
            Action::Bump
        );
        let without = rules(&[]);
        assert_eq!(
            without.decide(&connect("www.mybank.bank", &get)).action,
            Action::Bump
        );
    }

    #[test]
    fn every_builtin_pattern_is_a_suffix_pattern() {
        for category in BUILTIN_SPLICE {
            for p in category.patterns {
                assert!(p.starts_with('.') && p.len() > 2, "{p}");
                assert_eq!(*p, p.to_ascii_lowercase());
            }
        }
    }
}
