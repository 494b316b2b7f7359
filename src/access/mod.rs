//! Access control in the Squid `http_access` tradition: ordered allow/deny rules over named ACLs.
//!
//! Rules are checked top to bottom and the first rule whose ACLs all match decides. As in Squid,
//! when no rule matches, the answer is the opposite of the last rule's action (so a list ending in
//! `allow localnet` denies everyone else), and an empty rule list denies everything. A rule names
//! ACLs by index into the ACL table, with `!` negation resolved at build time, so checking a
//! request is a short loop with no lookups or allocation. Pure: no I/O, no clock.
//!
//! `dst` ACLs judge addresses, not spellings: the proxy resolves the destination first (see
//! `proxy::destination`) and [`Rules::check_resolved`] applies the rules to *every* address the
//! name resolved to. A request is allowed only if it is allowed for each of them, so a deny rule
//! that matches any one address denies the request (as Squid's `dst`, which matches if any
//! address matches), and an allow rule must hold for all of them; the proxy then connects only
//! to those checked addresses.
//!
//! `proxy_auth` ACLs make a third answer possible: a rule that reaches one while the request
//! has no verified user (and may be asked for one) yields [`Verdict::AuthRequired`], as Squid
//! answers 407 there. ACLs are evaluated left to right and stop at the first that fails, so
//! `allow localnet authed` asks only clients inside `localnet`.

pub mod acl;
pub mod host;
pub mod time;

use std::net::IpAddr;

pub use acl::{AccessRequest, Acl, ProxyAuthUsers, RequestFacts};

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
}

impl Action {
    /// The log/config word for this action.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }

    fn opposite(self) -> Self {
        match self {
            Self::Allow => Self::Deny,
            Self::Deny => Self::Allow,
        }
    }
}

/// One `http_access` line.
#[derive(Debug, Clone)]
pub struct Rule {
    pub action: Action,
    /// (ACL index, negated); all must hold for the rule to match.
    pub conditions: Vec<(usize, bool)>,
    /// The line as written, for logs and error pages (`deny CONNECT !SSL_ports`).
    pub text: String,
}

/// The verdict for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Denied; the string names the rule (or the implicit default) that decided.
    Deny(String),
    /// A rule needs a verified user (a `proxy_auth` ACL) and the request has none: ask for
    /// credentials (407) and check again with the user. The string names the rule.
    AuthRequired(String),
}

/// A compiled rule list with its ACL table.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    acls: Vec<Acl>,
    rules: Vec<Rule>,
    /// Some rule uses a `dst` ACL, so the destination must be resolved before checking.
    needs_dst: bool,
    /// Some rule uses a `url_regex` ACL (an accelerator must build the absolute URL).
    needs_url: bool,
    /// Some rule uses a `time` ACL: the request path must read the clock.
    needs_time: bool,
    /// Some rule uses a `maxconn` ACL: the request path must count the client's connections.
    needs_connections: bool,
}

impl Rules {
    /// Rules over `acls`; conditions index into `acls` (the builder guarantees they are valid).
    pub fn new(acls: Vec<Acl>, rules: Vec<Rule>) -> Self {
        let uses = |f: fn(&Acl) -> bool| {
            rules.iter().any(|rule| {
                rule.conditions
                    .iter()
                    .any(|&(index, _)| acls.get(index).is_some_and(f))
            })
        };
        let needs_dst = uses(|acl| matches!(acl, Acl::Dst(_)));
        let needs_url = uses(|acl| matches!(acl, Acl::UrlRegex(_)));
        let needs_time = uses(|acl| matches!(acl, Acl::Time(_)));
        let needs_connections = uses(|acl| matches!(acl, Acl::MaxConn(_)));
        Self {
            acls,
            rules,
            needs_dst,
            needs_url,
            needs_time,
            needs_connections,
        }
    }

    /// Whether there are no rules at all (lists that default to "allow" when empty, such as
    /// `cache.access`, test this first).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a rule uses a `url_regex` ACL ([`RequestFacts::url`] must be the absolute URL).
    pub fn needs_url(&self) -> bool {
        self.needs_url
    }

    /// Whether a rule uses a `time` ACL ([`RequestFacts::local_time`] must be set).
    pub fn needs_time(&self) -> bool {
        self.needs_time
    }

    /// Whether a rule uses a `maxconn` ACL ([`RequestFacts::client_connections`] must be set).
    pub fn needs_connections(&self) -> bool {
        self.needs_connections
    }

    /// Whether any ACL of the table is a `proxy_auth` one.
    pub fn uses_proxy_auth(&self) -> bool {
        self.acls.iter().any(Acl::is_proxy_auth)
    }

    /// Whether a rule looks at the destination address (a `dst` ACL): only then must the
    /// proxy resolve the destination before [`Rules::check_resolved`].
    pub fn needs_dst(&self) -> bool {
        self.needs_dst
    }

    /// Decides for a destination that resolved to `addrs`: the rules are applied once per
    /// address (as `req.dst`), and the first denial decides. With no addresses, or rules that
    /// never look at the destination address, this is [`Rules::check`].
    pub fn check_resolved(&self, req: &AccessRequest<'_>, addrs: &[IpAddr]) -> Verdict {
        if !self.needs_dst || addrs.is_empty() {
            return self.check(req);
        }
        for &addr in addrs {
            let verdict = self.check(&AccessRequest {
                dst: Some(addr),
                ..*req
            });
            if verdict != Verdict::Allow {
                return verdict;
            }
        }
        Verdict::Allow
    }

    /// Decides whether `req` may be served.
    pub fn check(&self, req: &AccessRequest<'_>) -> Verdict {
        for rule in &self.rules {
            let mut all_match = true;
            for &(index, negated) in &rule.conditions {
                let Some(acl) = self.acls.get(index) else {
                    all_match = false;
                    break;
                };
                if acl.is_proxy_auth() && req.facts.user.is_none() && req.facts.can_challenge {
                    // Squid: an ACL that needs credentials the request lacks ends the check
                    // with a challenge, whichever way the rule would go.
                    return Verdict::AuthRequired(format!("http_access {}", rule.text));
                }
                if acl.matches(req) == negated {
                    all_match = false;
                    break;
                }
            }
            if all_match {
                return match rule.action {
                    Action::Allow => Verdict::Allow,
                    Action::Deny => Verdict::Deny(format!("http_access {}", rule.text)),
                };
            }
        }
        match self.rules.last().map(|r| r.action.opposite()) {
            Some(Action::Allow) => Verdict::Allow,
            Some(Action::Deny) => Verdict::Deny("no http_access rule allowed it".to_owned()),
            None => Verdict::Deny("no http_access rules are configured".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn rules() -> Rules {
        let acls = vec![
            Acl::All,
            Acl::Src(vec!["127.0.0.0/8".parse().unwrap()]),
            Acl::Method(vec![Method::CONNECT]),
            Acl::Port(vec![(443, 443)]),
        ];
        let rule = |action, conditions: Vec<(usize, bool)>, text: &str| Rule {
            action,
            conditions,
            text: text.to_owned(),
        };
        Rules::new(
            acls,
            vec![
                rule(
                    Action::Deny,
                    vec![(2, false), (3, true)],
                    "deny CONNECT !SSL_ports",
                ),
                rule(Action::Allow, vec![(1, false)], "allow localhost"),
            ],
        )
    }

    fn check(rules: &Rules, src: &str, port: u16, method: &Method) -> Verdict {
        rules.check(&AccessRequest {
            src: src.parse().unwrap(),
            host: "example.com",
            port,
            method,
            dst: None,
            facts: RequestFacts::default(),
        })
    }

    #[test]
    fn first_matching_rule_wins_with_negation() {
        let r = rules();
        assert!(
            matches!(check(&r, "127.0.0.1", 25, &Method::CONNECT), Verdict::Deny(s) if s.contains("SSL_ports"))
        );
        assert_eq!(
            check(&r, "127.0.0.1", 443, &Method::CONNECT),
            Verdict::Allow
        );
        assert_eq!(check(&r, "127.0.0.1", 80, &Method::GET), Verdict::Allow);
    }

    #[test]
    fn no_match_means_opposite_of_last_rule() {
        let r = rules();
        assert!(matches!(
            check(&r, "192.0.2.1", 80, &Method::GET),
            Verdict::Deny(_)
        ));
    }

    /// `deny to_localhost`, `allow all`, as Squid's default config orders them.
    fn deny_to_localhost() -> Rules {
        let acls = vec![
            Acl::All,
            Acl::Dst(vec![
                "127.0.0.0/8".parse().unwrap(),
                "0.0.0.0/32".parse().unwrap(),
                "::1/128".parse().unwrap(),
                "169.254.0.0/16".parse().unwrap(),
                "fe80::/10".parse().unwrap(),
            ]),
        ];
        let rule = |action, conditions: Vec<(usize, bool)>, text: &str| Rule {
            action,
            conditions,
            text: text.to_owned(),
        };
        Rules::new(
            acls,
            vec![
                rule(Action::Deny, vec![(1, false)], "deny to_localhost"),
                rule(Action::Allow, vec![(0, false)], "allow all"),
            ],
        )
    }

    fn check_addrs(rules: &Rules, host: &str, method: &Method, addrs: &[&str]) -> Verdict {
        let addrs: Vec<IpAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
        rules.check_resolved(
            &AccessRequest {
                src: "192.0.2.7".parse().unwrap(),
                host,
                port: 443,
                method,
                dst: None,
                facts: RequestFacts::default(),
            },
            &addrs,
        )
    }

    #[test]
    fn link_local_and_loopback_spellings_are_denied_for_get_and_connect() {
        let r = deny_to_localhost();
        assert!(r.needs_dst());
        for host in [
            "169.254.169.254",
            "169.254.43518",
            "2852039166",
            "0xa9fea9fe",
            "0251.0376.0251.0376",
            "0xa9.0xfe.0xa9.0xfe",
            "127.1",
            "0",
            "[::1]",
            "[fe80::1]",
            "[::ffff:169.254.169.254]",
        ] {
            for method in [Method::GET, Method::CONNECT] {
                assert!(
                    matches!(check_addrs(&r, host, &method, &[]), Verdict::Deny(_)),
                    "{method} {host}"
                );
            }
        }
        assert_eq!(
            check_addrs(&r, "192.0.2.1", &Method::CONNECT, &[]),
            Verdict::Allow
        );
    }

    #[test]
    fn a_name_is_denied_if_any_resolved_address_is_denied() {
        let r = deny_to_localhost();
        let get = Method::GET;
        assert_eq!(
            check_addrs(&r, "www.example", &get, &["192.0.2.1", "2001:db8::1"]),
            Verdict::Allow
        );
        for addrs in [
            &["192.0.2.1", "169.254.169.254"][..],
            &["fe80::1", "192.0.2.1"][..],
            &["::ffff:127.0.0.1"][..],
        ] {
            assert!(
                matches!(
                    check_addrs(&r, "rebind.example", &get, addrs),
                    Verdict::Deny(_)
                ),
                "{addrs:?}"
            );
        }
    }

    #[test]
    fn an_allow_list_of_destinations_must_hold_for_every_address() {
        // `allow dst 192.0.2.0/24`, then deny all: a name with one address outside is denied.
        let acls = vec![Acl::All, Acl::Dst(vec!["192.0.2.0/24".parse().unwrap()])];
        let r = Rules::new(
            acls,
            vec![Rule {
                action: Action::Allow,
                conditions: vec![(1, false)],
                text: "allow inside".to_owned(),
            }],
        );
        let get = Method::GET;
        assert_eq!(
            check_addrs(&r, "in.example", &get, &["192.0.2.1", "192.0.2.2"]),
            Verdict::Allow
        );
        assert!(matches!(
            check_addrs(&r, "mixed.example", &get, &["192.0.2.1", "198.51.100.1"]),
            Verdict::Deny(_)
        ));
    }

    #[test]
    fn empty_rule_list_denies() {
        let r = Rules::default();
        assert!(matches!(
            check(&r, "127.0.0.1", 80, &Method::GET),
            Verdict::Deny(_)
        ));
    }

    #[test]
    fn proxy_auth_challenges_only_where_the_rule_reaches_it() {
        // allow localnet authed; deny all
        let acls = vec![
            Acl::All,
            Acl::Src(vec!["10.0.0.0/8".parse().unwrap()]),
            Acl::ProxyAuth(ProxyAuthUsers::Exactly(vec!["alice".into()])),
        ];
        let r = Rules::new(
            acls,
            vec![
                Rule {
                    action: Action::Allow,
                    conditions: vec![(1, false), (2, false)],
                    text: "allow localnet authed".to_owned(),
                },
                Rule {
                    action: Action::Deny,
                    conditions: vec![(0, false)],
                    text: "deny all".to_owned(),
                },
            ],
        );
        let get = Method::GET;
        let ask = |src: &str, user: Option<&str>, can_challenge: bool| {
            r.check(&AccessRequest {
                src: src.parse().unwrap(),
                host: "h",
                port: 80,
                method: &get,
                dst: None,
                facts: RequestFacts {
                    user,
                    can_challenge,
                    ..RequestFacts::default()
                },
            })
        };
        assert!(
            matches!(ask("10.1.1.1", None, true), Verdict::AuthRequired(s) if s.contains("authed"))
        );
        assert!(
            matches!(ask("192.0.2.1", None, true), Verdict::Deny(_)),
            "outside localnet: never asked"
        );
        assert_eq!(ask("10.1.1.1", Some("alice"), true), Verdict::Allow);
        assert!(matches!(
            ask("10.1.1.1", Some("mallory"), true),
            Verdict::Deny(_)
        ));
        assert!(
            matches!(ask("10.1.1.1", None, false), Verdict::Deny(_)),
            "no challenge where none may be sent"
        );
    }
}
