//! The body Portico sends to clients: a member's response streamed, or a page of its own.

use crate::farm::Member;
use crate::upstream::{Pool, Sender};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Counts a request as in flight on its member until the response body is done or dropped.
pub struct InFlight(pub Arc<Member>);

impl InFlight {
    pub fn new(member: Arc<Member>) -> Self {
        member.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        member.stats.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(member)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub enum ResponseBody {
    Upstream {
        body: Incoming,
        guard: InFlight,
        /// The member connection, returned to its pool when the body ends (not before:
        /// HTTP/1.1 cannot start the next exchange mid-body).
        checkin: Option<(Arc<Pool>, Sender)>,
    },
    Full(Option<Bytes>),
}

impl ResponseBody {
    pub fn full(b: impl Into<Bytes>) -> Self {
        ResponseBody::Full(Some(b.into()))
    }

    pub fn empty() -> Self {
        ResponseBody::Full(None)
    }

    /// A member's body; `checkin` goes back to its pool once the body is read to the end.
    pub fn upstream(body: Incoming, guard: InFlight, checkin: Option<(Arc<Pool>, Sender)>) -> Self {
        let mut b = ResponseBody::Upstream {
            body,
            guard,
            checkin,
        };
        b.checkin_if_done();
        b
    }

    fn checkin_if_done(&mut self) {
        if let ResponseBody::Upstream { body, checkin, .. } = self {
            if body.is_end_stream() {
                if let Some((pool, sender)) = checkin.take() {
                    pool.put(sender);
                }
            }
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ResponseBody::Upstream {
                body,
                guard,
                checkin,
            } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            guard
                                .0
                                .stats
                                .bytes_out
                                .fetch_add(data.len() as u64, Ordering::Relaxed);
                        }
                        if body.is_end_stream() {
                            if let Some((pool, sender)) = checkin.take() {
                                pool.put(sender);
                            }
                        }
                    }
                    Poll::Ready(None) => {
                        if let Some((pool, sender)) = checkin.take() {
                            pool.put(sender);
                        }
                    }
                    _ => {}
                }
                if let Poll::Ready(Some(Err(e))) = &polled {
                    tracing::warn!(member = %guard.0.label(), error = %e, "member response broke off mid-body; client stream truncated");
                    guard.0.stats.failures.fetch_add(1, Ordering::Relaxed);
                }
                polled
            }
            ResponseBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Upstream { body, .. } => body.is_end_stream(),
            ResponseBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Upstream { body, .. } => body.size_hint(),
            ResponseBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ResponseBody::Full(None) => SizeHint::with_exact(0),
        }
    }
}
