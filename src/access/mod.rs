//! Access control in the Squid `http_access` tradition: ordered allow/deny rules over named ACLs.
//!
//! Rules are checked top to bottom and the first rule whose ACLs all match decides. As in Squid,
//! when no rule matches, the answer is the opposite of the last rule's action (so a list ending in
//! `allow localnet` denies everyone else), and an empty rule list denies everything. A rule names
//! ACLs by index into the ACL table, with `!` negation resolved at build time, so checking a
//! request is a short loop with no lookups or allocation. Pure: no I/O, no clock.

pub mod acl;

pub use acl::{AccessRequest, Acl};

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
}

/// A compiled rule list with its ACL table.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    acls: Vec<Acl>,
    rules: Vec<Rule>,
}

impl Rules {
    /// Rules over `acls`; conditions index into `acls` (the builder guarantees they are valid).
    pub fn new(acls: Vec<Acl>, rules: Vec<Rule>) -> Self {
        Self { acls, rules }
    }

    /// Decides whether `req` may be served.
    pub fn check(&self, req: &AccessRequest<'_>) -> Verdict {
        for rule in &self.rules {
            let all_match = rule.conditions.iter().all(|&(index, negated)| {
                self.acls
                    .get(index)
                    .is_some_and(|acl| acl.matches(req) != negated)
            });
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

    #[test]
    fn empty_rule_list_denies() {
        let r = Rules::default();
        assert!(matches!(
            check(&r, "127.0.0.1", 80, &Method::GET),
            Verdict::Deny(_)
        ));
    }
}
