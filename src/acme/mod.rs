//! ACME (RFC 8555): certificates obtained and renewed by Portico itself, for the whole SAN
//! set of an `[[acme]]` entry, stored in a directory that HA instances may share.
//!
//! The protocol (JWS, nonces, account, orders) is instant-acme's: a small, maintained,
//! async, rustls-based client (the one rustls' own maintainers keep), which runs with the
//! `ring` provider Portico already uses and lets us supply the trust for a private CA.
//!
//! One task per `[[acme]]` slot ([`manage`]): serve what storage holds (a self-signed
//! placeholder until then), order when the certificate is missing or past two thirds of its
//! lifetime, under a lock in the storage directory so instances sharing it order once; the
//! others pick the stored certificate up through the file watcher. Failures back off with
//! jitter; the old certificate serves until a new one is in.

mod lock;
mod order;
mod storage;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::tls::{CertSlot, CertSource, LoadedCertificate};

pub use storage::{answer_http01, http01_token, State, Storage};

/// Which challenge proves control of the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Challenge {
    /// Answered by the port-80 listener before any rule runs.
    Http01,
    /// Answered by the TLS listener to handshakes offering ALPN `acme-tls/1`.
    TlsAlpn01,
}

/// Key type of the certificate (the account key is always ECDSA P-256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// ECDSA on P-256 (the default: small and fast handshakes).
    EcdsaP256,
    /// RSA 2048, for clients that cannot do ECDSA.
    Rsa2048,
}

/// External Account Binding, for commercial CAs that require it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Eab {
    pub(crate) kid: String,
    /// The decoded HMAC key (the config holds it base64url-encoded, as CAs hand it out).
    pub hmac_key: Vec<u8>,
}

/// One `[[acme]]` entry, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AcmeConfig {
    pub(crate) name: String,
    pub(crate) directory: String,
    pub(crate) contact: Vec<String>,
    pub(crate) names: Vec<String>,
    pub(crate) challenge: Challenge,
    pub(crate) storage: PathBuf,
    pub(crate) directory_ca: Option<PathBuf>,
    pub(crate) key_type: KeyType,
    pub(crate) eab: Option<Eab>,
    /// A lock file older than this is taken over (its holder died).
    pub lock_stale: Duration,
    /// First wait after a failed order; doubles per failure up to `retry_max`.
    pub retry_first: Duration,
    pub(crate) retry_max: Duration,
}

/// The slot for `cfg`: the stored certificate if storage holds a valid one for these names,
/// else a self-signed placeholder. No network: `portico validate` runs this.
pub fn slot_for(cfg: &Arc<AcmeConfig>) -> Arc<CertSlot> {
    let storage = Storage::new(&cfg.storage);
    let cert = match storage.load_certificate() {
        Some(c) if covers_all(&c, &cfg.names) => c,
        _ => placeholder(cfg),
    };
    CertSlot::shared(CertSource::Acme(Arc::clone(cfg)), cert)
}

fn covers_all(cert: &LoadedCertificate, names: &[String]) -> bool {
    names.iter().all(|n| cert.covers(n))
}

/// A self-signed certificate for the names, served until the first real one exists.
fn placeholder(cfg: &AcmeConfig) -> LoadedCertificate {
    let key = rcgen::KeyPair::generate().expect("ECDSA P-256 key generation");
    let mut params =
        rcgen::CertificateParams::new(cfg.names.clone()).expect("names validated at compile");
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("Portico placeholder for ACME {}", cfg.name),
    );
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(7 * 86_400)).into();
    let cert = params.self_signed(&key).expect("self-signed placeholder");
    let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let spec = storage::Storage::new(&cfg.storage).spec();
    let mut loaded =
        crate::tls::check_pair(&spec, vec![cert.der().clone()], der, now).expect("own pair");
    loaded.placeholder = true;
    loaded
}

/// When `cert` is due for renewal: two thirds into its lifetime (now for a placeholder).
pub fn renew_at(cert: &LoadedCertificate) -> SystemTime {
    if cert.placeholder {
        return SystemTime::UNIX_EPOCH;
    }
    let life = cert
        .not_after
        .duration_since(cert.not_before)
        .unwrap_or_default();
    cert.not_before + life.mul_f64(2.0 / 3.0)
}

/// How often the task looks at its slot, the lock and the clock.
const TICK: Duration = Duration::from_secs(2);
/// An order (all challenges, finalize, download) gets this long.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);

/// Looks after an ACME slot for as long as it lives. Needs a runtime.
pub fn manage(slot: &Arc<CertSlot>, cfg: Arc<AcmeConfig>) {
    let storage = Storage::new(&cfg.storage);
    if let Err(e) = storage.ensure_dir() {
        tracing::error!(acme = %cfg.name, storage = %cfg.storage.display(), error = %e, "cannot create the ACME storage directory");
    }
    crate::tls::watch_files(slot, storage.spec());
    storage::register_http01_dir(&storage);
    if slot.current().placeholder {
        tracing::warn!(
            acme = %cfg.name,
            storage = %cfg.storage.display(),
            "no ACME certificate stored yet: serving a self-signed placeholder until one is obtained"
        );
    }
    let weak = Arc::downgrade(slot);
    tokio::spawn(async move {
        loop {
            let Some(slot) = weak.upgrade() else { return };
            let cur = slot.current();
            let state = storage.read_state();
            let due_at = renew_at(&cur).max(state.next_attempt.unwrap_or(SystemTime::UNIX_EPOCH));
            let now = SystemTime::now();
            let renewal_state = if cur.placeholder {
                "placeholder; ordering"
            } else {
                "valid"
            };
            slot.update_status(|s| {
                s.renewal_state = renewal_state.into();
                s.next_attempt = Some(due_at);
                s.last_error = state
                    .last_error
                    .clone()
                    .map(|e| (state.last_attempt.unwrap_or(now), e));
            });
            if now < due_at {
                drop((slot, cur));
                tokio::time::sleep(TICK).await;
                continue;
            }
            let Some(lock) = lock::Lock::acquire(&cfg.storage, cfg.lock_stale) else {
                slot.update_status(|s| s.renewal_state = "another instance is ordering".into());
                drop((slot, cur));
                tokio::time::sleep(TICK).await;
                continue;
            };
            // Another instance may have renewed while we waited for the lock.
            if let Some(stored) = storage.load_certificate() {
                if covers_all(&stored, &cfg.names)
                    && SystemTime::now() < renew_at(&stored)
                    && stored.key.cert != cur.key.cert
                {
                    tracing::info!(acme = %cfg.name, serial = %stored.serial, "serving the certificate another instance stored");
                    slot.store(stored);
                    continue;
                }
            }
            let state = storage.read_state();
            if state.next_attempt.is_some_and(|t| SystemTime::now() < t) {
                continue;
            }
            slot.update_status(|s| s.renewal_state = "ordering".into());
            drop(slot);
            tracing::info!(acme = %cfg.name, names = %cfg.names.join(","), directory = %cfg.directory, "ordering a certificate");
            let result =
                match tokio::time::timeout(ORDER_TIMEOUT, order::obtain(&cfg, &storage)).await {
                    Ok(r) => r,
                    Err(_) => Err(order::OrderError::Timeout(ORDER_TIMEOUT)),
                };
            let mut state = storage.read_state();
            state.orders += 1;
            state.last_attempt = Some(SystemTime::now());
            let Some(slot) = weak.upgrade() else { return };
            match result {
                Ok(cert) => {
                    tracing::info!(acme = %cfg.name, serial = %cert.serial, not_after = ?cert.not_after, "certificate obtained and stored");
                    state.failures = 0;
                    state.last_error = None;
                    state.next_attempt = None;
                    state.last_success = Some(SystemTime::now());
                    slot.store(cert);
                }
                Err(e) => {
                    state.failures += 1;
                    let exp = state.failures.saturating_sub(1).min(20);
                    let wait = crate::tls::ocsp::jitter(
                        cfg.retry_first.saturating_mul(1 << exp).min(cfg.retry_max),
                    );
                    let next = SystemTime::now() + wait;
                    tracing::error!(
                        acme = %cfg.name,
                        error = %e,
                        failures = state.failures,
                        retry_in_secs = wait.as_secs(),
                        "ACME order failed; the current certificate keeps serving; backing off"
                    );
                    state.last_error = Some(e.to_string());
                    state.next_attempt = Some(next);
                }
            }
            if let Err(e) = storage.write_state(&state) {
                tracing::error!(acme = %cfg.name, error = %e, "cannot write the ACME state file");
            }
            drop(lock);
        }
    });
}
