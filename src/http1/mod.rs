//! Portico's own HTTP/1.1: heads parsed in place ([`head`]), body framing decided strictly
//! ([`framing`]), the chunked coding decoded as a stream ([`chunked`]), heads written back
//! in the peer's spelling ([`write`](mod@write), [`spelling`]), and one member connection driven by
//! the request's own future ([`client`]).
//!
//! Why not only hyper's: on both sides of a proxied request hyper's HTTP/1.1 keeps buffers
//! Portico cannot size or release (an 8 KiB read and an 8 KiB write buffer per connection,
//! an 8 KiB request queue per member connection, all held while a long poll waits), rebuilds
//! a hash map of header spellings per message, and hops between two tasks per member
//! request. Profiles of a held long poll and of keep-alive load put most of Portico's
//! remaining memory and instructions there (`docs/http1-codec.md`, with the figures and the
//! steps). The server side comes next; both sides are then wired at once, since hyper's
//! record of header spellings is private and one side alone would lose them. [`framing`]
//! already owns the body-framing rules for every HTTP/1 request ([`crate::proxy::guard`]
//! asks it).

pub mod chunked;
pub mod client;
pub mod framing;
pub mod head;
mod inbound;
mod outbound;
pub mod spelling;
pub mod write;
