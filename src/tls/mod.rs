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
pub use sni::{Accepted, ListenerTls, ListenerTlsOptions, TlsVersion, ACME_TLS_ALPN};
pub use watch::watch_files;

/// Errors from loading certificates and building TLS configurations.
///
/// Each message names the file (or setting) at fault, what is wrong, and what would be accepted,
/// because these are read by an administrator fixing a config, not by a developer.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: cannot read file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: not valid PEM: {source} (expected PEM text with -----BEGIN ...----- blocks)", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: no certificate found (expected a PEM file with -----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { path: PathBuf },

    #[error("{}: certificate cannot be parsed: {detail} (expected a DER X.509 certificate inside -----BEGIN CERTIFICATE-----)", path.display())]
    BadCertificate { path: PathBuf, detail: String },

    #[error("{}: no private key found (expected a PEM file with -----BEGIN PRIVATE KEY-----, -----BEGIN RSA PRIVATE KEY----- or -----BEGIN EC PRIVATE KEY-----)", path.display())]
    NoPrivateKey { path: PathBuf },

    #[error("{}: private key cannot be used: {detail} (expected an RSA, ECDSA P-256/P-384 or Ed25519 key)", path.display())]
    UnsupportedKey { path: PathBuf, detail: String },

    #[error("{}: private key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },

    #[error("{}: certificate expired on {date} (set allow_expired = true to serve it anyway)", path.display())]
    Expired { path: PathBuf, date: String },

    #[error("{}: certificate is not valid until {date} (check the system clock, or use a certificate that is already valid)", path.display())]
    NotYetValid { path: PathBuf, date: String },

    #[error(
        "listener TLS: no certificates given (expected at least one certificate per TLS listener)"
    )]
    NoCertificates,

    #[error(
        "listener TLS: default certificate index {index} is out of range (expected 0..{count})"
    )]
    DefaultOutOfRange { index: usize, count: usize },

    #[error("http1_only_hosts: {pattern:?} is not a host name (expected an exact name like lyncdiscover.contoso.com or a one-label wildcard like *.contoso.com)")]
    BadHostPattern { pattern: String },

    #[error("upstream host {host:?}: not a valid DNS name or IP address (expected e.g. fe01.contoso.local or 10.0.0.5)")]
    BadServerName { host: String },

    #[error("{context}: {source}")]
    Rustls {
        context: &'static str,
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
