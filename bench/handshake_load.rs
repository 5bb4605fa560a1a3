//! Full-handshake load for `bench/ocsp-staple.sh`: N concurrent clients, each doing TCP
//! connect + full TLS handshake (no resumption) + one `Connection: close` request, for a
//! fixed time. rustls always asks for OCSP (status_request), as Windows and browsers do, so a
//! stapling server sends its staple in every handshake; the verifier counts staples seen.
//!
//! `cargo run --release --example handshake_load -- ADDR SNI CA.pem CONCURRENCY SECONDS`

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Verifies as usual and counts handshakes that carried an OCSP staple.
#[derive(Debug)]
struct Counting {
    inner: Arc<WebPkiServerVerifier>,
    stapled: AtomicU64,
}

impl ServerCertVerifier for Counting {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !ocsp_response.is_empty() {
            self.stapled.fetch_add(1, Ordering::Relaxed);
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: handshake_load ADDR SNI CA.pem CONCURRENCY SECONDS");
        std::process::exit(2);
    }
    let addr: SocketAddr = args[1].parse().expect("ADDR");
    let sni = ServerName::try_from(args[2].clone()).expect("SNI");
    let pem = std::fs::read(&args[3]).expect("CA file");
    let concurrency: usize = args[4].parse().expect("CONCURRENCY");
    let secs: u64 = args[5].parse().expect("SECONDS");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.expect("PEM")).expect("CA");
    }
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .expect("verifier");
    let verifier = Arc::new(Counting {
        inner,
        stapled: AtomicU64::new(0),
    });
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    cfg.resumption = Resumption::disabled();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));

    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (connector, sni, done, failed) =
            (connector.clone(), sni.clone(), done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let ok = async {
                    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
                    let mut tls = connector.connect(sni.clone(), tcp).await.ok()?;
                    tls.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                        .await
                        .ok()?;
                    let mut buf = Vec::new();
                    let _ = tls.read_to_end(&mut buf).await;
                    buf.starts_with(b"HTTP/1.1 200").then_some(())
                }
                .await;
                match ok {
                    Some(()) => done.fetch_add(1, Ordering::Relaxed),
                    None => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "handshakes_per_sec={:.1} ok={} failed={} stapled={}",
        n as f64 / elapsed,
        n,
        failed.load(Ordering::Relaxed),
        verifier.stapled.load(Ordering::Relaxed)
    );
}
