//! A stand-in for an internal SfB Front End pool member / Office Online Server.
//!
//! `portico demo`, the integration tests and the benchmarks need something real to proxy to:
//! this server answers the SfB / OOS URLs the way the real services do (status codes, auth
//! challenges, Host-dependent documents) plus generic test endpoints (`/echo`, `/download`,
//! `/upload`, `/stall`, `/ws`, `/auth/ntlm`, ...) that report what the member saw, so tests can
//! prove the proxy preserved Host, request targets, bodies and connection pinning.

mod body;
mod codec;
mod exchange;
mod generic;
mod roles;
mod ws;

#[cfg(test)]
mod tests;

/// The `/drop` endpoint's way to make hyper close the connection unanswered.
#[derive(Debug)]
struct DroppedOnPurpose;

impl std::fmt::Display for DroppedOnPurpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose (/drop)")
    }
}

impl std::error::Error for DroppedOnPurpose {}
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub use body::Payload;
pub use exchange::{RpcInProgress, EXCHANGE_BUILD, WORKLOADS};

/// How long a TLS client may take to finish its handshake before the member gives up.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors building a backend's TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The certificate PEM cannot be parsed; says why.
    #[error("certificate PEM: {0}")]
    CertPem(String),
    /// The certificate PEM holds no certificate.
    #[error("no certificate found in the certificate PEM")]
    NoCertificate,
    /// The key PEM cannot be parsed or holds no key; says why.
    #[error("private key PEM: {0}")]
    KeyPem(String),
    /// rustls refused the certificate and key.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Which site the member plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An SfB / Lync Front End pool member (external web services, simple URLs, lyncdiscover).
    FrontEnd,
    /// An Office Online Server / Office Web Apps farm member.
    OfficeOnline,
    /// Only the generic test endpoints.
    Echo,
    /// An Exchange Server Client Access member (OWA, EWS, Outlook Anywhere, MAPI, ActiveSync).
    Exchange,
}

/// What a member is and how it serves.
#[derive(Clone)]
pub struct BackendOptions {
    /// Member name, returned in `X-Backend` on every response.
    pub name: String,
    /// `Some` → serve HTTPS on the port (the config decides ALPN; see [`server_config_from_pem`]).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Which site it plays.
    pub role: Role,
}

impl std::fmt::Debug for BackendOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendOptions")
            .field("name", &self.name)
            .field("tls", &self.tls.is_some())
            .field("role", &self.role)
            .finish()
    }
}

/// Misconfigurations a member can play, so `portico check` can be tested against each one.
/// All off by default ([`Backend::start`]); [`Backend::start_with_faults`] turns them on.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Play the pool's *internal* web site (what answers on 443 of a Front End): lyncdiscover
    /// and autodiscover documents say `AccessLocation="Internal"` and link to the member's own
    /// internal FQDN (its `name`), and responses carry `X-MS-Server-Fqdn: <name>`. A proxy
    /// pointed at this port instead of 4443 is "not bridged".
    pub internal_site: bool,
    /// Behave like IIS sites that require SSL when a request arrives in clear: the Windows-auth
    /// and UCWA services answer `403.4 SSL required`, and autodiscover links use the scheme the
    /// request came in with (`http://`). A proxy that offloads SSL to this port shows it.
    pub require_ssl: bool,
    /// Answer lyncdiscover / autodiscover with `406 NotAcceptable` when the `Accept` header
    /// contains this text (case-insensitive; `""` matches a missing or empty header only).
    pub not_acceptable: Option<String>,
}

/// State shared by every connection of one member.
struct Shared {
    name: String,
    faults: Faults,
    /// `X-Backend` value, built once.
    name_header: http::HeaderValue,
    role: Role,
    connections: AtomicU64,
    /// Connections accepted and not yet closed.
    open: AtomicU64,
    requests: AtomicU64,
    /// Workload health and streaming records of the Exchange role.
    exchange: exchange::ExchangeState,
}

/// What one TCP connection knows about itself; lives in the connection's service closure.
struct ConnInfo {
    /// Per-member connection number (1-based), reported by the NTLM double.
    id: u64,
    tls: bool,
    local: SocketAddr,
    peer: SocketAddr,
    /// Where `/auth/ntlm` is on this connection (NTLM authenticates the connection).
    ntlm: std::sync::Mutex<generic::NtlmState>,
}

/// A running member. Dropping it (or [`Backend::shutdown`]) stops accepting and closes every
/// open connection, including upgraded WebSocket ones.
pub struct Backend {
    /// The address the member listens on; tests point farms at it.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    /// Dropping the sender wakes every task's `closed()` wait.
    _stop: watch::Sender<()>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("addr", &self.addr)
            .field("name", &self.shared.name)
            .finish()
    }
}

impl Backend {
    /// Binds `addr` (port 0 allowed) and serves until dropped/shutdown. HTTP/1.1 keep-alive
    /// (and HTTP/2 prior knowledge), upgrades enabled.
    pub async fn start(addr: SocketAddr, opts: BackendOptions) -> std::io::Result<Backend> {
        Self::start_with_faults(addr, opts, Faults::default()).await
    }

    /// Like [`Backend::start`], playing the given misconfigurations (see [`Faults`]).
    pub async fn start_with_faults(
        addr: SocketAddr,
        opts: BackendOptions,
        faults: Faults,
    ) -> std::io::Result<Backend> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let name_header = http::HeaderValue::from_str(&opts.name).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "backend name is not a valid header value",
            )
        })?;
        let shared = Arc::new(Shared {
            name: opts.name,
            faults,
            name_header,
            role: opts.role,
            connections: AtomicU64::new(0),
            open: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            exchange: exchange::ExchangeState::default(),
        });
        let (stop, stop_rx) = watch::channel(());
        let tls = opts.tls.map(tokio_rustls::TlsAcceptor::from);
        tokio::spawn(accept_loop(listener, shared.clone(), tls, stop_rx));
        Ok(Backend {
            addr,
            shared,
            _stop: stop,
        })
    }

    /// Stops accepting and drops open connections (tests kill members with this).
    pub fn shutdown(self) {
        drop(self);
    }

    /// Like [`Backend::shutdown`], and returns once every connection it had open is
    /// closed, so a test knows the member's end of each is gone.
    pub async fn shutdown_and_wait(self) {
        let shared = Arc::clone(&self.shared);
        drop(self);
        while shared.open.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// TCP connections accepted so far.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Requests (any endpoint) seen so far.
    pub fn requests_seen(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Exchange role: takes one workload's health page (and the workload) down or up, as
    /// Managed Availability does (`/portico-demo/workload?name=ews&up=0` does the same).
    pub fn set_workload_up(&self, workload: &str, up: bool) {
        self.shared.exchange.set_up(workload, up);
    }

    /// Exchange role: every RPC_IN_DATA body seen so far, and how far it came.
    pub fn rpc_in_progress(&self) -> Vec<RpcInProgress> {
        self.shared.exchange.rpc_in()
    }

    /// Exchange role: when each MAPI response's `DONE` was written.
    pub fn mapi_done_written(&self) -> Vec<std::time::Instant> {
        self.shared.exchange.mapi_done()
    }

    /// The member name (`X-Backend`).
    pub fn name(&self) -> &str {
        &self.shared.name
    }
}

/// Builds a rustls ServerConfig for a backend from PEM strings (ALPN `http/1.1`).
pub fn server_config_from_pem(
    cert_chain_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, BackendError> {
    let certs = CertificateDer::pem_slice_iter(cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BackendError::CertPem(e.to_string()))?;
    if certs.is_empty() {
        return Err(BackendError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| BackendError::KeyPem(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Resolves when the owning [`Backend`] is dropped.
async fn stopped(rx: &mut watch::Receiver<()>) {
    while rx.changed().await.is_ok() {}
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<()>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stopped(&mut stop) => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "backend accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let id = shared.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let _ = stream.set_nodelay(true);
        let local = match stream.local_addr() {
            Ok(l) => l,
            Err(_) => continue,
        };
        let conn = Arc::new(ConnInfo {
            id,
            tls: tls.is_some(),
            local,
            peer,
            ntlm: std::sync::Mutex::new(generic::NtlmState::Idle),
        });
        let shared = shared.clone();
        let tls = tls.clone();
        let mut stop = stop.clone();
        let open = Open::count(&shared);
        tokio::spawn(async move {
            // Declared first, dropped last: after the connection's socket.
            let _open = open;
            let stop_rx = stop.clone();
            tokio::select! {
                _ = stopped(&mut stop) => {}
                _ = serve_stream(stream, tls, shared, conn, stop_rx) => {}
            }
        });
    }
}

/// One open connection in [`Shared::open`], for as long as it lives.
struct Open(Arc<Shared>);

impl Open {
    fn count(shared: &Arc<Shared>) -> Open {
        shared.open.fetch_add(1, Ordering::AcqRel);
        Open(Arc::clone(shared))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn serve_stream(
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    stop: watch::Receiver<()>,
) {
    let exchange = shared.role == Role::Exchange;
    match tls {
        None if exchange => {
            let io = exchange::CaseFix { inner: stream };
            serve_io(TokioIo::new(io), shared, conn, stop).await
        }
        None => serve_io(TokioIo::new(stream), shared, conn, stop).await,
        Some(acceptor) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) if exchange => {
                    let io = exchange::CaseFix { inner: s };
                    serve_io(TokioIo::new(io), shared, conn, stop).await
                }
                Ok(Ok(s)) => serve_io(TokioIo::new(s), shared, conn, stop).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "backend TLS handshake failed"),
                Err(_) => tracing::debug!("backend TLS handshake timed out"),
            }
        }
    }
}

async fn serve_io<I>(io: I, shared: Arc<Shared>, conn: Arc<ConnInfo>, stop: watch::Receiver<()>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        let conn = conn.clone();
        let stop = stop.clone();
        async move {
            shared.requests.fetch_add(1, Ordering::Relaxed);
            // `/drop`: read the request, then close the connection without an answer
            // (a member dying mid-request; retry tests count what it received).
            if req.uri().path() == "/drop" {
                let _ = generic::drain(req.into_body()).await;
                return Err(DroppedOnPurpose);
            }
            let mut resp = generic::route(req, &shared, &conn, stop).await;
            resp.headers_mut()
                .insert("x-backend", shared.name_header.clone());
            if shared.faults.internal_site {
                resp.headers_mut()
                    .insert("x-ms-server-fqdn", shared.name_header.clone());
            }
            Ok::<_, DroppedOnPurpose>(resp)
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder.serve_connection_with_upgrades(io, svc).await {
        tracing::debug!(error = %e, "backend connection ended with an error");
    }
}
