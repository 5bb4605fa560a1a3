//! A client connection as the layers above the listener see it: the transport it arrived on
//! ([`ClientIo`]) and the request body it sends ([`ClientBody`]), whichever protocol carried
//! it. `upstream` is the member side; this is the other one.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

/// A client connection's transport once PROXY and TLS are done.
pub type ClientIo = crate::stream::Stream<tokio_rustls::server::TlsStream<TcpStream>>;

/// The client's request body: read by Portico's HTTP/1.1 server, or by hyper's h2.
pub enum ClientBody {
    /// An HTTP/1.1 request's body (it holds the connection's read side while it streams).
    Http1(crate::http1::server::RequestBody<ClientIo>),
    /// An h2 stream's body.
    Http2(hyper::body::Incoming),
}

/// A client's request body failed (always the client's fault).
pub type ClientBodyError = Box<dyn std::error::Error + Send + Sync>;

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match self.get_mut() {
            ClientBody::Http1(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            ClientBody::Http2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Http1(b) => b.is_end_stream(),
            ClientBody::Http2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Http1(b) => b.size_hint(),
            ClientBody::Http2(b) => b.size_hint(),
        }
    }
}
