//! The body Portico sends to members: the client's, streamed and counted, or nothing.

use super::Endpoint;
use crate::access_log::AccessRecord;
use crate::downstream::{ClientBody, ClientBodyError};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Why an upload stopped.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Reading the client's upload failed (client reset or malformed chunking).
    #[error("client body: {0}")]
    Client(ClientBodyError),
    /// The upload passed the route's `max_body`; the request is cut.
    #[error("request body larger than the route allows")]
    TooLarge,
}

/// One concrete type so pooled connections can carry any request. Small on purpose: a
/// request is moved several times on its way out, and is held in every waiting request's
/// future; the rare upload's state is boxed.
pub enum RequestBody {
    /// The client's request body, streamed to the member.
    Client(Box<Upload>),
    /// No body (GET, health checks, bodyless retries, an empty client body).
    Empty,
}

/// A client's upload on its way to the member.
pub struct Upload {
    /// The body as it arrives from the client.
    body: ClientBody,
    /// Set per attempt: whose bytes-in counter this upload adds to.
    endpoint: Option<Arc<Endpoint>>,
    /// The access-log line whose bytes-in this upload counts into.
    record: Option<Arc<AccessRecord>>,
    /// Bytes still allowed before the upload is cut (None: no limit).
    remaining: Option<u64>,
}

impl RequestBody {
    /// The client's body; [`RequestBody::Empty`] when it has already ended (a GET), which is
    /// the same to the member and costs no allocation.
    pub(crate) fn client(
        body: ClientBody,
        record: Option<Arc<AccessRecord>>,
        limit: Option<u64>,
    ) -> Self {
        if body.is_end_stream() {
            return RequestBody::Empty;
        }
        RequestBody::Client(Box::new(Upload {
            body,
            endpoint: None,
            record,
            remaining: limit,
        }))
    }

    /// Counts the upload into the endpoint it is being sent to (set anew per attempt).
    pub(super) fn count_into(&mut self, e: &Arc<Endpoint>) {
        if let RequestBody::Client(c) = self {
            if !c.endpoint.as_ref().is_some_and(|old| Arc::ptr_eq(old, e)) {
                c.endpoint = Some(Arc::clone(e));
            }
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            RequestBody::Client(c) => {
                let Upload {
                    body,
                    endpoint,
                    record,
                    remaining,
                } = &mut **c;
                let polled = Pin::new(body).poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &polled {
                    if let Some(data) = frame.data_ref() {
                        let n = data.len() as u64;
                        if let Some(left) = remaining {
                            if n > *left {
                                return Poll::Ready(Some(Err(BodyError::TooLarge)));
                            }
                            *left -= n;
                        }
                        if let Some(m) = endpoint {
                            m.stats.bytes_in.add(n);
                        }
                        if let Some(r) = record {
                            r.bytes_in.fetch_add(n, Ordering::Relaxed);
                        }
                    }
                }
                polled.map(|o| o.map(|r| r.map_err(BodyError::Client)))
            }
            RequestBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Client(c) => c.body.is_end_stream(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Client(c) => c.body.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
        }
    }
}
