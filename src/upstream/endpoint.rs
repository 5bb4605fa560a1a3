//! One member reached one way (clear text or TLS): the single owner of every connection to
//! it. Pooled, leased and pinned connections, the pinned-connection cap and the counters all
//! live here, and [`Endpoint::send`] is the one send path, returning a [`SendError`] that says
//! who failed and what a caller may retry.

use super::error::{ErrorKind, SendError};
use super::{Connector, MemberBody, MemberConn, MemberIo, RequestBody, Target};
use crate::http1::client;
use crate::http1::write::Added;
use crate::http1::Upgraded;
use crate::worker::Counter;
use http::{Request, Response};
use http_body::Body;
use rustls::pki_types::ServerName;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::pool::Pool;

/// Live counters of one endpoint; the status page and metrics add up a member's two. The
/// ones every request writes are per-worker [`Counter`]s; `pinned` stays one atomic, since a
/// pin is checked against the cap by its previous value.
#[derive(Default)]
pub struct EndpointStats {
    /// Requests sent here whose response body is not done yet (a gauge).
    pub in_flight: Counter,
    /// Requests sent here; each failover attempt counts on the member it tried.
    pub requests: Counter,
    /// Exchanges the member failed (never Portico's or the client's failures).
    pub failures: Counter,
    /// Request body bytes forwarded to the member.
    pub bytes_in: Counter,
    /// Response body bytes streamed back from the member.
    pub bytes_out: Counter,
    /// Client connections holding a private (NTLM/Negotiate) connection here.
    pub pinned: AtomicU64,
    /// New connections opened, and requests sent on a pooled one.
    pub created: Counter,
    /// Requests sent on a pooled connection (see `created`).
    pub reused: Counter,
}

impl EndpointStats {
    /// Zeroes the totals (the status page's "reset counters"); live gauges stay.
    pub fn reset(&self) {
        for c in [
            &self.requests,
            &self.failures,
            &self.bytes_in,
            &self.bytes_out,
            &self.created,
            &self.reused,
        ] {
            c.reset();
        }
    }
}

/// How one send reaches the endpoint: the farm's settings at the time of the request (a
/// reload may change them while the endpoint, and its pool, live on). The pin cap is not
/// here: it is checked where a lease is pinned (`Lease::pin`).
pub struct Reach<'a> {
    /// The snapshot's connector: resolver overrides and source address for new connections.
    pub connector: &'a Connector,
    /// TLS client settings; None for clear text.
    pub tls: Option<&'a Arc<rustls::ClientConfig>>,
    /// The farm's `connect_timeout`, for the TCP connect and again for the TLS handshake.
    pub connect_timeout: Duration,
    /// Per-read idle timeout, and the limit for a bodyless request's response head.
    pub read_timeout: Duration,
    /// The farm's `pool_idle_timeout`: a pooled connection idle longer is dropped, not reused.
    pub pool_idle_timeout: Duration,
}

/// A member address and port, with its connections.
pub struct Endpoint {
    host: String,
    ip: Option<IpAddr>,
    port: u16,
    server_name: Option<ServerName<'static>>,
    pool: Pool,
    /// This endpoint's counters, read by the status page and metrics.
    pub stats: EndpointStats,
}

/// A response head from the member, and the lease on the connection it came on.
pub struct Exchange {
    /// The member's response head; its body still streams from the member (and owns the
    /// connection while it does), or the member switched protocols.
    pub response: Response<Reply>,
    /// What becomes of the connection when the body ends: pooled again, or pinned to the
    /// client connection (`Lease::pin`).
    pub lease: Lease,
}

/// What follows a member's response head.
#[allow(clippy::large_enum_variant)] // a body is the common case: boxed, it would cost an allocation per request
pub enum Reply {
    /// The body, streaming.
    Body(MemberBody),
    /// A 101: the connection now carries the protocol the client asked for.
    Switched(Upgraded<MemberIo>),
}

impl Endpoint {
    /// `host` at a fixed `ip` (None: resolved at each connect) and `port`, keeping at most
    /// `max_idle` idle connections.
    pub fn new(host: &str, ip: Option<IpAddr>, port: u16, max_idle: usize) -> Endpoint {
        Endpoint {
            host: host.to_owned(),
            ip,
            port,
            server_name: super::server_name(host),
            pool: Pool::new(max_idle),
            stats: EndpointStats::default(),
        }
    }

    /// Idle pooled connections now.
    pub fn idle(&self) -> usize {
        self.pool.len()
    }

    /// Drops every idle connection (member drained or taken out).
    pub fn clear(&self) {
        self.pool.clear();
    }

    /// Whether one more connection may be pinned here.
    pub fn has_pin_room(&self, cap: u32) -> bool {
        self.stats.pinned.load(Ordering::Relaxed) < u64::from(cap)
    }

    /// Sends on a pooled connection or on a new one. A pooled connection that fails before
    /// a byte of the request is written costs nothing: the request comes back whole and the
    /// next connection is tried. One that dies under an idempotent bodyless request returns
    /// a copy of it with [`Retry::Idempotent`](super::Retry), which HTTP allows to send once
    /// more (RFC 9110 9.2.2).
    ///
    /// Not an async fn, nor is `send_new`: see [`Exchanging`].
    pub fn send<'a>(
        self: &'a Arc<Self>,
        reach: &'a Reach<'a>,
        req: Request<RequestBody>,
        added: Added<'a>,
    ) -> Exchanging<'a> {
        self.send_with(reach, req, added, true)
    }

    /// Sends on a new connection: the replay of a request whose pooled connection died
    /// (the others in the pool may be as dead, if the member restarted).
    pub fn send_new<'a>(
        self: &'a Arc<Self>,
        reach: &'a Reach<'a>,
        req: Request<RequestBody>,
        added: Added<'a>,
    ) -> Exchanging<'a> {
        self.send_with(reach, req, added, false)
    }

    fn send_with<'a>(
        self: &'a Arc<Self>,
        reach: &'a Reach<'a>,
        mut req: Request<RequestBody>,
        added: Added<'a>,
        pooled: bool,
    ) -> Exchanging<'a> {
        req.body_mut().count_into(self);
        Exchanging {
            endpoint: Some(self),
            reach,
            added,
            state: self.start(reach, req, added, pooled),
        }
    }

    /// The first or next try of a request: on a pooled connection if one is idle (and
    /// `pooled`), else on a new one.
    fn start<'a>(
        self: &'a Arc<Self>,
        reach: &'a Reach<'a>,
        req: Request<RequestBody>,
        added: Added<'a>,
        pooled: bool,
    ) -> Try<'a> {
        if let Some(conn) = pooled
            .then(|| self.pool.checkout(reach.pool_idle_timeout))
            .flatten()
        {
            self.stats.reused.add(1);
            return Try::Sending {
                sent: send_on(conn, req, added, reach.read_timeout),
                how: How::Pooled,
            };
        }
        Try::Connecting {
            connect: Box::pin(self.connect(reach)),
            req: Some(req),
        }
    }

    fn exchange(self: &Arc<Self>, response: Response<Reply>, pinned: bool) -> Exchange {
        Exchange {
            response,
            lease: Lease {
                endpoint: Arc::clone(self),
                pinned,
            },
        }
    }

    async fn connect(&self, reach: &Reach<'_>) -> Result<MemberConn, ErrorKind> {
        let tls = match (reach.tls, &self.server_name) {
            (Some(cfg), Some(name)) => Some((cfg, name)),
            (Some(_), None) => {
                return Err(ErrorKind::Config(format!(
                    "{:?} is not a valid TLS server name",
                    self.host
                )))
            }
            (None, _) => None,
        };
        let target = Target {
            host: &self.host,
            ip: self.ip,
            port: self.port,
            tls,
            connect_timeout: reach.connect_timeout,
            idle_timeout: reach.read_timeout,
        };
        // Not boxed here: `Try::Connecting` boxes this whole future (the TLS handshake's
        // state is large and must not stay in every held request).
        reach
            .connector
            .connect(&target)
            .await
            .map_err(ErrorKind::from_connect)
    }
}

/// Sends and waits for the response head. The per-read idle timeout cannot stop a member
/// that trickles header bytes, so a bodyless request's head must arrive within `timeout` in
/// all. (With a body the member may rightly answer only after a long upload.)
///
/// The head timer costs nothing in the common case: a head almost always comes whole with
/// the first wake-up after the request is written, so the timer is registered only when
/// the future is woken again without a head (a member trickling it). A member that sends
/// nothing at all wakes nobody, and is cut by the connection's idle timeout at the same
/// moment. Registering and clearing a tokio timer per request was 1.2% of its
/// instructions (callgrind).
fn send_on(
    mut conn: MemberConn,
    req: Request<RequestBody>,
    added: Added<'_>,
    timeout: Duration,
) -> SendOn {
    // The idle cut above relies on the connection's timeout being this request's: one made
    // before a reload changed the farm's `timeout` takes the new one here.
    conn.io_mut().set_timeout(timeout);
    let bodyless = req.body().is_end_stream();
    SendOn {
        sent: conn.send_adding(req, added),
        head_deadline: None,
        since: bodyless.then(tokio::time::Instant::now),
        waited: false,
        timeout,
    }
}

pin_project_lite::pin_project! {
    /// [`send_on`]'s future.
    struct SendOn {
        #[pin]
        sent: client::Sending<MemberIo, RequestBody>,
        #[pin]
        head_deadline: Option<tokio::time::Sleep>,
        // When a bodyless request was sent; `None` for one with a body (no head deadline).
        since: Option<tokio::time::Instant>,
        // Polled once already without a head.
        waited: bool,
        timeout: Duration,
    }
}

impl std::future::Future for SendOn {
    type Output = Result<Response<Reply>, SendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(result) = this.sent.poll(cx) {
            return Poll::Ready(match result {
                Ok(client::Exchange::Response(r)) => Ok(r.map(Reply::Body)),
                Ok(client::Exchange::Upgraded(head, io)) => {
                    let (parts, ()) = head.into_parts();
                    Ok(Response::from_parts(parts, Reply::Switched(io)))
                }
                Err(f) => {
                    let mut e = SendError::from_failure(f, *this.timeout);
                    // No head, and nothing came for the whole timeout: for a bodyless request
                    // that is the head deadline passing (the idle cut came first).
                    if this.since.is_some() && matches!(e.kind, ErrorKind::IdleTimeout(_)) {
                        e.kind = ErrorKind::HeadTimeout(*this.timeout);
                    }
                    Err(e)
                }
            });
        }
        let Some(since) = *this.since else {
            return Poll::Pending;
        };
        if !std::mem::replace(this.waited, true) {
            return Poll::Pending;
        }
        if this.head_deadline.is_none() {
            this.head_deadline
                .set(Some(tokio::time::sleep_until(since + *this.timeout)));
        }
        let fired = this
            .head_deadline
            .as_pin_mut()
            .is_some_and(|d| d.poll(cx).is_ready());
        if fired {
            return Poll::Ready(Err(SendError::new(
                ErrorKind::HeadTimeout(*this.timeout),
                None,
            )));
        }
        Poll::Pending
    }
}

/// A member connection lent to one exchange. The connection itself travels in the response
/// body while it streams; when the body has ended cleanly, [`Lease::release`] puts it back
/// in the pool, or hands it over as the client connection's own (a pinned lease). A body
/// dropped before its end (client gone mid-body, a failure) closes its connection, since
/// HTTP/1.1 cannot start the next exchange mid-body.
pub struct Lease {
    endpoint: Arc<Endpoint>,
    /// Counted in `stats.pinned` while true.
    pinned: bool,
}

impl Lease {
    /// Makes the connection private to one client connection (NTLM/Negotiate), if the
    /// endpoint is under `cap`; gives the lease back unchanged otherwise.
    pub fn pin(mut self, cap: u32) -> Result<Lease, Lease> {
        if self.pinned {
            return Ok(self);
        }
        let prev = self.endpoint.stats.pinned.fetch_add(1, Ordering::Relaxed);
        if prev >= u64::from(cap) {
            self.endpoint.stats.pinned.fetch_sub(1, Ordering::Relaxed);
            return Err(self);
        }
        self.pinned = true;
        Ok(self)
    }

    /// Whether the connection belongs to one client connection.
    pub fn is_pinned(&self) -> bool {
        self.pinned
    }

    /// The response body ended cleanly and `conn` may serve another request: into the
    /// pool, or, pinned, back to the client connection that owns it.
    pub fn release(self, conn: MemberConn) -> Option<Pinned> {
        if self.pinned {
            return Some(Pinned { lease: self, conn });
        }
        self.endpoint.pool.put(conn);
        None
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.pinned {
            self.endpoint.stats.pinned.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A member connection owned by one client connection: Windows authentication
/// authenticates a TCP connection, so it never returns to the shared pool.
pub struct Pinned {
    lease: Lease,
    conn: MemberConn,
}

impl Pinned {
    /// The endpoint this connection belongs to, where its requests are counted.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.lease.endpoint
    }

    /// Sends the next request of the authenticated client connection. A pinned
    /// connection the member closed hands the request back unsent: the client must
    /// authenticate again on a new one.
    pub fn send<'a>(
        self,
        reach: &'a Reach<'a>,
        mut req: Request<RequestBody>,
        added: Added<'a>,
    ) -> Exchanging<'a> {
        let Pinned { lease, mut conn } = self;
        req.body_mut().count_into(&lease.endpoint);
        let state = if conn.check_idle().is_err() {
            Try::Failed {
                error: Some(SendError::new(ErrorKind::NotSent, Some(req))),
            }
        } else {
            Try::Sending {
                sent: send_on(conn, req, added, reach.read_timeout),
                how: How::Pinned(Some(lease)),
            }
        };
        Exchanging {
            endpoint: None,
            reach,
            added,
            state,
        }
    }
}

pin_project_lite::pin_project! {
    /// One request's exchange with an endpoint, up to the response head:
    /// [`Endpoint::send`], [`Endpoint::send_new`] and [`Pinned::send`]. A named future, not
    /// an async fn: an async fn keeps its arguments beside the locals moved out of them,
    /// and this future is part of every request waiting on a member (a long poll) and is
    /// moved several times before it is polled (`-Zprint-type-sizes`: the async fns were
    /// 1,168 and 1,320 bytes).
    pub struct Exchanging<'a> {
        // Where a pooled connection that died unused is replaced from, and new leases
        // come from; `None` for a pinned connection, which is tried alone.
        endpoint: Option<&'a Arc<Endpoint>>,
        reach: &'a Reach<'a>,
        // Fields written after the request's own, on every try.
        added: Added<'a>,
        #[pin]
        state: Try<'a>,
    }
}

pin_project_lite::pin_project! {
    #[project = TryProj]
    enum Try<'a> {
        Sending {
            #[pin]
            sent: SendOn,
            how: How,
        },
        // Boxed: the TLS handshake's state is large and rare.
        Connecting {
            connect: Pin<Box<dyn std::future::Future<Output = Result<MemberConn, ErrorKind>> + Send + 'a>>,
            req: Option<Request<RequestBody>>,
        },
        Failed {
            error: Option<SendError>,
        },
    }
}

/// Which connection a try is on, which decides what its failure allows.
enum How {
    /// From the pool: one that died before taking the request is replaced.
    Pooled,
    /// New: its failure is final (a replay was this very try).
    Fresh,
    /// The client connection's own, with its lease: tried alone.
    Pinned(Option<Lease>),
}

impl std::future::Future for Exchanging<'_> {
    type Output = Result<Exchange, SendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                TryProj::Sending { sent, how } => {
                    let result = std::task::ready!(sent.poll(cx));
                    let endpoint = match (how, *this.endpoint) {
                        (How::Pinned(lease), _) => {
                            let lease = lease.take().expect("polled after it answered");
                            return Poll::Ready(
                                result.map(|response| Exchange { response, lease }),
                            );
                        }
                        (_, None) => unreachable!("only a pinned try has no endpoint"),
                        (How::Fresh, Some(e)) => {
                            return Poll::Ready(match result {
                                Ok(response) => Ok(e.exchange(response, false)),
                                Err(err) => Err(err.without_replay()),
                            });
                        }
                        (How::Pooled, Some(e)) => e,
                    };
                    // Even a connection that looked alive may be one the member is closing
                    // (it was restarted, an app pool recycled): one that took nothing hands
                    // the request back for the next; an idempotent one that took it comes
                    // back in the error (`http1::client` keeps its written head).
                    match result {
                        Ok(response) => return Poll::Ready(Ok(endpoint.exchange(response, false))),
                        Err(mut err) => match err.take_unsent() {
                            Some(back) => {
                                let next = endpoint.start(this.reach, back, this.added, true);
                                this.state.set(next);
                            }
                            None => return Poll::Ready(Err(err)),
                        },
                    }
                }
                TryProj::Connecting { connect, req } => {
                    let connected = std::task::ready!(connect.as_mut().poll(cx));
                    let req = req.take().expect("polled after it answered");
                    let endpoint = this.endpoint.expect("only a pooled or fresh try connects");
                    match connected {
                        Ok(conn) => {
                            endpoint.stats.created.add(1);
                            this.state.set(Try::Sending {
                                sent: send_on(conn, req, this.added, this.reach.read_timeout),
                                how: How::Fresh,
                            });
                        }
                        Err(kind) => return Poll::Ready(Err(SendError::new(kind, Some(req)))),
                    }
                }
                TryProj::Failed { error } => {
                    return Poll::Ready(Err(error.take().expect("polled after it answered")))
                }
            }
        }
    }
}

/// Counts a request as in flight on its endpoint until the response body is done or dropped.
pub struct InFlight(Arc<Endpoint>);

impl InFlight {
    /// Counts one more request on `endpoint`, in flight until this is dropped.
    pub fn new(endpoint: &Arc<Endpoint>) -> Self {
        endpoint.stats.in_flight.add(1);
        endpoint.stats.requests.add(1);
        InFlight(Arc::clone(endpoint))
    }

    /// The endpoint the request went to; the response body adds its bytes there.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.stats.in_flight.sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pooled connection the member reset before it took a byte hands the request back,
    /// read from its written head; the next try adds the forwarding fields again, so the
    /// request read back must not carry them (found by review: the member got them twice).
    /// Deterministic: nothing lets the reactor see the reset before the pooled connection
    /// is checked out, so `check_idle` passes and the write fails.
    #[tokio::test]
    async fn a_request_back_from_a_dead_pooled_connection_carries_its_added_fields_once() {
        use crate::http1::X_FORWARDED_FOR;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let endpoint = Arc::new(Endpoint::new("127.0.0.1", Some(addr.ip()), addr.port(), 8));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (dead, _) = l.accept().await.unwrap();
        let member = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut b).await.unwrap();
                assert!(n > 0);
                head.extend_from_slice(&b[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(head).unwrap()
        });
        socket2::SockRef::from(&dead)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(dead); // a reset
        endpoint.pool.put(super::super::open(
            crate::stream::Stream::Plain(tcp),
            Duration::from_secs(5),
        ));
        let connector = Connector::new(Arc::new(Default::default()), None);
        let reach = Reach {
            connector: &connector,
            tls: None,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(60),
        };
        let peer = http::HeaderValue::from_static("192.0.2.7");
        let added = [(&X_FORWARDED_FOR, &peer)];
        let req = Request::get("/")
            .header("host", "a")
            .body(RequestBody::Empty)
            .unwrap();
        let r = endpoint.send(&reach, req, &added).await;
        assert!(r.is_ok(), "{:?}", r.err());
        assert_eq!(
            endpoint.stats.reused.get(),
            1,
            "the pooled connection was tried"
        );
        let head = member.await.unwrap();
        assert_eq!(
            head, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n",
            "as the member got it"
        );
    }

    /// A connection opened (pooled or pinned) before a reload lowered the farm's timeout
    /// keeps its old idle timeout; a bodyless request to a member that says nothing must
    /// still get its 504 at the farm's new head timeout. On tokio's paused clock, so the
    /// figures are exact whatever the machine's load. (Found by review: without
    /// `set_timeout` the request waited the connection's 100 s.)
    #[tokio::test(start_paused = true)]
    async fn a_silent_member_is_cut_at_the_farms_timeout_not_the_connections_old_one() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let _member = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(s);
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Opened when the farm's timeout was 100 s.
        let conn = super::super::open(crate::stream::Stream::Plain(tcp), Duration::from_secs(100));
        let req = Request::get("/")
            .header("host", "a")
            .body(RequestBody::Empty)
            .unwrap();
        let t0 = tokio::time::Instant::now();
        // The farm's timeout is 5 s now.
        let Err(err) = send_on(conn, req, &[], Duration::from_secs(5)).await else {
            panic!("answered")
        };
        let took = t0.elapsed();
        assert!(
            matches!(err.kind, ErrorKind::HeadTimeout(_))
                && took >= Duration::from_secs(5)
                && took < Duration::from_secs(6),
            "{err:?} after {took:?}"
        );
    }
}
