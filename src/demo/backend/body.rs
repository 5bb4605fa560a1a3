//! The one response body type of the member: fixed bytes, a generated download, or a
//! deliberately slow body. An enum instead of a boxed body keeps responses allocation-free.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Size of one `/download` chunk.
pub(super) const CHUNK: usize = 64 * 1024;

/// 64 KiB where byte `i` is `i mod 256`; since 64 KiB is a multiple of 256, byte `k` of any
/// download stream is `k mod 256`, which lets tests verify content without a reference copy.
static PATTERN: [u8; CHUNK] = {
    let mut p = [0u8; CHUNK];
    let mut i = 0;
    while i < CHUNK {
        p[i] = i as u8;
        i += 1;
    }
    p
};

/// Response body of the member.
pub enum Payload {
    /// A complete body (possibly empty), sent once.
    Full(Option<Bytes>),
    /// `remaining` pattern bytes, streamed in 64 KiB chunks from a static buffer.
    Download {
        /// Bytes still to send.
        remaining: u64,
    },
    /// One chunk now, then `last` after the delay (for read-timeout tests).
    Slow(SlowState),
    /// Pieces as a task produces them (Exchange's streamed responses); ends when it stops.
    Channel(tokio::sync::mpsc::Receiver<Bytes>),
}

/// Progress of a [`Payload::Slow`] body.
pub enum SlowState {
    First {
        first: Bytes,
        wait: Duration,
        last: Bytes,
    },
    Waiting {
        sleep: Pin<Box<tokio::time::Sleep>>,
        last: Bytes,
    },
    Done,
}

impl Payload {
    pub(crate) fn empty() -> Self {
        Payload::Full(None)
    }

    pub(crate) fn text(s: impl Into<Bytes>) -> Self {
        Payload::Full(Some(s.into()))
    }

    pub(crate) fn channel(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Self {
        Payload::Channel(rx)
    }

    pub(crate) fn slow(first: Bytes, wait: Duration, last: Bytes) -> Self {
        Payload::Slow(SlowState::First { first, wait, last })
    }
}

impl Body for Payload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        match this {
            Payload::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Payload::Download { remaining } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let n = (*remaining).min(CHUNK as u64) as usize;
                *remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&PATTERN[..n])))))
            }
            Payload::Slow(state) => match std::mem::replace(state, SlowState::Done) {
                SlowState::First { first, wait, last } => {
                    *state = SlowState::Waiting {
                        sleep: Box::pin(tokio::time::sleep(wait)),
                        last,
                    };
                    Poll::Ready(Some(Ok(Frame::data(first))))
                }
                SlowState::Waiting { mut sleep, last } => match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Ok(Frame::data(last)))),
                    Poll::Pending => {
                        *state = SlowState::Waiting { sleep, last };
                        Poll::Pending
                    }
                },
                SlowState::Done => Poll::Ready(None),
            },
            Payload::Channel(rx) => rx.poll_recv(cx).map(|p| p.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Payload::Full(b) => b.is_none(),
            Payload::Download { remaining } => *remaining == 0,
            Payload::Slow(SlowState::Done) => true,
            Payload::Slow(_) | Payload::Channel(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Payload::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Payload::Download { remaining } => SizeHint::with_exact(*remaining),
            Payload::Slow(_) | Payload::Channel(_) => SizeHint::default(),
        }
    }
}
