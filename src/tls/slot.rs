//! A certificate slot: the one place a served certificate lives while Portico runs.
//!
//! Listeners do not hold certificates, they hold slots. A slot's current certificate sits
//! behind an `ArcSwap`, so the file watcher, the ACME renewer and the OCSP stapler can swap
//! it while handshakes read it, without a config reload. Slots are shared through a
//! process-wide registry keyed by where the certificate comes from, so a config reload that
//! keeps a certificate keeps its slot (and the tasks looking after it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use super::{CertificateSpec, LoadedCertificate};

/// Where a slot's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CertSource {
    /// PEM files named in the config, watched for changes.
    File(CertificateSpec),
    /// Obtained and renewed by this `[[acme]]` entry (a changed entry is a new slot).
    Acme(Arc<crate::acme::AcmeConfig>),
}

impl CertSource {
    /// What the status page and logs call this certificate.
    pub fn describe(&self) -> String {
        match self {
            CertSource::File(spec) => spec.cert.display().to_string(),
            CertSource::Acme(cfg) => format!("acme:{}", cfg.name),
        }
    }
}

/// What the tasks looking after a slot last did, for the status page and metrics.
#[derive(Debug, Clone, Default)]
pub struct SlotStatus {
    /// When the certificate last changed (load, file swap, renewal).
    pub changed_at: Option<SystemTime>,
    /// The last refused replacement or failed renewal, with when it happened.
    pub last_error: Option<(SystemTime, String)>,
    /// `"watching"`, `"placeholder"`, `"valid"`, `"renewing"`, `"waiting-for-lock"`, ...
    pub renewal_state: String,
    /// When the next renewal attempt (ACME) or refresh is due.
    pub next_attempt: Option<SystemTime>,
    /// OCSP: `"stapled"`, `"no-ocsp-url"`, `"responder-unreachable"`, ...
    pub ocsp_state: Option<String>,
    /// When the current staple's `nextUpdate` is.
    pub ocsp_next_update: Option<SystemTime>,
}

/// One served certificate and what looks after it.
#[derive(Debug)]
pub struct CertSlot {
    pub(crate) source: CertSource,
    current: ArcSwap<LoadedCertificate>,
    /// Bumped on every swap, so SNI tables built from older names are rebuilt.
    generation: AtomicU64,
    status: Mutex<SlotStatus>,
    /// Set once the background tasks for this slot have been started.
    maintained: AtomicBool,
}

impl CertSlot {
    /// A slot outside the registry (tests, in-memory configs).
    pub fn new(source: CertSource, cert: LoadedCertificate) -> Arc<CertSlot> {
        Arc::new(CertSlot {
            source,
            current: ArcSwap::from_pointee(cert),
            generation: AtomicU64::new(0),
            status: Mutex::new(SlotStatus {
                changed_at: Some(SystemTime::now()),
                ..SlotStatus::default()
            }),
            maintained: AtomicBool::new(false),
        })
    }

    /// The slot registered for `source`, or a new one holding `cert`. An existing slot takes
    /// `cert` when it differs from what it serves: the config compile has just read the files.
    pub fn shared(source: CertSource, cert: LoadedCertificate) -> Arc<CertSlot> {
        let registry = registry();
        let mut map = registry.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        if let Some(slot) = map.get(&source).and_then(Weak::upgrade) {
            let differs = slot.current().key.cert != cert.key.cert;
            // An ACME placeholder never replaces a real certificate already served.
            if differs && (!cert.placeholder || slot.current().placeholder) {
                slot.store(cert);
            }
            return slot;
        }
        let slot = CertSlot::new(source.clone(), cert);
        map.insert(source, Arc::downgrade(&slot));
        slot
    }

    /// The certificate served now.
    pub fn current(&self) -> Arc<LoadedCertificate> {
        self.current.load_full()
    }

    /// Serves `cert` from the next handshake on.
    pub fn store(&self, cert: LoadedCertificate) {
        self.current.store(Arc::new(cert));
        self.generation.fetch_add(1, Ordering::Release);
        self.update_status(|s| s.changed_at = Some(SystemTime::now()));
    }

    /// Replaces the served certificate only if it is still `expected` (so a staple fetched
    /// for an older certificate is never attached to a newer one).
    pub fn store_if_current(&self, expected: &Arc<LoadedCertificate>, cert: LoadedCertificate) {
        let prev = self.current.compare_and_swap(expected, Arc::new(cert));
        if Arc::ptr_eq(&prev, expected) {
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn status(&self) -> SlotStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn update_status(&self, f: impl FnOnce(&mut SlotStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// True the first time it is called for this slot: whoever gets true starts its tasks.
    pub fn claim_maintenance(&self) -> bool {
        !self.maintained.swap(true, Ordering::AcqRel)
    }
}

fn registry() -> &'static Mutex<HashMap<CertSource, Weak<CertSlot>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<CertSource, Weak<CertSlot>>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}
