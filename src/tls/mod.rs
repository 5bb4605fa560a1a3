//! TLS for Portico: certificate loading and checking, SNI-based certificate and ALPN
//! selection on listeners, and the client configuration used towards pool members.
//!
//! Everything is built on rustls with the `ring` provider explicitly, so no process-wide
//! default provider has to be installed.

mod certs;
pub mod challenges;
mod client;
pub mod ocsp;
mod slot;
mod sni;
mod watch;

#[cfg(test)]
mod test_support;

use std::path::PathBuf;

pub(crate) use certs::check_pair;
pub use certs::{load_certificate, CertificateSpec, LoadedCertificate};
pub use client::{client_config, server_name, AcceptAnyCert, UpstreamTlsSpec};
pub use slot::{CertSlot, CertSource, SlotStatus};
pub use sni::{Accepted, Alpn, ListenerTls, ListenerTlsOptions, TlsVersion, ACME_TLS_ALPN};
pub use watch::watch_files;

/// Errors from loading certificates and building TLS configurations.
///
/// Each message names the file (or setting) at fault, what is wrong, and what would be accepted,
/// because these are read by an administrator fixing a config, not by a developer.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file cannot be read at all.
    #[error("{}: cannot read file: {source}", path.display())]
    Read {
        /// The file as the config names it.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },

    #[error("{}: not valid PEM: {source} (expected PEM text with -----BEGIN ...----- blocks)", path.display())]
    /// The file is read but is not PEM text.
    Pem {
        /// The file as the config names it.
        path: PathBuf,
        /// What the PEM parser rejected.
        #[source]
        source: std::io::Error,
    },

    #[error("{}: no certificate found (expected a PEM file with -----BEGIN CERTIFICATE-----)", path.display())]
    /// The PEM file holds no `CERTIFICATE` block.
    NoCertificate {
        /// The file as the config names it.
        path: PathBuf,
    },

    #[error("{}: certificate cannot be parsed: {detail} (expected a DER X.509 certificate inside -----BEGIN CERTIFICATE-----)", path.display())]
    /// A `CERTIFICATE` block is not a parseable X.509 certificate.
    BadCertificate {
        /// The file as the config names it.
        path: PathBuf,
        /// The X.509 parser's complaint.
        detail: String,
    },

    #[error("{}: no private key found (expected a PEM file with -----BEGIN PRIVATE KEY-----, -----BEGIN RSA PRIVATE KEY----- or -----BEGIN EC PRIVATE KEY-----)", path.display())]
    /// The key file holds no private key block of a known kind.
    NoPrivateKey {
        /// The file as the config names it.
        path: PathBuf,
    },

    #[error("{}: private key cannot be used: {detail} (expected an RSA, ECDSA P-256/P-384 or Ed25519 key)", path.display())]
    /// The private key is of a type or curve rustls cannot sign with.
    UnsupportedKey {
        /// The file as the config names it.
        path: PathBuf,
        /// Why rustls refused it.
        detail: String,
    },

    #[error("{}: private key does not match the certificate in {}", key.display(), cert.display())]
    /// The private key is not the one of the certificate it is paired with.
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file it was paired with.
        cert: PathBuf,
    },

    #[error("{}: certificate expired on {date} (set allow_expired = true to serve it anyway)", path.display())]
    /// The certificate's notAfter is in the past (and `allow_expired` is not set).
    Expired {
        /// The file as the config names it.
        path: PathBuf,
        /// The notAfter date, as shown to the administrator.
        date: String,
    },

    #[error("{}: certificate is not valid until {date} (check the system clock, or use a certificate that is already valid)", path.display())]
    /// The certificate's notBefore is in the future.
    NotYetValid {
        /// The file as the config names it.
        path: PathBuf,
        /// The notBefore date, as shown to the administrator.
        date: String,
    },

    #[error(
        "listener TLS: no certificates given (expected at least one certificate per TLS listener)"
    )]
    /// A TLS listener was configured with no certificate.
    NoCertificates,

    #[error(
        "listener TLS: default certificate index {index} is out of range (expected 0..{count})"
    )]
    /// The listener's default certificate (served when SNI matches none) does not exist.
    DefaultOutOfRange {
        /// The configured default, from 0.
        index: usize,
        /// How many certificates the listener has.
        count: usize,
    },

    #[error("http1_only_hosts: {pattern:?} is not a host name (expected an exact name like lyncdiscover.contoso.com or a one-label wildcard like *.contoso.com)")]
    /// An `http1_only_hosts` entry is neither a host name nor a one-label wildcard.
    BadHostPattern {
        /// The entry as written.
        pattern: String,
    },

    #[error("upstream host {host:?}: not a valid DNS name or IP address (expected e.g. fe01.contoso.local or 10.0.0.5)")]
    /// An upstream host cannot be used as the SNI / verification name towards a member.
    BadServerName {
        /// The host as written.
        host: String,
    },

    #[error("{context}: {source}")]
    /// rustls refused to build a config (for instance an unusable certificate chain).
    Rustls {
        /// What was being built, shown before the rustls message.
        context: &'static str,
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
}

/// The ring provider, used for every config so the choice never depends on process state.
fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// Strips one trailing dot (absolute DNS form); names are compared without it.
fn trim_dot(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

/// Starts the tasks that look after the certificates `config` serves (file watch, OCSP),
/// once per slot: slots kept across a reload keep their tasks. Needs a runtime.
pub fn maintain(config: &crate::config::Config) {
    for slot in served_slots(config) {
        if !slot.claim_maintenance() {
            continue;
        }
        slot.current()
            .warn_if_expiring(std::time::SystemTime::now());
        match &slot.source {
            CertSource::File(spec) => {
                slot.update_status(|s| s.renewal_state = "watching file".into());
                watch_files(&slot, spec.clone());
            }
            CertSource::Acme(cfg) => crate::acme::manage(&slot, cfg.clone()),
        }
        ocsp::staple(&slot, config.upstream.source_address);
    }
}

/// Every slot `config` serves, each once, in listener order.
pub fn served_slots(config: &crate::config::Config) -> Vec<std::sync::Arc<CertSlot>> {
    let mut out: Vec<std::sync::Arc<CertSlot>> = Vec::new();
    for l in &config.listeners {
        let Some(tls) = &l.tls else { continue };
        for slot in tls.slots() {
            if !out.iter().any(|s| std::sync::Arc::ptr_eq(s, slot)) {
                out.push(slot.clone());
            }
        }
    }
    out
}
