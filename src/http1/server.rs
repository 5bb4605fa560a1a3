//! One HTTP/1.1 client connection, served by one future: it reads request heads, hands
//! each request to the service, and writes the response in the spelling and with the reason
//! phrase the response carries ([`Spelling`], [`Reason`] extensions). hyper's server keeps
//! an 8 KiB read and an 8 KiB write buffer for the life of every connection; here a
//! connection that waits (for its next request, or for a member's answer to a long poll)
//! holds no buffer, and a response head is written from a buffer of its own size.
//!
//! The request body streams to the member while the response is awaited, so the read side
//! of the connection moves into the [`RequestBody`] while the body is read, and comes back
//! when it ends (or is dropped). A body dropped before its end leaves bytes on the wire
//! that are not the next request: the connection then closes after the response. Requests
//! are served one at a time; pipelined requests wait in the read buffer (up to the head
//! limit) and are read once the response before them is written.
//!
//! While a response is awaited and the request body is done, the connection watches for the
//! client closing: the service's future is then dropped (as nginx aborts the member request
//! when the client goes), so a long poll the client abandoned does not hold a member
//! connection until its timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::service::Service;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use super::framing::Framing;
use super::head::{self, EndScan, HeadError, Limits, RequestHead};
use super::inbound::{Inbound, InboundError, Reader};
use super::outbound::{Outbound, OutboundError};
use super::spelling::Spelling;
use super::{write, Present, Reason, Upgraded};

/// How long a closing connection keeps reading (and discarding) what the client still sends,
/// so that closing with unread bytes does not reset the connection before the client has
/// read the answer (nginx's lingering close).
const LINGER: Duration = Duration::from_secs(2);

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What a connection is served with, from the listener's settings.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Largest request head; a larger one is answered 431 and the connection closed.
    pub limits: Limits,
    /// Time to receive a whole request head, counted from the end of the previous response
    /// (so it also closes idle keep-alive connections).
    pub header_read_timeout: Duration,
}

/// Why a request body could not be read: the client's fault, always.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    /// Reading from the client failed.
    #[error("reading the request body failed: {0}")]
    Io(#[source] io::Error),
    /// The client closed before the body's declared end.
    #[error("the client closed the connection before the end of its request body")]
    Truncated,
    /// The chunked coding is malformed.
    #[error("the request's chunked body is malformed: {0}")]
    Chunked(#[source] super::chunked::ChunkedError),
}

impl From<InboundError> for RequestBodyError {
    fn from(e: InboundError) -> Self {
        match e {
            InboundError::Io(e) => RequestBodyError::Io(e),
            InboundError::Truncated => RequestBodyError::Truncated,
            InboundError::Chunked(e) => RequestBodyError::Chunked(e),
        }
    }
}

/// The read side of a connection: the socket's read half and what was read from it.
struct ReadSide<T> {
    io: ReadHalf<T>,
    reader: Reader,
    scan: EndScan,
    /// Buffer length at the last parse of an incomplete head (0: none yet).
    tried_at: usize,
}

/// Where the read side waits while a request body has it: given back when the body ends or
/// is dropped, with whether the body was read to its end.
struct Slot<T> {
    back: Mutex<Option<(ReadSide<T>, bool)>>,
    /// The body was first read while the client waits for `100 Continue`.
    wants_continue: AtomicBool,
}

/// A request body read from the client connection; it holds the connection's read side
/// while it streams.
pub struct RequestBody<T> {
    side: Option<ReadSide<T>>,
    inbound: Inbound,
    slot: Option<Arc<Slot<T>>>,
    expects_continue: bool,
    // Boxed: rare, and the body is moved several times per request.
    trailers: Option<Box<HeaderMap>>,
}

impl<T> RequestBody<T> {
    fn empty() -> Self {
        RequestBody {
            side: None,
            inbound: Inbound::Done,
            slot: None,
            expects_continue: false,
            trailers: None,
        }
    }

    /// Gives the read side back to the connection.
    fn give_back(&mut self) {
        if let (Some(side), Some(slot)) = (self.side.take(), &self.slot) {
            let finished = matches!(self.inbound, Inbound::Done);
            *slot.back.lock().unwrap_or_else(|p| p.into_inner()) = Some((side, finished));
        }
    }
}

impl<T> Drop for RequestBody<T> {
    fn drop(&mut self) {
        self.give_back();
    }
}

impl<T: AsyncRead + AsyncWrite> Body for RequestBody<T> {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        let this = self.get_mut();
        let Some(side) = this.side.as_mut() else {
            return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(*t))));
        };
        if std::mem::take(&mut this.expects_continue) {
            // The client holds its body back until told to go on: the connection writes
            // the 100 when it is next polled, which is right after this returns.
            if let Some(slot) = &this.slot {
                slot.wants_continue.store(true, Ordering::Relaxed);
            }
        }
        let polled = this
            .inbound
            .poll_data(&mut side.reader, &mut side.io, cx, &mut this.trailers);
        match ready!(polled) {
            Ok(Some(data)) => {
                if matches!(this.inbound, Inbound::Done) {
                    this.give_back();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Ok(None) => {
                this.give_back();
                Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(*t))))
            }
            Err(e) => {
                // The rest of the stream is not a request: the connection closes.
                this.side = None;
                Poll::Ready(Some(Err(e.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.inbound, Inbound::Done) && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.inbound {
            Inbound::Length(n) => SizeHint::with_exact(n),
            Inbound::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// In the request's extensions when it asked to upgrade: the client connection, once a
/// 101 response to it has been written ([`OnUpgrade::take`]). Clone only because request
/// extensions must be; the connection goes to whoever takes it first.
pub struct OnUpgrade<T>(Arc<Mutex<Option<oneshot::Receiver<Upgraded<T>>>>>);

impl<T> Clone for OnUpgrade<T> {
    fn clone(&self) -> Self {
        OnUpgrade(Arc::clone(&self.0))
    }
}

impl<T> OnUpgrade<T> {
    /// The future of the switched connection; None if taken already.
    pub fn take(&self) -> Option<Upgrading<T>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .map(Upgrading)
    }
}

/// The client connection after the 101 is written; None if the connection closed first or
/// the response was not a 101.
pub struct Upgrading<T>(oneshot::Receiver<Upgraded<T>>);

impl<T> Future for Upgrading<T> {
    type Output = Option<Upgraded<T>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(Result::ok)
    }
}

/// What the connection does next.
enum State<B> {
    /// Waiting for (or inside) a request head.
    Reading,
    /// The service has the request (its future is in `Connection::fut`).
    Serving,
    /// Writing the response.
    Writing(Outbound<B>),
    /// Shutting the write side (TLS: close_notify), then, with `linger`, reading what the
    /// client still sends until it closes.
    Closing {
        shut: bool,
        linger: bool,
    },
    Done,
}

/// What the connection remembers of the request being served.
struct Current<T> {
    http10: bool,
    to_head: bool,
    keep_alive: bool,
    upgrade: Option<oneshot::Sender<Upgraded<T>>>,
    continue_at: Option<usize>,
    upgrading: bool,
    /// The request body was dropped before its end: its rest is on the wire.
    body_broken: bool,
}

impl<T> Current<T> {
    fn new() -> Self {
        Current {
            http10: false,
            to_head: false,
            keep_alive: false,
            upgrade: None,
            continue_at: None,
            upgrading: false,
            body_broken: false,
        }
    }
}

/// A response body that may relay a member's message, and so know how the member spelled
/// its head's names. Carried by the body rather than in the response's extensions, whose
/// first insertion costs three allocations; a spelling in the extensions (a 101's, or an
/// answer built by hand) is used when the body has none.
pub trait Spelled {
    /// The member's spelling of the head this body follows.
    fn spelling(&self) -> Option<&Spelling> {
        None
    }
}

pin_project_lite::pin_project! {

/// One client connection being served; completes when the connection closes.
    pub struct Connection<T, S, F, B> {
        write: Option<WriteHalf<T>>,
        home: Option<ReadSide<T>>,
        slot: Arc<Slot<T>>,
        service: S,
        settings: Settings,
        state: State<B>,
        // The request's future, in the connection's own task: no allocation per request.
        #[pin]
        fut: Option<F>,
        // Armed at or before `head_by` (or the linger's end): the header timeout moves with
        // each answer by a store to `head_by`, and the timer is reset only when it fires
        // early. Resetting it per request (a wheel removal and insertion) was 1% of a
        // request's instructions (callgrind).
        #[pin]
        timer: Sleep,
        head_by: Instant,
        // The task the timer wakes when it fires, once polled since its last reset: until
        // then a wait for the next head need not poll it again (two polls per request were
        // 0.9% of its instructions, callgrind).
        armed_for: Option<std::task::Waker>,
        current: Current<T>,
        shutting_down: bool,
    }
}

/// Serves HTTP/1.1 on `io` with `service` until the connection closes. `read_ahead`: bytes
/// already read from `io` (a protocol sniff).
pub fn serve<T, S, F, B, E>(
    io: T,
    read_ahead: Bytes,
    settings: Settings,
    service: S,
) -> Connection<T, S, F, B>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<RequestBody<T>>, Response = Response<B>, Error = E, Future = F>,
    F: Future<Output = Result<Response<B>, E>>,
{
    let (read, write) = tokio::io::split(io);
    let mut reader = Reader::new();
    if !read_ahead.is_empty() {
        reader.read.extend_from_slice(&read_ahead);
    }
    Connection {
        write: Some(write),
        home: Some(ReadSide {
            io: read,
            reader,
            scan: EndScan::default(),
            tried_at: 0,
        }),
        slot: Arc::new(Slot {
            back: Mutex::new(None),
            wants_continue: AtomicBool::new(false),
        }),
        service,
        settings,
        state: State::Reading,
        fut: None,
        timer: tokio::time::sleep(settings.header_read_timeout),
        head_by: Instant::now() + settings.header_read_timeout,
        armed_for: None,
        current: Current::new(),
        shutting_down: false,
    }
}

/// Turns a parsed head into the service's request; the read side goes with the body.
fn request<T: Send + 'static>(
    head: RequestHead,
    home: &mut Option<ReadSide<T>>,
    slot: &Arc<Slot<T>>,
    current: &mut Current<T>,
) -> Request<RequestBody<T>> {
    let http10 = head.version == Version::HTTP_10;
    let present = Present::of(&head.headers);
    let close = present.connection_lists(&head.headers, b"close");
    let keep_alive = if http10 {
        present.connection_lists(&head.headers, b"keep-alive") && !close
    } else {
        !close
    };
    let upgrade = !http10
        && present.any(Present::UPGRADE)
        && present.connection_lists(&head.headers, b"upgrade");
    let expects_continue = !http10
        && present.any(Present::EXPECT)
        && head
            .headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    *current = Current {
        http10,
        to_head: head.method == http::Method::HEAD,
        keep_alive,
        ..Current::new()
    };
    // A flag left by the last request (its body read as its answer came) is not this one's.
    slot.wants_continue.store(false, Ordering::Relaxed);
    let body = match head.framing {
        Framing::Empty | Framing::Length(0) | Framing::UntilClose => RequestBody::empty(),
        framing => RequestBody {
            side: home.take(),
            inbound: Inbound::of(framing),
            slot: Some(Arc::clone(slot)),
            expects_continue,
            trailers: None,
        },
    };
    let mut req = head.into_request(body);
    if upgrade {
        let (tx, rx) = oneshot::channel();
        current.upgrade = Some(tx);
        req.extensions_mut()
            .insert(OnUpgrade(Arc::new(Mutex::new(Some(rx)))));
    }
    req
}

/// The response as it goes on the wire: framing decided, `Connection` and `Date` set.
fn response<T, B>(resp: Response<B>, current: &mut Current<T>, shutting_down: bool) -> Outbound<B>
where
    B: Body<Data = Bytes> + Spelled + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut parts, body) = resp.into_parts();
    let status = parts.status;
    let headers = &mut parts.headers;
    let upgrading = status == StatusCode::SWITCHING_PROTOCOLS && current.upgrade.is_some();
    current.upgrading = upgrading;
    let bodyless = current.to_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let present = Present::of(headers);
    // The framing is the codec's to decide; a member's was read and is not this one.
    if present.any(Present::TRANSFER_ENCODING) {
        headers.remove(header::TRANSFER_ENCODING);
    }
    let declared = present
        .any(Present::CONTENT_LENGTH)
        .then(|| headers.get(header::CONTENT_LENGTH))
        .flatten()
        .and_then(|v| super::framing::content_length(v.as_bytes()).ok());
    let framing = if bodyless {
        Framing::Empty
    } else if let Some(n) = declared {
        Framing::Length(n)
    } else {
        if present.any(Present::CONTENT_LENGTH) {
            headers.remove(header::CONTENT_LENGTH);
        }
        match body.size_hint().exact() {
            Some(n) => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
                Framing::Length(n)
            }
            // An HTTP/1.0 client cannot read chunked: the body ends with the connection.
            None if current.http10 => Framing::UntilClose,
            None => Framing::Chunked,
        }
    };
    // A HEAD answer says the size only when it is known and not zero: a zero from a body
    // Portico has not got (the member's to a HEAD is empty) would tell the client the
    // resource is empty (hyper does the same).
    if framing == Framing::Empty && current.to_head && declared.is_none() {
        if let Some(n) = body.size_hint().exact().filter(|&n| n > 0) {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
    if framing == Framing::Chunked {
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    let keep_alive = current.keep_alive
        && !shutting_down
        && framing != Framing::UntilClose
        && !present.connection_lists(headers, b"close");
    if !upgrading {
        if present.any(Present::CONNECTION) {
            headers.remove(header::CONNECTION);
        }
        if !keep_alive {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        } else if current.http10 {
            headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        }
    }
    current.keep_alive = keep_alive;
    if !present.any(Present::DATE) {
        headers.insert(header::DATE, date());
    }
    let reason = parts.extensions.get::<Reason>().map(|r| &r.0[..]);
    let mut out = super::recycle::head_buf();
    // The rest of a 100 Continue cut short by the answer goes first.
    if let Some(at) = current.continue_at.take() {
        out.extend_from_slice(&CONTINUE[at..]);
    }
    write::response_head(
        &mut out,
        status,
        reason,
        headers,
        body.spelling()
            .or_else(|| parts.extensions.get::<Spelling>()),
    );
    super::recycle::give_map(parts.headers);
    Outbound::new(out, body, framing)
}

impl<T, S, F, B> Connection<T, S, F, B> {
    /// Stops after the request in flight: an idle connection closes at once, a busy one
    /// answers with `Connection: close` and closes.
    pub fn graceful_shutdown(self: Pin<&mut Self>) {
        *self.project().shutting_down = true;
    }
}

impl<T, S, F, B, E> Future for Connection<T, S, F, B>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<RequestBody<T>>, Response = Response<B>, Error = E, Future = F>,
    F: Future<Output = Result<Response<B>, E>>,
    B: Body<Data = Bytes> + Spelled + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: std::fmt::Display,
{
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        loop {
            match this.state {
                State::Reading => {
                    let Some(side) = this.home.as_mut() else {
                        return Poll::Ready(Ok(()));
                    };
                    let limits = this.settings.limits;
                    let len = side.reader.read.len();
                    // Parsed when it may be whole, and also, while it is not, whenever it has
                    // doubled since the last try: a malformed head (a bare CR as line end)
                    // is refused at once instead of at the timeout, and a head trickled in
                    // byte by byte still costs linear time.
                    let complete = side.scan.complete(&side.reader.read);
                    if complete || (len > 0 && len >= side.tried_at.saturating_mul(2)) {
                        side.tried_at = len;
                        match head::parse_request(&mut side.reader.read, limits) {
                            Ok(Some(h)) => {
                                side.scan.reset();
                                side.tried_at = 0;
                                // The head's bytes are the request's now; an empty remainder
                                // would keep their allocation for as long as it is served.
                                side.reader.rest();
                                let req = request(h, this.home, this.slot, this.current);
                                this.fut.set(Some(this.service.call(req)));
                                *this.state = State::Serving;
                                continue;
                            }
                            Ok(None) => {}
                            Err(e) => {
                                *this.state = State::Writing(error_answer(e));
                                this.current.keep_alive = false;
                                continue;
                            }
                        }
                    } else if side.reader.read.len() > limits.max_head_bytes {
                        *this.state = State::Writing(error_answer(HeadError::TooLarge));
                        this.current.keep_alive = false;
                        continue;
                    }
                    // Idle when the shutdown comes, or a head not complete in time (or no next
                    // request on a kept-alive connection): closed without an answer, as hyper
                    // and nginx do.
                    if (*this.shutting_down && side.reader.read.is_empty())
                        || head_late(this.timer.as_mut(), *this.head_by, this.armed_for, cx)
                    {
                        *this.state = State::Closing {
                            shut: false,
                            linger: false,
                        };
                        continue;
                    }
                    match ready!(side.reader.poll_fill(&mut side.io, cx, true)) {
                        Ok(0) => return Poll::Ready(Ok(())),
                        Ok(_) => {}
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
                State::Serving => {
                    let fut = this
                        .fut
                        .as_mut()
                        .as_pin_mut()
                        .expect("serving holds a future");
                    if let Poll::Ready(answer) = fut.poll(cx) {
                        this.fut.set(None);
                        match answer {
                            Ok(resp) => {
                                let out = response(resp, this.current, *this.shutting_down);
                                *this.state = State::Writing(out);
                            }
                            Err(e) => {
                                // The service chose not to answer (a rule's abort).
                                tracing::debug!(error = %e, "request not answered; connection closed");
                                return Poll::Ready(Ok(()));
                            }
                        }
                        continue;
                    }
                    if this.slot.wants_continue.swap(false, Ordering::Relaxed) {
                        this.current.continue_at = Some(0);
                    }
                    let write = this
                        .write
                        .as_mut()
                        .expect("the write half stays until upgrade");
                    if let Some(at) = this.current.continue_at {
                        match Pin::new(&mut *write).poll_write(cx, &CONTINUE[at..]) {
                            Poll::Ready(Ok(n)) if n > 0 => {
                                let at = at + n;
                                this.current.continue_at = (at < CONTINUE.len()).then_some(at);
                                if at == CONTINUE.len() {
                                    let _ = Pin::new(&mut *write).poll_flush(cx);
                                }
                                continue;
                            }
                            Poll::Ready(_) => return Poll::Ready(Ok(())),
                            Poll::Pending => {}
                        }
                    }
                    reclaim(this.home, this.slot, this.current);
                    if client_gone(this.home, this.current, cx) {
                        tracing::debug!(
                            "client closed the connection while its request was served"
                        );
                        this.fut.set(None);
                        return Poll::Ready(Ok(()));
                    }
                    return Poll::Pending;
                }
                State::Writing(out) => {
                    let write = this
                        .write
                        .as_mut()
                        .expect("the write half stays until upgrade");
                    let Poll::Ready(written) = out.poll(write, cx) else {
                        // A streamed answer (a notification channel, RPC_OUT_DATA) waits on
                        // the member: a client gone meanwhile drops it, and the member
                        // connection with it, instead of holding both until a write fails.
                        if client_gone(this.home, this.current, cx) {
                            tracing::debug!("client closed the connection during its answer");
                            *this.state = State::Done;
                            return Poll::Ready(Ok(()));
                        }
                        return Poll::Pending;
                    };
                    // The response body (and with it the request body, if the member side
                    // still held it) is dropped here, before the read side is looked for.
                    *this.state = State::Done;
                    if let Err(e) = written {
                        match e {
                            OutboundError::Io(e) => return Poll::Ready(Err(e)),
                            OutboundError::Body(e) => {
                                tracing::debug!(error = %e, "response body broke off; client connection closed");
                            }
                            OutboundError::Length => {
                                tracing::warn!("response body did not match its Content-Length; client connection closed");
                            }
                        }
                        return Poll::Ready(Ok(()));
                    }
                    reclaim(this.home, this.slot, this.current);
                    if this.current.upgrading {
                        let (Some(mut side), Some(write), Some(tx)) = (
                            this.home.take(),
                            this.write.take(),
                            this.current.upgrade.take(),
                        ) else {
                            return Poll::Ready(Ok(()));
                        };
                        let io = side.io.unsplit(write);
                        let _ = tx.send(Upgraded {
                            io,
                            read_ahead: side.reader.take_read_ahead(),
                        });
                        return Poll::Ready(Ok(()));
                    }
                    this.current.upgrade = None;
                    if !this.current.keep_alive || this.home.is_none() {
                        this.timer.as_mut().reset(Instant::now() + LINGER);
                        *this.armed_for = None;
                        *this.state = State::Closing {
                            shut: false,
                            linger: true,
                        };
                        continue;
                    }
                    if let Some(side) = this.home.as_mut() {
                        side.reader.rest();
                    }
                    *this.head_by = Instant::now() + this.settings.header_read_timeout;
                    *this.state = State::Reading;
                }
                State::Closing { shut, linger } => {
                    if !*shut {
                        let write = this
                            .write
                            .as_mut()
                            .expect("the write half stays until upgrade");
                        ready!(Pin::new(write).poll_shutdown(cx))?;
                        *shut = true;
                    }
                    let (true, Some(side)) = (*linger, this.home.as_mut()) else {
                        return Poll::Ready(Ok(()));
                    };
                    if this.timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Ok(()));
                    }
                    side.reader.discard();
                    match ready!(side.reader.poll_fill(&mut side.io, cx, true)) {
                        Ok(0) | Err(_) => return Poll::Ready(Ok(())),
                        Ok(_) => {}
                    }
                }
                State::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// Whether the head is late: `timer` fired and `head_by` has passed. A timer that fired
/// early (armed for an earlier head) is moved to `head_by` and polled there. `armed_for`:
/// the task a pending poll registered, for which the timer need not be polled again until
/// it has fired.
fn head_late(
    mut timer: Pin<&mut Sleep>,
    head_by: Instant,
    armed_for: &mut Option<std::task::Waker>,
    cx: &mut Context<'_>,
) -> bool {
    let armed = armed_for.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
    if armed && !timer.is_elapsed() {
        return false;
    }
    if !armed {
        *armed_for = Some(cx.waker().clone());
    }
    if timer.as_mut().poll(cx).is_pending() {
        return false;
    }
    if Instant::now() >= head_by {
        return true;
    }
    timer.as_mut().reset(head_by);
    timer.poll(cx).is_ready()
}

/// Takes the read side back once the request body has given it up. A body that broke off
/// left bytes that are not a request: the connection will close, and the side stays for
/// the lingering close.
fn reclaim<T>(home: &mut Option<ReadSide<T>>, slot: &Slot<T>, current: &mut Current<T>) {
    if home.is_some() {
        return;
    }
    let back = slot.back.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some((mut side, finished)) = back {
        if !finished {
            current.keep_alive = false;
            current.body_broken = true;
        }
        side.reader.rest();
        *home = Some(side);
    }
}

/// Whether the client has closed (or broken) the connection while its request is all read
/// and nothing is buffered: a pipelined request followed by a half-close is answered.
fn client_gone<T: AsyncRead>(
    home: &mut Option<ReadSide<T>>,
    current: &Current<T>,
    cx: &mut Context<'_>,
) -> bool {
    let Some(side) = home.as_mut() else {
        return false;
    };
    if !side.reader.read.is_empty() || current.body_broken {
        return false;
    }
    // Bytes read here are a pipelined request, kept for after this answer.
    matches!(
        side.reader.poll_fill(&mut side.io, cx, true),
        Poll::Ready(Ok(0) | Err(_))
    )
}

/// The answer to a head that cannot be served (400, 431), written by the codec itself:
/// there is no request to hand the service. The connection closes after it.
fn error_answer<B>(e: HeadError) -> Outbound<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let text = e.message();
    let mut headers = HeaderMap::with_capacity(4);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len() + 1));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(header::DATE, date());
    let mut out = Vec::new();
    write::response_head(&mut out, e.status(), None, &headers, None);
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
    Outbound::head_only(out)
}

/// The current time as an HTTP date, formatted once a second per thread.
fn date() -> HeaderValue {
    use std::cell::RefCell;
    use std::time::SystemTime;
    thread_local! {
        static CACHED: RefCell<(u64, Option<HeaderValue>)> = const { RefCell::new((0, None)) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs || c.1.is_none() {
            let v = HeaderValue::from_str(&httpdate::fmt_http_date(now))
                .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
            *c = (secs, Some(v));
        }
        c.1.clone().expect("just set")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const SETTINGS: Settings = Settings {
        limits: Limits {
            max_head_bytes: 8192,
        },
        header_read_timeout: Duration::from_secs(10),
    };

    type Answer = Result<Response<Full<Bytes>>, std::convert::Infallible>;

    // Portico's own answers: no member spelling (the pipelined test gives one in the
    // extensions, as a hand-built answer may).
    impl Spelled for Full<Bytes> {}

    /// A server on loopback serving one connection with `service`, and a client socket.
    async fn server<S, F>(service: S) -> (TcpStream, tokio::task::JoinHandle<io::Result<()>>)
    where
        S: Fn(Request<RequestBody<TcpStream>>) -> F + Send + 'static,
        F: Future<Output = Answer> + Send + 'static,
    {
        server_with(SETTINGS, service).await
    }

    async fn server_with<S, F>(
        settings: Settings,
        service: S,
    ) -> (TcpStream, tokio::task::JoinHandle<io::Result<()>>)
    where
        S: Fn(Request<RequestBody<TcpStream>>) -> F + Send + 'static,
        F: Future<Output = Answer> + Send + 'static,
    {
        let service = hyper::service::service_fn(service);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            serve(s, Bytes::new(), settings, service).await
        });
        (TcpStream::connect(addr).await.unwrap(), task)
    }

    /// Reads until `end` has been seen `times` times, or fails the test after 10 s.
    async fn read_until(s: &mut TcpStream, end: &[u8], times: usize) -> String {
        let read = async {
            let mut got = Vec::new();
            while got.windows(end.len()).filter(|w| *w == end).count() < times {
                let mut b = [0u8; 1];
                if s.read(&mut b).await.unwrap() == 0 {
                    break;
                }
                got.push(b[0]);
            }
            String::from_utf8(got).unwrap()
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the server stopped answering")
    }

    /// The header timeout counts from the last answer: a connection busy past its first
    /// deadline stays open, and one idle for the timeout after its last answer closes then.
    /// On tokio's paused clock, so the figures are exact whatever the machine's load.
    #[tokio::test(start_paused = true)]
    async fn the_header_timeout_counts_from_the_last_answer() {
        let settings = Settings {
            header_read_timeout: Duration::from_secs(10),
            ..SETTINGS
        };
        let (mut c, task) = server_with(settings, |_req: Request<RequestBody<TcpStream>>| async {
            Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
        })
        .await;
        for gap in [0, 6, 6, 9] {
            // 6 + 6: the second request's answer is past the first answer's deadline.
            tokio::time::sleep(Duration::from_secs(gap)).await;
            c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                .await
                .unwrap();
            let got = read_until(&mut c, b"ok", 1).await;
            assert!(
                got.starts_with("HTTP/1.1 200 OK\r\n"),
                "after {gap} s: {got}"
            );
        }
        let answered = tokio::time::Instant::now();
        let mut b = [0u8; 1];
        assert_eq!(
            c.read(&mut b).await.unwrap(),
            0,
            "closed, with nothing sent"
        );
        let idle = answered.elapsed();
        assert!(
            idle >= Duration::from_secs(10) && idle < Duration::from_secs(11),
            "closed after {idle:?} idle"
        );
        task.await.unwrap().unwrap();
    }

    /// A client that trickles its head a byte at a time, each within the timeout, is still
    /// closed when the whole head is late (slowloris): the timer is not polled on every
    /// byte, and must fire all the same. On tokio's paused clock.
    #[tokio::test(start_paused = true)]
    async fn a_head_trickled_byte_by_byte_is_cut_at_the_header_timeout() {
        let settings = Settings {
            header_read_timeout: Duration::from_secs(3),
            ..SETTINGS
        };
        let (mut c, task) = server_with(settings, |_req: Request<RequestBody<TcpStream>>| async {
            Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
        })
        .await;
        // An answer first: the second head's deadline counts from it, and the timer armed
        // for the first has to be moved.
        c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        assert!(read_until(&mut c, b"ok", 1)
            .await
            .starts_with("HTTP/1.1 200 OK\r\n"));
        let answered = tokio::time::Instant::now();
        let mut refused_after = None;
        for &b in b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Pad: aaaaaaaa\r\n\r\n" {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if c.write_all(&[b]).await.is_err() {
                refused_after = Some(answered.elapsed());
                break;
            }
            let mut one = [0u8; 1];
            match tokio::time::timeout(Duration::from_millis(1), c.read(&mut one)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    refused_after = Some(answered.elapsed());
                    break;
                }
                Ok(Ok(_)) => panic!("the trickled head was answered"),
                Err(_) => {}
            }
        }
        let waited = refused_after.expect("the trickled head was never cut");
        assert!(
            waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
            "cut after {waited:?}; the header timeout is 3 s"
        );
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn keep_alive_pipelined_requests_are_answered_in_order_in_the_spelling_given() {
        let (mut c, _task) = server(|req: Request<RequestBody<TcpStream>>| async move {
            let mut r = Response::new(Full::new(Bytes::from(req.uri().path().to_owned())));
            // As a member's response arrives: a spelling, and a reason of its own.
            let raw = b"HTTP/1.1 200 Fine\r\nWWW-Authenticate: NTLM\r\nContent-Length: 0\r\n\r\n";
            let mut buf = bytes::BytesMut::from(&raw[..]);
            let head = head::parse_response(&mut buf, SETTINGS.limits, false)
                .unwrap()
                .unwrap();
            *r.headers_mut() = head.headers;
            r.headers_mut().remove(header::CONTENT_LENGTH);
            r.extensions_mut().insert(head.spelling.unwrap());
            r.extensions_mut().insert(Reason(head.reason));
            Ok(r)
        })
        .await;
        c.write_all(b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let got = read_until(&mut c, b"/one", 1).await + &read_until(&mut c, b"/two", 1).await;
        assert!(got.starts_with("HTTP/1.1 200 Fine\r\n"), "{got}");
        assert!(got.contains("\r\nWWW-Authenticate: NTLM\r\n"), "{got}");
        assert!(got.contains("\r\nContent-Length: 4\r\n"), "{got}");
        assert!(got.contains("\r\nDate: "), "{got}");
        assert!(!got.contains("onnection: close"), "{got}");
        assert!(got.find("/one").unwrap() < got.find("/two").unwrap());
    }

    #[tokio::test]
    async fn a_body_is_streamed_after_100_continue_and_the_connection_serves_the_next_request() {
        let (mut c, _task) = server(|req: Request<RequestBody<TcpStream>>| async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            Ok(Response::new(Full::new(Bytes::from(format!(
                "got {}",
                body.len()
            )))))
        })
        .await;
        c.write_all(
            b"POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
        let interim = read_until(&mut c, b"\r\n\r\n", 1).await;
        assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
        c.write_all(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            .await
            .unwrap();
        let got = read_until(&mut c, b"got 11", 1).await;
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        c.write_all(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
            .await
            .unwrap();
        read_until(&mut c, b"got 3", 1).await;
    }

    #[tokio::test]
    async fn bad_heads_get_an_answer_and_the_connection_closes() {
        for (raw, status) in [
            (&b"GET /a HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"[..], "400"),
            (&b"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n"[..], "400"),
            // httparse takes it, `http::Uri` does not: refused, never routed as `/`.
            (&b"GET /a<b> HTTP/1.1\r\nHost: a\r\n\r\n"[..], "400"),
            (&b"GET /a?b\"c HTTP/1.1\r\nHost: a\r\n\r\n"[..], "400"),
        ] {
            let (mut c, task) =
                server(|_req| async { Ok(Response::new(Full::new(Bytes::new()))) }).await;
            c.write_all(raw).await.unwrap();
            let got = read_until(&mut c, b"\n\n", 9).await;
            assert!(got.starts_with(&format!("HTTP/1.1 {status} ")), "{got}");
            assert!(got.contains("Connection: close"), "{got}");
            tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap().unwrap();
        }
        let (mut c, _task) =
            server(|_req| async { Ok(Response::new(Full::new(Bytes::new()))) }).await;
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
            "x".repeat(9000)
        );
        c.write_all(big.as_bytes()).await.unwrap();
        let got = read_until(&mut c, b"\n\n", 9).await;
        assert!(got.starts_with("HTTP/1.1 431 "), "{got}");
    }

    #[tokio::test]
    async fn pipelined_requests_then_a_half_close_are_all_answered() {
        let (mut c, _task) = server(|req: Request<RequestBody<TcpStream>>| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(Response::new(Full::new(Bytes::from(
                req.uri().path().to_owned(),
            ))))
        })
        .await;
        c.write_all(b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        c.shutdown().await.unwrap();
        let got = read_until(&mut c, b"/two", 1).await;
        assert!(got.contains("/one"), "{got}");
    }

    #[tokio::test]
    async fn a_head_answer_of_unknown_size_does_not_claim_an_empty_resource() {
        struct Unknown;
        impl Spelled for Unknown {}
        impl Body for Unknown {
            type Data = Bytes;
            type Error = std::convert::Infallible;
            fn poll_frame(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
                Poll::Ready(None)
            }
            // As a member's body to a HEAD: over at once, whatever size the member said.
            fn size_hint(&self) -> SizeHint {
                SizeHint::with_exact(0)
            }
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let svc = hyper::service::service_fn(|_req: Request<RequestBody<TcpStream>>| async {
                Ok::<_, std::convert::Infallible>(Response::new(Unknown))
            });
            serve(s, Bytes::new(), SETTINGS, svc).await
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"HEAD /file HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let got = read_until(&mut c, b"\r\n\r\n", 1).await;
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(!got.contains("Content-Length"), "{got}");
        assert!(!got.contains("Transfer-Encoding"), "{got}");
    }

    #[tokio::test]
    async fn a_client_that_goes_away_cancels_the_request_it_left() {
        struct Dropped(Arc<AtomicUsize>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicUsize::new(0));
        let d = Arc::clone(&dropped);
        let (mut c, task) = server(move |_req| {
            let guard = Dropped(Arc::clone(&d));
            async move {
                let _guard = guard;
                // A long poll: the member answers in minutes.
                tokio::time::sleep(Duration::from_secs(600)).await;
                Ok(Response::new(Full::new(Bytes::new())))
            }
        })
        .await;
        c.write_all(b"GET /poll HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            0,
            "the request is being served"
        );
        drop(c);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            1,
            "the abandoned request was dropped"
        );
    }

    #[tokio::test]
    async fn an_upgrade_hands_over_the_connection_after_the_101() {
        let (tx, rx) = oneshot::channel();
        let tx = std::sync::Mutex::new(Some(tx));
        let (mut c, _task) = server(move |req: Request<RequestBody<TcpStream>>| {
            let on = req
                .extensions()
                .get::<OnUpgrade<TcpStream>>()
                .unwrap()
                .take()
                .unwrap();
            let _ = tx.lock().unwrap().take().unwrap().send(on);
            async {
                let mut r = Response::new(Full::new(Bytes::new()));
                *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                r.headers_mut()
                    .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                Ok(r)
            }
        })
        .await;
        c.write_all(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly")
            .await
            .unwrap();
        let head = read_until(&mut c, b"\r\n\r\n", 1).await;
        assert!(
            head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{head}"
        );
        let mut up = rx
            .await
            .unwrap()
            .await
            .expect("the connection is handed over");
        assert_eq!(&up.read_ahead[..], b"early");
        up.io.write_all(b"frames").await.unwrap();
        assert_eq!(read_until(&mut c, b"frames", 1).await, "frames");
    }
}
