//! Upstream (client) TLS towards pool members.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::certs::read_certificates;
use super::{provider, TlsError};

/// How pool members' certificates are checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTlsSpec {
    /// PEM files of trusted CAs; empty means the Mozilla roots (webpki-roots).
    pub ca_files: Vec<PathBuf>,
    /// Accept any member certificate (handshake signatures are still checked).
    pub insecure_skip_verify: bool,
}

/// Client config for members: ALPN `http/1.1` only, because members are IIS and h2 towards
/// them is not used.
pub fn client_config(spec: &UpstreamTlsSpec) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            context: "upstream TLS: protocol versions",
            source,
        })?;
    let mut cfg = if spec.insecure_skip_verify {
        tracing::warn!(
            "upstream TLS certificate verification is disabled (insecure_skip_verify = true)"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(root_store(&spec.ca_files)?)
            .with_no_client_auth()
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn root_store(ca_files: &[PathBuf]) -> Result<RootCertStore, TlsError> {
    if ca_files.is_empty() {
        return Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    }
    let mut roots = RootCertStore::empty();
    for path in ca_files {
        for cert in read_certificates(path)? {
            roots.add(cert).map_err(|e| TlsError::BadCertificate {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        }
    }
    Ok(roots)
}

/// SNI / verification name for a member: IP address form when `host` is an IP (bracketed
/// IPv6 accepted), DNS name otherwise.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_owned()).map_err(|_| TlsError::BadServerName {
        host: host.to_owned(),
    })
}

/// Accepts any certificate but still verifies the handshake signatures with the provider,
/// so the peer must hold the key for the certificate it sent.
#[derive(Debug)]
/// Used by `insecure_skip_verify` and by the checker, which inspects any certificate.
pub struct AcceptAnyCert(pub Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::test_support::{Ca, TempDir, WriteTo};
    use crate::tls::{load_certificate, CertificateSpec, ListenerTls, ListenerTlsOptions};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A listener serving `name` from `ca`; returns its address and the server task, which
    /// reports whether h2 was negotiated.
    async fn serve(
        ca: &Ca,
        dir: &TempDir,
        name: &str,
    ) -> (
        std::net::SocketAddr,
        tokio::task::JoinHandle<std::io::Result<bool>>,
    ) {
        ca.leaf(&[name]).write_to(dir, "member");
        let cert = load_certificate(&CertificateSpec {
            cert: dir.path("member.pem"),
            key: dir.path("member.key"),
            allow_expired: false,
        })
        .unwrap();
        let tls = ListenerTls::new(vec![cert], 0, ListenerTlsOptions::default()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (sock, _) = listener.accept().await?;
            let mut acc = tls.accept(sock).await?;
            let mut buf = [0u8; 4];
            acc.stream.read_exact(&mut buf).await?;
            acc.stream.write_all(b"pong").await?;
            acc.stream.shutdown().await?;
            Ok(acc.h2())
        });
        (addr, task)
    }

    async fn connect(
        cfg: Arc<ClientConfig>,
        addr: std::net::SocketAddr,
        host: &str,
    ) -> std::io::Result<Vec<u8>> {
        let sock = TcpStream::connect(addr).await?;
        let connector = tokio_rustls::TlsConnector::from(cfg);
        let mut tls = connector.connect(server_name(host).unwrap(), sock).await?;
        let alpn = tls.get_ref().1.alpn_protocol().unwrap_or_default().to_vec();
        tls.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        Ok(alpn)
    }

    #[tokio::test]
    async fn verifies_against_configured_ca_and_offers_http1_only() {
        let ca = Ca::new();
        let dir = TempDir::new();
        let ca_file = dir.write("ca.pem", &ca.cert_pem);
        let (addr, task) = serve(&ca, &dir, "fe01.contoso.local").await;
        let cfg = client_config(&UpstreamTlsSpec {
            ca_files: vec![ca_file],
            insecure_skip_verify: false,
        })
        .unwrap();
        let alpn = connect(cfg, addr, "fe01.contoso.local").await.unwrap();
        assert_eq!(alpn, b"http/1.1");
        assert!(!task.await.unwrap().unwrap(), "h2 must not be negotiated");
    }

    #[tokio::test]
    async fn unknown_ca_is_rejected() {
        let ca = Ca::new();
        let other = Ca::new();
        let dir = TempDir::new();
        let other_file = dir.write("other.pem", &other.cert_pem);
        let (addr, task) = serve(&ca, &dir, "fe01.contoso.local").await;
        let cfg = client_config(&UpstreamTlsSpec {
            ca_files: vec![other_file],
            insecure_skip_verify: false,
        })
        .unwrap();
        let err = connect(cfg, addr, "fe01.contoso.local").await.unwrap_err();
        assert!(
            err.to_string().contains("invalid peer certificate"),
            "{err}"
        );
        assert!(task.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn default_webpki_roots_reject_private_ca() {
        let ca = Ca::new();
        let dir = TempDir::new();
        let (addr, task) = serve(&ca, &dir, "fe01.contoso.local").await;
        let cfg = client_config(&UpstreamTlsSpec::default()).unwrap();
        assert!(connect(cfg, addr, "fe01.contoso.local").await.is_err());
        assert!(task.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn insecure_skip_verify_accepts_unknown_ca_and_wrong_name() {
        let ca = Ca::new();
        let dir = TempDir::new();
        let (addr, task) = serve(&ca, &dir, "fe01.contoso.local").await;
        let cfg = client_config(&UpstreamTlsSpec {
            ca_files: vec![],
            insecure_skip_verify: true,
        })
        .unwrap();
        let alpn = connect(cfg, addr, "127.0.0.1").await.unwrap();
        assert_eq!(alpn, b"http/1.1");
        assert!(!task.await.unwrap().unwrap());
    }

    #[test]
    fn ca_file_without_certificate_names_the_file() {
        let dir = TempDir::new();
        let path = dir.write("empty-ca.pem", "not a pem\n");
        let err = client_config(&UpstreamTlsSpec {
            ca_files: vec![path],
            insecure_skip_verify: false,
        })
        .unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
        assert!(err
            .to_string()
            .contains("empty-ca.pem: no certificate found"));
    }

    #[test]
    fn missing_ca_file_is_a_read_error() {
        let dir = TempDir::new();
        let err = client_config(&UpstreamTlsSpec {
            ca_files: vec![dir.path("absent.pem")],
            insecure_skip_verify: false,
        })
        .unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
    }

    #[test]
    fn server_name_uses_ip_form_for_addresses() {
        assert!(matches!(
            server_name("10.0.0.5").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("fe01.contoso.local").unwrap(),
            ServerName::DnsName(_)
        ));
        let err = server_name("bad host!").unwrap_err();
        assert!(matches!(err, TlsError::BadServerName { .. }), "{err:?}");
        assert!(server_name("").is_err());
    }
}
