//! One HTTP/1.1 connection to a member, driven by the task that sends on it. hyper's client
//! gives every member connection a task of its own, a request queue (one 8 KiB block per
//! connection) and a response channel, and two task hops per request; here the request's
//! own future writes the request and reads the response, and the response body, while it
//! streams, owns the connection (and whatever is left of the request body, which it keeps
//! sending). When the body ends cleanly the caller takes the connection back for its pool.
//!
//! Memory is held only while bytes are moving: a connection waiting for a response head (a
//! held long poll: minutes) or idle in a pool keeps no read buffer and no write buffer.
//! Head bytes are read on the stack and copied into one of the thread's kept read buffers
//! (`recycle`); bodies are read into a buffer that grows with the transfer and is released
//! when it ends.
//!
//! Timeouts are the I/O's (`upstream::IdleTimeout` around the socket); framing is
//! [`super::framing`]'s; names keep the client's spelling when the request carries a
//! [`Spelling`] extension, and the response carries the member's.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::chunked::ChunkedError;
use super::framing::{self, Framing};
use super::head::{self, EndScan, HeadError, Limits};
use super::inbound::{Inbound, InboundError, Reader};
use super::outbound::{Outbound, OutboundError};
use super::spelling::Spelling;
use super::{write, Present, Reason, Upgraded};

/// Why an exchange failed, and whose fault it was: everything but [`RequestBody`] and
/// [`RequestLength`] is the member's (or the network's to it).
///
/// [`RequestBody`]: ClientError::RequestBody
/// [`RequestLength`]: ClientError::RequestLength
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Reading from or writing to the member failed (an idle timeout included).
    #[error("member connection failed: {0}")]
    Io(#[source] io::Error),
    /// The member closed the connection before a byte of its response.
    #[error("the member closed the connection before answering")]
    Closed,
    /// The member closed the connection inside a response head or body.
    #[error("the member closed the connection in the middle of its response")]
    Truncated,
    /// The member's response head is refused.
    #[error("the member's response head is refused: {0}")]
    Head(#[source] HeadError),
    /// The member's chunked body is refused.
    #[error("the member's chunked body is refused: {0}")]
    Chunked(#[source] ChunkedError),
    /// The member sent bytes on an idle connection, before any request.
    #[error("the member sent bytes on an idle connection")]
    Unsolicited,
    /// The client's request body failed (the client's fault, not the member's).
    #[error("the request body failed: {0}")]
    RequestBody(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The request body did not match its Content-Length (the client's fault).
    #[error("the request body does not match its Content-Length")]
    RequestLength,
}

impl ClientError {
    fn from_outbound(e: OutboundError) -> Self {
        match e {
            OutboundError::Io(e) => ClientError::Io(e),
            OutboundError::Body(e) => ClientError::RequestBody(e),
            OutboundError::Length => ClientError::RequestLength,
        }
    }

    fn from_inbound(e: InboundError) -> Self {
        match e {
            InboundError::Io(e) => ClientError::Io(e),
            InboundError::Truncated => ClientError::Truncated,
            InboundError::Chunked(e) => ClientError::Chunked(e),
        }
    }

    /// Whether the client, not the member, caused it.
    pub fn is_client_fault(&self) -> bool {
        matches!(self, Self::RequestBody(_) | Self::RequestLength)
    }
}

/// A failed send, and whether any byte of the request reached the socket (if none did,
/// any request may be sent again elsewhere; otherwise only what HTTP calls idempotent).
pub struct SendFailure<B> {
    /// What failed.
    pub error: ClientError,
    /// Whether a byte of the request was written.
    pub wrote: bool,
    /// The request, whole, when the connection failed before a byte of it was written.
    pub unsent: Option<Request<B>>,
    /// A bodyless idempotent request that was written, when the member failed before its
    /// answer's head: HTTP allows sending it again (RFC 9110 §9.2.2). Its head, parsed
    /// back from what was written (spelling included).
    pub replay: Option<super::head::RequestHead>,
}

impl<B> std::fmt::Debug for SendFailure<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendFailure")
            .field("error", &self.error)
            .field("wrote", &self.wrote)
            .field("unsent", &self.unsent.is_some())
            .field("replay", &self.replay.is_some())
            .finish()
    }
}

/// What a send ends in.
#[allow(clippy::large_enum_variant)] // the response is the common case: boxed, it would cost an allocation per request
pub enum Exchange<T, B> {
    /// A response whose body streams from the connection.
    Response(Response<ResponseBody<T, B>>),
    /// A 101 to a request that asked to upgrade: the head, and the connection.
    Upgraded(Response<()>, Upgraded<T>),
}

/// One HTTP/1.1 connection to a member.
pub struct Connection<T> {
    io: T,
    reader: Reader,
    scan: EndScan,
    limits: Limits,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Connection<T> {
    /// The stream, for its owner's settings (a member connection's idle timeout).
    pub fn io_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// A connection over `io` (a TCP or TLS stream, already open).
    pub fn new(io: T, limits: Limits) -> Self {
        Connection {
            io,
            reader: Reader::new(),
            scan: EndScan::default(),
            limits,
        }
    }

    /// Bytes of read buffer the connection holds now (zero while idle or waiting).
    pub fn buffered_capacity(&self) -> usize {
        self.reader.read.capacity()
    }

    /// Whether an idle connection can take a request now: the member has not closed it nor
    /// sent anything. Checked without waiting, before a pooled connection is used, so a
    /// request is never written to a connection known dead.
    pub fn check_idle(&mut self) -> Result<(), ClientError> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut stack = [MaybeUninit::<u8>::uninit(); 64];
        let mut buf = ReadBuf::uninit(&mut stack);
        match Pin::new(&mut self.io).poll_read(&mut cx, &mut buf) {
            Poll::Pending => Ok(()),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => Err(ClientError::Closed),
            Poll::Ready(Ok(())) => Err(ClientError::Unsolicited),
            Poll::Ready(Err(e)) => Err(ClientError::Io(e)),
        }
    }

    /// Sends `req` and resolves at its final response head (1xx other than 101 are read
    /// and passed over). The request's framing headers say how its body goes: a
    /// `Content-Length` is kept to the byte; with neither header a body of known size gets
    /// one, any other body is sent chunked. A [`Spelling`] in its extensions spells the
    /// names. The request is written while the response is read: a member may answer
    /// before the body is through (a 401 or 413), and the rest of the body goes on with the
    /// response body.
    pub fn send<B>(self, req: Request<B>) -> Sending<T, B>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.send_adding(req, &[])
    }

    /// [`send`](Self::send), with `added` written after the request's own fields (the
    /// proxy's forwarding fields), and nothing said about them to framing.
    pub fn send_adding<B>(self, req: Request<B>, added: write::Added<'_>) -> Sending<T, B>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (mut parts, body) = req.into_parts();
        let fields = parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
        let mut framing = framing::request(false, fields).unwrap_or_else(|_| {
            // Ambiguous framing never comes from the guarded proxy path; if a caller builds
            // it, the body decides, as if neither header had been set.
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.remove(header::TRANSFER_ENCODING);
            Framing::Empty
        });
        if framing == Framing::Empty && !body.is_end_stream() {
            framing = match body.size_hint().exact() {
                Some(n) => {
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
                    Framing::Length(n)
                }
                None => {
                    parts.headers.insert(
                        header::TRANSFER_ENCODING,
                        HeaderValue::from_static("chunked"),
                    );
                    Framing::Chunked
                }
            };
        }
        let present = Present::of(&parts.headers);
        // HTTP/1.1 needs a Host; the proxy always sets one, another caller may give only an
        // absolute URI.
        if !present.any(Present::HOST) {
            if let Some(v) = parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                parts.headers.insert(header::HOST, v);
            }
        }
        // A body that has already ended short of its Content-Length is refused before a byte
        // goes out: the member would otherwise wait for the rest of a request never coming.
        let early = match framing {
            Framing::Length(n) if n > 0 && body.is_end_stream() => Some(ClientError::RequestLength),
            _ => None,
        };
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let mut head = super::recycle::head_buf();
        let added_len = write::request_head(
            &mut head,
            &parts.method,
            target.as_bytes(),
            &parts.headers,
            added,
            parts.extensions.get::<Spelling>(),
        );
        let close_asked = present.connection_lists(&parts.headers, b"close");
        // A bodyless idempotent request may be sent again if the connection dies before its
        // answer (RFC 9110 §9.2.2): its written head is kept until the answer's head comes.
        let replayable = framing == Framing::Empty && is_idempotent(&parts.method);
        let upgrade_asked = present.any(Present::UPGRADE);
        let to_head = parts.method == http::Method::HEAD;
        super::recycle::give_map(parts.headers);
        Sending {
            conn: Some(self),
            out: Some(Outbound::request(head, body, framing, replayable)),
            replay: None,
            added_len,
            write_error: None,
            wrote: false,
            interim: 0,
            early,
            to_head,
            upgrade_asked,
            close_asked,
        }
    }

    /// Back to idle: the read buffer is released (its bytes were all handed out).
    fn rest(&mut self) {
        self.reader.rest();
    }
}

/// Methods HTTP calls idempotent (RFC 9110 §9.2.2): a request may be repeated.
fn is_idempotent(m: &http::Method) -> bool {
    use http::Method;
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// [`Connection::send`]'s future.
pub struct Sending<T, B> {
    conn: Option<Connection<T>>,
    out: Option<Outbound<B>>,
    /// The written head of a replayable request, until the answer's head comes.
    replay: Option<Vec<u8>>,
    /// The bytes of the written head's `added` fields, left out of a request read back
    /// from it: whoever sends it again adds them again.
    added_len: usize,
    /// The member stopped taking the request; its answer may still come.
    write_error: Option<io::Error>,
    wrote: bool,
    /// 1xx responses read so far (a member could send them forever).
    interim: u8,
    /// A failure known before anything is written.
    early: Option<ClientError>,
    to_head: bool,
    upgrade_asked: bool,
    close_asked: bool,
}

/// More 1xx responses than this before the final one is a member fault.
const MAX_INTERIM: u8 = 8;

impl<T, B> Sending<T, B>
where
    T: AsyncRead + AsyncWrite + Unpin,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Ends the send with `error`; the connection is dropped (closed).
    fn fail(&mut self, error: ClientError) -> Poll<Result<Exchange<T, B>, SendFailure<B>>> {
        self.conn = None;
        // Dead before a byte went out: the request goes back whole, read back from its own
        // head (rare: keeping the parts instead would cost every request's future their
        // size). Not for the client's own faults: such a request is not worth another try.
        let unsent = match (&error, self.wrote, self.out.as_mut()) {
            (e, false, Some(out)) if !e.is_client_fault() => {
                out.take_unwritten().and_then(|(head, body)| {
                    Some(written_head(&head, self.added_len)?.into_request(body))
                })
            }
            _ => None,
        };
        // Written, and the member failed before answering: an idempotent request may go
        // once more (a timeout is not such a failure: the member may still be working).
        let timed_out = matches!(&error, ClientError::Io(e) if e.kind() == io::ErrorKind::TimedOut);
        let replay = match self.replay.take() {
            Some(head) if self.wrote && !timed_out && !error.is_client_fault() => {
                written_head(&head, self.added_len)
            }
            _ => None,
        };
        Poll::Ready(Err(SendFailure {
            error,
            wrote: self.wrote,
            unsent,
            replay,
        }))
    }
}

/// A request head Portico wrote, read back (spelling included) to send the request again.
/// `added_len`: the bytes of the `added` fields, which end just before the blank line and
/// are left out.
fn written_head(head: &[u8], added_len: usize) -> Option<head::RequestHead> {
    let limits = Limits {
        max_head_bytes: usize::MAX,
    };
    let own_end = head.len().checked_sub(2 + added_len)?;
    let mut own = bytes::BytesMut::with_capacity(own_end + 2);
    own.extend_from_slice(&head[..own_end]);
    own.extend_from_slice(b"\r\n");
    head::parse_request(&mut own, limits).ok().flatten()
}

impl<T, B> Future for Sending<T, B>
where
    T: AsyncRead + AsyncWrite + Unpin,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<Exchange<T, B>, SendFailure<B>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(e) = this.early.take() {
            return this.fail(e);
        }
        let conn = this
            .conn
            .as_mut()
            .expect("Sending polled after it completed");
        if let Some(out) = this.out.as_mut() {
            let result = out.poll(&mut conn.io, cx);
            this.wrote |= out.wrote;
            match result {
                Poll::Ready(Ok(())) => {
                    this.replay = out.take_head();
                    this.out = None;
                }
                Poll::Ready(Err(OutboundError::Io(e))) if !this.wrote => {
                    return this.fail(ClientError::Io(e));
                }
                Poll::Ready(Err(OutboundError::Io(e))) => {
                    // Stop writing but keep reading: a member that refuses a body often
                    // says why before it closes.
                    this.replay = out.take_head();
                    this.write_error = Some(e);
                    this.out = None;
                }
                Poll::Ready(Err(e)) => return this.fail(ClientError::from_outbound(e)),
                Poll::Pending => {}
            }
        }
        let mut head = loop {
            if conn.scan.complete(&conn.reader.read) {
                match head::parse_response(&mut conn.reader.read, conn.limits, this.to_head) {
                    Err(e) => return this.fail(ClientError::Head(e)),
                    Ok(Some(h)) => {
                        conn.scan.reset();
                        if h.status.is_informational()
                            && h.status != StatusCode::SWITCHING_PROTOCOLS
                        {
                            this.interim += 1;
                            if this.interim > MAX_INTERIM {
                                return this.fail(ClientError::Head(HeadError::Malformed(
                                    "The member sent more than 8 interim (1xx) responses.",
                                )));
                            }
                            continue;
                        }
                        break h;
                    }
                    Ok(None) => {}
                }
            } else if conn.reader.read.len() > conn.limits.max_head_bytes {
                return this.fail(ClientError::Head(HeadError::TooLarge));
            }
            match ready!(conn.reader.poll_fill(&mut conn.io, cx, true)) {
                Ok(0) => {
                    let error = match this.write_error.take() {
                        Some(e) => ClientError::Io(e),
                        None if conn.reader.read.is_empty() && this.interim == 0 => {
                            ClientError::Closed
                        }
                        None => ClientError::Truncated,
                    };
                    return this.fail(error);
                }
                Ok(_) => {}
                Err(e) => return this.fail(ClientError::Io(e)),
            }
        };
        if head.status == StatusCode::SWITCHING_PROTOCOLS {
            if !this.upgrade_asked {
                return this.fail(ClientError::Head(HeadError::Malformed(
                    "A 101 answered a request that asked for no upgrade.",
                )));
            }
            let mut conn = this.conn.take().expect("checked above");
            let read_ahead = conn.reader.take_read_ahead();
            let upgraded = Upgraded {
                io: conn.io,
                read_ahead,
            };
            return Poll::Ready(Ok(Exchange::Upgraded(response_of(head, ()), upgraded)));
        }
        if let Some(written) = this.replay.take() {
            super::recycle::give_head(written);
        }
        let present = Present::of(&head.headers);
        let reusable = !this.close_asked
            && head.version == Version::HTTP_11
            && !present.connection_lists(&head.headers, b"close")
            && this.write_error.is_none()
            && head.framing != Framing::UntilClose
            // A 204 or 304 has no body, whatever it says; one that says chunked may send
            // one anyway, and its bytes would be read as the next response.
            && !(matches!(head.status.as_u16(), 204 | 304) && present.any(Present::TRANSFER_ENCODING))
            // Nor one whose 204 announces a body.
            && !(head.status == StatusCode::NO_CONTENT
                && head.headers.get(header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0"));
        let inbound = Inbound::of(head.framing);
        let body = ResponseBody {
            conn: this.conn.take(),
            inbound,
            out: this.out.take().map(Box::new),
            reusable,
            trailers: None,
            // With the body, not in the extensions: their first insertion costs three
            // allocations, and most members' heads have a name that is not Title-Case.
            spelling: head.spelling.take(),
        };
        Poll::Ready(Ok(Exchange::Response(response_of(head, body))))
    }
}

/// The response a head begins; a spelling still in the head (a 101's, whose connection
/// is handed over with no body) goes in the extensions.
fn response_of<X>(head: head::ResponseHead, body: X) -> Response<X> {
    let mut r = Response::new(body);
    *r.status_mut() = head.status;
    *r.version_mut() = head.version;
    *r.headers_mut() = head.headers;
    if let Some(s) = head.spelling {
        r.extensions_mut().insert(s);
    }
    if !head.reason.is_empty()
        && Some(head.reason.as_ref()) != head.status.canonical_reason().map(str::as_bytes)
    {
        r.extensions_mut().insert(Reason(head.reason));
    }
    r
}

/// A response body streaming from the member; it owns the connection until it ends, and
/// sends what is left of the request body meanwhile.
pub struct ResponseBody<T, B> {
    conn: Option<Connection<T>>,
    inbound: Inbound,
    /// What is left of the request body (boxed: only an upload the member answered early
    /// has any, and the body is moved several times per request).
    out: Option<Box<Outbound<B>>>,
    reusable: bool,
    // Boxed: rare, and the body is moved several times per request.
    trailers: Option<Box<HeaderMap>>,
    /// How the member spelled the head's names.
    spelling: Option<Spelling>,
}

impl<T, B> ResponseBody<T, B>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    /// How the member spelled its head's names, when it kept a spelling.
    pub fn spelling(&self) -> Option<&Spelling> {
        self.spelling.as_ref()
    }

    /// The connection, once the body has ended cleanly and both sides allow another
    /// request on it; `None` otherwise (dropping the body closes the connection).
    pub fn take_connection(&mut self) -> Option<Connection<T>> {
        if !matches!(self.inbound, Inbound::Done) || self.out.is_some() || !self.reusable {
            return None;
        }
        let mut conn = self.conn.take()?;
        if !conn.reader.read.is_empty() {
            // Bytes after the response on a keep-alive connection: the member is confused.
            return None;
        }
        conn.rest();
        Some(conn)
    }
}

impl<T, B> Body for ResponseBody<T, B>
where
    T: AsyncRead + AsyncWrite + Unpin,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = ClientError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientError>>> {
        let this = self.get_mut();
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(out) = this.out.as_mut() {
            match out.poll(&mut conn.io, cx) {
                Poll::Ready(Ok(())) => this.out = None,
                // The client's upload failed: that is the exchange's error, and the client's
                // fault (a member waiting for the rest would otherwise be blamed by a timeout).
                Poll::Ready(Err(e @ (OutboundError::Body(_) | OutboundError::Length))) => {
                    this.out = None;
                    this.reusable = false;
                    this.conn = None;
                    return Poll::Ready(Some(Err(ClientError::from_outbound(e))));
                }
                // The member answered and stopped reading: the response goes on, the
                // connection will not be reused.
                Poll::Ready(Err(_)) => {
                    this.out = None;
                    this.reusable = false;
                }
                Poll::Pending => {}
            }
        }
        if !matches!(this.inbound, Inbound::Done) {
            let polled =
                this.inbound
                    .poll_data(&mut conn.reader, &mut conn.io, cx, &mut this.trailers);
            match ready!(polled) {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(None) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(ClientError::from_inbound(e))));
                }
            }
        }
        if this.out.is_some() {
            if this.reusable {
                // The member answered before the request body was through (an NTLM 401 to a
                // large POST, a redirect) and keeps the connection: the rest of the body
                // goes on, and the body ends when it is through, so that the connection (an
                // authenticated one, perhaps) can be used again. `out` waits for the client.
                return Poll::Pending;
            }
            // The member will close: what is left of the request is not sent.
            this.out = None;
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(*t))))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.inbound, Inbound::Done) && self.trailers.is_none() && self.out.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.inbound {
            Inbound::Length(n) => SizeHint::with_exact(n),
            Inbound::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::test_body::Chunks;
    use bytes::BytesMut;
    use http::HeaderName;
    use http_body_util::{BodyExt, Empty, Full};
    use std::collections::VecDeque;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const LIMITS: Limits = Limits {
        max_head_bytes: 64 * 1024,
    };

    /// A member on loopback running `script` on its one accepted connection, and a client
    /// connection to it.
    async fn member<F, Fut>(script: F) -> (Connection<TcpStream>, tokio::task::JoinHandle<()>)
    where
        F: FnOnce(TcpStream) -> Fut + std::marker::Send + 'static,
        Fut: Future<Output = ()> + std::marker::Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            script(s).await;
        });
        let io = TcpStream::connect(addr).await.unwrap();
        io.set_nodelay(true).unwrap();
        (Connection::new(io, LIMITS), task)
    }

    fn member_addr(conn: &Connection<TcpStream>) -> std::net::SocketAddr {
        conn.io.peer_addr().unwrap()
    }

    /// Reads one request head (and nothing after it) from the member's side.
    async fn read_head(s: &mut TcpStream) -> Vec<u8> {
        read_until(s, b"\r\n\r\n").await
    }

    /// Reads up to and including `end`; fails the test (instead of hanging it) if `end`
    /// has not come within 10 s.
    async fn read_until(s: &mut TcpStream, end: &[u8]) -> Vec<u8> {
        let read = async {
            let mut got = Vec::new();
            while !got.ends_with(end) {
                let mut b = [0u8; 1];
                if s.read(&mut b).await.unwrap() == 0 {
                    break;
                }
                got.push(b[0]);
            }
            got
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the client stopped writing")
    }

    fn get(path: &str) -> Request<Empty<Bytes>> {
        Request::get(path)
            .header("host", "mail.contoso.com")
            .body(Empty::new())
            .unwrap()
    }

    async fn exchange<B>(
        conn: Connection<TcpStream>,
        req: Request<B>,
    ) -> Response<ResponseBody<TcpStream, B>>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + std::marker::Send + Sync>>,
    {
        match conn.send(req).await {
            Ok(Exchange::Response(r)) => r,
            Ok(Exchange::Upgraded(..)) => panic!("unexpected upgrade"),
            Err(f) => panic!("send failed: {:?}", f.error),
        }
    }

    /// A body that sends one chunk, then never ends (a client still uploading).
    struct Stalled(Option<Bytes>);

    impl Body for Stalled {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            match self.0.take() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => Poll::Pending,
            }
        }
    }

    /// A body that has sent its one frame and knows it is over, but (like hyper's
    /// `Incoming` at its length) does not end until much later.
    struct KnowsItIsOver(Option<Bytes>);

    impl Body for KnowsItIsOver {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            match self.0.take() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => Poll::Pending,
            }
        }
        fn is_end_stream(&self) -> bool {
            self.0.is_none()
        }
    }

    /// A client upload that sends one chunk, then fails when told to.
    struct FailsLater(
        Option<Bytes>,
        std::sync::Arc<std::sync::Mutex<(bool, Option<Waker>)>>,
    );

    impl Body for FailsLater {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if let Some(b) = self.0.take() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            let mut state = self.1.lock().unwrap();
            if state.0 {
                return Poll::Ready(Some(Err(std::io::Error::other("client went away"))));
            }
            state.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_body_that_knows_it_is_over_completes_the_request_at_once() {
        let (conn, member) = member(|mut s| async move {
            read_head(&mut s).await;
            let mut body = [0u8; 3];
            s.read_exact(&mut body).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
        })
        .await;
        let req = Request::post("/")
            .header("host", "a")
            .header("content-length", "3")
            .body(KnowsItIsOver(Some(Bytes::from_static(b"abc"))))
            .unwrap();
        let mut resp = exchange(conn, req).await;
        assert!(
            resp.body_mut().take_connection().is_some(),
            "the request was complete"
        );
        member.await.unwrap();
    }

    #[tokio::test]
    async fn an_upload_that_fails_after_the_answer_began_is_the_clients_fault() {
        let (conn, member) = member(|mut s| async move {
            read_head(&mut s).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        })
        .await;
        let state = std::sync::Arc::new(std::sync::Mutex::new((false, None::<Waker>)));
        let req = Request::post("/")
            .header("host", "a")
            .header("content-length", "100")
            .body(FailsLater(Some(Bytes::from_static(b"x")), state.clone()))
            .unwrap();
        let resp = exchange(conn, req).await;
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"abc");
        let waker = {
            let mut s = state.lock().unwrap();
            s.0 = true;
            s.1.take()
        };
        waker.expect("the upload was waiting").wake();
        let err = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("the body ends at once, not at a timeout")
            .unwrap()
            .expect_err("the upload failed");
        assert!(err.is_client_fault(), "{err:?}");
        assert!(body.take_connection().is_none());
        member.abort();
    }

    #[tokio::test]
    async fn a_body_that_waits_holds_no_read_buffer() {
        let (conn, member) = member(|mut s| async move {
            read_head(&mut s).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        })
        .await;
        let mut body = exchange(conn, get("/")).await.into_body();
        let mut got = Vec::new();
        while got.len() < 5 {
            got.extend_from_slice(&body.frame().await.unwrap().unwrap().into_data().unwrap());
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(100), body.frame())
                .await
                .is_err()
        );
        assert_eq!(body.conn.as_ref().unwrap().buffered_capacity(), 0);
        member.abort();
    }

    #[tokio::test]
    async fn endless_interim_responses_and_a_204_with_a_body_are_member_faults() {
        let (conn, member1) = member(|mut s| async move {
            read_head(&mut s).await;
            for _ in 0..9 {
                s.write_all(b"HTTP/1.1 102 Processing\r\n\r\n")
                    .await
                    .unwrap();
            }
        })
        .await;
        let Err(failure) = conn.send(get("/")).await else {
            panic!("a ninth 1xx is refused")
        };
        assert!(
            failure.error.to_string().contains("interim"),
            "{}",
            failure.error
        );
        member1.await.unwrap();
        let (conn, member2) = member(|mut s| async move {
            read_head(&mut s).await;
            s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        })
        .await;
        let mut resp = exchange(conn, get("/")).await;
        assert!(resp.body().is_end_stream());
        assert!(
            resp.body_mut().take_connection().is_none(),
            "its next bytes may be a body"
        );
        member2.abort();
    }

    #[tokio::test]
    async fn a_body_short_of_its_length_is_refused_before_a_byte_goes_out_and_host_comes_from_the_uri(
    ) {
        let (conn, member) = member(|mut s| async move {
            let head = read_head(&mut s).await;
            assert_eq!(
                &head[..],
                b"GET /x HTTP/1.1\r\nHost: app.contoso.com:8443\r\n\r\n"
            );
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
        })
        .await;
        let req = Request::post("/")
            .header("host", "a")
            .header("content-length", "5")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let conn2 = Connection::new(
            TcpStream::connect(member_addr(&conn)).await.unwrap(),
            LIMITS,
        );
        let sent = tokio::time::timeout(Duration::from_secs(5), conn2.send(req)).await;
        let Ok(Err(failure)) = sent else {
            panic!("refused at once")
        };
        assert!(matches!(failure.error, ClientError::RequestLength) && !failure.wrote);
        assert!(failure.error.is_client_fault());
        let req = Request::get("http://app.contoso.com:8443/x")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let mut resp = exchange(conn, req).await;
        assert!(resp.body_mut().take_connection().is_some());
        member.await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_serves_requests_in_turn_and_holds_no_buffer_between_them() {
        let (conn, member) = member(|mut s| async move {
            for _ in 0..2 {
                let head = read_head(&mut s).await;
                assert_eq!(
                    &head[..],
                    b"GET /owa/ HTTP/1.1\r\nHost: mail.contoso.com\r\n\r\n"
                );
                // A body larger than one read, so a body buffer is allocated and must go.
                let mut resp =
                    b"HTTP/1.1 200 Fine\r\nContent-Length: 20000\r\nX-FEServer: EX01\r\n\r\n"
                        .to_vec();
                resp.extend(std::iter::repeat_n(b'x', 20_000));
                s.write_all(&resp).await.unwrap();
            }
        })
        .await;
        let resp = exchange(conn, get("/owa/")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let spelling = resp
            .body()
            .spelling()
            .expect("X-FEServer is not Title-Case");
        assert_eq!(
            spelling.name(&HeaderName::from_static("x-feserver"), 0),
            Some(&b"X-FEServer"[..])
        );
        assert_eq!(&resp.extensions().get::<Reason>().unwrap().0[..], b"Fine");
        let mut body = resp.into_body();
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        assert_eq!(got, vec![b'x'; 20_000]);
        let conn = body
            .take_connection()
            .expect("a keep-alive response that ended gives the connection back");
        assert_eq!(
            conn.buffered_capacity(),
            0,
            "an idle connection holds no read buffer"
        );
        let resp = exchange(conn, get("/owa/")).await;
        let again = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(again.len(), 20_000);
        member.await.unwrap();
    }

    #[tokio::test]
    async fn a_request_goes_out_in_the_clients_spelling() {
        let raw = b"POST /mapi/emsmdb/?MailboxId=a@b HTTP/1.1\r\nhost: mail.contoso.com\r\nX-ClientInfo: {1}\r\ncontent-length: 3\r\n\r\n";
        let (conn, member) = member(move |mut s| async move {
            let head = read_head(&mut s).await;
            assert_eq!(&head[..], &raw[..]);
            let mut body = [0u8; 3];
            s.read_exact(&mut body).await.unwrap();
            assert_eq!(&body, b"abc");
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
        })
        .await;
        let mut buf = BytesMut::from(&raw[..]);
        let parsed = head::parse_request(&mut buf, LIMITS).unwrap().unwrap();
        let mut req = Request::new(Full::new(Bytes::from_static(b"abc")));
        *req.method_mut() = parsed.method;
        *req.uri_mut() = http::Uri::from_maybe_shared(parsed.target).unwrap();
        *req.headers_mut() = parsed.headers;
        req.extensions_mut().insert(parsed.spelling.unwrap());
        let mut resp = exchange(conn, req).await;
        assert!(resp.body().is_end_stream());
        assert!(resp.body_mut().take_connection().is_some());
        member.await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_dead_before_the_first_byte_hands_the_request_back_whole() {
        let (conn, member) = member(|s: TcpStream| async move {
            // A reset, not a FIN: the client's first write fails outright.
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s);
        })
        .await;
        member.await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut req = Request::post("/ews/exchange.asmx?a=1")
            .header("Host", "mail.contoso.com")
            .header("X-AnchorMailbox", "kim@contoso.com")
            .body(Full::new(Bytes::from_static(b"<soap/>")))
            .unwrap();
        let mut buf = BytesMut::from(&b"X-AnchorMailbox: k\r\n"[..]);
        let spelled = Spelling::new(buf.split().freeze(), std::iter::once((0, 15)));
        req.extensions_mut().insert(spelled);
        let failure = match conn.send(req).await {
            Err(f) => f,
            Ok(_) => panic!("a reset connection answered"),
        };
        assert!(!failure.wrote, "{failure:?}");
        let back = failure.unsent.unwrap_or_else(|| {
            panic!(
                "nothing was written: the request comes back ({:?})",
                failure.error
            )
        });
        assert_eq!(back.method(), http::Method::POST);
        assert_eq!(back.uri(), "/ews/exchange.asmx?a=1");
        assert_eq!(back.headers()["x-anchormailbox"], "kim@contoso.com");
        assert_eq!(back.headers()[header::CONTENT_LENGTH], "7");
        assert!(
            back.extensions().get::<Spelling>().is_some(),
            "the spelling comes back too"
        );
        let body = back.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"<soap/>");
    }

    #[tokio::test]
    async fn a_chunked_response_arriving_a_byte_at_a_time_is_decoded_with_its_trailers() {
        let (conn, member) = member(|mut s| async move {
            read_head(&mut s).await;
            for b in b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n" {
                s.write_all(&[*b]).await.unwrap();
                s.flush().await.unwrap();
            }
            // Stay open: the end of the body is its last chunk, not the close.
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        let resp = exchange(conn, get("/")).await;
        let mut body = resp.into_body();
        let (mut data, mut trailers) = (Vec::new(), None);
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap();
            match frame.into_data() {
                Ok(d) => data.extend_from_slice(&d),
                Err(f) => trailers = f.into_trailers().ok(),
            }
        }
        assert_eq!(data, b"hello world");
        assert_eq!(trailers.unwrap()["x-sum"], "11");
        assert!(
            body.take_connection().is_some(),
            "a chunked body ends at its last chunk"
        );
        member.abort();
    }

    #[tokio::test]
    async fn a_body_of_known_size_gets_a_length_and_one_of_unknown_size_goes_chunked() {
        let (conn, member) = member(|mut s| async move {
            let head = read_head(&mut s).await;
            assert!(
                head.ends_with(b"Content-Length: 3\r\n\r\n"),
                "{}",
                String::from_utf8_lossy(&head)
            );
            let mut body = [0u8; 3];
            s.read_exact(&mut body).await.unwrap();
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
            let head = read_head(&mut s).await;
            assert!(
                head.ends_with(b"Transfer-Encoding: chunked\r\n\r\n"),
                "{}",
                String::from_utf8_lossy(&head)
            );
            let body = read_until(&mut s, b"0\r\n\r\n").await;
            assert_eq!(&body[..], b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n");
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
        })
        .await;
        let req = Request::post("/")
            .header("host", "a")
            .body(Full::new(Bytes::from_static(b"abc")))
            .unwrap();
        let mut resp = exchange(conn, req).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        let conn = resp.body_mut().take_connection().expect("reusable");
        let chunks = Chunks(VecDeque::from([
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"cde"),
        ]));
        let req = Request::post("/").header("host", "a").body(chunks).unwrap();
        let mut resp = exchange(conn, req).await;
        assert!(resp.body_mut().take_connection().is_some());
        member.await.unwrap();
    }

    #[tokio::test]
    async fn a_written_idempotent_request_comes_back_for_a_replay_and_a_post_does_not() {
        for (method, replayable) in [(http::Method::GET, true), (http::Method::POST, false)] {
            let (conn, member) = member(|mut s: TcpStream| async move {
                // Reads the request, then closes without a word: a member restarting.
                read_head(&mut s).await;
            })
            .await;
            let mut req = Request::builder()
                .method(method.clone())
                .uri("/owa/?ae=Item")
                .header("Host", "mail.contoso.com")
                .header("Cookie", "a=1")
                .body(Empty::<Bytes>::new())
                .unwrap();
            let mut buf = BytesMut::from(&b"cookie: a=1\r\n"[..]);
            req.extensions_mut()
                .insert(Spelling::new(buf.split().freeze(), std::iter::once((0, 6))));
            let failure = match conn.send(req).await {
                Err(f) => f,
                Ok(_) => panic!("a closed connection answered"),
            };
            member.await.unwrap();
            assert!(failure.wrote && failure.unsent.is_none(), "{failure:?}");
            match failure.replay {
                Some(head) if replayable => {
                    let again = head.into_request(());
                    assert_eq!(again.method(), method);
                    assert_eq!(again.uri(), "/owa/?ae=Item");
                    assert_eq!(again.headers()["cookie"], "a=1");
                    let spelling = again.extensions().get::<Spelling>().expect("spelling kept");
                    assert_eq!(spelling.name(&header::COOKIE, 0), Some(&b"cookie"[..]));
                }
                None if !replayable => {}
                other => panic!("{method}: replay {:?}", other.is_some()),
            }
        }
    }

    /// A body that sends its first part, then waits for `gate` before the second.
    struct Gated {
        first: Option<Bytes>,
        gate: tokio::sync::oneshot::Receiver<()>,
        second: Option<Bytes>,
    }

    impl Body for Gated {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if let Some(b) = self.first.take() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            if self.second.is_some() {
                let _ = ready!(Pin::new(&mut self.gate).poll(cx));
            }
            Poll::Ready(self.second.take().map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test]
    async fn an_early_answer_on_a_kept_connection_ends_when_the_upload_is_through() {
        let (conn, member) = member(|mut s| async move {
            read_head(&mut s).await;
            // NTLM's challenge, before the body has been read.
            s.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM abc\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            let mut body = [0u8; 10];
            s.read_exact(&mut body).await.unwrap();
            assert_eq!(&body, b"0123456789");
            read_head(&mut s).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await.unwrap();
        })
        .await;
        let (open, gate) = tokio::sync::oneshot::channel();
        let body = Gated {
            first: Some(Bytes::from_static(b"01234")),
            gate,
            second: Some(Bytes::from_static(b"56789")),
        };
        let req = Request::post("/rpc")
            .header("host", "a")
            .header("content-length", "10")
            .body(body)
            .unwrap();
        let mut resp = exchange(conn, req).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(
            !resp.body().is_end_stream(),
            "the upload is not through yet"
        );
        open.send(()).unwrap();
        while let Some(f) = resp.body_mut().frame().await {
            assert!(f.unwrap().into_data().unwrap_or_default().is_empty());
        }
        let conn = resp
            .body_mut()
            .take_connection()
            .expect("the upload went through after the answer: the connection is kept");
        let req = Request::get("/")
            .header("host", "a")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let mut resp = exchange(conn, req).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let data = resp
            .body_mut()
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        assert_eq!(&data[..], b"ok");
        member.await.unwrap();
    }

    #[tokio::test]
    async fn an_early_answer_is_read_while_the_body_is_still_owed() {
        let (conn, member) = member(|mut s| async move {
            read_head(&mut s).await;
            s.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!").await.unwrap();
        })
        .await;
        let req = Request::post("/upload")
            .header("host", "a")
            .header("content-length", "1000000")
            .body(Stalled(Some(Bytes::from_static(b"first"))))
            .unwrap();
        let resp = exchange(conn, req).await;
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let mut body = resp.into_body();
        let data = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&data[..], b"big!");
        assert!(body.frame().await.is_none());
        assert!(
            body.take_connection().is_none(),
            "the request body never finished"
        );
        member.await.unwrap();
    }

    #[tokio::test]
    async fn a_member_that_closes_before_answering_is_told_apart_from_one_that_stops_mid_body() {
        let (conn, member1) = member(|mut s| async move {
            read_head(&mut s).await;
        })
        .await;
        let Err(failure) = conn.send(get("/")).await else {
            panic!("no response")
        };
        assert!(
            matches!(failure.error, ClientError::Closed),
            "{:?}",
            failure.error
        );
        assert!(failure.wrote);
        member1.await.unwrap();

        let (conn, member2) = member(|mut s| async move {
            read_head(&mut s).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                .await
                .unwrap();
        })
        .await;
        let resp = exchange(conn, get("/")).await;
        let Err(err) = resp.into_body().collect().await else {
            panic!("the body is short")
        };
        assert!(matches!(err, ClientError::Truncated), "{err:?}");
        member2.await.unwrap();
    }

    #[tokio::test]
    async fn ambiguous_and_malformed_response_heads_are_refused() {
        for (raw, want) in [
            (
                &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc"[..],
                "both Content-Length",
            ),
            (b"HTTP/1.1 200 OK\r\nX-A : b\r\n\r\n", "header name"),
            (
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
                "asked for no upgrade",
            ),
        ] {
            let (conn, member) = member(move |mut s| async move {
                read_head(&mut s).await;
                s.write_all(raw).await.unwrap();
            })
            .await;
            let Err(failure) = conn.send(get("/")).await else {
                panic!("refused")
            };
            assert!(
                matches!(failure.error, ClientError::Head(_)),
                "{:?}",
                failure.error
            );
            assert!(
                failure.error.to_string().contains(want),
                "{}",
                failure.error
            );
            member.await.unwrap();
        }
    }

    #[tokio::test]
    async fn interim_responses_are_passed_over_and_a_101_hands_over_the_connection() {
        let (conn, member) = member(|mut s| async move {
            read_head(&mut s).await;
            s.write_all(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nWS").await.unwrap();
            s.write_all(b"DATA").await.unwrap();
            let mut echo = [0u8; 4];
            s.read_exact(&mut echo).await.unwrap();
            assert_eq!(&echo, b"ping");
        })
        .await;
        let req = Request::get("/ucwa/ws")
            .header("host", "a")
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let Ok(Exchange::Upgraded(resp, mut up)) = conn.send(req).await else {
            panic!("no upgrade")
        };
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        let mut got = up.read_ahead.to_vec();
        while got.len() < 6 {
            let mut b = [0u8; 16];
            let n = up.io.read(&mut b).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&b[..n]);
        }
        assert_eq!(got, b"WSDATA");
        up.io.write_all(b"ping").await.unwrap();
        member.await.unwrap();
    }

    #[tokio::test]
    async fn a_body_that_runs_to_the_close_ends_there_and_its_connection_is_not_reused() {
        let (conn, member) = member(|mut s| async move {
            read_head(&mut s).await;
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\nabc").await.unwrap();
            s.write_all(b"def").await.unwrap();
        })
        .await;
        let resp = exchange(conn, get("/")).await;
        let mut body = resp.into_body();
        let mut data = Vec::new();
        while let Some(f) = body.frame().await {
            data.extend_from_slice(&f.unwrap().into_data().unwrap());
        }
        assert_eq!(data, b"abcdef");
        assert!(body.take_connection().is_none());
        member.await.unwrap();
    }

    #[tokio::test]
    async fn a_head_response_has_no_body_whatever_its_length_says() {
        let (conn, member) = member(|mut s| async move {
            read_head(&mut s).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        let req = Request::head("/")
            .header("host", "a")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let mut resp = exchange(conn, req).await;
        assert!(resp.body().is_end_stream());
        assert!(resp.body_mut().take_connection().is_some());
        member.abort();
    }

    #[tokio::test]
    async fn an_idle_connection_the_member_closed_is_found_before_use() {
        let (mut conn, member) = member(|s| async move {
            drop(s);
        })
        .await;
        member.await.unwrap();
        // The close arrives; until then the connection looks idle, never broken otherwise.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match conn.check_idle() {
                Err(ClientError::Closed) => break,
                Ok(()) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
