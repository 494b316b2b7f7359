//! The local certificate authority behind `[tls_intercept]`: loading and checking it at config
//! time (so `cuttle check` names a missing, expired or mismatched file), and making a new one
//! (`cuttle ca init`) with the steps that make machines trust it.
//!
//! A CA that can sign for any name is a master key to every HTTPS site its clients visit, so
//! `init` writes the key `0600` (created with that mode, never widened), refuses to overwrite an
//! existing key without `--force`, caps the path length at 0 (it signs leaves only) and, when the
//! admin names the domains it may sign for, adds RFC 5280 §4.2.1.10 name constraints, which
//! clients enforce. `load` refuses a key that group or others may read.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, GeneralSubtree, IsCa, KeyPair, KeyUsagePurpose,
    NameConstraints,
};
use sha2::{Digest, Sha256};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

/// The certificate's file name in `cuttle ca init --dir DIR`.
pub const CERT_FILE: &str = "cuttle-ca.pem";
/// The private key's file name in `cuttle ca init --dir DIR`.
pub const KEY_FILE: &str = "cuttle-ca.key";

/// A loaded, checked CA.
#[derive(Clone)]
pub struct Ca {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    /// The private key (PEM); kept only in memory, to sign minted leaves.
    pub key_pem: String,
    /// Minted leaves never outlive the CA.
    pub not_after: SystemTime,
    /// The first 16 hex digits of the certificate's SHA-256: minted leaves on disk are kept
    /// per CA, so a new CA never serves a leaf the old one signed.
    pub fingerprint: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Why a CA cannot be used; says which of the two files is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    #[error("{0}")]
    Cert(String),
    #[error("{0}")]
    Key(String),
}

fn unix(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn from_unix(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// Loads the CA certificate `cert` and its key `key` (PEM) and checks that the certificate is
/// a CA, valid at `now`, and that the key is its own and private to its owner.
pub fn load(cert: &Path, key: &Path, now: SystemTime) -> Result<Ca, CaError> {
    let shown = cert.display();
    let cert_pem = std::fs::read_to_string(cert)
        .map_err(|e| CaError::Cert(format!("cannot read `{shown}`: {e}")))?;
    let cert_der = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| CaError::Cert(format!("`{shown}` holds no PEM certificate")))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der)
        .map_err(|e| CaError::Cert(format!("`{shown}` is not a valid X.509 certificate: {e}")))?;
    let is_ca = parsed
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err(CaError::Cert(format!(
            "`{shown}` is not a CA certificate (no basicConstraints CA:TRUE); make one with `cuttle ca init`"
        )));
    }
    let validity = parsed.validity();
    let not_after = validity.not_after.timestamp();
    if unix(now) >= not_after {
        return Err(CaError::Cert(format!(
            "`{shown}` expired on {}; make a new one with `cuttle ca init --force`",
            httpdate::fmt_http_date(from_unix(not_after))
        )));
    }
    if unix(now) < validity.not_before.timestamp() {
        return Err(CaError::Cert(format!(
            "`{shown}` is not valid before {}",
            httpdate::fmt_http_date(from_unix(validity.not_before.timestamp()))
        )));
    }
    let key_shown = key.display();
    let mode = std::fs::metadata(key)
        .map_err(|e| CaError::Key(format!("cannot read `{key_shown}`: {e}")))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(CaError::Key(format!(
            "`{key_shown}` may be read by group or others (mode {:o}); it signs for any site: chmod 600 it",
            mode & 0o777
        )));
    }
    let key_pem = std::fs::read_to_string(key)
        .map_err(|e| CaError::Key(format!("cannot read `{key_shown}`: {e}")))?;
    let pair = KeyPair::from_pem(&key_pem)
        .map_err(|e| CaError::Key(format!("`{key_shown}` holds no usable private key: {e}")))?;
    if parsed.public_key().subject_public_key.data.as_ref() != pair.public_key_raw() {
        return Err(CaError::Key(format!(
            "`{key_shown}` is not the private key of the certificate in `{shown}`"
        )));
    }
    let digest = Sha256::digest(cert_der.as_ref());
    let fingerprint = digest.iter().take(8).fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    Ok(Ca {
        cert_pem,
        cert_der,
        key_pem,
        not_after: from_unix(not_after),
        fingerprint,
    })
}

/// What `cuttle ca init` makes.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub dir: PathBuf,
    /// The CA's common name (what trust stores show).
    pub common_name: String,
    /// DNS names (and their subdomains) the CA may sign for; empty: any name.
    pub name_constraints: Vec<String>,
    /// How long the CA is valid.
    pub days: u32,
    /// Replace an existing key.
    pub force: bool,
}

/// Makes a CA as `opts` says, valid from `now`; returns the certificate's and the key's paths.
pub fn init(opts: &InitOptions, now: SystemTime) -> Result<(PathBuf, PathBuf), String> {
    std::fs::create_dir_all(&opts.dir)
        .map_err(|e| format!("cannot create `{}`: {e}", opts.dir.display()))?;
    let cert_path = opts.dir.join(CERT_FILE);
    let key_path = opts.dir.join(KEY_FILE);
    if key_path.exists() && !opts.force {
        return Err(format!(
            "`{}` exists; keep using it, or pass --force to replace it (clients that trust the old CA must then be given the new one)",
            key_path.display()
        ));
    }
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, opts.common_name.as_str());
    params
        .distinguished_name
        .push(DnType::OrganizationName, "cuttle TLS interception");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(u64::from(opts.days) * 86_400)).into();
    if !opts.name_constraints.is_empty() {
        let mut permitted = Vec::with_capacity(opts.name_constraints.len());
        for name in &opts.name_constraints {
            let bare = name.trim().trim_start_matches('.').to_ascii_lowercase();
            if bare.is_empty() || bare.contains(|c: char| c.is_whitespace() || c == '/') {
                return Err(format!(
                    "`{name}` is not a DNS name; write --name-constraint example.com"
                ));
            }
            permitted.push(GeneralSubtree::DnsName(bare));
        }
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: permitted,
            excluded_subtrees: Vec::new(),
        });
    }
    let key = KeyPair::generate().map_err(|e| format!("cannot generate a key: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("cannot sign the CA certificate: {e}"))?;
    write_private(&key_path, &key.serialize_pem())?;
    std::fs::write(&cert_path, cert.pem())
        .map_err(|e| format!("cannot write `{}`: {e}", cert_path.display()))?;
    Ok((cert_path, key_path))
}

/// Writes `text` to `path` readable by its owner only: a new file is created `0600`, and an
/// existing one (with `--force`) is narrowed to `0600` before anything is written to it.
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    let shown = path.display();
    if path.exists() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot chmod `{shown}`: {e}"))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write `{shown}`: {e}"))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write `{shown}`: {e}"))
}

/// How to make clients trust the CA in `cert` (printed by `cuttle ca init`).
pub fn trust_steps(cert: &Path, key: &Path) -> String {
    let c = cert.display();
    format!(
        "\
Wrote the CA certificate {c}
  and its private key    {k} (mode 0600: keep it secret; it can sign for any site)

Enable interception in cuttle.toml:
  [tls_intercept]
  ca_cert = \"{c}\"
  ca_key = \"{k}\"
  [[tls_intercept.rule]]
  bump = [\"registries\"]   # an [acl] such as registries = {{ \"ssl::server_name\" = [\".npmjs.org\"] }}

Then trust the certificate (never the key) on each client machine:

  Debian/Ubuntu (system store: curl, wget, apt, Python ssl, most tools):
    sudo cp {c} /usr/local/share/ca-certificates/cuttle-ca.crt
    sudo update-ca-certificates

  Chromium / Chrome on Linux (NSS, per user):
    mkdir -p ~/.pki/nssdb && certutil -d sql:$HOME/.pki/nssdb -N --empty-password
    certutil -d sql:$HOME/.pki/nssdb -A -t \"C,,\" -n cuttle-ca -i {c}

  Firefox (its own NSS store, per profile):
    certutil -d sql:$HOME/.mozilla/firefox/PROFILE -A -t \"C,,\" -n cuttle-ca -i {c}
    (or set security.enterprise_roots.enabled = true to use the system store)

  pip / Python requests:
    pip config set global.cert /etc/ssl/certs/ca-certificates.crt
    export REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

  npm / Node.js:
    npm config set cafile {c}      # or: export NODE_EXTRA_CA_CERTS={c}

  cargo:
    export CARGO_HTTP_CAINFO=/etc/ssl/certs/ca-certificates.crt
    (or [http] cainfo = \"...\" in ~/.cargo/config.toml)

  git:
    git config --global http.sslCAInfo /etc/ssl/certs/ca-certificates.crt

  Docker (the daemon pulls through the proxy):
    sudo mkdir -p /etc/docker/certs.d/REGISTRY && sudo cp {c} /etc/docker/certs.d/REGISTRY/ca.crt
    (or trust it system-wide as above, then: sudo systemctl restart docker)

Each client also needs the proxy: https_proxy=http://PROXY:3128 (or its own setting).
",
        k = key.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &Path) -> InitOptions {
        InitOptions {
            dir: dir.to_owned(),
            common_name: "test CA".to_owned(),
            name_constraints: vec!["registry.test".to_owned()],
            days: 30,
            force: false,
        }
    }

    #[test]
    fn init_writes_a_private_key_and_a_ca_that_loads() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        let (cert, key) = init(&options(dir.path()), now).unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let ca = load(&cert, &key, now).unwrap();
        assert_eq!(ca.fingerprint.len(), 16);
        // Name constraints made it into the certificate.
        let (_, parsed) = x509_parser::parse_x509_certificate(&ca.cert_der).unwrap();
        assert!(parsed.name_constraints().unwrap().is_some());
        // A second init keeps the key unless forced.
        let err = init(&options(dir.path()), now).unwrap_err();
        assert!(err.contains("--force"), "{err}");
        let forced = InitOptions {
            force: true,
            ..options(dir.path())
        };
        init(&forced, now).unwrap();
        assert_ne!(load(&cert, &key, now).unwrap().fingerprint, ca.fingerprint);
    }

    #[test]
    fn load_blames_the_right_file() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        let (cert, key) = init(&options(dir.path()), now).unwrap();
        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = init(&options(other.path()), now).unwrap();
        let err = load(&cert, &other_key, now).unwrap_err();
        assert!(
            matches!(&err, CaError::Key(m) if m.contains("not the private key")),
            "{err}"
        );
        let err = load(&cert, &key, now + Duration::from_secs(31 * 86_400)).unwrap_err();
        assert!(
            matches!(&err, CaError::Cert(m) if m.contains("expired")),
            "{err}"
        );
        let err = load(&key, &key, now).unwrap_err();
        assert!(
            matches!(&err, CaError::Cert(m) if m.contains("no PEM certificate")),
            "{err}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&cert, &key, now).unwrap_err();
        assert!(
            matches!(&err, CaError::Key(m) if m.contains("chmod 600")),
            "{err}"
        );
        // A leaf is not a CA.
        let leaf = rcgen::generate_simple_self_signed(vec!["x.test".to_owned()]).unwrap();
        let leaf_path = dir.path().join("leaf.pem");
        std::fs::write(&leaf_path, leaf.cert.pem()).unwrap();
        let err = load(&leaf_path, &key, now).unwrap_err();
        assert!(
            matches!(&err, CaError::Cert(m) if m.contains("not a CA")),
            "{err}"
        );
    }
}
