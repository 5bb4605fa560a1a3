//! Listener-side TLS: certificate choice by SNI and ALPN choice by host.
//!
//! Some published hosts (e.g. Exchange/SfB web services behind IIS semantics) must be spoken
//! to in HTTP/1.1 only, so the ClientHello is read first (LazyConfigAcceptor) and one of two
//! ServerConfigs is picked; both share one certificate resolver and one session cache.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{ProtocolVersion, SupportedProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;

use super::{provider, trim_dot, LoadedCertificate, TlsError};

/// Sessions kept for resumption, shared by both configs of a listener.
const SESSION_CACHE_SIZE: usize = 4096;

/// Lowest TLS version a listener accepts. Nothing below 1.2 is ever offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    #[default]
    Tls12,
    Tls13,
}

/// Per-listener TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTlsOptions {
    /// Hosts that get ALPN `http/1.1` only: exact names or `*.domain` (one label).
    pub http1_only_hosts: Vec<String>,
    pub min_version: TlsVersion,
    /// Time allowed from accept to a finished handshake; slow or silent clients are dropped.
    pub handshake_timeout: Duration,
}

impl Default for ListenerTlsOptions {
    fn default() -> Self {
        Self {
            http1_only_hosts: Vec::new(),
            min_version: TlsVersion::Tls12,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// A completed server handshake.
pub struct Accepted<IO> {
    pub stream: tokio_rustls::server::TlsStream<IO>,
    /// ALPN negotiated `h2`.
    pub h2: bool,
    /// The SNI the client sent (lower-case), if any.
    pub sni: Option<String>,
    /// `"TLSv1.2"` or `"TLSv1.3"`.
    pub version: &'static str,
}

/// Per-listener TLS: picks the certificate by SNI and the ALPN list by host.
pub struct ListenerTls {
    certs: Vec<LoadedCertificate>,
    h2_config: Arc<ServerConfig>,
    http1_config: Arc<ServerConfig>,
    http1_only: HostSet,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls")
            .field(
                "certs",
                &self.certs.iter().map(|c| &c.cert_path).collect::<Vec<_>>(),
            )
            .field("http1_only", &self.http1_only)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

impl ListenerTls {
    /// `certs[default_index]` serves clients without SNI or whose SNI no certificate covers.
    /// When several certificates cover the same name, the earlier one wins.
    pub fn new(
        certs: Vec<LoadedCertificate>,
        default_index: usize,
        opts: ListenerTlsOptions,
    ) -> Result<Self, TlsError> {
        if certs.is_empty() {
            return Err(TlsError::NoCertificates);
        }
        let default = certs
            .get(default_index)
            .ok_or(TlsError::DefaultOutOfRange {
                index: default_index,
                count: certs.len(),
            })?
            .key
            .clone();
        let resolver = Arc::new(SniResolver::new(&certs, default));
        let http1_only = HostSet::new(&opts.http1_only_hosts)?;

        let versions: &[&'static SupportedProtocolVersion] = match opts.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let cache = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
        let build = |alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, TlsError> {
            let mut cfg = ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(versions)
                .map_err(|source| TlsError::Rustls {
                    context: "listener TLS: protocol versions",
                    source,
                })?
                .with_no_client_auth()
                .with_cert_resolver(resolver.clone());
            cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            cfg.session_storage = cache.clone();
            Ok(Arc::new(cfg))
        };
        Ok(Self {
            h2_config: build(&[b"h2", b"http/1.1"])?,
            http1_config: build(&[b"http/1.1"])?,
            certs,
            http1_only,
            handshake_timeout: opts.handshake_timeout,
        })
    }

    /// Reads the ClientHello, picks the ALPN list for its SNI, and completes the handshake
    /// within the handshake timeout (`io::ErrorKind::TimedOut` otherwise). Generic over the IO
    /// so a PROXY-protocol reader can sit underneath.
    pub async fn accept<IO: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: IO,
    ) -> io::Result<Accepted<IO>> {
        match tokio::time::timeout(self.handshake_timeout, self.handshake(io)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "TLS handshake not completed within {:?}",
                    self.handshake_timeout
                ),
            )),
        }
    }

    async fn handshake<IO: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: IO,
    ) -> io::Result<Accepted<IO>> {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
        let hello = start.client_hello();
        let sni = hello.server_name().map(|s| trim_dot(s).to_owned());
        let config = match &sni {
            Some(host) if self.http1_only.contains(host) => &self.http1_config,
            _ => &self.h2_config,
        };
        let stream = start.into_stream(config.clone()).await?;
        let conn = stream.get_ref().1;
        let h2 = conn.alpn_protocol() == Some(b"h2");
        let version = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "unknown",
        };
        Ok(Accepted {
            stream,
            h2,
            sni,
            version,
        })
    }

    pub fn certificates(&self) -> &[LoadedCertificate] {
        &self.certs
    }
}

/// Lower-cases only when needed; SNI from rustls is already lower-case ASCII.
fn normalize(host: &str) -> Cow<'_, str> {
    let host = trim_dot(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// The part after the first label, if the first label is non-empty: what a one-label
/// wildcard `*.<suffix>` would have to equal.
fn wildcard_suffix(host: &str) -> Option<&str> {
    match host.split_once('.') {
        Some((label, rest)) if !label.is_empty() && !rest.is_empty() => Some(rest),
        _ => None,
    }
}

/// Certificate choice by SNI: exact name, then one-label wildcard, then the default.
/// Two hash lookups per handshake.
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn new(certs: &[LoadedCertificate], default: Arc<CertifiedKey>) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for cert in certs {
            for name in &cert.names {
                let name = normalize(name);
                let (map, key) = match name.strip_prefix("*.") {
                    Some(suffix) => (&mut wildcard, suffix),
                    None => (&mut exact, name.as_ref()),
                };
                if key.is_empty() || key.contains('*') {
                    continue;
                }
                map.entry(key.to_owned())
                    .or_insert_with(|| cert.key.clone());
            }
        }
        Self {
            exact,
            wildcard,
            default,
        }
    }

    fn select(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(host) = sni else {
            return &self.default;
        };
        let host = normalize(host);
        if let Some(key) = self.exact.get(host.as_ref()) {
            return key;
        }
        wildcard_suffix(&host)
            .and_then(|suffix| self.wildcard.get(suffix))
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.select(client_hello.server_name()).clone())
    }
}

/// Exact names and one-label wildcard suffixes, lower-case.
#[derive(Debug, Default)]
struct HostSet {
    exact: HashSet<String>,
    wildcard: HashSet<String>,
}

impl HostSet {
    fn new(patterns: &[String]) -> Result<Self, TlsError> {
        let mut set = Self::default();
        for pattern in patterns {
            let bad = || TlsError::BadHostPattern {
                pattern: pattern.clone(),
            };
            let p = trim_dot(pattern.trim()).to_ascii_lowercase();
            let (target, name) = match p.strip_prefix("*.") {
                Some(suffix) => (&mut set.wildcard, suffix),
                None => (&mut set.exact, p.as_str()),
            };
            let valid = !name.is_empty()
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            if !valid {
                return Err(bad());
            }
            target.insert(name.to_owned());
        }
        Ok(set)
    }

    fn contains(&self, host: &str) -> bool {
        let host = normalize(host);
        self.exact.contains(host.as_ref())
            || wildcard_suffix(&host).is_some_and(|s| self.wildcard.contains(s))
    }
}

#[cfg(test)]
#[path = "sni_tests.rs"]
mod tests;
