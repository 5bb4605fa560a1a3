//! NTLM / Negotiate pinning: Windows authentication authenticates a TCP connection, not a
//! request, so once a client connection starts it, that client connection owns one member
//! connection until either side closes. It never returns to the shared pool. The connection
//! itself is an `upstream::Pinned`; this module says when to pin, and keeps the one pin a
//! client connection holds.

use crate::farm::{Farm, Member};
use crate::upstream::Pinned;
use http::header::{self, HeaderMap};
use std::sync::Arc;

/// The member connection one client connection authenticated on, with the farm it belongs
/// to (a request routed to another farm, or reached another way, does not use it). The farm
/// is matched by name, so a pin outlives a reload that keeps its farm; holding the farm
/// itself, not a copy of its name, costs a pinned response no allocation.
pub struct PinSlot {
    pub farm: Arc<Farm>,
    pub tls: bool,
    pub member: Arc<Member>,
    pub conn: Pinned,
}

/// Where a pinned connection goes when the response body it is streaming has ended: back
/// to the client connection that owns it, for its next request.
pub struct PinHome {
    pub client: Arc<super::ConnInfo>,
    pub farm: Arc<Farm>,
    pub tls: bool,
    pub member: Arc<Member>,
}

impl PinHome {
    pub fn put(self, conn: Pinned) {
        let PinHome {
            client,
            farm,
            tls,
            member,
        } = self;
        client.put_pin(PinSlot {
            farm,
            tls,
            member,
            conn,
        });
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
