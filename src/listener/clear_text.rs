//! A clear-text client connection, until its first bytes tell HTTP/1.x from h2 with prior
//! knowledge. The bytes are peeked, not read, so hyper's HTTP/1.1 server reads the request
//! head into its own buffer from the first byte; `auto`'s sniffing reads 24 bytes apart and
//! hands them over first, which doubles hyper's read buffer (see `graceful`).

use super::graceful::Graceful;
use super::ListenerRuntime;
use hyper::body::{Body, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::{HttpService, Service};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::ReadBuf;
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Io = TokioIo<TcpStream>;

/// RFC 9113 3.4: the client connection preface of h2.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pin_project_lite::pin_project! {
    /// The connection's future: peeking, then the server its first bytes chose.
    #[project = State]
    pub(super) enum ClearText<S>
    where
        S: HttpService<Incoming>,
    {
        Peeking {
            tcp: Option<TcpStream>,
            service: Option<S>,
            runtime: Arc<ListenerRuntime>,
        },
        Http1 { #[pin] conn: http1::UpgradeableConnection<Io, S> },
        Http2 { #[pin] conn: http2::Connection<Io, S, TokioExecutor> },
        /// One or two bytes that may begin the preface ("P", "PR"): `auto` reads on.
        Sniffing { #[pin] conn: auto::UpgradeableConnection<'static, Io, S, TokioExecutor> },
        Closed,
    }
}

impl<S: HttpService<Incoming>> ClearText<S> {
    pub(super) fn new(tcp: TcpStream, service: S, runtime: Arc<ListenerRuntime>) -> Self {
        ClearText::Peeking {
            tcp: Some(tcp),
            service: Some(service),
            runtime,
        }
    }
}

/// What the first bytes say.
#[derive(Debug, PartialEq)]
enum Seen {
    Http1,
    Http2,
    Undecided,
}

fn protocol_of(first: &[u8]) -> Seen {
    if !PREFACE.starts_with(first) {
        Seen::Http1
    } else if first.len() >= 3 {
        // No HTTP/1 request begins "PRI": RFC 9113 reserves the method for the preface.
        Seen::Http2
    } else {
        Seen::Undecided
    }
}

impl<S, B> Future for ClearText<S>
where
    S: Service<http::Request<Incoming>, Response = http::Response<B>> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Output = Result<(), BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project() {
                State::Peeking {
                    tcp,
                    service,
                    runtime,
                } => {
                    let mut first = [0u8; PREFACE.len()];
                    let mut buf = ReadBuf::new(&mut first);
                    let stream = tcp.as_ref().expect("peeking holds the stream");
                    let n = ready!(stream.poll_peek(cx, &mut buf))?;
                    if n == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    let io = TokioIo::new(tcp.take().expect("peeking holds the stream"));
                    let service = service.take().expect("peeking holds the service");
                    let p = &runtime.protocols;
                    match protocol_of(buf.filled()) {
                        Seen::Http1 => ClearText::Http1 {
                            conn: p.http1.serve_connection(io, service).with_upgrades(),
                        },
                        Seen::Http2 => ClearText::Http2 {
                            conn: p.http2.serve_connection(io, service),
                        },
                        Seen::Undecided => ClearText::Sniffing {
                            conn: p
                                .sniff
                                .serve_connection_with_upgrades(io, service)
                                .into_owned(),
                        },
                    }
                }
                State::Http1 { conn } => return conn.poll(cx).map_err(Into::into),
                State::Http2 { conn } => return conn.poll(cx).map_err(Into::into),
                State::Sniffing { conn } => return conn.poll(cx),
                State::Closed => return Poll::Ready(Ok(())),
            };
            self.set(next);
        }
    }
}

impl<S, B> Graceful for ClearText<S>
where
    S: Service<http::Request<Incoming>, Response = http::Response<B>> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn begin_shutdown(mut self: Pin<&mut Self>) {
        match self.as_mut().project() {
            // Nothing asked yet: close, as `auto` does while it sniffs.
            State::Peeking { .. } => self.set(ClearText::Closed),
            State::Http1 { conn } => conn.graceful_shutdown(),
            State::Http2 { conn } => conn.graceful_shutdown(),
            State::Sniffing { conn } => conn.graceful_shutdown(),
            State::Closed => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_tell_the_protocol() {
        assert_eq!(protocol_of(b"GET / HTTP/1.1\r\n"), Seen::Http1);
        assert_eq!(protocol_of(b"POST"), Seen::Http1);
        assert_eq!(protocol_of(b"PUT"), Seen::Http1);
        assert_eq!(protocol_of(b"PATCH"), Seen::Http1);
        assert_eq!(protocol_of(PREFACE), Seen::Http2);
        assert_eq!(protocol_of(b"PRI * HT"), Seen::Http2);
        assert_eq!(protocol_of(b"P"), Seen::Undecided);
        assert_eq!(protocol_of(b"PR"), Seen::Undecided);
    }
}
