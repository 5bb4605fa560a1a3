//! Loading a certificate chain and key from PEM files, with the checks an administrator
//! needs to hear about at startup rather than at the first failed handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::InconsistentKeys;
use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;

use super::{provider, trim_dot, TlsError};

/// Certificates expiring sooner than this are warned about at load time.
const EXPIRY_WARNING_DAYS: i64 = 14;

/// Where a certificate and its key live, as given in the config.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertificateSpec {
    /// PEM file: end-entity certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM file with the private key (may be the same file as `cert`).
    pub key: PathBuf,
    /// Serve the certificate even after `notAfter` (a warning is still logged).
    pub allow_expired: bool,
}

/// A loaded certificate chain + key, with the facts the status page and checker need.
#[derive(Debug, Clone)]
pub struct LoadedCertificate {
    pub(crate) cert_path: PathBuf,
    /// DNS SANs (lower-case, no trailing dot), or the CN if there is no DNS SAN.
    pub names: Vec<String>,
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
    pub(crate) key: Arc<CertifiedKey>,
    /// Serial number in hex with colons, as `openssl x509 -serial` shows it (without colons).
    pub serial: String,
    /// A self-signed stand-in served until the first ACME certificate exists.
    pub placeholder: bool,
}

impl LoadedCertificate {
    /// Whole days from `now` until `not_after`, rounded down; negative once expired.
    pub fn days_to_expiry(&self, now: SystemTime) -> i64 {
        let secs = match self.not_after.duration_since(now) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_secs())
                .map(|s| -s)
                .unwrap_or(i64::MIN),
        };
        secs.div_euclid(86_400)
    }

    /// Whether a client asking for `host` would accept this certificate: exact SAN, or a
    /// wildcard SAN covering exactly one label (`*.contoso.com` covers `meet.contoso.com`,
    /// not `a.b.contoso.com` nor `contoso.com`). Case-insensitive; a trailing dot is ignored.
    pub fn covers(&self, host: &str) -> bool {
        let host = trim_dot(host);
        self.names.iter().any(|name| name_covers(name, host))
    }
}

/// One certificate name against one host, per RFC 6125 (one whole-label wildcard).
pub(super) fn name_covers(name: &str, host: &str) -> bool {
    if let Some(suffix) = name.strip_prefix("*.") {
        match host.split_once('.') {
            Some((label, rest)) => !label.is_empty() && rest.eq_ignore_ascii_case(suffix),
            None => false,
        }
    } else {
        name.eq_ignore_ascii_case(host)
    }
}

/// Loads and checks a certificate chain and its key. See `load_certificate_at`.
pub fn load_certificate(spec: &CertificateSpec) -> Result<LoadedCertificate, TlsError> {
    load_certificate_at(spec, SystemTime::now())
}

/// Loads `spec` and checks it against `now`: the PEM has a certificate, the key is present,
/// parseable and matches the certificate, and the certificate is within its validity period
/// (expired is allowed with `allow_expired`). Expiring within 14 days logs a warning.
pub(crate) fn load_certificate_at(
    spec: &CertificateSpec,
    now: SystemTime,
) -> Result<LoadedCertificate, TlsError> {
    let chain = read_certificates(&spec.cert)?;
    let key_der = read_private_key(&spec.key)?;
    check_pair(spec, chain, key_der, now)
}

/// The checks of [`load_certificate_at`] on a chain and key already read; `spec` names the
/// files in error messages (ACME storage passes the files it read them from).
pub(crate) fn check_pair(
    spec: &CertificateSpec,
    chain: Vec<CertificateDer<'static>>,
    key_der: PrivateKeyDer<'static>,
    now: SystemTime,
) -> Result<LoadedCertificate, TlsError> {
    let facts = parse_facts(&spec.cert, &chain[0])?;

    let signer = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| TlsError::UnsupportedKey {
            path: spec.key.clone(),
            detail: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                key: spec.key.clone(),
                cert: spec.cert.clone(),
            })
        }
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {
            tracing::warn!(
                key = %spec.key.display(),
                cert = %spec.cert.display(),
                "cannot check that the private key matches the certificate"
            );
        }
        Err(e) => {
            return Err(TlsError::BadCertificate {
                path: spec.cert.clone(),
                detail: e.to_string(),
            })
        }
    }

    if now < facts.not_before {
        return Err(TlsError::NotYetValid {
            path: spec.cert.clone(),
            date: facts.not_before_date,
        });
    }
    let loaded = LoadedCertificate {
        cert_path: spec.cert.clone(),
        names: facts.names,
        not_before: facts.not_before,
        not_after: facts.not_after,
        key: Arc::new(certified),
        serial: facts.serial,
        placeholder: false,
    };
    if now > loaded.not_after && !spec.allow_expired {
        return Err(TlsError::Expired {
            path: spec.cert.clone(),
            date: facts.not_after_date,
        });
    }
    Ok(loaded)
}

impl LoadedCertificate {
    /// Logs a warning when this certificate is expired (served under `allow_expired`) or
    /// expires within 14 days. Called when it starts being served, after logging is set up.
    pub fn warn_if_expiring(&self, now: SystemTime) {
        let days = self.days_to_expiry(now);
        let date = x509_parser::parse_x509_certificate(self.key.cert[0].as_ref())
            .map(|(_, c)| c.validity().not_after.to_datetime().date().to_string())
            .unwrap_or_default();
        if now > self.not_after {
            tracing::warn!(
                cert = %self.cert_path.display(),
                expired_on = %date,
                "serving an expired certificate because allow_expired = true"
            );
        } else if days < EXPIRY_WARNING_DAYS && !self.placeholder {
            tracing::warn!(
                cert = %self.cert_path.display(),
                expires_on = %date,
                days_left = days,
                "certificate expires soon"
            );
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// All certificates in a PEM file, in file order; at least one.
pub(super) fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = read_file(path)?;
    let mut reader = data.as_slice();
    let certs = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 RSA or SEC1 EC) in a PEM file.
pub(super) fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = read_file(path)?;
    let mut reader = data.as_slice();
    rustls_pemfile::private_key(&mut reader)
        .map_err(|source| TlsError::Pem {
            path: path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsError::NoPrivateKey {
            path: path.to_path_buf(),
        })
}

struct CertFacts {
    names: Vec<String>,
    not_before: SystemTime,
    not_after: SystemTime,
    not_before_date: String,
    not_after_date: String,
    serial: String,
}

fn parse_facts(path: &Path, der: &CertificateDer<'_>) -> Result<CertFacts, TlsError> {
    let bad = |detail: String| TlsError::BadCertificate {
        path: path.to_path_buf(),
        detail,
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| bad(format!("invalid X.509: {e}")))?;

    let mut names = Vec::new();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| bad(format!("invalid subjectAltName: {e}")))?;
    if let Some(san) = san {
        for general in &san.value.general_names {
            if let GeneralName::DNSName(dns) = general {
                push_name(&mut names, dns);
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
        {
            push_name(&mut names, cn);
        }
    }

    let validity = cert.validity();
    Ok(CertFacts {
        names,
        not_before: to_system_time(&validity.not_before),
        not_after: to_system_time(&validity.not_after),
        not_before_date: validity.not_before.to_datetime().date().to_string(),
        not_after_date: validity.not_after.to_datetime().date().to_string(),
        serial: cert
            .raw_serial_as_string()
            .replace(':', "")
            .to_ascii_uppercase(),
    })
}

fn push_name(names: &mut Vec<String>, name: &str) {
    let name = trim_dot(name.trim()).to_ascii_lowercase();
    if !name.is_empty() && !names.contains(&name) {
        names.push(name);
    }
}

fn to_system_time(t: &ASN1Time) -> SystemTime {
    let ts = t.timestamp();
    let offset = Duration::from_secs(ts.unsigned_abs());
    let shifted = if ts >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    };
    shifted.unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::test_support::{Ca, TempDir, WriteTo};

    fn spec(dir: &TempDir, cert: &str, key: &str) -> CertificateSpec {
        CertificateSpec {
            cert: dir.path(cert),
            key: dir.path(key),
            allow_expired: false,
        }
    }

    #[test]
    fn loads_good_certificate_and_extracts_names() {
        let ca = Ca::new();
        let dir = TempDir::new();
        let leaf = ca.leaf(&["LyncWeb.Contoso.com", "*.contoso.com", "10.0.0.1"]);
        leaf.write_to(&dir, "web");
        let loaded = load_certificate(&spec(&dir, "web.pem", "web.key")).unwrap();
        assert_eq!(loaded.names, vec!["lyncweb.contoso.com", "*.contoso.com"]);
        assert_eq!(loaded.cert_path, dir.path("web.pem"));
        assert_eq!(loaded.key.cert.len(), 1);
        assert!(loaded.days_to_expiry(SystemTime::now()) > 365);
        assert!(loaded.not_before < SystemTime::now());
    }

    #[test]
    fn chain_with_intermediates_is_kept_in_order() {
        let ca = Ca::new();
        let dir = TempDir::new();
        let leaf = ca.leaf(&["a.contoso.com"]);
        let pem = format!("{}{}", leaf.cert_pem, ca.cert_pem);
        dir.write("chain.pem", &pem);
        dir.write("chain.key", &leaf.key_pem);
        let loaded = load_certificate(&spec(&dir, "chain.pem", "chain.key")).unwrap();
        assert_eq!(loaded.key.cert.len(), 2);
        assert_eq!(loaded.key.cert[0].as_ref(), leaf.der.as_slice());
    }

    #[test]
    fn combined_cert_and_key_file_loads() {
        let ca = Ca::new();
        let dir = TempDir::new();
        let leaf = ca.leaf(&["a.contoso.com"]);
        dir.write("both.pem", &format!("{}{}", leaf.key_pem, leaf.cert_pem));
        assert!(load_certificate(&spec(&dir, "both.pem", "both.pem")).is_ok());
    }

    #[test]
    fn cn_is_used_when_there_is_no_dns_san() {
        let ca = Ca::new();
        let dir = TempDir::new();
        let leaf = ca.leaf_with(&[], |p| {
            p.distinguished_name
                .push(rcgen::DnType::CommonName, "Portal.Contoso.com");
        });
        leaf.write_to(&dir, "cn");
        let loaded = load_certificate(&spec(&dir, "cn.pem", "cn.key")).unwrap();
        assert_eq!(loaded.names, vec!["portal.contoso.com"]);
    }

    #[test]
    fn missing_file_is_a_read_error_naming_it() {
        let dir = TempDir::new();
        let err = load_certificate(&spec(&dir, "nope.pem", "nope.key")).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("nope.pem") && msg.contains("cannot read"),
            "{msg}"
        );
    }

    #[test]
    fn pem_without_certificate_is_rejected() {
        let ca = Ca::new();
        let dir = TempDir::new();
        let leaf = ca.leaf(&["a.contoso.com"]);
        dir.write("only-key.pem", &leaf.key_pem);
        let err = load_certificate(&spec(&dir, "only-key.pem", "only-key.pem")).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("only-key.pem: no certificate found"), "{msg}");
        assert!(msg.contains("-----BEGIN CERTIFICATE-----"), "{msg}");
    }

    #[test]
    fn key_file_without_key_is_rejected() {
        let ca = Ca::new();
        let dir = TempDir::new();
        ca.leaf(&["a.contoso.com"]).write_to(&dir, "a");
        let err = load_certificate(&spec(&dir, "a.pem", "a.pem")).unwrap_err();
        assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err:?}");
        assert!(err.to_string().contains("BEGIN PRIVATE KEY"));
    }

    #[test]
    fn key_of_another_certificate_is_a_mismatch() {
        let ca = Ca::new();
        let dir = TempDir::new();
        ca.leaf(&["a.contoso.com"]).write_to(&dir, "a");
        ca.leaf(&["b.contoso.com"]).write_to(&dir, "b");
        let err = load_certificate(&spec(&dir, "a.pem", "b.key")).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
        let msg = err.to_string();
        let want = format!(
            "{}: private key does not match the certificate in {}",
            dir.path("b.key").display(),
            dir.path("a.pem").display()
        );
        assert_eq!(msg, want);
    }

    #[test]
    fn expired_certificate_is_rejected_unless_allowed() {
        let ca = Ca::new();
        let dir = TempDir::new();
        ca.leaf_with(&["old.contoso.com"], |p| {
            p.not_before = rcgen::date_time_ymd(2024, 1, 1);
            p.not_after = rcgen::date_time_ymd(2025, 1, 2);
        })
        .write_to(&dir, "old");
        let mut s = spec(&dir, "old.pem", "old.key");
        let err = load_certificate(&s).unwrap_err();
        assert!(matches!(err, TlsError::Expired { .. }), "{err:?}");
        assert!(
            err.to_string().ends_with(
                "certificate expired on 2025-01-02 (set allow_expired = true to serve it anyway)"
            ),
            "{err}"
        );

        s.allow_expired = true;
        let loaded = load_certificate(&s).unwrap();
        assert!(loaded.days_to_expiry(SystemTime::now()) < 0);
    }

    #[test]
    fn not_yet_valid_certificate_is_rejected() {
        let ca = Ca::new();
        let dir = TempDir::new();
        ca.leaf_with(&["future.contoso.com"], |p| {
            p.not_before = rcgen::date_time_ymd(2999, 1, 1);
        })
        .write_to(&dir, "future");
        let mut s = spec(&dir, "future.pem", "future.key");
        s.allow_expired = true;
        let err = load_certificate(&s).unwrap_err();
        assert!(matches!(err, TlsError::NotYetValid { .. }), "{err:?}");
        assert!(err.to_string().contains("not valid until 2999-01-01"));
    }

    #[test]
    fn certificate_expiring_soon_still_loads() {
        let ca = Ca::new();
        let dir = TempDir::new();
        let soon = SystemTime::now() + Duration::from_secs(10 * 86_400 + 3600);
        ca.leaf_with(&["soon.contoso.com"], |p| p.not_after = soon.into())
            .write_to(&dir, "soon");
        let loaded = load_certificate(&spec(&dir, "soon.pem", "soon.key")).unwrap();
        assert_eq!(loaded.days_to_expiry(SystemTime::now()), 10);
    }

    #[test]
    fn days_to_expiry_rounds_down_and_goes_negative() {
        let ca = Ca::new();
        let dir = TempDir::new();
        ca.leaf(&["a.contoso.com"]).write_to(&dir, "a");
        let mut loaded = load_certificate(&spec(&dir, "a.pem", "a.key")).unwrap();
        let now = SystemTime::now();
        loaded.not_after = now + Duration::from_secs(86_400 + 10);
        assert_eq!(loaded.days_to_expiry(now), 1);
        loaded.not_after = now - Duration::from_secs(10);
        assert_eq!(loaded.days_to_expiry(now), -1);
    }

    #[test]
    fn covers_exact_and_one_label_wildcard_case_insensitively() {
        let ca = Ca::new();
        let dir = TempDir::new();
        ca.leaf(&["lyncweb.contoso.com", "*.contoso.com"])
            .write_to(&dir, "w");
        let c = load_certificate(&spec(&dir, "w.pem", "w.key")).unwrap();
        assert!(c.covers("lyncweb.contoso.com"));
        assert!(c.covers("LYNCWEB.Contoso.COM."));
        assert!(c.covers("meet.contoso.com"));
        assert!(c.covers("Meet.CONTOSO.com"));
        assert!(!c.covers("a.b.contoso.com"));
        assert!(!c.covers("contoso.com"));
        assert!(!c.covers(".contoso.com"));
        assert!(!c.covers("meet.fabrikam.com"));
        assert!(!c.covers(""));
    }
}
