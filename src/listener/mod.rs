//! Client-facing sockets: accept, TLS (SNI + ALPN), then HTTP/1.1 or h2 into `proxy::handle`.

mod clear_text;
pub mod graceful;
pub mod proxy_protocol;

use crate::config::{Cidr, ListenerConfig};
use crate::downstream::{ClientBody, ClientIo};
use crate::http1::server::RequestBody as Http1Body;
use crate::perimeter::ratelimit::{RateLimiter, RateSpec};
use crate::proxy::{self, ConnInfo, Proxy};
use crate::tls::ListenerTls;
use arc_swap::ArcSwap;
use graceful::{GracefulShutdown, Watcher};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What a running listener needs from its config, cloned out so a reload can swap it.
#[derive(Clone)]
pub struct ListenerSettings {
    /// The listener's name in logs and on the status page.
    pub name: String,
    /// Certificates, SNI and ALPN for HTTPS; None for plain HTTP.
    pub tls: Option<Arc<ListenerTls>>,
    /// Time to receive a PROXY header or a request head; also closes idle keep-alive connections.
    pub header_read_timeout: Duration,
    /// Largest request head in bytes; a larger one gets Portico's 431.
    pub max_header_bytes: usize,
    /// Concurrent streams allowed per h2 connection.
    pub h2_max_concurrent_streams: u32,
    /// Open connections on this listener; one more is closed at once.
    pub max_connections: usize,
    /// Open connections per client IP (from the PROXY header when there is one).
    pub max_connections_per_client: usize,
    /// Peers whose X-Forwarded-For is extended; everyone else's is replaced.
    pub trusted_proxies: Vec<Cidr>,
    /// Peers allowed to send a PROXY protocol header; empty = PROXY protocol off.
    pub proxy_protocol_from: Vec<Cidr>,
    /// New connections per client address, checked once the client is known (after PROXY).
    pub max_connection_rate: Option<(RateSpec, usize)>,
}

impl From<&ListenerConfig> for ListenerSettings {
    fn from(l: &ListenerConfig) -> Self {
        ListenerSettings {
            name: l.name.clone(),
            tls: l.tls.clone(),
            header_read_timeout: l.header_read_timeout,
            max_header_bytes: l.max_header_bytes,
            h2_max_concurrent_streams: l.h2_max_concurrent_streams,
            max_connections: l.max_connections,
            max_connections_per_client: l.max_connections_per_client,
            trusted_proxies: l.trusted_proxies.clone(),
            proxy_protocol_from: l.proxy_protocol_from.clone(),
            max_connection_rate: l.max_connection_rate,
        }
    }
}

/// Binds `addr` for a listener without SO_REUSEPORT.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    bind_with(addr, false)
}

/// Binds with SO_REUSEADDR so a restart does not wait for TIME_WAIT; with `reuse_port`, also
/// SO_REUSEPORT so a new process can bind beside this one for a zero-downtime upgrade.
pub fn bind_with(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// h2 settings for hyper's server.
fn http2_builder(s: &ListenerSettings) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_concurrent_streams(s.h2_max_concurrent_streams)
        // Rapid reset (CVE-2023-44487): a client that keeps opening and cancelling
        // streams is sent GOAWAY instead of costing a request each time.
        .max_pending_accept_reset_streams(Some(50))
        .max_local_error_reset_streams(Some(256))
        .max_header_list_size(head_buffer_bytes(s.max_header_bytes) as u32)
        .keep_alive_interval(Some(Duration::from_secs(60)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// The HTTP servers a connection may get, configured from the listener's settings. A TLS
/// connection goes straight to the protocol ALPN chose, a clear-text one to the protocol its
/// first bytes show (`clear_text`). HTTP/1.1 is Portico's own (`http1::server`): names keep
/// the client's spelling towards the member and the member's towards the client (old
/// Outlook builds need it), and a waiting connection holds no buffer.
struct Protocols {
    http1: crate::http1::server::Settings,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

/// The protocol ALPN chose for a TLS connection.
#[derive(Clone, Copy)]
enum Protocol {
    Http1,
    Http2,
}

fn protocols(s: &ListenerSettings) -> Protocols {
    Protocols {
        http1: crate::http1::server::Settings {
            limits: crate::http1::head::Limits {
                max_head_bytes: head_buffer_bytes(s.max_header_bytes),
            },
            header_read_timeout: s.header_read_timeout,
        },
        http2: http2_builder(s),
    }
}

/// How much head the servers may read: above the configured limit, so a head a little over
/// it still parses and gets Portico's 431 naming `max_header_bytes`
/// (`proxy::check_head_size`) instead of a bare one.
fn head_buffer_bytes(max_header_bytes: usize) -> usize {
    max_header_bytes
        .saturating_add(max_header_bytes / 2)
        .max(8192)
}

/// Open connections of one listener, in total and per client address. Lives as long as the
/// listener (not the config), so a reload does not forget who is connected.
#[derive(Default)]
pub struct ConnectionCounts {
    total: std::sync::atomic::AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; gives its place back when dropped.
pub struct Admitted {
    counts: Arc<ConnectionCounts>,
    client: IpAddr,
}

impl ConnectionCounts {
    /// Admits a connection from `client` unless a limit is reached.
    pub fn admit(
        self: &Arc<Self>,
        client: IpAddr,
        max_total: usize,
        max_per_client: usize,
    ) -> Result<Admitted, &'static str> {
        use std::sync::atomic::Ordering;
        if self.total.fetch_add(1, Ordering::Relaxed) >= max_total {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err("listener connection limit reached");
        }
        let mut per = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
        let n = per.entry(client).or_insert(0);
        if *n >= max_per_client {
            drop(per);
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err("per-client connection limit reached");
        }
        *n += 1;
        Ok(Admitted {
            counts: Arc::clone(self),
            client,
        })
    }

    /// Connections open on the listener now, all clients together.
    pub fn open(&self) -> usize {
        self.total.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.counts
            .total
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let mut per = self
            .counts
            .per_client
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.client);
            }
        }
    }
}

/// A listener's settings with the HTTP builder made from them; swapped whole on reload so
/// new connections get new certificates and limits while open ones keep theirs.
pub struct ListenerRuntime {
    /// The settings the builder was made from; read per connection by the accept loop.
    pub settings: ListenerSettings,
    protocols: Protocols,
}

impl ListenerRuntime {
    /// Builds the HTTP/1.1 and h2 servers for `settings`.
    pub fn new(settings: ListenerSettings) -> Arc<ListenerRuntime> {
        Arc::new(ListenerRuntime {
            protocols: protocols(&settings),
            settings,
        })
    }
}

/// A connection-rate setting (rate, table cap) and the limiter built for it.
type RateSlot = ((RateSpec, usize), Arc<RateLimiter>);

/// What the accept loops of one listener share across workers: its connection counts and
/// its connection-rate limiter, so limits hold for the listener, not per worker. Lives as
/// long as the listener (not the config), so a reload does not forget who is connected.
#[derive(Default)]
pub struct ListenerShared {
    counts: Arc<ConnectionCounts>,
    /// Connections accepted that have not started a request yet (`proxy::FirstRequest`).
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    /// The limiter and the setting it was built for; rebuilt only when a reload changes it.
    rate: Mutex<Option<RateSlot>>,
}

impl ListenerShared {
    /// Accepted connections whose first request has not started: a shutdown waits for
    /// these before closing idle connections.
    pub fn awaiting_first_request(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The connection-rate limiter for `want`, made (and registered with the perimeter
    /// counters) when the setting first appears or changes.
    fn limiter(
        &self,
        want: Option<(RateSpec, usize)>,
        name: &str,
        proxy: &Proxy,
    ) -> Option<Arc<RateLimiter>> {
        let mut rate = self.rate.lock().unwrap_or_else(|p| p.into_inner());
        let Some(want) = want else {
            *rate = None;
            return None;
        };
        if rate.as_ref().is_none_or(|(have, _)| *have != want) {
            let l = Arc::new(RateLimiter::new(want.0, want.1));
            proxy.perimeter.register_connection_limiter(name, &l);
            *rate = Some((want, l));
        }
        rate.as_ref().map(|(_, l)| Arc::clone(l))
    }
}

/// Accepts until `stop` flips (shutdown, or the listener left the config), then stops
/// accepting; open connections are watched by `graceful` so shutdown can wait for them.
/// With workers (`crate::worker`) each worker runs one of these on its own copy of the
/// socket, sharing `shared`; the kernel hands each new connection to one of them.
pub async fn serve(
    listener: TcpListener,
    runtime: Arc<ArcSwap<ListenerRuntime>>,
    proxy: Arc<Proxy>,
    shared: Arc<ListenerShared>,
    mut stop: watch::Receiver<bool>,
    graceful: Arc<GracefulShutdown>,
) {
    let local = listener.local_addr().ok();
    let mut reserve = Reserve::open();
    let mut stopping = false;
    loop {
        // Once stopped, the connections the kernel already completed are clients that
        // connected before the stop: they are taken (closing the socket would reset them).
        let next = if stopping {
            match sweep(&listener) {
                Some(pair) => pair,
                None => break,
            }
        } else {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok(pair) => pair,
                    Err(e) if crate::upstream::is_local_exhaustion(&e) => {
                        reserve.refuse_one(&listener, &runtime.load().settings.name, &e).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(listener = %runtime.load().settings.name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop.changed() => {
                    stopping = true;
                    continue;
                }
            }
        };
        let (tcp, remote) = next;
        let first = proxy::FirstRequest::new(&shared.waiting);
        let rt = runtime.load_full();
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().ok().or(local).unwrap_or(remote);
        let proxy = Arc::clone(&proxy);
        let watcher = graceful.watcher();
        let counts = Arc::clone(&shared.counts);
        let limiter = shared.limiter(rt.settings.max_connection_rate, &rt.settings.name, &proxy);
        tokio::spawn(async move {
            let mut tcp = tcp;
            let mut remote = remote;
            // Behind an L4 balancer: the PROXY header names the client, and only the
            // configured balancers may send one (anyone else could claim any address).
            if !rt.settings.proxy_protocol_from.is_empty() {
                if !rt
                    .settings
                    .proxy_protocol_from
                    .iter()
                    .any(|c| c.contains(remote.ip()))
                {
                    tracing::warn!(listener = %rt.settings.name, %remote, "connection refused: PROXY protocol is accepted only from the configured source ranges");
                    return;
                }
                match proxy_protocol::read_header(&mut tcp, rt.settings.header_read_timeout).await {
                    Ok(h) => {
                        if let Some(src) = h.source {
                            remote = src;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(listener = %rt.settings.name, %remote, error = %e, "bad PROXY protocol header; connection closed");
                        return;
                    }
                }
            }
            if let Some(l) = &limiter {
                if l.check(remote.ip()).is_err() {
                    proxy
                        .perimeter
                        .rate_limited_connections
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(listener = %rt.settings.name, %remote, "connection refused: max_connection_rate");
                    return;
                }
            }
            let admitted = match counts.admit(
                remote.ip(),
                rt.settings.max_connections,
                rt.settings.max_connections_per_client,
            ) {
                Ok(a) => a,
                Err(why) => {
                    tracing::warn!(listener = %rt.settings.name, %remote, why, "connection refused");
                    return;
                }
            };
            let trusted = rt
                .settings
                .trusted_proxies
                .iter()
                .any(|c| c.contains(remote.ip()));
            match &rt.settings.tls {
                None => {
                    let info = ConnInfo::new(remote, local, false, None)
                        .awaiting_first_request(first)
                        .trusting(trusted)
                        .limiting_head(rt.settings.max_header_bytes);
                    let conn = Conn {
                        info,
                        proxy,
                        watcher,
                        admitted,
                    };
                    serve_clear_text(tcp, conn, Arc::clone(&rt));
                }
                // Boxed: the handshake state is large and is not needed once it is done.
                Some(tls) => match Box::pin(tls.accept(tcp)).await {
                    Ok(acc) => {
                        let info = ConnInfo::new(remote, local, true, Some(acc.version))
                            .awaiting_first_request(first)
                            .trusting(trusted)
                            .limiting_head(rt.settings.max_header_bytes);
                        // h2 over TLS is negotiated by ALPN or not at all (RFC 9113 3.3).
                        let protocol = match acc.alpn {
                            Some(crate::tls::Alpn::H2) => Protocol::Http2,
                            Some(crate::tls::Alpn::Http11) | None => Protocol::Http1,
                        };
                        let conn = Conn {
                            info,
                            proxy,
                            watcher,
                            admitted,
                        };
                        serve_conn(acc.stream, protocol, conn, &rt.protocols);
                    }
                    Err(e) => {
                        tracing::debug!(listener = %rt.settings.name, %remote, error = %e, "TLS handshake failed");
                    }
                },
            }
        });
    }
}

/// One connection already waiting in the backlog, if any: a plain non-blocking accept, since
/// the runtime may not have been told of it yet.
fn sweep(listener: &TcpListener) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    let (sock, addr) = socket2::SockRef::from(listener).accept().ok()?;
    sock.set_nonblocking(true).ok()?;
    let remote = addr.as_socket()?;
    let tcp = tokio::net::TcpStream::from_std(std::net::TcpStream::from(sock)).ok()?;
    Some((tcp, remote))
}

/// What a client connection's task holds beside the connection itself.
struct Conn {
    info: ConnInfo,
    proxy: Arc<Proxy>,
    watcher: Watcher,
    /// The connection's place in the listener's counts.
    admitted: Admitted,
}

impl Conn {
    /// The services that hand each request to `proxy::handle` (one per protocol: the
    /// request bodies differ), and what the connection's task holds beside them: its
    /// watcher, the client's address, its place in the counts.
    #[allow(clippy::type_complexity)] // two services, each named by its bounds only
    fn into_services(
        self,
    ) -> (
        impl hyper::service::Service<
                http::Request<Http1Body<ClientIo>>,
                Response = http::Response<proxy::ResponseBody>,
                Error = proxy::ProxyError,
                Future: Send + 'static,
            > + Send
            + 'static,
        impl hyper::service::Service<
                http::Request<hyper::body::Incoming>,
                Response = http::Response<proxy::ResponseBody>,
                Error = proxy::ProxyError,
                Future: Send + 'static,
            > + Send
            + 'static,
        Watcher,
        SocketAddr,
        Admitted,
    ) {
        let Conn {
            info,
            proxy,
            watcher,
            admitted,
        } = self;
        let info = Arc::new(info);
        let remote = info.remote;
        let (p1, i1) = (Arc::clone(&proxy), Arc::clone(&info));
        let http1 = service_fn(move |req: http::Request<Http1Body<ClientIo>>| {
            proxy::handle(Arc::clone(&p1), Arc::clone(&i1), req.map(ClientBody::Http1))
        });
        let http2 = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            proxy::handle(
                Arc::clone(&proxy),
                Arc::clone(&info),
                req.map(ClientBody::Http2),
            )
        });
        (http1, http2, watcher, remote, admitted)
    }
}

/// Spawns the client connection as its own task once PROXY, admission and TLS are done, so
/// the task that did those ends and frees their state. The future is the connection itself,
/// not wrapped in an async block (see `crate::task`).
fn serve_conn(
    io: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    protocol: Protocol,
    conn: Conn,
    protocols: &Protocols,
) {
    let (http1, http2, watcher, remote, admitted) = conn.into_services();
    match protocol {
        Protocol::Http1 => {
            let io = ClientIo::Tls(Box::new(io));
            let conn = crate::http1::server::serve(io, bytes::Bytes::new(), protocols.http1, http1);
            spawn_watched(conn, watcher, remote, admitted);
        }
        Protocol::Http2 => {
            let conn = protocols.http2.serve_connection(TokioIo::new(io), http2);
            spawn_watched(conn, watcher, remote, admitted);
        }
    }
}

/// [`serve_conn`] for a clear-text connection, whose protocol its first bytes tell.
fn serve_clear_text(tcp: tokio::net::TcpStream, conn: Conn, runtime: Arc<ListenerRuntime>) {
    let (http1, http2, watcher, remote, admitted) = conn.into_services();
    let conn = clear_text::ClearText::new(tcp, http1, http2, runtime);
    spawn_watched(conn, watcher, remote, admitted);
}

fn spawn_watched<C, E>(conn: C, watcher: Watcher, remote: SocketAddr, admitted: Admitted)
where
    C: graceful::Graceful<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + 'static,
{
    tokio::spawn(
        crate::task::Logged::new(
            watcher.watch(conn),
            remote,
            "client connection ended with an error",
        )
        .holding(admitted),
    );
}

/// A descriptor held back for the moment the process runs out of them: freed, it lets the
/// listener accept the waiting client and close it at once (a clean refusal) instead of
/// leaving it hanging in the backlog while accept fails in a loop.
struct Reserve {
    file: Option<std::fs::File>,
    refused: u64,
}

impl Reserve {
    fn open() -> Reserve {
        Reserve {
            file: std::fs::File::open("/dev/null").ok(),
            refused: 0,
        }
    }

    async fn refuse_one(&mut self, listener: &TcpListener, name: &str, e: &std::io::Error) {
        self.refused += 1;
        // One line per 1,000 refusals: a surge must not also flood the log.
        if self.refused % 1000 == 1 {
            tracing::error!(listener = %name, error = %e, refused = self.refused, "out of file descriptors: refusing new client connections (raise the open-files limit or lower max_connections)");
        }
        if self.file.take().is_some() {
            if let Ok(Ok((tcp, _))) =
                tokio::time::timeout(Duration::from_millis(10), listener.accept()).await
            {
                drop(tcp);
            }
            self.file = std::fs::File::open("/dev/null").ok();
        } else {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
