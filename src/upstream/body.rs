//! The body Portico sends to members: the client's, streamed and counted, or nothing.

use crate::access_log::AccessRecord;
use crate::farm::Member;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

/// One concrete type so pooled connections can carry any request without boxing.
pub enum RequestBody {
    Client {
        body: Incoming,
        /// Set per attempt: whose bytes-in counter this upload adds to.
        member: Option<Arc<Member>>,
        record: Option<Arc<AccessRecord>>,
    },
    Empty,
}

impl RequestBody {
    pub fn client(body: Incoming, record: Option<Arc<AccessRecord>>) -> Self {
        RequestBody::Client {
            body,
            member: None,
            record,
        }
    }

    pub fn set_member(&mut self, m: &Arc<Member>) {
        if let RequestBody::Client { member, .. } = self {
            *member = Some(Arc::clone(m));
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Client {
                body,
                member,
                record,
            } => {
                let polled = Pin::new(body).poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &polled {
                    if let Some(data) = frame.data_ref() {
                        let n = data.len() as u64;
                        if let Some(m) = member {
                            m.stats.bytes_in.fetch_add(n, Ordering::Relaxed);
                        }
                        if let Some(r) = record {
                            r.bytes_in.fetch_add(n, Ordering::Relaxed);
                        }
                    }
                }
                polled
            }
            RequestBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Client { body, .. } => body.is_end_stream(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Client { body, .. } => body.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
        }
    }
}
