//! TLS checks for one name: handshake, the certificate covers the name, the chain verifies,
//! expiry, TLS 1.2 offered, what the server prefers.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::{CertificateError, RootCertStore};
use x509_parser::extensions::GeneralName;

use super::client::{self, Offer};
use super::{Finding, Target};

/// Certificates expiring sooner than this get a warning.
/// Issue 13: warn three weeks ahead, leaving time to renew by hand if automation failed.
const EXPIRY_WARNING_DAYS: i64 = 21;

/// Names and expiry read from the end-entity certificate.
struct Leaf {
    names: Vec<String>,
    not_after_unix: i64,
    issuer: String,
}

fn leaf(der: &[u8]) -> Option<Leaf> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::DNSName(n) => Some(n.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    Some(Leaf {
        names,
        not_after_unix: cert.validity().not_after.timestamp(),
        issuer: cert.issuer().to_string(),
    })
}

/// RFC 6125: exact, or a wildcard standing for exactly one left-most label.
pub fn name_covers(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// Every TLS finding for `t`. A failed `tls-handshake` means the name could not be reached.
pub async fn check(t: &Target, roots: Arc<RootCertStore>, timeout: Duration) -> Vec<Finding> {
    let name = t.host.as_str();
    let mut out = Vec::new();
    let hs = match client::connect(t.addr, name, client::client_config(Offer::Modern), timeout)
        .await
    {
        Ok((_, hs)) => hs,
        Err(why) => {
            out.push(Finding::fail(
                "tls-handshake",
                name,
                why,
                format!("make sure the proxy listens on {} and serves TLS for this name (a listener with a certificate for it; firewall open for TCP {})", t.addr, t.port),
            ));
            return out;
        }
    };
    out.push(Finding::pass(
        "tls-handshake",
        name,
        format!("{} with {} at {}", hs.version, hs.cipher, t.addr),
    ));

    let Some(leaf) = hs.chain.first().and_then(|c| leaf(c)) else {
        out.push(Finding::fail(
            "certificate-name",
            name,
            "the server sent no readable certificate",
            "configure a certificate for this listener",
        ));
        return out;
    };
    let sans = leaf.names.join(", ");
    if leaf.names.iter().any(|n| name_covers(n, name)) {
        out.push(Finding::pass(
            "certificate-name",
            name,
            format!("covered by the certificate's names: {sans}"),
        ));
    } else {
        out.push(Finding::fail(
            "certificate-name",
            name,
            format!("the certificate served for {name} does not cover it; its names: {sans}"),
            format!("add {name} as a subject alternative name (SAN) to the certificate, or give the listener a certificate that names it (SNI picks it); a wildcard only counts for one label"),
        ));
    }

    match client::verify_chain(roots, &hs.chain, name) {
        Ok(()) => out.push(Finding::pass(
            "certificate-chain",
            name,
            format!("chain verifies to a trusted root (issuer: {})", leaf.issuer),
        )),
        // The name is judged above; the chain itself is fine in that case.
        Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName)) => {
            out.push(Finding::pass(
                "certificate-chain",
                name,
                format!(
                    "chain verifies to a trusted root (issuer: {}); only the name is wrong",
                    leaf.issuer
                ),
            ))
        }
        Err(rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::NotValidYet,
        )) => {} // reported by certificate-expiry
        Err(e) => out.push(Finding::fail(
            "certificate-chain",
            name,
            format!("the chain does not verify: {e} (issuer: {})", leaf.issuer),
            "serve the whole chain (certificate, then intermediates) from a public CA; for a private CA run the check with --ca ROOT.pem",
        )),
    }

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let days = (leaf.not_after_unix - now).div_euclid(86_400);
    if leaf.not_after_unix < now {
        out.push(Finding::fail(
            "certificate-expiry",
            name,
            format!("the certificate expired {} day(s) ago", -days),
            "renew the certificate and reload the proxy",
        ));
    } else if days < EXPIRY_WARNING_DAYS {
        out.push(Finding::warn(
            "certificate-expiry",
            name,
            format!("the certificate expires in {days} day(s)"),
            "renew the certificate now; clients refuse it once expired",
        ));
    } else {
        out.push(Finding::pass(
            "certificate-expiry",
            name,
            format!("valid for {days} more days"),
        ));
    }

    // rustls cannot speak TLS 1.0/1.1, so "1.2+" is judged by the version negotiated and by a
    // TLS 1.2-only offer, which SfB clients on older Windows and iOS make.
    let tls12 = client::connect(
        t.addr,
        name,
        client::client_config(Offer::Tls12Only),
        timeout,
    )
    .await;
    match tls12 {
        Ok((_, h12)) => out.push(Finding::pass(
            "tls-version",
            name,
            format!(
                "prefers {} ({}); TLS 1.2 offered ({})",
                hs.version, hs.cipher, h12.cipher
            ),
        )),
        Err(why) => out.push(Finding::warn(
            "tls-version",
            name,
            format!("prefers {}, but a TLS 1.2 client is refused: {why}", hs.version),
            "allow TLS 1.2 (min_version = \"1.2\" on Portico): SfB clients on Windows 7/8 and several mobile clients do not speak TLS 1.3",
        )),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::name_covers;

    #[test]
    fn wildcard_covers_one_label_only() {
        assert!(name_covers("*.contoso.com", "meet.contoso.com"));
        assert!(!name_covers("*.contoso.com", "a.meet.contoso.com"));
        assert!(!name_covers("*.contoso.com", "contoso.com"));
        assert!(name_covers("LyncWeb.contoso.com", "lyncweb.contoso.com."));
    }
}
