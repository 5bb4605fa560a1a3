//! Live reload of certificate files: when an administrator, certbot or win-acme replaces a
//! certificate or key file, the new pair is checked like at startup and swapped into the
//! slot; a broken pair is refused with a log line naming the file and the old one serves on.
//!
//! Polling (content hash every couple of seconds) rather than inotify: it sees changes on NFS
//! and synced folders (the HA shared-storage case, where inotify sees nothing), survives
//! rename-over and symlink swaps (certbot's `live/` links, Kubernetes secrets) without
//! re-arming watches, and costs two small file reads per certificate per interval.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{load_certificate, CertSlot, CertificateSpec};

/// How often certificate files are looked at.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// A writer that replaces the cert and then the key is given this long to finish before the
/// pair is read.
const SETTLE: Duration = Duration::from_millis(300);

/// Watches `spec`'s files for as long as `slot` is alive (a reload that drops the
/// certificate drops the slot, which ends the task) and swaps valid replacements in.
pub fn watch_files(slot: &Arc<CertSlot>, spec: CertificateSpec) {
    let weak = Arc::downgrade(slot);
    tokio::spawn(async move {
        let mut seen = content_hash(&spec).await;
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            let Some(slot) = weak.upgrade() else { return };
            let now = content_hash(&spec).await;
            if now == seen {
                continue;
            }
            tokio::time::sleep(SETTLE).await;
            if content_hash(&spec).await != now {
                continue; // still being written; look again next round
            }
            seen = now;
            let spec2 = spec.clone();
            let loaded = tokio::task::spawn_blocking(move || load_certificate(&spec2)).await;
            match loaded {
                Ok(Ok(cert)) => {
                    if cert.key.cert == slot.current().key.cert {
                        continue;
                    }
                    tracing::info!(
                        cert = %spec.cert.display(),
                        serial = %cert.serial,
                        names = %cert.names.join(","),
                        "certificate file changed: serving the new certificate"
                    );
                    cert.warn_if_expiring(SystemTime::now());
                    slot.store(cert);
                    slot.update_status(|s| s.last_error = None);
                }
                Ok(Err(e)) => {
                    tracing::error!(
                        cert = %spec.cert.display(),
                        key = %spec.key.display(),
                        error = %e,
                        "certificate file changed but the new pair is refused; the previous certificate keeps serving"
                    );
                    slot.update_status(|s| {
                        s.last_error =
                            Some((SystemTime::now(), format!("replacement refused: {e}")))
                    });
                }
                Err(e) => tracing::error!(error = %e, "certificate check task failed"),
            }
        }
    });
}

/// A hash of both files' contents (None for a file that cannot be read right now).
async fn content_hash(spec: &CertificateSpec) -> (Option<u64>, Option<u64>) {
    async fn one(path: &std::path::Path) -> Option<u64> {
        let data = tokio::fs::read(path).await.ok()?;
        let mut h = DefaultHasher::new();
        data.hash(&mut h);
        Some(h.finish())
    }
    (one(&spec.cert).await, one(&spec.key).await)
}
