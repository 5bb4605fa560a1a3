//! Writing a message to a peer, for both sides: a head, then its body framed by length or
//! chunked, written with one vectored write per frame (chunk size line, data, CRLF) and
//! flushed whenever the body has nothing more ready.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http_body::Body;
use tokio::io::AsyncWrite;

use super::chunked::{self, ChunkHeader};
use super::framing::Framing;

/// Why writing a message failed.
#[derive(Debug)]
pub(super) enum OutboundError {
    /// Writing to the peer failed.
    Io(io::Error),
    /// The body being sent failed.
    Body(Box<dyn std::error::Error + Send + Sync>),
    /// The body did not match its Content-Length.
    Length,
}

/// The part of a message still to be written: head, then body frames, each framed by the
/// message's framing (a Content-Length kept to the byte, or chunked).
pub(super) struct Outbound<B> {
    head: Vec<u8>,
    /// Bytes of `head` written so far.
    head_at: usize,
    /// Keep the head once written: an idempotent request may have to be sent again if the
    /// connection dies before its answer (`take_head`).
    keep_head: bool,
    /// `None` once the body has ended. With `Framing::Empty` it is never polled, and kept
    /// only to hand back unwritten.
    body: Option<B>,
    /// The body is not polled until the head is written (see [`Self::request`]).
    head_first: bool,
    framing: Framing,
    /// Bytes a `Content-Length` body still owes.
    left: u64,
    prefix: Option<ChunkHeader>,
    prefix_at: usize,
    data: Bytes,
    /// Bytes of the CRLF after a chunk, or of the last chunk, still to write.
    suffix: &'static [u8],
    unflushed: bool,
    /// Whether a byte has been written.
    pub(super) wrote: bool,
}

impl<B> Outbound<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// A message whose first body bytes go out with its head. For a request that may be
    /// handed back unsent ([`take_unwritten`](Self::take_unwritten)) use [`Self::request`]:
    /// a frame taken before the first write would be lost with it.
    pub(super) fn new(head: Vec<u8>, body: B, framing: Framing) -> Self {
        // An `Empty` framing has no body to poll; any other is polled to its end, so a body
        // shorter than its Content-Length is caught.
        Self::with(head, Some(body), framing)
    }

    /// A request: the head is written before the body is first polled, so that until a
    /// byte is written the body is untouched and can be handed back whole.
    /// `keep_head`: the written head is kept for [`Self::take_head`].
    pub(super) fn request(head: Vec<u8>, body: B, framing: Framing, keep_head: bool) -> Self {
        let mut out = Self::with(head, Some(body), framing);
        out.head_first = true;
        out.keep_head = keep_head;
        out
    }

    /// The head, written whole and kept (`keep_head`); `None` otherwise.
    pub(super) fn take_head(&mut self) -> Option<Vec<u8>> {
        (self.keep_head && self.head_at == self.head.len() && !self.head.is_empty())
            .then(|| std::mem::take(&mut self.head))
    }

    /// The head and the body, if not a byte of the message has been written: the message
    /// can be sent again elsewhere.
    pub(super) fn take_unwritten(&mut self) -> Option<(Vec<u8>, B)> {
        if self.wrote || !self.head_first {
            return None;
        }
        Some((std::mem::take(&mut self.head), self.body.take()?))
    }

    /// A head with no body after it (an error answer written by the codec itself).
    pub(super) fn head_only(head: Vec<u8>) -> Self {
        Self::with(head, None, Framing::Empty)
    }

    fn with(head: Vec<u8>, body: Option<B>, framing: Framing) -> Self {
        let left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        Outbound {
            head,
            head_at: 0,
            keep_head: false,
            head_first: false,
            body,
            framing,
            left,
            prefix: None,
            prefix_at: 0,
            data: Bytes::new(),
            suffix: b"",
            unflushed: false,
            wrote: false,
        }
    }

    fn pending(&self) -> bool {
        self.head_at < self.head.len()
            || self.prefix.is_some()
            || !self.data.is_empty()
            || !self.suffix.is_empty()
    }

    /// Writes what it can; `Ready(Ok)` once the whole request is written and flushed.
    pub(super) fn poll<T: AsyncWrite + Unpin>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), OutboundError>> {
        loop {
            // The next frame is taken before anything is written, so that a head and the
            // body's first bytes (or a chunk's size line, data and CRLF) leave in one write:
            // a response head written alone costs a second syscall per response.
            let frame_free = self.prefix.is_none()
                && self.data.is_empty()
                && self.suffix.is_empty()
                && (!self.head_first || self.wrote);
            let mut waits = false;
            if let (true, false, Some(body)) = (frame_free, self.body_done(), self.body.as_mut()) {
                match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => waits = true,
                    Poll::Ready(None) => {
                        if let Err(e) = self.end_body() {
                            return Poll::Ready(Err(e));
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        return Poll::Ready(Err(OutboundError::Body(e.into())))
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        // Trailers are not forwarded: no member Portico publishes sends or
                        // reads them.
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        if data.is_empty() {
                            continue;
                        }
                        match self.framing {
                            Framing::Chunked => {
                                self.prefix = Some(chunked::chunk_header(data.len()));
                                self.prefix_at = 0;
                                self.suffix = chunked::CHUNK_END;
                            }
                            Framing::UntilClose => {}
                            _ if data.len() as u64 > self.left => {
                                return Poll::Ready(Err(OutboundError::Length))
                            }
                            _ => self.left -= data.len() as u64,
                        }
                        self.data = data;
                        // A body that knows it is over (hyper's `Incoming` at its length) may
                        // not say so by ending until much later: the message is complete now.
                        if self.body.as_ref().is_some_and(Body::is_end_stream) {
                            if let Err(e) = self.end_body() {
                                return Poll::Ready(Err(e));
                            }
                        }
                    }
                }
            }
            if self.pending() {
                ready!(self.poll_write(io, cx)).map_err(OutboundError::Io)?;
                continue;
            }
            if waits || self.body_done() {
                if self.unflushed {
                    // Nothing more to send yet: what was written must reach the peer.
                    ready!(Pin::new(io).poll_flush(cx)).map_err(OutboundError::Io)?;
                    self.unflushed = false;
                }
                return if waits {
                    Poll::Pending
                } else {
                    Poll::Ready(Ok(()))
                };
            }
        }
    }

    /// The body has nothing more to send: it ended, or there is none to send.
    fn body_done(&self) -> bool {
        self.body.is_none() || self.framing == Framing::Empty
    }

    /// The body has ended: its length must be met; a chunked one gets its last chunk.
    fn end_body(&mut self) -> Result<(), OutboundError> {
        self.body = None;
        match self.framing {
            Framing::Length(_) if self.left != 0 => Err(OutboundError::Length),
            Framing::Chunked => {
                // After the last chunk's own CRLF, if its data is still queued.
                self.suffix = if self.data.is_empty() && self.prefix.is_none() {
                    chunked::LAST_CHUNK
                } else {
                    b"\r\n0\r\n\r\n"
                };
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn poll_write<T: AsyncWrite + Unpin>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let prefix = self
            .prefix
            .as_ref()
            .map_or(&b""[..], |p| &p.as_ref()[self.prefix_at..]);
        // Only the parts with bytes: rustls gathers more than one slice into a `Vec` per
        // write, and a bodyless request (most of them) is then one slice and no allocation.
        let mut slices = [IoSlice::new(&[]); 4];
        let mut k = 0;
        for part in [
            &self.head[self.head_at..],
            prefix,
            &self.data[..],
            self.suffix,
        ] {
            if !part.is_empty() {
                slices[k] = IoSlice::new(part);
                k += 1;
            }
        }
        let mut n = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..k]))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        self.wrote = true;
        self.unflushed = true;
        let head = n.min(self.head.len() - self.head_at);
        self.head_at += head;
        if self.head_at == self.head.len() && !self.keep_head {
            // Release the head's allocation (cookies can make it several KiB) at once.
            super::recycle::give_head(std::mem::take(&mut self.head));
            self.head_at = 0;
        }
        n -= head;
        let p = n.min(prefix.len());
        self.prefix_at += p;
        n -= p;
        if self
            .prefix
            .as_ref()
            .is_some_and(|h| self.prefix_at == h.as_ref().len())
        {
            self.prefix = None;
        }
        let d = n.min(self.data.len());
        self.data.advance(d);
        n -= d;
        self.suffix = &self.suffix[n.min(self.suffix.len())..];
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_body::Chunks;
    use super::*;
    use std::task::Waker;

    /// A peer that takes at most `max` bytes per write and records every vectored write's
    /// slice lengths, so that short writes split each part at every offset.
    struct Short {
        max: usize,
        got: Vec<u8>,
        writes: Vec<Vec<usize>>,
    }

    impl AsyncWrite for Short {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let me = self.get_mut();
            me.writes.push(bufs.iter().map(|b| b.len()).collect());
            let mut room = me.max;
            for b in bufs {
                let n = b.len().min(room);
                me.got.extend_from_slice(&b[..n]);
                room -= n;
            }
            Poll::Ready(Ok(me.max - room))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn write_all(head: &[u8], chunks: &[&'static [u8]], framing: Framing, max: usize) -> Short {
        let body = Chunks(chunks.iter().map(|c| Bytes::from_static(c)).collect());
        let mut out = Outbound::new(head.to_vec(), body, framing);
        let mut peer = Short {
            max,
            got: Vec::new(),
            writes: Vec::new(),
        };
        let mut cx = Context::from_waker(Waker::noop());
        match out.poll(&mut peer, &mut cx) {
            Poll::Ready(Ok(())) => peer,
            Poll::Ready(Err(e)) => panic!("write failed: {e:?}"),
            Poll::Pending => panic!("a ready body and a ready peer left the write pending"),
        }
    }

    /// Every short write resumes at the right byte of head, chunk line, data and CRLF, and
    /// no write carries an empty slice (rustls gathers a write of several slices into a
    /// `Vec`: a bodyless head must be one slice).
    #[test]
    fn short_writes_resume_at_the_right_byte_and_carry_no_empty_slice() {
        let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        let chunks: [&'static [u8]; 3] = [b"hello", b", ", b"world of chunks"];
        let whole: Vec<u8> = [
            &head[..],
            b"5\r\nhello\r\n2\r\n, \r\nf\r\nworld of chunks\r\n0\r\n\r\n",
        ]
        .concat();
        for max in [1, 2, 3, 7, 1000] {
            let peer = write_all(head, &chunks, Framing::Chunked, max);
            assert_eq!(
                String::from_utf8_lossy(&peer.got),
                String::from_utf8_lossy(&whole),
                "max {max}"
            );
            for w in &peer.writes {
                assert!(
                    !w.contains(&0),
                    "max {max}: a write with an empty slice: {w:?}"
                );
            }
        }
        let head = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";
        let peer = write_all(head, &[], Framing::Empty, 1000);
        assert_eq!(peer.got, head);
        assert_eq!(peer.writes, [vec![head.len()]]);
    }
}
