//! NTLM / Negotiate pinning: Windows authentication authenticates a TCP connection, not a
//! request, so once a client connection starts it, that client connection owns one member
//! connection until either side closes. It never returns to the shared pool.

use crate::farm::Member;
use crate::upstream::Sender;
use http::header::{self, HeaderMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A member connection owned by one client connection.
pub struct PinnedConnection {
    pub farm: String,
    pub tls: bool,
    pub member: Arc<Member>,
    /// Taken out while a request uses it, put back when its response headers arrive.
    pub sender: Sender,
    _count: PinCount,
}

/// Counts the pin on the member for as long as it lives (the cap and the status page use it).
struct PinCount(Arc<Member>);

impl Drop for PinCount {
    fn drop(&mut self) {
        self.0.stats.pinned.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PinnedConnection {
    /// Pins `sender` if the member is under `cap`; gives the sender back otherwise.
    pub fn try_new(
        farm: &str,
        tls: bool,
        member: &Arc<Member>,
        sender: Sender,
        cap: u32,
    ) -> Result<Self, Sender> {
        let prev = member.stats.pinned.fetch_add(1, Ordering::Relaxed);
        if prev >= u64::from(cap) {
            member.stats.pinned.fetch_sub(1, Ordering::Relaxed);
            return Err(sender);
        }
        Ok(PinnedConnection {
            farm: farm.to_string(),
            tls,
            member: Arc::clone(member),
            sender,
            _count: PinCount(Arc::clone(member)),
        })
    }

    /// Whether the member has room for one more pinned connection.
    pub fn has_room(member: &Member, cap: u32) -> bool {
        member.stats.pinned.load(Ordering::Relaxed) < u64::from(cap)
    }
}

fn is_windows_scheme(value: &[u8]) -> bool {
    let scheme = value.split(|b| *b == b' ').next().unwrap_or(b"");
    scheme.eq_ignore_ascii_case(b"NTLM") || scheme.eq_ignore_ascii_case(b"Negotiate")
}

/// The request carries `Authorization: NTLM ...` or `Negotiate ...`.
pub fn request_authenticates(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .any(|v| is_windows_scheme(v.as_bytes()))
}

/// The response challenges with `WWW-Authenticate: NTLM` or `Negotiate`.
pub fn response_challenges(headers: &HeaderMap) -> bool {
    headers.get_all(header::WWW_AUTHENTICATE).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|part| is_windows_scheme(part.trim_ascii()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn windows_auth_schemes_are_recognised_and_others_are_not() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("NTLM TlRMTVNTUAAB"),
        );
        assert!(request_authenticates(&h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("negotiate YII"),
        );
        assert!(request_authenticates(&h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert!(!request_authenticates(&h));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("NTLMX abc"));
        assert!(!request_authenticates(&h));

        let mut r = HeaderMap::new();
        r.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"x\""),
        );
        assert!(!response_challenges(&r));
        r.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Negotiate"),
        );
        assert!(response_challenges(&r));
        let mut r = HeaderMap::new();
        r.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"x\", NTLM"),
        );
        assert!(response_challenges(&r));
        r.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("MsRtcOAuth href=\"x\""),
        );
        assert!(!response_challenges(&r));
    }
}
