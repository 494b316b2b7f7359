//! Proxy authentication (Squid `auth_param basic`): who a client is, for `proxy_auth` ACLs.
//!
//! A forward proxy asks for credentials with `407 Proxy Authentication Required` and a
//! `Proxy-Authenticate: Basic realm="..."` challenge (RFC 9110 §11.7.1, §15.5.8); the client
//! answers in `Proxy-Authorization` (RFC 9110 §11.7.2) with the Basic scheme of RFC 7617.
//! Users and hashes come from a password file in Apache's `htpasswd` format ([`htpasswd`]).
//!
//! Two tables keep this cheap and safe:
//! - verified credentials are remembered for `credentialsttl` (Squid's name), keyed by a
//!   salted SHA-256 of the credentials (never the password), so bcrypt's deliberate cost is
//!   paid once per user per interval and not per request;
//! - failures are counted per client address; after `max_failures` in `failure_window` the
//!   address gets 407 without any check until the window ends, so the password file cannot be
//!   guessed at bcrypt speed by many parallel connections. Both tables are bounded.
//!
//! An [`Authenticator`] belongs to one config generation: a reload reads the password file
//! again and starts with empty tables.

pub mod apr1;
pub mod htpasswd;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::HeaderValue;
use sha2::{Digest as _, Sha256};

pub use htpasswd::Htpasswd;

/// Most verified credentials remembered at once.
const VERIFIED_CAPACITY: u64 = 10_000;
/// Most client addresses whose failures are counted at once; beyond it the least recently
/// seen are forgotten.
const FAILURE_CAPACITY: u64 = 65_536;

/// `[auth.basic]` settings, validated.
#[derive(Debug, Clone)]
pub struct BasicConfig {
    /// Shown by browsers in the login prompt (Squid `auth_param basic realm`).
    pub realm: String,
    /// The password file's path, for logs.
    pub password_file: std::path::PathBuf,
    pub users: Arc<Htpasswd>,
    /// How long a verified user:password is trusted without checking the hash again (Squid
    /// `auth_param basic credentialsttl`).
    pub credentials_ttl: Duration,
    /// Failed attempts from one address before it is refused unchecked.
    pub max_failures: u32,
    /// How long failures are remembered, counted from an address's first failure.
    pub failure_window: Duration,
}

/// What became of a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// They are this user's.
    User(Arc<str>),
    /// None were sent (or not in the Basic scheme): the normal first request of a client.
    Missing,
    /// Sent and wrong (unknown user, wrong password, malformed).
    Failed,
    /// Not checked: the client's address has failed too often lately.
    Limited,
}

/// Verifies Basic credentials against a password file; see the module docs.
#[derive(Clone)]
pub struct Authenticator {
    config: BasicConfig,
    challenge: HeaderValue,
    /// Salts the verify-cache key so it is useless outside this process.
    salt: [u8; 16],
    verified: moka::future::Cache<[u8; 32], Arc<str>>,
    failures: moka::sync::Cache<IpAddr, Arc<AtomicU32>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator for `config`; `None` if the realm cannot be sent in a header field.
    pub fn new(config: BasicConfig) -> Option<Self> {
        let challenge = challenge_for(&config.realm)?;
        let mut salt = [0u8; 16];
        for (i, chunk) in salt.chunks_mut(8).enumerate() {
            use std::hash::BuildHasher as _;
            let random = std::collections::hash_map::RandomState::new().hash_one(i);
            chunk.copy_from_slice(&random.to_le_bytes());
        }
        Some(Self {
            verified: moka::future::Cache::builder()
                .max_capacity(VERIFIED_CAPACITY)
                .time_to_live(config.credentials_ttl)
                .build(),
            failures: moka::sync::Cache::builder()
                .max_capacity(FAILURE_CAPACITY)
                .time_to_live(config.failure_window)
                .build(),
            config,
            challenge,
            salt,
        })
    }

    /// The `Proxy-Authenticate` value: `Basic realm="..."` (RFC 7617 §2).
    pub fn challenge(&self) -> &HeaderValue {
        &self.challenge
    }

    pub fn config(&self) -> &BasicConfig {
        &self.config
    }

    /// Checks the `Proxy-Authorization` value sent by `client`.
    pub async fn authenticate(&self, header: Option<&HeaderValue>, client: IpAddr) -> Outcome {
        let Some(token) = header.and_then(basic_token) else {
            return Outcome::Missing;
        };
        let client = client.to_canonical();
        if self
            .failures
            .get(&client)
            .is_some_and(|count| count.load(Ordering::Relaxed) >= self.config.max_failures)
        {
            return Outcome::Limited;
        }
        let key: [u8; 32] = Sha256::new()
            .chain_update(self.salt)
            .chain_update(token)
            .finalize()
            .into();
        // Concurrent requests with the same credentials (a browser opening six connections)
        // wait for one check instead of each paying for bcrypt; only successes are kept.
        let checked = self
            .verified
            .optionally_get_with(key, async {
                let (user, password) = decode(token)?;
                let users = Arc::clone(&self.config.users);
                let name = user.clone();
                // bcrypt is slow on purpose: keep it off the async worker threads.
                let ok = tokio::task::spawn_blocking(move || users.verify(&name, &password))
                    .await
                    .unwrap_or(false);
                ok.then(|| Arc::from(user))
            })
            .await;
        let outcome = match checked {
            Some(user) => Outcome::User(user),
            None => Outcome::Failed,
        };
        if outcome == Outcome::Failed {
            self.failures
                .get_with(client, || Arc::new(AtomicU32::new(0)))
                .fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }
}

/// `Basic realm="..."`, with `"` and `\` escaped as a quoted-string (RFC 9110 §5.6.4).
fn challenge_for(realm: &str) -> Option<HeaderValue> {
    let mut text = String::with_capacity(realm.len() + 16);
    text.push_str("Basic realm=\"");
    for c in realm.chars() {
        if c == '"' || c == '\\' {
            text.push('\\');
        }
        text.push(c);
    }
    text.push('"');
    HeaderValue::from_str(&text).ok()
}

/// The token68 of a `Basic` credentials value (the scheme is case-insensitive, RFC 9110 §11.1).
fn basic_token(value: &HeaderValue) -> Option<&[u8]> {
    let bytes = value.as_bytes();
    let scheme = bytes.get(..6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let token = bytes.get(6..)?.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// RFC 7617 §2: base64 of `user-id ":" password`; the user name has no colon.
fn decode(token: &[u8]) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator(max_failures: u32) -> Authenticator {
        let bc = bcrypt::hash("right", 4).unwrap();
        let users = Htpasswd::parse(&format!("alice:{bc}\n")).unwrap();
        Authenticator::new(BasicConfig {
            realm: "the \"lab\" proxy".to_owned(),
            password_file: "test".into(),
            users: Arc::new(users),
            credentials_ttl: Duration::from_secs(60),
            max_failures,
            failure_window: Duration::from_secs(60),
        })
        .unwrap()
    }

    fn basic(credentials: &str) -> HeaderValue {
        let token = base64::engine::general_purpose::STANDARD.encode(credentials);
        HeaderValue::from_str(&format!("Basic {token}")).unwrap()
    }

    #[test]
    fn the_challenge_quotes_the_realm() {
        assert_eq!(
            authenticator(3).challenge(),
            r#"Basic realm="the \"lab\" proxy""#
        );
    }

    #[tokio::test]
    async fn right_wrong_missing_and_malformed() {
        let auth = authenticator(100);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            auth.authenticate(Some(&basic("alice:right")), ip).await,
            Outcome::User("alice".into())
        );
        // Remembered: the same answer again (from the verify cache).
        assert_eq!(
            auth.authenticate(Some(&basic("alice:right")), ip).await,
            Outcome::User("alice".into())
        );
        auth.verified.run_pending_tasks().await;
        assert_eq!(auth.verified.entry_count(), 1);
        assert_eq!(
            auth.authenticate(Some(&basic("alice:wrong")), ip).await,
            Outcome::Failed
        );
        assert_eq!(auth.authenticate(None, ip).await, Outcome::Missing);
        let bearer = HeaderValue::from_static("Bearer abc");
        assert_eq!(auth.authenticate(Some(&bearer), ip).await, Outcome::Missing);
        let junk = HeaderValue::from_static("basic !!!");
        assert_eq!(auth.authenticate(Some(&junk), ip).await, Outcome::Failed);
        let lower = HeaderValue::from_str(
            &basic("alice:right")
                .to_str()
                .unwrap()
                .replace("Basic", "bAsIc"),
        )
        .unwrap();
        assert_eq!(
            auth.authenticate(Some(&lower), ip).await,
            Outcome::User("alice".into())
        );
    }

    #[tokio::test]
    async fn too_many_failures_refuse_unchecked_for_that_address_only() {
        let auth = authenticator(2);
        let bad: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..2 {
            assert_eq!(
                auth.authenticate(Some(&basic("alice:guess")), bad).await,
                Outcome::Failed
            );
        }
        // Even the right password is not checked now.
        assert_eq!(
            auth.authenticate(Some(&basic("alice:right")), bad).await,
            Outcome::Limited
        );
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(
            auth.authenticate(Some(&basic("alice:right")), mapped).await,
            Outcome::Limited
        );
        assert_eq!(
            auth.authenticate(Some(&basic("alice:right")), other).await,
            Outcome::User("alice".into())
        );
    }

    #[test]
    fn decode_splits_at_the_first_colon() {
        let token = base64::engine::general_purpose::STANDARD.encode("u:p:q");
        assert_eq!(
            decode(token.as_bytes()),
            Some(("u".to_owned(), "p:q".to_owned()))
        );
        let token = base64::engine::general_purpose::STANDARD.encode("nocolon");
        assert_eq!(decode(token.as_bytes()), None);
    }
}
