//! A clear-text client connection, until its first bytes tell HTTP/1.x from h2 with prior
//! knowledge. The bytes are peeked, not read, so the HTTP/1.1 server reads the request head
//! from the first byte. Only when the first segment is one or two bytes that may begin the
//! h2 preface ("P", "PR") are bytes read here, and handed to the chosen server.

use super::graceful::Graceful;
use super::ListenerRuntime;
use crate::downstream::ClientIo;
use crate::http1::server::{self as h1, RequestBody as Http1Body};
use crate::proxy::{ProxyError, ResponseBody};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::{HttpService, Service};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Answer = Result<http::Response<ResponseBody>, ProxyError>;

/// RFC 9113 3.4: the client connection preface of h2.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pin_project_lite::pin_project! {
    /// The connection's future: peeking, then the server its first bytes chose.
    #[project = State]
    pub(super) enum ClearText<S1, F1, S2>
    where
        S1: Service<http::Request<Http1Body<ClientIo>>, Future = F1>,
        S2: HttpService<Incoming>,
    {
        Peeking {
            tcp: Option<TcpStream>,
            // Bytes read (not peeked) while the first ones could not tell.
            ahead: Vec<u8>,
            services: Option<(S1, S2)>,
            runtime: Arc<ListenerRuntime>,
            // `header_read_timeout`, from the accept: a client that connects and sends
            // nothing is closed, as one that sends half a head is.
            #[pin]
            timer: tokio::time::Sleep,
        },
        Http1 { #[pin] conn: h1::Connection<ClientIo, S1, F1, ResponseBody> },
        Http2 { #[pin] conn: http2::Connection<TokioIo<Prefixed>, S2, TokioExecutor> },
        Closed,
    }
}

impl<S1, F1, S2> ClearText<S1, F1, S2>
where
    S1: Service<http::Request<Http1Body<ClientIo>>, Future = F1>,
    S2: HttpService<Incoming>,
{
    pub(super) fn new(tcp: TcpStream, http1: S1, http2: S2, runtime: Arc<ListenerRuntime>) -> Self {
        let timer = tokio::time::sleep(runtime.settings.header_read_timeout);
        ClearText::Peeking {
            tcp: Some(tcp),
            ahead: Vec::new(),
            services: Some((http1, http2)),
            runtime,
            timer,
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

impl<S1, F1, S2> Future for ClearText<S1, F1, S2>
where
    S1: Service<
        http::Request<Http1Body<ClientIo>>,
        Response = http::Response<ResponseBody>,
        Error = ProxyError,
        Future = F1,
    >,
    F1: Future<Output = Answer>,
    S2: Service<
            http::Request<Incoming>,
            Response = http::Response<ResponseBody>,
            Error = ProxyError,
        > + Send
        + 'static,
    S2::Future: Send + 'static,
{
    type Output = Result<(), BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project() {
                State::Peeking {
                    tcp,
                    ahead,
                    services,
                    runtime,
                    timer,
                } => {
                    if timer.poll(cx).is_ready() {
                        return Poll::Ready(Ok(()));
                    }
                    let stream = tcp.as_mut().expect("peeking holds the stream");
                    let mut first = [0u8; PREFACE.len()];
                    let seen = if ahead.is_empty() {
                        let mut buf = ReadBuf::new(&mut first);
                        let n = ready!(stream.poll_peek(cx, &mut buf))?;
                        if n == 0 {
                            return Poll::Ready(Ok(()));
                        }
                        let seen = protocol_of(buf.filled());
                        if seen == Seen::Undecided {
                            // Peeking again would see the same bytes at once: take them.
                            ahead.extend_from_slice(buf.filled());
                            let mut sink = [0u8; PREFACE.len()];
                            let mut buf = ReadBuf::new(&mut sink[..ahead.len()]);
                            ready!(Pin::new(&mut *stream).poll_read(cx, &mut buf))?;
                            continue;
                        }
                        seen
                    } else {
                        let mut buf = ReadBuf::new(&mut first[..PREFACE.len() - ahead.len()]);
                        ready!(Pin::new(&mut *stream).poll_read(cx, &mut buf))?;
                        if buf.filled().is_empty() {
                            return Poll::Ready(Ok(()));
                        }
                        ahead.extend_from_slice(buf.filled());
                        match protocol_of(ahead) {
                            Seen::Undecided => continue,
                            seen => seen,
                        }
                    };
                    let tcp = tcp.take().expect("peeking holds the stream");
                    let (http1, http2) = services.take().expect("peeking holds the services");
                    let ahead = Bytes::from(std::mem::take(ahead));
                    let p = &runtime.protocols;
                    match seen {
                        Seen::Http2 => ClearText::Http2 {
                            conn: p
                                .http2
                                .serve_connection(TokioIo::new(Prefixed { ahead, tcp }), http2),
                        },
                        _ => ClearText::Http1 {
                            conn: h1::serve(ClientIo::Plain(tcp), ahead, p.http1, http1),
                        },
                    }
                }
                State::Http1 { conn } => return conn.poll(cx).map_err(Into::into),
                State::Http2 { conn } => return conn.poll(cx).map_err(Into::into),
                State::Closed => return Poll::Ready(Ok(())),
            };
            self.set(next);
        }
    }
}

impl<S1, F1, S2> Graceful for ClearText<S1, F1, S2>
where
    S1: Service<
        http::Request<Http1Body<ClientIo>>,
        Response = http::Response<ResponseBody>,
        Error = ProxyError,
        Future = F1,
    >,
    F1: Future<Output = Answer>,
    S2: Service<
            http::Request<Incoming>,
            Response = http::Response<ResponseBody>,
            Error = ProxyError,
        > + Send
        + 'static,
    S2::Future: Send + 'static,
{
    fn begin_shutdown(mut self: Pin<&mut Self>) {
        match self.as_mut().project() {
            // Nothing asked yet: close.
            State::Peeking { .. } => self.set(ClearText::Closed),
            State::Http1 { conn } => conn.graceful_shutdown(),
            State::Http2 { conn } => conn.graceful_shutdown(),
            State::Closed => {}
        }
    }
}

/// A clear-text stream whose first bytes were already read: they are read again first.
pub(super) struct Prefixed {
    ahead: Bytes,
    tcp: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.ahead.is_empty() {
            let n = self.ahead.len().min(buf.remaining());
            buf.put_slice(&self.ahead.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
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
