//! `http_access` with what the rules need from outside the request line, and proxy
//! authentication when a `proxy_auth` rule asks for a user.
//!
//! [`facts`] gathers, only when some rule looks at it, the local time (`time`, from the
//! generation's clock) and the client's connection count (`maxconn`, from `client_slots`).
//! [`decide`] applies a check; when it answers [`Verdict::AuthRequired`], the request's
//! `Proxy-Authorization` is verified (`auth`) and the check runs again with the user. Missing
//! or wrong credentials end in 407 with the realm's challenge (RFC 9110 §15.5.8), failures
//! are counted in the metrics, and an address that failed too often gets 407 unchecked.
//! Reverse ports never challenge: a `proxy_auth` ACL simply does not match there.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Uri};

use super::{Mode, Shared};
use crate::access::time::LocalTime;
use crate::access::{AccessRequest, RequestFacts, Verdict};
use crate::auth::Outcome;
use crate::error::{Error, ErrorKind};

/// Who is asking, as far as the access rules care: the facts, the credentials sent, and
/// (once verified) the user, which the access log shows.
#[derive(Debug)]
pub struct Requester<'a> {
    pub client: IpAddr,
    pub facts: RequestFacts<'a>,
    /// The `Proxy-Authorization` field, if any.
    pub credentials: Option<&'a HeaderValue>,
    /// Set by [`decide`] when credentials were verified.
    pub user: Option<Arc<str>>,
}

impl<'a> Requester<'a> {
    /// What the rules of `shared` may look at in a request for `url` (as logged) with `uri`
    /// and `headers`, on a port in `mode`, from `client`.
    pub fn new(
        shared: &Shared,
        mode: Mode,
        client: IpAddr,
        url: &'a str,
        uri: &'a Uri,
        headers: &'a HeaderMap,
    ) -> Self {
        let mut facts = facts_for(shared, &shared.access, client, url, uri, headers);
        facts.can_challenge = mode == Mode::Forward && shared.auth.is_some();
        Self {
            client,
            facts,
            credentials: headers.get(http::header::PROXY_AUTHORIZATION),
            user: None,
        }
    }
}

/// What `rules` may look at in a request for `url` (as logged) with `uri` and `headers` from
/// `client`: the clock and the connection count only when a rule needs them. No user, and no
/// challenge (callers that may ask for credentials set `can_challenge`).
pub fn facts_for<'a>(
    shared: &Shared,
    rules: &crate::access::Rules,
    client: IpAddr,
    url: &'a str,
    uri: &'a Uri,
    headers: &'a HeaderMap,
) -> RequestFacts<'a> {
    RequestFacts {
        url,
        path: uri.path_and_query().map_or("", |pq| pq.as_str()),
        user_agent: headers
            .get(http::header::USER_AGENT)
            .map(HeaderValue::as_bytes),
        local_time: if rules.needs_time() {
            LocalTime::at(shared.clock.now())
        } else {
            None
        },
        client_connections: if rules.needs_connections() {
            shared.client_slots.count(client)
        } else {
            0
        },
        user: None,
        can_challenge: false,
        // `ssl::server_name`: CONNECT's host, or an https URL's (a bumped request's).
        server_name: match uri.scheme() {
            None => uri.host(),
            Some(scheme) if *scheme == http::uri::Scheme::HTTPS => uri.host(),
            Some(_) => None,
        },
    }
}

/// Applies `check` to `request`, authenticating `who` when a `proxy_auth` rule needs it.
pub async fn decide(
    shared: &Shared,
    request: &AccessRequest<'_>,
    who: &mut Requester<'_>,
    check: impl Fn(&AccessRequest<'_>) -> Verdict,
) -> Result<(), Error> {
    let rule = match check(request) {
        Verdict::AuthRequired(rule) => rule,
        other => return verdict(other),
    };
    let Some(auth) = &shared.auth else {
        // The config refuses proxy_auth without [auth.basic]; never let a request through.
        return Err(Error::new(
            ErrorKind::AccessDenied,
            format!("access denied ({rule})"),
        ));
    };
    let user = match auth.authenticate(who.credentials, who.client).await {
        Outcome::User(user) => user,
        outcome => {
            let cause = match outcome {
                Outcome::Failed => {
                    shared.metrics.auth_failure(false);
                    "the proxy credentials were not accepted"
                }
                Outcome::Limited => {
                    shared.metrics.auth_failure(true);
                    "too many failed logins from this address; try again later"
                }
                _ => "this proxy needs a user name and password",
            };
            tracing::debug!(client = %who.client, %rule, cause, "proxy authentication");
            return Err(Error::new(
                ErrorKind::ProxyAuthRequired,
                format!("{cause} ({rule})"),
            ));
        }
    };
    who.user = Some(Arc::clone(&user));
    let again = AccessRequest {
        facts: RequestFacts {
            user: Some(&user),
            ..request.facts
        },
        ..*request
    };
    verdict(check(&again))
}

fn verdict(verdict: Verdict) -> Result<(), Error> {
    match verdict {
        Verdict::Allow => Ok(()),
        Verdict::Deny(rule) => Err(Error::new(
            ErrorKind::AccessDenied,
            format!("access denied ({rule})"),
        )),
        // With a verified user no rule asks again; refuse rather than loop.
        Verdict::AuthRequired(rule) => Err(Error::new(
            ErrorKind::ProxyAuthRequired,
            format!("access denied ({rule})"),
        )),
    }
}
