//! The body Portico sends to clients: a member's response streamed, or a page of its own.

use crate::farm::Member;
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
    Upstream { body: Incoming, guard: InFlight },
    Full(Option<Bytes>),
}

impl ResponseBody {
    pub fn full(b: impl Into<Bytes>) -> Self {
        ResponseBody::Full(Some(b.into()))
    }

    pub fn empty() -> Self {
        ResponseBody::Full(None)
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
            ResponseBody::Upstream { body, guard } => {
                let polled = Pin::new(body).poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &polled {
                    if let Some(data) = frame.data_ref() {
                        guard
                            .0
                            .stats
                            .bytes_out
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
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
