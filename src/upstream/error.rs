//! What went wrong on a send to a member: who failed, and what may be tried again.
//!
//! One type so that `proxy::forward` decides from facts, not from where the error came up:
//! a member fault counts against the member's health, a client fault gets a 4xx and counts
//! against nobody, and Portico's own exhaustion (descriptors, ports, memory) is never blamed
//! on a member: taking healthy members out because the proxy ran out of descriptors would
//! empty every farm at once under a connection surge.

use super::{BodyError, ConnectError, RequestBody};
use crate::http1::client::{ClientError, SendFailure};
use http::Request;
use std::io;
use std::time::Duration;

/// Who caused a failed exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The client's upload was too large, malformed or cut off.
    Client,
    /// The member refused, reset, or sent garbage.
    Member,
    /// The member said nothing in time.
    Timeout,
    /// Portico itself: out of descriptors, ports or memory, or a setting it cannot use.
    Local,
}

/// What a caller may do with the request after the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Bytes may have reached the member and the request is not safe to repeat.
    Never,
    /// Nothing was sent: any member may take the request, whatever its method.
    NotSent,
    /// It was sent, but it is idempotent and bodyless, so it may go once more.
    Idempotent,
}

/// What failed on a send to a member; [`SendError`] adds who is at fault and whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The connection closed before the request was written.
    #[error("member connection closed before the request was sent")]
    NotSent,
    /// Connecting failed because Portico ran out of descriptors, ports or memory: never the member's fault.
    #[error("Portico is out of resources: {0}")]
    Local(ConnectError),
    /// Connecting to the member failed (refused, unreachable, TLS handshake).
    #[error("{0}")]
    Connect(ConnectError),
    /// The member cannot be reached with the settings given (e.g. an unusable server name); says why.
    #[error("cannot reach the member: {0}")]
    Config(String),
    /// No response head arrived within the farm's head timeout.
    #[error("member did not send its response head within {0:?}")]
    HeadTimeout(Duration),
    /// The member sent nothing for the idle timeout (ARR's proxy timeout) mid-response.
    #[error("member idle longer than {0:?}")]
    IdleTimeout(Duration),
    /// The member broke the exchange: reset, closed early, or sent something that is not HTTP.
    #[error("member failed: {0}")]
    Member(ClientError),
    /// The client's upload failed or was too large; the member is not blamed.
    #[error("client upload: {0}")]
    Client(BodyError),
}

/// A failed send. Carries the request back when it may be sent again.
#[derive(thiserror::Error)]
#[error("{kind}")]
pub struct SendError {
    pub(crate) kind: ErrorKind,
    request: Option<Request<RequestBody>>,
}

impl std::fmt::Debug for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendError")
            .field("kind", &self.kind)
            .field(
                "request",
                &self.request.as_ref().map(|r| (r.method(), r.uri())),
            )
            .finish()
    }
}

impl SendError {
    pub(super) fn new(kind: ErrorKind, request: Option<Request<RequestBody>>) -> SendError {
        SendError { kind, request }
    }

    /// The error for a send that failed in `http1::client`, sorted by whose fault it was.
    pub(super) fn from_failure(f: SendFailure<RequestBody>, read_timeout: Duration) -> SendError {
        let SendFailure {
            error,
            unsent,
            replay,
            ..
        } = f;
        if unsent.is_some() {
            return SendError::new(ErrorKind::NotSent, unsent);
        }
        let replay = replay.map(|h| h.into_request(RequestBody::Empty));
        let kind = match error {
            ClientError::RequestBody(e) => match e.downcast::<BodyError>() {
                Ok(b) => ErrorKind::Client(*b),
                Err(e) => ErrorKind::Client(BodyError::Client(e)),
            },
            ClientError::RequestLength => ErrorKind::Client(BodyError::Client(
                "the request body does not match its Content-Length".into(),
            )),
            ClientError::Io(e) if e.kind() == io::ErrorKind::TimedOut => {
                ErrorKind::IdleTimeout(read_timeout)
            }
            other => ErrorKind::Member(other),
        };
        SendError::new(kind, replay)
    }

    /// The same error without a request to send again: for a connection just opened, whose
    /// failure says more about the member than about a connection it had closed.
    pub(super) fn without_replay(mut self) -> SendError {
        if !matches!(self.kind, ErrorKind::NotSent) {
            self.request = None;
        }
        self
    }

    pub(crate) fn fault(&self) -> Fault {
        match &self.kind {
            ErrorKind::NotSent | ErrorKind::Connect(_) | ErrorKind::Member(_) => Fault::Member,
            ErrorKind::HeadTimeout(_) | ErrorKind::IdleTimeout(_) => Fault::Timeout,
            ErrorKind::Local(_) | ErrorKind::Config(_) => Fault::Local,
            ErrorKind::Client(_) => Fault::Client,
        }
    }

    pub(crate) fn retry(&self) -> Retry {
        match (&self.kind, &self.request) {
            (_, None) => Retry::Never,
            (ErrorKind::NotSent | ErrorKind::Connect(_), Some(_)) => Retry::NotSent,
            (ErrorKind::Local(_) | ErrorKind::Config(_), Some(_)) => Retry::NotSent,
            (_, Some(_)) => Retry::Idempotent,
        }
    }

    /// Whether the member's health should hear of it (live-traffic failure detection).
    pub fn counts_against_member(&self) -> bool {
        matches!(self.fault(), Fault::Member | Fault::Timeout)
    }

    /// The request, when the failure allows sending it again.
    pub fn take_request(&mut self) -> Option<Request<RequestBody>> {
        self.request.take()
    }

    /// The request, if it never left (a closed connection taken from the pool).
    pub(super) fn take_unsent(&mut self) -> Option<Request<RequestBody>> {
        match self.kind {
            ErrorKind::NotSent => self.request.take(),
            _ => None,
        }
    }
}

impl ErrorKind {
    /// Sorts a connect failure: Portico's own exhaustion, or the member's.
    pub(super) fn from_connect(e: ConnectError) -> ErrorKind {
        let local = match &e {
            ConnectError::Connect { source, .. } | ConnectError::Tls { source, .. } => {
                is_local_exhaustion(source)
            }
            _ => false,
        };
        if local {
            ErrorKind::Local(e)
        } else {
            ErrorKind::Connect(e)
        }
    }
}

/// Errors that say this machine ran out of something, not that the member is at fault.
pub fn is_local_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn addr() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    fn req() -> Option<Request<RequestBody>> {
        Some(Request::new(RequestBody::Empty))
    }

    #[test]
    fn running_out_of_descriptors_is_portico_s_fault_and_may_go_elsewhere() {
        let e = ConnectError::Connect {
            addr: addr(),
            source: io::Error::from_raw_os_error(libc::EMFILE),
        };
        let err = SendError::new(ErrorKind::from_connect(e), req());
        assert_eq!(err.fault(), Fault::Local);
        assert!(!err.counts_against_member());
        assert_eq!(err.retry(), Retry::NotSent);
    }

    #[test]
    fn a_refused_connect_is_the_member_s_fault_and_nothing_was_sent() {
        let e = ConnectError::Connect {
            addr: addr(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        let err = SendError::new(ErrorKind::from_connect(e), req());
        assert_eq!(err.fault(), Fault::Member);
        assert!(err.counts_against_member());
        assert_eq!(err.retry(), Retry::NotSent);
    }

    #[test]
    fn timeouts_count_against_the_member_and_are_never_retried() {
        let err = SendError::new(ErrorKind::HeadTimeout(Duration::from_secs(1)), None);
        assert_eq!(err.fault(), Fault::Timeout);
        assert!(err.counts_against_member());
        assert_eq!(err.retry(), Retry::Never);
    }

    #[test]
    fn a_client_upload_failure_counts_against_nobody() {
        let err = SendError::new(ErrorKind::Client(BodyError::TooLarge), None);
        assert_eq!(err.fault(), Fault::Client);
        assert!(!err.counts_against_member());
        assert_eq!(err.retry(), Retry::Never);
    }
}
