//! The body Portico sends to clients: a member's response streamed, or a page of its own.

use crate::access_log::AccessRecord;
use crate::upstream::{InFlight, Lease};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

enum Kind {
    Upstream {
        body: Incoming,
        in_flight: InFlight,
        /// The member connection, released to its pool when the body ends (not before:
        /// HTTP/1.1 cannot start the next exchange mid-body). None when pinned.
        lease: Option<Lease>,
    },
    Full(Option<Bytes>),
}

/// The body Portico sends to clients: a member's response streamed (counting bytes out, releasing the member connection at the end) or a page of its own.
pub struct ResponseBody {
    kind: Kind,
    /// The access-log line, written when the last part of the exchange lets go of it.
    record: Option<Arc<AccessRecord>>,
}

impl ResponseBody {
    pub(crate) fn full(b: impl Into<Bytes>) -> Self {
        ResponseBody {
            kind: Kind::Full(Some(b.into())),
            record: None,
        }
    }

    pub(crate) fn empty() -> Self {
        ResponseBody {
            kind: Kind::Full(None),
            record: None,
        }
    }

    /// A member's body; `lease` goes back to its pool once the body is read to the end.
    pub fn upstream(body: Incoming, in_flight: InFlight, mut lease: Option<Lease>) -> Self {
        if body.is_end_stream() {
            if let Some(l) = lease.as_mut() {
                l.release();
            }
        }
        ResponseBody {
            kind: Kind::Upstream {
                body,
                in_flight,
                lease,
            },
            record: None,
        }
    }

    pub(crate) fn with_record(mut self, record: Option<Arc<AccessRecord>>) -> Self {
        self.record = record;
        self
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Upstream {
                body,
                in_flight,
                lease,
            } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            in_flight.endpoint().stats.bytes_out.add(data.len() as u64);
                        }
                        if body.is_end_stream() {
                            if let Some(l) = lease.as_mut() {
                                l.release();
                            }
                        }
                    }
                    Poll::Ready(None) => {
                        if let Some(l) = lease.as_mut() {
                            l.release();
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        tracing::warn!(error = %e, "member response broke off mid-body; client stream truncated");
                        in_flight.endpoint().stats.failures.add(1);
                    }
                    Poll::Pending => {}
                }
                polled
            }
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
        };
        if let (Some(r), Poll::Ready(Some(Ok(frame)))) = (&this.record, &polled) {
            if let Some(data) = frame.data_ref() {
                r.bytes_out.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Upstream { body, .. } => body.is_end_stream(),
            Kind::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream { body, .. } => body.size_hint(),
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
        }
    }
}
