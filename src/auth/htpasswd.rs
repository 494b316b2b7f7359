//! Password files as Apache's `htpasswd` writes them: one `user:hash` per line.
//!
//! The hash forms read are the ones `htpasswd` produces: bcrypt (`$2y$`, `htpasswd -B`, also
//! `$2a$`/`$2b$`), `{SHA}` (base64 of SHA-1, `htpasswd -s`) and Apache's MD5 (`$apr1$`, the
//! default of `htpasswd` before 2.4.?, `-m`). The traditional `crypt(3)` DES and plain-text
//! forms are refused at load with the line that uses them: DES keeps only 8 characters of a
//! password and plain text is no hash at all. Blank lines and `#` comments are skipped, as
//! Apache does. Pure: the caller reads the file.

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use sha1::{Digest as _, Sha1};

use super::apr1;

/// How one user's password is stored.
#[derive(Clone, PartialEq, Eq)]
enum Hash {
    /// The whole `$2y$...` string (bcrypt carries its own cost and salt).
    Bcrypt(String),
    /// SHA-1 of the password.
    Sha1([u8; 20]),
    /// `$apr1$salt$hash`: the salt and the whole string to compare with.
    Apr1 { salt: String, full: String },
}

/// A parsed password file.
#[derive(Clone, Default)]
pub struct Htpasswd {
    users: HashMap<String, Hash>,
    /// A bcrypt hash from the file checked for unknown users too, so that a wrong user name
    /// costs as long as a wrong password and answer times do not tell which names exist.
    decoy: Option<String>,
}

impl fmt::Debug for Htpasswd {
    // Never prints hashes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Htpasswd")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl Htpasswd {
    /// Parses the file's text; an error is `(line number, reason)`.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut file = Self::default();
        for (i, line) in text.lines().enumerate() {
            let number = i + 1;
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err((number, "not `user:hash`".to_owned()));
            };
            if user.is_empty() {
                return Err((number, "empty user name".to_owned()));
            }
            let hash = parse_hash(hash).map_err(|reason| (number, reason))?;
            if let Hash::Bcrypt(text) = &hash {
                file.decoy.get_or_insert_with(|| text.clone());
            }
            if file.users.insert(user.to_owned(), hash).is_some() {
                return Err((number, format!("user `{user}` is listed twice")));
            }
        }
        Ok(file)
    }

    /// How many users the file lists.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file lists no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `password` is `user`'s. Slow by design for bcrypt entries: call it off the
    /// async threads.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        match self.users.get(user) {
            Some(Hash::Bcrypt(hash)) => bcrypt::verify(password, hash).unwrap_or(false),
            Some(Hash::Sha1(digest)) => {
                let computed: [u8; 20] = Sha1::digest(password.as_bytes()).into();
                same_bytes(&computed, digest)
            }
            Some(Hash::Apr1 { salt, full }) => {
                same_bytes(apr1::crypt(password, salt).as_bytes(), full.as_bytes())
            }
            None => {
                if let Some(decoy) = &self.decoy {
                    let _ = bcrypt::verify(password, decoy);
                }
                false
            }
        }
    }
}

fn parse_hash(hash: &str) -> Result<Hash, String> {
    if ["$2y$", "$2a$", "$2b$"].iter().any(|p| hash.starts_with(p)) {
        // bcrypt's own parser checks the form, so a broken entry is reported at load, not as
        // a failed login.
        return match hash.parse::<bcrypt::HashParts>() {
            Ok(_) => Ok(Hash::Bcrypt(hash.to_owned())),
            Err(e) => Err(format!("bad bcrypt hash: {e}")),
        };
    }
    if let Some(encoded) = hash.strip_prefix("{SHA}") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| "bad {SHA} hash: not base64".to_owned())?;
        let digest: [u8; 20] = bytes
            .try_into()
            .map_err(|_| "bad {SHA} hash: not 20 bytes".to_owned())?;
        return Ok(Hash::Sha1(digest));
    }
    if let Some(rest) = hash.strip_prefix("$apr1$") {
        let Some((salt, sum)) = rest.split_once('$') else {
            return Err("bad $apr1$ hash: no `$` after the salt".to_owned());
        };
        if salt.is_empty() || salt.len() > 8 || sum.len() != 22 {
            return Err("bad $apr1$ hash: wrong salt or hash length".to_owned());
        }
        return Ok(Hash::Apr1 {
            salt: salt.to_owned(),
            full: hash.to_owned(),
        });
    }
    Err(
        "unsupported hash (crypt DES or plain text); write bcrypt with `htpasswd -B FILE USER` \
         (or SHA with -s, MD5 with -m)"
            .to_owned(),
    )
}

/// Compares without stopping at the first difference.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // The examples of Apache's "Password Formats" page, all for the password "myPassword".
    const APACHE_EXAMPLES: &str = "\
# bcrypt, SHA and MD5 as htpasswd writes them
bc:$2y$05$c4WoMPo3SXsafkva.HHa6uXQZWr7oboPiC2bT/r7q1BB8I2s0BRqC
sha:{SHA}VBPuJHI7uixaa6LQGWx4s+5GKNE=

md5:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/
";

    #[test]
    fn apaches_documented_hashes_verify() {
        let file = Htpasswd::parse(APACHE_EXAMPLES).unwrap();
        assert_eq!(file.len(), 3);
        for user in ["bc", "sha", "md5"] {
            assert!(file.verify(user, "myPassword"), "{user}");
            assert!(!file.verify(user, "mypassword"), "{user}");
            assert!(!file.verify(user, ""), "{user}");
        }
        assert!(!file.verify("nobody", "myPassword"));
        assert!(
            !file.verify("BC", "myPassword"),
            "user names are case-sensitive"
        );
    }

    #[test]
    fn hashes_made_by_the_crates_verify() {
        let bc = bcrypt::hash("s3cret", 4).unwrap();
        let sha = base64::engine::general_purpose::STANDARD.encode(Sha1::digest(b"s3cret"));
        let file = Htpasswd::parse(&format!("alice:{bc}\r\nbob:{{SHA}}{sha}\r\n")).unwrap();
        assert!(file.verify("alice", "s3cret") && file.verify("bob", "s3cret"));
        assert!(!file.verify("alice", "s3cret ") && !file.verify("bob", "S3cret"));
    }

    #[test]
    fn bad_lines_name_their_line() {
        for (text, line, word) in [
            ("a:{SHA}x\n", 1, "base64"),
            ("\nnocolon\n", 2, "user:hash"),
            ("a:abJnggxhB/yWI\n", 1, "htpasswd -B"),
            ("a:plain\n", 1, "unsupported"),
            (":{SHA}VBPuJHI7uixaa6LQGWx4s+5GKNE=\n", 1, "empty user"),
            ("a:$2y$05$short\n", 1, "bcrypt"),
            ("a:$apr1$salt\n", 1, "$apr1$"),
            (
                "a:{SHA}VBPuJHI7uixaa6LQGWx4s+5GKNE=\na:{SHA}VBPuJHI7uixaa6LQGWx4s+5GKNE=\n",
                2,
                "twice",
            ),
        ] {
            let (at, reason) = Htpasswd::parse(text).unwrap_err();
            assert_eq!(at, line, "{text}");
            assert!(reason.contains(word), "{text}: {reason}");
        }
    }

    #[test]
    fn debug_output_shows_no_hash() {
        let file = Htpasswd::parse(APACHE_EXAMPLES).unwrap();
        let text = format!("{file:?}");
        assert!(!text.contains("VBPu") && !text.contains("$2y$"), "{text}");
    }
}
