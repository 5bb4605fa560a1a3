//! Who may change things: the admin token.
//!
//! - `[admin] token_file` set: every POST needs `Authorization: Bearer <token>`, the token
//!   being the file's content with surrounding whitespace trimmed. The file is read on every
//!   action, so replacing it takes effect without a reload. Missing or wrong → 401.
//! - No `token_file`: actions are allowed only when the admin listener is bound to a
//!   loopback address (only local users can reach it, as with IIS Manager on the ARR box);
//!   an admin listener on any other address refuses every action with 403.
//!
//! Either way a browser request whose `Origin` is not the admin listener itself is refused
//! (403), so a web page elsewhere cannot drive a tokenless loopback listener.

use crate::instance::Control;
use http::{header, HeaderMap, StatusCode};
use std::net::SocketAddr;

/// Ok when the request may run an action; else the status and the reason to show.
pub fn authorize(
    control: &Control,
    local: SocketAddr,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, String)> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let origin = origin.to_str().unwrap_or("");
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
            return Err((
                StatusCode::FORBIDDEN,
                format!("cross-origin request from {origin:?} refused"),
            ));
        }
    }
    let token_file = control
        .proxy
        .current
        .load()
        .config
        .admin
        .as_ref()
        .and_then(|a| a.token_file.clone());
    let Some(path) = token_file else {
        if local.ip().is_loopback() {
            return Ok(());
        }
        return Err((
            StatusCode::FORBIDDEN,
            "actions are disabled: the admin listener is not on loopback and [admin] token_file is not set".into(),
        ));
    };
    let expected = match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        Ok(_) => {
            return Err((
                StatusCode::FORBIDDEN,
                format!(
                    "actions are disabled: the token file {} is empty",
                    path.display()
                ),
            ))
        }
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the admin token file");
            return Err((
                StatusCode::FORBIDDEN,
                format!(
                    "actions are disabled: cannot read the token file {}",
                    path.display()
                ),
            ));
        }
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    match given {
        Some(t) if same(t.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err((StatusCode::UNAUTHORIZED, "wrong admin token".into())),
        None => Err((
            StatusCode::UNAUTHORIZED,
            "this action needs the admin token: Authorization: Bearer <token>".into(),
        )),
    }
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares in time that depends on the length only, not on where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_takes_the_token_after_the_scheme_in_any_case() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer   abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"s3cret", b"s3cret"));
        assert!(!same(b"s3cret", b"s3creT"));
        assert!(!same(b"s3cret", b"s3cret2"));
    }
}
