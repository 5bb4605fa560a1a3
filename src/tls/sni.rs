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

use arc_swap::ArcSwap;

use super::slot::{CertSlot, CertSource};
use super::{provider, trim_dot, CertificateSpec, LoadedCertificate, TlsError};

/// Sessions kept for resumption, shared by both configs of a listener.
const SESSION_CACHE_SIZE: usize = 4096;

/// Lowest TLS version a listener accepts. Nothing below 1.2 is ever offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3 (the default).
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// Per-listener TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTlsOptions {
    /// Hosts that get ALPN `http/1.1` only: exact names or `*.domain` (one label).
    pub http1_only_hosts: Vec<String>,
    pub(crate) min_version: TlsVersion,
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
    pub(crate) stream: tokio_rustls::server::TlsStream<IO>,
    /// The protocol ALPN negotiated, if the client offered any Portico serves.
    pub alpn: Option<Alpn>,
    /// The SNI the client sent (lower-case), if any.
    pub sni: Option<String>,
    /// `"TLSv1.2"` or `"TLSv1.3"`.
    pub version: &'static str,
}

impl<IO> Accepted<IO> {
    /// ALPN negotiated `h2`.
    pub fn h2(&self) -> bool {
        self.alpn == Some(Alpn::H2)
    }
}

/// An HTTP protocol negotiated by ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// `h2`.
    H2,
    /// `http/1.1`.
    Http11,
}

/// Per-listener TLS: picks the certificate by SNI and the ALPN list by host.
pub struct ListenerTls {
    slots: Vec<Arc<CertSlot>>,
    h2_config: Arc<ServerConfig>,
    http1_config: Arc<ServerConfig>,
    /// Answers TLS-ALPN-01 validation handshakes (ALPN `acme-tls/1`) with challenge certs.
    acme_config: Arc<ServerConfig>,
    http1_only: HostSet,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls")
            .field(
                "certs",
                &self
                    .slots
                    .iter()
                    .map(|s| s.source.describe())
                    .collect::<Vec<_>>(),
            )
            .field("http1_only", &self.http1_only)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

impl ListenerTls {
    /// `certs[default_index]` serves clients without SNI or whose SNI no certificate covers.
    /// When several certificates cover the same name, the earlier one wins. The certificates
    /// get slots of their own (not shared, not watched); see [`ListenerTls::with_slots`].
    pub fn new(
        certs: Vec<LoadedCertificate>,
        default_index: usize,
        opts: ListenerTlsOptions,
    ) -> Result<Self, TlsError> {
        let slots = certs
            .into_iter()
            .map(|c| {
                let spec = CertificateSpec {
                    cert: c.cert_path.clone(),
                    key: c.cert_path.clone(),
                    allow_expired: true,
                };
                CertSlot::new(CertSource::File(spec), c)
            })
            .collect();
        Self::with_slots(slots, default_index, opts)
    }

    /// Like [`ListenerTls::new`], serving from slots that others (file watcher, ACME, OCSP)
    /// may swap certificates in at any time.
    pub fn with_slots(
        slots: Vec<Arc<CertSlot>>,
        default_index: usize,
        opts: ListenerTlsOptions,
    ) -> Result<Self, TlsError> {
        if slots.is_empty() {
            return Err(TlsError::NoCertificates);
        }
        if default_index >= slots.len() {
            return Err(TlsError::DefaultOutOfRange {
                index: default_index,
                count: slots.len(),
            });
        }
        let resolver = Arc::new(SniResolver::new(slots.clone(), default_index));
        let http1_only = HostSet::new(&opts.http1_only_hosts)?;

        let versions: &[&'static SupportedProtocolVersion] = match opts.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let cache = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
        let build = |alpn: &[&[u8]],
                     resolver: Arc<dyn ResolvesServerCert>|
         -> Result<Arc<ServerConfig>, TlsError> {
            let mut cfg = ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(versions)
                .map_err(|source| TlsError::Rustls {
                    context: "listener TLS: protocol versions",
                    source,
                })?
                .with_no_client_auth()
                .with_cert_resolver(resolver);
            cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            cfg.session_storage = cache.clone();
            Ok(Arc::new(cfg))
        };
        let mut acme_config = build(&[ACME_TLS_ALPN], Arc::new(AcmeChallengeResolver))?;
        // RFC 8737: the validation handshake is TLS 1.2+ with no resumption.
        if let Some(cfg) = Arc::get_mut(&mut acme_config) {
            cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            cfg.send_tls13_tickets = 0;
        }
        Ok(Self {
            h2_config: build(&[b"h2", b"http/1.1"], resolver.clone())?,
            http1_config: build(&[b"http/1.1"], resolver)?,
            acme_config,
            slots,
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
        let acme = hello
            .alpn()
            .is_some_and(|mut protos| protos.any(|p| p == ACME_TLS_ALPN));
        let config = match &sni {
            _ if acme => &self.acme_config,
            Some(host) if self.http1_only.contains(host) => &self.http1_config,
            _ => &self.h2_config,
        };
        let stream = start.into_stream(config.clone()).await?;
        let conn = stream.get_ref().1;
        if acme {
            // A validation handshake carries no HTTP; the CA closes it once it has the cert.
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "acme-tls/1 validation handshake answered",
            ));
        }
        let alpn = match conn.alpn_protocol() {
            Some(b"h2") => Some(Alpn::H2),
            Some(b"http/1.1") => Some(Alpn::Http11),
            _ => None,
        };
        let version = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "unknown",
        };
        Ok(Accepted {
            stream,
            alpn,
            sni,
            version,
        })
    }

    /// The certificates served now, in config order.
    pub fn certificates(&self) -> Vec<Arc<LoadedCertificate>> {
        self.slots.iter().map(|s| s.current()).collect()
    }

    /// The slots behind this listener, in config order.
    pub fn slots(&self) -> &[Arc<CertSlot>] {
        &self.slots
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
/// Two hash lookups and one `ArcSwap` load per handshake; the name table is rebuilt when a
/// slot's certificate changed since it was built (a renewal may change the names).
#[derive(Debug)]
struct SniResolver {
    slots: Vec<Arc<CertSlot>>,
    default: usize,
    table: ArcSwap<SniTable>,
}

/// Names to slot indexes, as of the slot generations in `generations`.
#[derive(Debug, Default)]
struct SniTable {
    generations: Vec<u64>,
    exact: HashMap<String, usize>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, usize>,
}

impl SniTable {
    fn build(slots: &[Arc<CertSlot>]) -> Self {
        let mut table = SniTable::default();
        for (i, slot) in slots.iter().enumerate() {
            table.generations.push(slot.generation());
            for name in &slot.current().names {
                let name = normalize(name);
                let (map, key) = match name.strip_prefix("*.") {
                    Some(suffix) => (&mut table.wildcard, suffix),
                    None => (&mut table.exact, name.as_ref()),
                };
                if key.is_empty() || key.contains('*') {
                    continue;
                }
                map.entry(key.to_owned()).or_insert(i);
            }
        }
        table
    }
}

impl SniResolver {
    fn new(slots: Vec<Arc<CertSlot>>, default: usize) -> Self {
        let table = ArcSwap::from_pointee(SniTable::build(&slots));
        Self {
            slots,
            default,
            table,
        }
    }

    fn select(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let mut table = self.table.load();
        let stale = table
            .generations
            .iter()
            .zip(&self.slots)
            .any(|(g, s)| *g != s.generation());
        if stale {
            self.table.store(Arc::new(SniTable::build(&self.slots)));
            table = self.table.load();
        }
        let index = sni
            .and_then(|host| {
                let host = normalize(host);
                table.exact.get(host.as_ref()).copied().or_else(|| {
                    wildcard_suffix(&host).and_then(|suffix| table.wildcard.get(suffix).copied())
                })
            })
            .unwrap_or(self.default);
        self.slots[index].current().key.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.select(client_hello.server_name()))
    }
}

/// ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Serves the TLS-ALPN-01 challenge certificate for the SNI, if one is pending; otherwise the
/// handshake fails (a client asking for `acme-tls/1` is never served a real certificate).
#[derive(Debug)]
struct AcmeChallengeResolver;

impl ResolvesServerCert for AcmeChallengeResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = client_hello.server_name()?;
        super::challenges::tls_alpn(&normalize(name))
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
