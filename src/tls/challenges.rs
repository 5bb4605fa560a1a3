//! Pending ACME challenge answers, shared by the ACME client (which adds and removes them)
//! and the listeners (which answer the CA's validation requests).
//!
//! Process-wide, because a challenge must be answered by whichever listener the CA reaches,
//! whatever config snapshot that listener is serving.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::sign::CertifiedKey;

#[derive(Default)]
struct Pending {
    /// HTTP-01: token → key authorization.
    http: HashMap<String, String>,
    /// TLS-ALPN-01: DNS name (lower-case) → validation certificate.
    tls_alpn: HashMap<String, Arc<CertifiedKey>>,
}

fn pending() -> std::sync::MutexGuard<'static, Pending> {
    static PENDING: OnceLock<Mutex<Pending>> = OnceLock::new();
    PENDING
        .get_or_init(|| Mutex::new(Pending::default()))
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// The key authorization to answer `GET /.well-known/acme-challenge/TOKEN` with.
pub fn http01(token: &str) -> Option<String> {
    pending().http.get(token).cloned()
}

pub(crate) fn add_http01(token: &str, key_authorization: &str) {
    pending()
        .http
        .insert(token.to_owned(), key_authorization.to_owned());
}

pub(crate) fn remove_http01(token: &str) {
    pending().http.remove(token);
}

/// The validation certificate for `name` (lower-case, no trailing dot).
pub fn tls_alpn(name: &str) -> Option<Arc<CertifiedKey>> {
    pending().tls_alpn.get(name).cloned()
}

pub(crate) fn add_tls_alpn(name: &str, key: Arc<CertifiedKey>) {
    pending().tls_alpn.insert(name.to_ascii_lowercase(), key);
}

pub(crate) fn remove_tls_alpn(name: &str) {
    pending().tls_alpn.remove(&name.to_ascii_lowercase());
}

/// The answer to an HTTP-01 validation request for `path`, if it is one and it is pending.
pub fn answer_http01(path: &str) -> Option<String> {
    let token = path.strip_prefix("/.well-known/acme-challenge/")?;
    if token.is_empty() || token.contains('/') {
        return None;
    }
    http01(token)
}
