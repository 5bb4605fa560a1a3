//! The checker's client: one TLS connection per request, to an address chosen by the caller
//! (`--resolve`, the config's listener, or DNS), with the name as SNI and Host.
//!
//! The handshake accepts any certificate so that every web check still runs when the
//! certificate is wrong; [`verify_chain`] judges the certificate separately, as a browser would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::RootCertStore;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Largest body kept for inspection; the rest is read and dropped.
const MAX_BODY_BYTES: usize = 1024 * 1024;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which TLS versions a connection offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// TLS 1.3 and 1.2, as current clients do.
    Modern,
    /// TLS 1.2 only, as SfB clients on older Windows and iOS do.
    Tls12Only,
}

/// Builds the client configuration for one kind of offer (ALPN `http/1.1`: Windows
/// authentication and the SfB services are HTTP/1.1).
pub fn client_config(offer: Offer) -> Arc<rustls::ClientConfig> {
    let p = provider();
    let versions: &[&'static rustls::SupportedProtocolVersion] = match offer {
        Offer::Modern => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Offer::Tls12Only => &[&rustls::version::TLS12],
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(versions)
        .expect("ring supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(crate::tls::AcceptAnyCert(p)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// What a handshake showed.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub version: String,
    pub cipher: String,
    /// End-entity first, as sent.
    pub chain: Vec<CertificateDer<'static>>,
}

/// Opens TCP + TLS to `addr` with `host` as SNI, within `timeout`.
pub async fn connect(
    addr: SocketAddr,
    host: &str,
    config: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<(TlsStream<TcpStream>, Handshake), String> {
    let server_name = ServerName::try_from(host.to_string())
        .map_err(|_| format!("{host:?} is not a valid DNS name"))?;
    let work = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {addr} failed: {e}"))
    };
    let stream = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("no TLS session with {addr} within {timeout:?}"))??;
    let conn = stream.get_ref().1;
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => "unknown".to_string(),
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_else(|| "unknown".to_string());
    let chain = conn
        .peer_certificates()
        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
        .unwrap_or_default();
    Ok((
        stream,
        Handshake {
            version,
            cipher,
            chain,
        },
    ))
}

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    /// At most [`MAX_BODY_BYTES`].
    pub body: Vec<u8>,
    /// From sending the request to the end of the body (or the error).
    pub elapsed: Duration,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request failed before a whole answer arrived.
#[derive(Debug, Clone)]
pub struct Failed {
    pub why: String,
    /// How long after sending the request it failed.
    pub elapsed: Duration,
}

/// Sends `GET path` with `Host: host_header` and `headers` on a fresh connection and reads
/// the whole answer within `timeout`.
pub async fn get(
    addr: SocketAddr,
    host: &str,
    host_header: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Answer, Failed> {
    let start = Instant::now();
    let failed = |why: String| Failed {
        why,
        elapsed: start.elapsed(),
    };
    let (stream, _) = connect(addr, host, client_config(Offer::Modern), timeout)
        .await
        .map_err(failed)?;
    let start = Instant::now();
    let failed = |why: String| Failed {
        why,
        elapsed: start.elapsed(),
    };
    let work = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::get(path).header(http::header::HOST, host_header);
        req = req.header(http::header::USER_AGENT, "portico-check");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("bad request {path:?}: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("no answer (connection closed or reset: {e})"))?;
        let (parts, mut body) = resp.into_parts();
        let mut kept = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("answer cut while reading the body: {e}"))?;
            if let Some(d) = frame.data_ref() {
                let room = MAX_BODY_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&d[..d.len().min(room)]);
            }
        }
        Ok::<_, String>((parts, kept))
    };
    let (parts, body) = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| failed(format!("no complete answer within {timeout:?}")))?
        .map_err(failed)?;
    Ok(Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        elapsed: start.elapsed(),
    })
}

/// The trust anchors: the public roots browsers ship, plus `extra` (PEM files, `--ca`).
pub fn roots(extra: &[std::path::PathBuf]) -> Result<Arc<RootCertStore>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut store = RootCertStore::empty();
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for path in extra {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut n = 0;
        for der in CertificateDer::pem_slice_iter(&pem) {
            let der = der.map_err(|e| format!("{}: not PEM: {e}", path.display()))?;
            store
                .add(der)
                .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!(
                "{}: no certificate found (expected PEM with -----BEGIN CERTIFICATE-----)",
                path.display()
            ));
        }
    }
    Ok(Arc::new(store))
}

/// Verifies `chain` for `host` against `roots` the way a client would. `Err` carries rustls'
/// verdict so the caller can tell a name mismatch from an unknown issuer or an expiry.
pub fn verify_chain(
    roots: Arc<RootCertStore>,
    chain: &[CertificateDer<'static>],
    host: &str,
) -> Result<(), rustls::Error> {
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let Some((ee, intermediates)) = chain.split_first() else {
        return Err(rustls::Error::NoCertificatesPresented);
    };
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| rustls::Error::General(format!("{host:?} is not a DNS name")))?;
    verifier
        .verify_server_cert(ee, intermediates, &name, &[], UnixTime::now())
        .map(|_| ())
}
