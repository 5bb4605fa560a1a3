//! The order lock in the storage directory: two instances sharing it (NFS, a synced folder)
//! never order at the same time. `create_new` is atomic on local file systems and NFSv3+.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Held while this instance orders; the file is removed when dropped.
pub struct Lock {
    path: PathBuf,
    content: String,
}

impl Lock {
    /// Takes the lock, or None when another live holder has it. A lock older than `stale`
    /// (its holder died mid-order) is taken over.
    pub fn acquire(dir: &Path, stale: Duration) -> Option<Lock> {
        let path = dir.join("lock");
        let now = SystemTime::now();
        static TAKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let content = format!(
            "{{\"pid\":{},\"host\":{:?},\"at\":{},\"nonce\":\"{}-{}\"}}\n",
            std::process::id(),
            hostname(),
            since.as_secs(),
            since.subsec_nanos(),
            TAKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    if f.write_all(content.as_bytes()).is_err() {
                        let _ = std::fs::remove_file(&path);
                        return None;
                    }
                    return Some(Lock { path, content });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|m| now.duration_since(m).ok())
                        .unwrap_or_default();
                    if age < stale {
                        return None;
                    }
                    tracing::warn!(lock = %path.display(), age_secs = age.as_secs(), "taking over a stale ACME lock");
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => {
                    tracing::error!(lock = %path.display(), error = %e, "cannot create the ACME lock file");
                    return None;
                }
            }
        }
        None
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Only our own lock is removed (a stale takeover by someone else is theirs now).
        if std::fs::read_to_string(&self.path).is_ok_and(|c| c == self.content) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn hostname() -> String {
    crate::os::hostname()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_released_and_stale_locks_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let first = Lock::acquire(dir.path(), Duration::from_secs(600)).expect("free");
        assert!(Lock::acquire(dir.path(), Duration::from_secs(600)).is_none());
        drop(first);
        assert!(!dir.path().join("lock").exists());
        let held = Lock::acquire(dir.path(), Duration::from_secs(600)).expect("free again");
        // With a zero staleness window the held lock counts as abandoned.
        let taken = Lock::acquire(dir.path(), Duration::ZERO).expect("stale takeover");
        drop(held); // not ours any more: must not remove the new holder's file
        assert!(dir.path().join("lock").exists());
        drop(taken);
        assert!(!dir.path().join("lock").exists());
    }
}
