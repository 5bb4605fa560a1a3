//! Client-facing sockets: accept, TLS (SNI + ALPN), then HTTP/1.1 or h2 into `proxy::handle`.

pub mod proxy_protocol;

use crate::config::ListenerConfig;
use crate::proxy::{self, ConnInfo, Proxy};
use crate::tls::ListenerTls;
use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What a running listener needs from its config, cloned out so a reload can swap it.
#[derive(Clone)]
pub struct ListenerSettings {
    pub name: String,
    pub tls: Option<Arc<ListenerTls>>,
    pub header_read_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_header_bytes: usize,
    pub h2_max_concurrent_streams: u32,
}

impl From<&ListenerConfig> for ListenerSettings {
    fn from(l: &ListenerConfig) -> Self {
        ListenerSettings {
            name: l.name.clone(),
            tls: l.tls.clone(),
            header_read_timeout: l.header_read_timeout,
            keepalive_timeout: l.keepalive_timeout,
            max_header_bytes: l.max_header_bytes,
            h2_max_concurrent_streams: l.h2_max_concurrent_streams,
        }
    }
}

/// Binds with SO_REUSEADDR so a restart does not wait for TIME_WAIT.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

fn builder(s: &ListenerSettings) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(s.header_read_timeout)
        .keep_alive(true)
        .max_buf_size(s.max_header_bytes.max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(s.h2_max_concurrent_streams)
        .max_header_list_size(s.max_header_bytes as u32)
        .keep_alive_interval(Some(Duration::from_secs(60)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// A listener's settings with the HTTP builder made from them; swapped whole on reload so
/// new connections get new certificates and limits while open ones keep theirs.
pub struct ListenerRuntime {
    pub settings: ListenerSettings,
    builder: auto::Builder<TokioExecutor>,
}

impl ListenerRuntime {
    pub fn new(settings: ListenerSettings) -> Arc<ListenerRuntime> {
        Arc::new(ListenerRuntime {
            builder: builder(&settings),
            settings,
        })
    }
}

/// Accepts until `stop` flips (shutdown, or the listener left the config), then stops
/// accepting; open connections are watched by `graceful` so shutdown can wait for them.
pub async fn serve(
    listener: TcpListener,
    runtime: Arc<ArcSwap<ListenerRuntime>>,
    proxy: Arc<Proxy>,
    mut stop: watch::Receiver<bool>,
    graceful: Arc<GracefulShutdown>,
) {
    let local = listener.local_addr().ok();
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = %runtime.load().settings.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().ok().or(local).unwrap_or(remote);
        let proxy = Arc::clone(&proxy);
        let rt = runtime.load_full();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            match &rt.settings.tls {
                None => {
                    let info = ConnInfo::new(remote, local, false, None);
                    serve_conn(tcp, info, proxy, &rt.builder, watcher).await;
                }
                Some(tls) => match tls.accept(tcp).await {
                    Ok(acc) => {
                        let info = ConnInfo::new(remote, local, true, Some(acc.version));
                        serve_conn(acc.stream, info, proxy, &rt.builder, watcher).await;
                    }
                    Err(e) => {
                        tracing::debug!(listener = %rt.settings.name, %remote, error = %e, "TLS handshake failed");
                    }
                },
            }
        });
    }
}

async fn serve_conn<IO>(
    io: IO,
    info: ConnInfo,
    proxy: Arc<Proxy>,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = Arc::new(info);
    let remote = info.remote;
    let service = service_fn(move |req| proxy::handle(Arc::clone(&proxy), Arc::clone(&info), req));
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%remote, error = %e, "client connection ended with an error");
    }
}
