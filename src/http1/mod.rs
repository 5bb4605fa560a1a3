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
pub mod write;

use bytes::Bytes;
use http::{header, HeaderMap};

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

/// Whether a `Connection` header lists `token`.
pub(crate) fn has_token(headers: &HeaderMap, token: &[u8]) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    })
}
