//! The storage directory of one `[[acme]]` entry: account credentials, certificate chain,
//! key, and a small JSON state file. Every write is a temporary file plus a rename (readers,
//! including other instances, never see half a file), with mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::tls::{load_certificate, CertificateSpec, LoadedCertificate};

/// What the state file remembers between attempts (and between instances).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// Orders placed from this directory, by any instance.
    #[serde(default)]
    pub orders: u64,
    /// Consecutive failed orders.
    #[serde(default)]
    pub failures: u32,
    #[serde(default, with = "unix_opt")]
    pub(crate) last_attempt: Option<SystemTime>,
    #[serde(default, with = "unix_opt")]
    pub(crate) last_success: Option<SystemTime>,
    /// No order before this (back-off after a failure).
    #[serde(default, with = "unix_opt")]
    pub next_attempt: Option<SystemTime>,
    #[serde(default)]
    pub(crate) last_error: Option<String>,
}

mod unix_opt {
    use super::*;
    pub fn serialize<S: serde::Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        t.map(|t| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        })
        .serialize(s)
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        let v: Option<f64> = Option::deserialize(d)?;
        Ok(v.filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| UNIX_EPOCH + Duration::from_secs_f64(s)))
    }
}

/// Paths inside one storage directory.
#[derive(Debug, Clone)]
pub struct Storage {
    dir: PathBuf,
}

impl Storage {
    pub(crate) fn new(dir: &Path) -> Storage {
        Storage {
            dir: dir.to_path_buf(),
        }
    }

    /// Creates the directory (mode 0700) if it is missing.
    pub fn ensure_dir(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The certificate and key files, as the file watcher and error messages name them.
    pub fn spec(&self) -> CertificateSpec {
        CertificateSpec {
            cert: self.dir.join("cert.pem"),
            key: self.dir.join("key.pem"),
            allow_expired: false,
        }
    }

    pub(crate) fn account_path(&self) -> PathBuf {
        self.dir.join("account.json")
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The stored certificate, if there is a valid pair.
    pub fn load_certificate(&self) -> Option<LoadedCertificate> {
        let spec = self.spec();
        if !spec.cert.exists() {
            return None;
        }
        match load_certificate(&spec) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "stored ACME certificate not usable");
                None
            }
        }
    }

    /// Stores a new certificate: key first, then the chain (the watcher of another instance
    /// checks the pair, so a reader between the two renames sees a mismatch and waits).
    pub fn write_certificate(&self, chain_pem: &str, key_pem: &str) -> std::io::Result<()> {
        let spec = self.spec();
        write_atomic(&spec.key, key_pem.as_bytes())?;
        write_atomic(&spec.cert, chain_pem.as_bytes())
    }

    pub(crate) fn read_state(&self) -> State {
        std::fs::read(self.state_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub(crate) fn write_state(&self, state: &State) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        write_atomic(&self.state_path(), &json)
    }

    /// Publishes an HTTP-01 answer in the directory too, so that an instance sharing it
    /// answers the CA's validation request when the balancer sends it there.
    pub fn publish_http01(&self, token: &str, key_authorization: &str) -> std::io::Result<()> {
        let dir = self.dir.join("http-01");
        write_atomic(&dir.join(token), key_authorization.as_bytes())
    }

    pub(crate) fn unpublish_http01(&self, token: &str) {
        let _ = std::fs::remove_file(self.dir.join("http-01").join(token));
    }
}

/// Writes through `<path>.tmp-<pid>` and a rename, mode 0600, creating the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

fn http01_dirs() -> &'static Mutex<Vec<PathBuf>> {
    static DIRS: OnceLock<Mutex<Vec<PathBuf>>> = OnceLock::new();
    DIRS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Makes the listeners look in this directory's published HTTP-01 answers.
pub fn register_http01_dir(storage: &Storage) {
    let dir = storage.dir.join("http-01");
    let mut dirs = http01_dirs().lock().unwrap_or_else(|p| p.into_inner());
    if !dirs.contains(&dir) {
        dirs.push(dir);
    }
}

/// The token an HTTP-01 validation path asks for; `None` for any other path. Tokens are
/// base64url (RFC 8555 §8.1): anything else is not ours, and never a file name.
pub fn http01_token(path: &str) -> Option<&str> {
    let token = path.strip_prefix("/.well-known/acme-challenge/")?;
    let valid = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then_some(token)
}

/// The HTTP-01 answer for `path` (`/.well-known/acme-challenge/TOKEN`): this process's own
/// pending challenges first, then answers published in shared storage by another instance.
pub async fn answer_http01(path: &str) -> Option<String> {
    let token = http01_token(path)?;
    if let Some(ka) = crate::tls::challenges::http01(token) {
        return Some(ka);
    }
    let dirs = http01_dirs()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for dir in dirs {
        if let Ok(ka) = tokio::fs::read_to_string(dir.join(token)).await {
            return Some(ka);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_a_base64url_token_under_the_challenge_path_is_one() {
        let t = http01_token;
        assert_eq!(t("/.well-known/acme-challenge/Ab-9_z"), Some("Ab-9_z"));
        assert_eq!(t("/.well-known/acme-challenge/"), None);
        assert_eq!(t("/.well-known/acme-challenge/../etc/passwd"), None);
        assert_eq!(t("/.well-known/acme-challenge/a.b"), None);
        assert_eq!(t("/.well-known/acme-challengeX"), None);
        assert_eq!(t("/owa/.well-known/acme-challenge/abc"), None);
    }

    #[test]
    fn state_round_trips_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::new(&dir.path().join("acme"));
        assert_eq!(s.read_state(), State::default());
        let st = State {
            orders: 3,
            failures: 1,
            last_attempt: Some(UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
            last_success: None,
            next_attempt: Some(UNIX_EPOCH + Duration::from_secs(1_800_000_060)),
            last_error: Some("refused".into()),
        };
        s.write_state(&st).unwrap();
        assert_eq!(s.read_state(), st);
        let mode = std::fs::metadata(dir.path().join("acme/state.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("acme"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
