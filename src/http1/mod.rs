//! Portico's own HTTP/1.1, on both sides of a proxied request: heads parsed in place
//! ([`head`]), body framing decided strictly ([`framing`]), the chunked coding decoded as a
//! stream ([`chunked`]), heads written back in the peer's spelling ([`write`](mod@write),
//! [`spelling`]), one client connection served by one future ([`server`], for `listener`),
//! and one member connection driven by the request's own future ([`client`], for
//! `upstream`).
//!
//! Why not hyper's: on both sides of a proxied request hyper's HTTP/1.1 keeps buffers
//! Portico cannot size or release (an 8 KiB read and an 8 KiB write buffer per connection,
//! an 8 KiB request queue per member connection, all held while a long poll waits), rebuilds
//! a hash map of header spellings per message, and hops between two tasks per member
//! request. Profiles of a held long poll and of keep-alive load put most of Portico's
//! remaining memory and instructions there (`docs/http1-codec.md`, with the figures and the
//! steps). Both sides were wired at once, since hyper's record of header spellings is
//! private and one side alone would have lost them. hyper still serves h2 to clients.
//! [`framing`] owns the body-framing rules: [`head`] frames every HTTP/1 message with them,
//! and [`crate::proxy::guard`] asks them about h2 requests too.

pub mod chunked;
pub mod client;
pub mod framing;
pub mod head;
mod inbound;
mod outbound;
mod recycle;
pub mod server;
pub mod spelling;
#[cfg(test)]
mod test_body;
pub mod write;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName};

/// The forwarding fields the proxy adds to requests: named here, where heads are written,
/// so that [`write`](mod@write) can spell them Title-Case in one copy.
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The reason phrase a peer sent, in a response's extensions when it is not the status's
/// canonical one; written back in its place.
#[derive(Clone, Debug)]
pub struct Reason(pub Bytes);

/// A connection switched to another protocol (101), with the bytes already read past the
/// head: the new protocol's first.
pub struct Upgraded<T> {
    /// The connection.
    pub io: T,
    /// Bytes read past the head.
    pub read_ahead: Bytes,
}

/// Which of the names the codec and the proxy decide by a message carries, found in one
/// pass over its names. A lookup costs a hash and a probe (about 100 instructions, callgrind)
/// and a proxied request made some twenty, most for names it did not carry (`Connection`,
/// `Upgrade`, `Expect`, `Cookie`...); a pass over a head's few names costs less than two.
/// A snapshot: it says nothing of fields added or removed after it was taken.
#[derive(Clone, Copy, Default)]
pub(crate) struct Present(u16);

impl Present {
    pub(crate) const CONNECTION: u16 = 1;
    pub(crate) const UPGRADE: u16 = 1 << 1;
    pub(crate) const HOST: u16 = 1 << 2;
    pub(crate) const DATE: u16 = 1 << 3;
    pub(crate) const TRANSFER_ENCODING: u16 = 1 << 4;
    pub(crate) const CONTENT_LENGTH: u16 = 1 << 5;
    pub(crate) const EXPECT: u16 = 1 << 6;
    pub(crate) const COOKIE: u16 = 1 << 7;
    pub(crate) const AUTHORIZATION: u16 = 1 << 8;
    pub(crate) const WWW_AUTHENTICATE: u16 = 1 << 9;
    /// Any name but the ten above (`Content-Type`, `X-...`, `request-id`): a message
    /// without one carries no custom name either.
    pub(crate) const OTHER: u16 = 1 << 10;

    /// The names `headers` holds now.
    pub(crate) fn of(headers: &HeaderMap) -> Present {
        const KNOWN: [(header::HeaderName, u16); 10] = [
            (header::CONNECTION, Present::CONNECTION),
            (header::UPGRADE, Present::UPGRADE),
            (header::HOST, Present::HOST),
            (header::DATE, Present::DATE),
            (header::TRANSFER_ENCODING, Present::TRANSFER_ENCODING),
            (header::CONTENT_LENGTH, Present::CONTENT_LENGTH),
            (header::EXPECT, Present::EXPECT),
            (header::COOKIE, Present::COOKIE),
            (header::AUTHORIZATION, Present::AUTHORIZATION),
            (header::WWW_AUTHENTICATE, Present::WWW_AUTHENTICATE),
        ];
        let mut found = 0;
        for name in headers.keys() {
            found |= KNOWN
                .iter()
                .find(|(known, _)| known == name)
                .map_or(Present::OTHER, |&(_, bit)| bit);
        }
        Present(found)
    }

    /// Whether the message carries any of `names` (bits of this type).
    pub(crate) fn any(self, names: u16) -> bool {
        self.0 & names != 0
    }

    /// Whether a `Connection` header of `headers` (the message this was taken of) lists
    /// `token`; looked up only when the message has one.
    pub(crate) fn connection_lists(self, headers: &HeaderMap, token: &[u8]) -> bool {
        self.any(Present::CONNECTION)
            && headers.get_all(header::CONNECTION).iter().any(|v| {
                v.as_bytes()
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_names_are_found_and_absent_ones_are_not() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "a".parse().unwrap());
        h.append(header::COOKIE, "a=1".parse().unwrap());
        h.append(header::COOKIE, "b=2".parse().unwrap());
        let p = Present::of(&h);
        assert!(p.any(Present::HOST) && p.any(Present::COOKIE));
        assert!(!p.any(Present::CONNECTION | Present::UPGRADE | Present::OTHER));
        h.insert("x-feserver", "EX01".parse().unwrap());
        h.insert(header::WWW_AUTHENTICATE, "NTLM".parse().unwrap());
        let p = Present::of(&h);
        assert!(p.any(Present::OTHER) && p.any(Present::WWW_AUTHENTICATE));
        assert!(!p.any(Present::DATE | Present::EXPECT | Present::AUTHORIZATION));
        assert!(!Present::of(&HeaderMap::new()).any(u16::MAX));
        assert!(!p.connection_lists(&h, b"close"));
        h.insert(header::CONNECTION, "Keep-Alive, CLOSE".parse().unwrap());
        let p = Present::of(&h);
        assert!(p.connection_lists(&h, b"close") && p.connection_lists(&h, b"keep-alive"));
        assert!(!p.connection_lists(&h, b"upgrade"));
    }
}
