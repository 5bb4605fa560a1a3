//! The body Portico sends to clients: a member's response streamed, or a page of its own.

use super::pin::PinHome;
use crate::access_log::AccessRecord;
use crate::http1::client::ClientError;
use crate::upstream::{InFlight, Lease, MemberBody};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

// Not boxed: the member body is the common case, and boxing it would cost an allocation
// per request; a page of Portico's own is rare.
#[allow(clippy::large_enum_variant)]
enum Kind {
    Upstream {
        body: MemberBody,
        in_flight: InFlight,
        /// What becomes of the member connection when the body has ended (not before:
        /// HTTP/1.1 cannot start the next exchange mid-body). Taken when it is settled.
        lease: Option<Lease>,
        /// Where a pinned connection goes back to: the client connection that owns it.
        pin_home: Option<Box<PinHome>>,
    },
    Full(Option<Bytes>),
}

/// The body Portico sends to clients: a member's response streamed (counting bytes out,
/// giving the member connection back at the end) or a page of its own.
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

    /// A member's body; `lease` settles its connection when it ends, into the pool or (a
    /// pinned lease) back to `pin_home`.
    pub(crate) fn upstream(
        body: MemberBody,
        in_flight: InFlight,
        lease: Lease,
        pin_home: Option<Box<PinHome>>,
    ) -> Self {
        let mut kind = Kind::Upstream {
            body,
            in_flight,
            lease: Some(lease),
            pin_home,
        };
        if kind_is_end(&kind) {
            settle(&mut kind);
        }
        ResponseBody { kind, record: None }
    }

    pub(crate) fn with_record(mut self, record: Option<Arc<AccessRecord>>) -> Self {
        self.record = record;
        self
    }
}

impl crate::http1::server::Spelled for ResponseBody {
    fn spelling(&self) -> Option<&crate::http1::spelling::Spelling> {
        match &self.kind {
            Kind::Upstream { body, .. } => body.spelling(),
            Kind::Full(_) => None,
        }
    }
}

fn kind_is_end(kind: &Kind) -> bool {
    match kind {
        Kind::Upstream { body, .. } => body.is_end_stream(),
        Kind::Full(b) => b.is_none(),
    }
}

/// The body has ended: its connection goes where its lease says, if both sides allow
/// another request on it.
fn settle(kind: &mut Kind) {
    if let Kind::Upstream {
        body,
        lease,
        pin_home,
        ..
    } = kind
    {
        let Some(conn) = body.take_connection() else {
            return;
        };
        if let Some(pinned) = lease.take().and_then(|l| l.release(conn)) {
            if let Some(home) = pin_home.take() {
                home.put(pinned);
            }
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = ClientError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientError>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Upstream {
                body, in_flight, ..
            } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            in_flight.endpoint().stats.bytes_out.add(data.len() as u64);
                        }
                        if body.is_end_stream() {
                            settle(&mut this.kind);
                        }
                    }
                    Poll::Ready(None) => settle(&mut this.kind),
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
        kind_is_end(&self.kind)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream { body, .. } => body.size_hint(),
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
        }
    }
}
