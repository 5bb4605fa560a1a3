//! Connecting to farm members and owning those connections: resolver overrides, source
//! address, TLS re-encryption, and per member and scheme one [`Endpoint`] holding the pool,
//! the pinned connections and the counters, with one send path and one error type.
//!
//! Nothing here knows about farms: `farm` decides which member, `upstream` how to reach it.

mod body;
mod endpoint;
mod error;
mod idle;
mod pool;

pub use body::{BodyError, RequestBody};
pub use endpoint::{
    Endpoint, EndpointStats, Exchange, Exchanging, InFlight, Lease, Pinned, Reach, Reply,
};
pub use error::{is_local_exhaustion, ErrorKind, Fault, Retry, SendError};
pub use idle::{is_idle_timeout, IdleTimeout};

use crate::http1::client::Connection;
use crate::http1::head::Limits;
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};

/// The byte stream of a member connection: clear text or TLS, cut after the read timeout
/// without a byte either way.
pub type MemberIo = IdleTimeout<crate::stream::Stream<tokio_rustls::client::TlsStream<TcpStream>>>;

/// One open HTTP/1.1 connection to a member.
pub type MemberConn = Connection<MemberIo>;

/// A member's response body, streaming; it owns its connection until it ends.
pub type MemberBody = crate::http1::client::ResponseBody<MemberIo, RequestBody>;

/// A member's response head larger than this is refused (502), not buffered.
const MEMBER_HEAD_LIMIT: Limits = Limits {
    max_head_bytes: 256 * 1024,
};

/// Why a member could not be reached. None of these leaves the process in a response:
/// clients see the farm name only.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No address for the member's name: neither `[resolve]` nor the system resolver gave one.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The member's name as configured.
        host: String,
        /// The resolver's error, or "no address".
        reason: String,
    },
    /// The TCP connect to one address failed (or the source address could not be bound).
    #[error("connect to {addr} failed: {source}")]
    Connect {
        /// The member address tried.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The TCP connect or the TLS handshake took longer than the connect timeout.
    #[error("connect to {addr} timed out after {timeout:?}")]
    Timeout {
        /// The member address tried.
        addr: SocketAddr,
        /// The connect timeout that ran out.
        timeout: Duration,
    },
    /// The TLS handshake failed: certificate not trusted, wrong name, no common protocol.
    #[error("TLS handshake with {host} ({addr}) failed: {source}")]
    Tls {
        /// The member's name, sent as SNI and verified in its certificate.
        host: String,
        /// The member address tried.
        addr: SocketAddr,
        /// rustls's error, as tokio-rustls reports it.
        source: io::Error,
    },
}

/// How Portico reaches members: the hosts-file overrides and the internal NIC.
pub struct Connector {
    resolve: Arc<HashMap<String, Vec<IpAddr>>>,
    source_address: Option<IpAddr>,
}

/// Where and how to connect, for one attempt.
pub struct Target<'a> {
    /// The member's name: resolved when `ip` is None, sent as SNI, named in errors.
    pub host: &'a str,
    /// A fixed address (the member stands for one address of its name); None: resolve.
    pub ip: Option<IpAddr>,
    /// The member's TCP port for this scheme.
    pub port: u16,
    /// TLS client config and the name to send as SNI and verify; None for clear text.
    pub tls: Option<(&'a Arc<rustls::ClientConfig>, &'a ServerName<'static>)>,
    /// Limit for the TCP connect, and again for the TLS handshake.
    pub connect_timeout: Duration,
    /// Once open, the connection fails after this long without a byte read or written.
    pub idle_timeout: Duration,
}

impl Connector {
    /// Resolves through `resolve` (the config's `[resolve]`) first; binds member connections
    /// to `source_address` (None: the kernel chooses).
    pub fn new(resolve: Arc<HashMap<String, Vec<IpAddr>>>, source_address: Option<IpAddr>) -> Self {
        Connector {
            resolve,
            source_address,
        }
    }

    /// Addresses for a member: `[resolve]` first, then a literal IP, then the system resolver.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ConnectError> {
        if let Some(ips) = self.resolve.get(host) {
            return Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| ConnectError::Resolve {
                host: host.to_string(),
                reason: e.to_string(),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(ConnectError::Resolve {
                host: host.to_string(),
                reason: "no address".into(),
            });
        }
        Ok(addrs)
    }

    /// Opens a new HTTP/1.1 connection, trying each address of the member in turn.
    pub async fn connect(&self, target: &Target<'_>) -> Result<MemberConn, ConnectError> {
        let addrs = match target.ip {
            Some(ip) => vec![SocketAddr::new(ip, target.port)],
            None => self.resolve(target.host, target.port).await?,
        };
        let mut last = None;
        for addr in addrs {
            match self.connect_addr(addr, target).await {
                Ok(s) => return Ok(s),
                Err(e) => {
                    tracing::debug!(host = target.host, %addr, error = %e, "member address failed");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(ConnectError::Resolve {
            host: target.host.to_string(),
            reason: "no address".into(),
        }))
    }

    async fn connect_addr(
        &self,
        addr: SocketAddr,
        t: &Target<'_>,
    ) -> Result<MemberConn, ConnectError> {
        let tcp = tokio::time::timeout(t.connect_timeout, self.tcp(addr))
            .await
            .map_err(|_| ConnectError::Timeout {
                addr,
                timeout: t.connect_timeout,
            })?
            .map_err(|source| ConnectError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        match t.tls {
            None => Ok(open(crate::stream::Stream::Plain(tcp), t.idle_timeout)),
            Some((config, name)) => {
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
                let tls =
                    tokio::time::timeout(t.connect_timeout, connector.connect(name.clone(), tcp))
                        .await
                        .map_err(|_| ConnectError::Timeout {
                            addr,
                            timeout: t.connect_timeout,
                        })?
                        .map_err(|source| ConnectError::Tls {
                            host: t.host.to_string(),
                            addr,
                            source,
                        })?;
                Ok(open(
                    crate::stream::Stream::Tls(Box::new(tls)),
                    t.idle_timeout,
                ))
            }
        }
    }

    async fn tcp(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(src) = self.source_address {
            if src.is_ipv4() == addr.is_ipv4() {
                socket.bind(SocketAddr::new(src, 0))?;
            }
        }
        socket.connect(addr).await
    }
}

/// An HTTP/1.1 connection on an open stream: nothing is exchanged until the first request
/// (HTTP/1.1 has no handshake), and no task is spawned: the request's future drives it.
fn open(
    stream: crate::stream::Stream<tokio_rustls::client::TlsStream<TcpStream>>,
    idle_timeout: Duration,
) -> MemberConn {
    Connection::new(IdleTimeout::new(stream, idle_timeout), MEMBER_HEAD_LIMIT)
}

/// SNI and verification name for a member address (DNS name, or an IP address).
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(host.to_string()).ok()
}
