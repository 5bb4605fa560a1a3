//! Reading a message from a peer, for both sides: the read buffer that holds nothing while
//! the peer is quiet ([`Reader`]), and a body decoded by its framing ([`Inbound`]). The
//! member side reads responses through it, the client side requests.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::{AsyncRead, ReadBuf};

use super::chunked::{self, ChunkedError, Decoder, Piece};
use super::framing::Framing;
use super::recycle;

/// Bytes read at once for a head: on the stack, then copied into a buffer of `recycle`'s.
pub(super) const HEAD_READ: usize = 4096;
/// A body read buffer starts at this size and doubles, while reads fill it, up to the max.
const BODY_READ_MIN: usize = 8 * 1024;
const BODY_READ_MAX: usize = 256 * 1024;

/// The bytes read from a peer and not yet handed out. A connection that waits (for a head,
/// or inside a body that is quiet) holds no allocation: head bytes land on the stack first,
/// then in a buffer of the thread's (`recycle`), and a buffer left empty by a read that
/// would block is let go.
pub(super) struct Reader {
    pub(super) read: BytesMut,
    next_read: usize,
    /// `read` is (what is left of) a head buffer from `recycle`, never grown: it goes back
    /// there once empty.
    recyclable: bool,
}

impl Reader {
    pub(super) fn new() -> Self {
        Reader {
            read: BytesMut::new(),
            next_read: BODY_READ_MIN,
            recyclable: false,
        }
    }

    /// Reads more bytes; `Ok(0)` at the end of the stream. For a head, at most
    /// [`HEAD_READ`] at once; for a body, reads grow while they fill the buffer and shrink
    /// when they come back short.
    pub(super) fn poll_fill<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        cx: &mut Context<'_>,
        for_head: bool,
    ) -> Poll<io::Result<usize>> {
        if for_head && self.read.is_empty() {
            // Read on the stack first, so that a connection waiting for a head holds no
            // buffer; what arrives goes to one of this thread's (`recycle`).
            let mut stack = [MaybeUninit::<u8>::uninit(); HEAD_READ];
            let mut buf = ReadBuf::uninit(&mut stack);
            ready!(Pin::new(io).poll_read(cx, &mut buf))?;
            let got = buf.filled();
            if !got.is_empty() {
                self.release();
                self.read = recycle::read_buf(HEAD_READ);
                self.recyclable = true;
                self.read.extend_from_slice(got);
            }
            return Poll::Ready(Ok(got.len()));
        }
        let want = if for_head { HEAD_READ } else { self.next_read };
        if self.read.capacity() - self.read.len() < want {
            // `reserve` moves the bytes to a bigger buffer of its own.
            self.recyclable = false;
        }
        self.read.reserve(want);
        // At most `want` per read, whatever room `reserve` left.
        let mut limited = (&mut self.read).limit(want);
        let n = match tokio_util::io::poll_read_buf(Pin::new(io), cx, &mut limited) {
            Poll::Ready(r) => r?,
            Poll::Pending => {
                if self.read.is_empty() {
                    // A body that waits (a notification wait, a streamed RPC channel) holds
                    // no buffer meanwhile.
                    self.release();
                }
                return Poll::Pending;
            }
        };
        if !for_head {
            self.next_read = if n == want {
                (want * 2).min(BODY_READ_MAX)
            } else if n < want / 2 {
                (want / 2).max(BODY_READ_MIN)
            } else {
                want
            };
        }
        Poll::Ready(Ok(n))
    }

    /// Back to idle: the buffer is released if empty (bytes of a pipelined next message
    /// stay).
    pub(super) fn rest(&mut self) {
        if self.read.is_empty() {
            self.release();
        }
        self.next_read = BODY_READ_MIN;
    }

    /// What is buffered, for an upgraded connection's tunnel. A copy of its own, not a
    /// slice: a slice (even an empty one) would keep the whole head buffer for as long as
    /// the tunnel lasts, and out of `recycle`.
    pub(super) fn take_read_ahead(&mut self) -> Bytes {
        // Empty (the usual case), this is `Bytes::new()`: no allocation.
        let ahead = Bytes::copy_from_slice(&self.read);
        self.discard();
        ahead
    }

    /// Drops what is buffered and lets go of the buffer: a lingering close reads only to
    /// discard, and holds no buffer while it waits.
    pub(super) fn discard(&mut self) {
        self.read.clear();
        self.release();
    }

    /// Lets go of the (empty) buffer: a head buffer goes back to `recycle`, to be used again
    /// once nothing points into it.
    fn release(&mut self) {
        let buf = std::mem::take(&mut self.read);
        if std::mem::take(&mut self.recyclable) && buf.capacity() > 0 {
            recycle::give_read(buf);
        }
    }
}

/// Why reading a body failed.
#[derive(Debug)]
pub(super) enum InboundError {
    Io(io::Error),
    /// The peer closed before the framing's end.
    Truncated,
    Chunked(ChunkedError),
}

/// Where a body being read stands.
pub(super) enum Inbound {
    Length(u64),
    Chunked(Decoder),
    UntilClose,
    Done,
}

impl Inbound {
    /// The body state for a head's framing.
    pub(super) fn of(framing: Framing) -> Inbound {
        match framing {
            Framing::Empty | Framing::Length(0) => Inbound::Done,
            Framing::Length(n) => Inbound::Length(n),
            Framing::Chunked => Inbound::Chunked(Decoder::new()),
            Framing::UntilClose => Inbound::UntilClose,
        }
    }

    /// The next data of the body: `Ready(Ok(None))` once it has ended (the state is then
    /// `Done`). Trailer fields, except those that may not follow a body, go to `trailers`.
    pub(super) fn poll_data<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut Reader,
        io: &mut R,
        cx: &mut Context<'_>,
        trailers: &mut Option<Box<HeaderMap>>,
    ) -> Poll<Result<Option<Bytes>, InboundError>> {
        loop {
            match self {
                Inbound::Done => return Poll::Ready(Ok(None)),
                Inbound::Length(left) => {
                    if !reader.read.is_empty() {
                        let take = (*left).min(reader.read.len() as u64) as usize;
                        *left -= take as u64;
                        let data = reader.read.split_to(take).freeze();
                        if *left == 0 {
                            *self = Inbound::Done;
                        }
                        return Poll::Ready(Ok(Some(data)));
                    }
                    ready!(poll_more(reader, io, cx))?;
                }
                Inbound::UntilClose => {
                    if !reader.read.is_empty() {
                        return Poll::Ready(Ok(Some(reader.read.split().freeze())));
                    }
                    match ready!(reader.poll_fill(io, cx, false)) {
                        Ok(0) => *self = Inbound::Done,
                        Ok(_) => {}
                        Err(e) => return Poll::Ready(Err(InboundError::Io(e))),
                    }
                }
                Inbound::Chunked(decoder) => {
                    let (used, piece) = decoder
                        .decode(&reader.read)
                        .map_err(InboundError::Chunked)?;
                    match piece {
                        Piece::Data(r) => {
                            reader.read.advance(r.start);
                            let data = reader.read.split_to(r.len()).freeze();
                            reader.read.advance(used - r.end);
                            return Poll::Ready(Ok(Some(data)));
                        }
                        Piece::Trailer(r) => {
                            add_trailer(trailers, &reader.read[r]);
                            reader.read.advance(used);
                        }
                        Piece::End => {
                            reader.read.advance(used);
                            *self = Inbound::Done;
                        }
                        Piece::NeedMore => {
                            reader.read.advance(used);
                            ready!(poll_more(reader, io, cx))?;
                        }
                    }
                }
            }
        }
    }
}

/// Reads more of a body whose end is framed: the stream ending first is `Truncated`.
fn poll_more<R: AsyncRead + Unpin>(
    reader: &mut Reader,
    io: &mut R,
    cx: &mut Context<'_>,
) -> Poll<Result<(), InboundError>> {
    match ready!(reader.poll_fill(io, cx, false)) {
        Ok(0) => Poll::Ready(Err(InboundError::Truncated)),
        Ok(_) => Poll::Ready(Ok(())),
        Err(e) => Poll::Ready(Err(InboundError::Io(e))),
    }
}

fn add_trailer(trailers: &mut Option<Box<HeaderMap>>, field: &[u8]) {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(field.len());
    let name = HeaderName::from_bytes(&field[..colon]);
    let value = HeaderValue::from_bytes(field.get(colon + 1..).unwrap_or_default().trim_ascii());
    let allowed = name
        .as_ref()
        .is_ok_and(|n| !chunked::is_forbidden_trailer(n.as_str().as_bytes()));
    if let (true, Ok(name), Ok(value)) = (allowed, name, value) {
        trailers
            .get_or_insert_with(Box::default)
            .append(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(r: &mut Reader, mut io: &[u8]) -> usize {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match r.poll_fill(&mut io, &mut cx, true) {
            Poll::Ready(Ok(n)) => n,
            other => panic!("a read from a slice: {other:?}"),
        }
    }

    /// How `Reader` uses `recycle`: between heads a connection holds no buffer, a head's
    /// buffer is used again once the head is dropped, and neither a tunnel's read-ahead nor
    /// a lingering close keeps one.
    #[test]
    fn a_head_buffer_is_held_only_while_its_bytes_are_and_a_tunnel_keeps_none() {
        let mut r = Reader::new();
        fill(&mut r, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let at = r.read.as_ptr();
        let head = r.read.split().freeze();
        r.rest();
        assert_eq!(
            r.read.capacity(),
            0,
            "a connection between heads holds no buffer"
        );
        drop(head);
        // The next head (a 101 here) lands in the same buffer, from its start.
        fill(
            &mut r,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        );
        assert_eq!(r.read.as_ptr(), at);
        drop(r.read.split().freeze());
        // Nothing came after the head: the tunnel's read-ahead is empty and holds nothing,
        // so the buffer is free for the next head on this thread.
        let ahead = r.take_read_ahead();
        assert!(ahead.is_empty());
        assert_eq!(r.read.capacity(), 0);
        let again = recycle::read_buf(HEAD_READ);
        assert_eq!(again.as_ptr(), at);
        recycle::give_read(again);
        drop(ahead);
        // Bytes after the head go to the tunnel as a copy; the buffer goes back.
        let head = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";
        fill(&mut r, &[&head[..], b"\x81\x05hello"].concat());
        drop(r.read.split_to(head.len()).freeze());
        let ahead = r.take_read_ahead();
        assert_eq!(&ahead[..], b"\x81\x05hello");
        assert_eq!(recycle::read_buf(HEAD_READ).as_ptr(), at);
        drop(ahead);
        // A lingering close discards what it reads and keeps no buffer while it waits.
        fill(&mut r, b"GET /after HTTP/1.1\r\n");
        r.discard();
        assert_eq!(r.read.capacity(), 0);
    }
}
