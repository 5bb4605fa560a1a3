use super::*;
use crate::tls::test_support::{Ca, Leaf, TempDir, WriteTo};
use crate::tls::{load_certificate, CertSlot, CertSource, CertificateSpec};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Fixture {
    ca: Ca,
    _dir: TempDir,
    default: Leaf,
    wildcard: Leaf,
    exact: Leaf,
    certs: Vec<LoadedCertificate>,
}

/// Default cert first (also has an IP SAN so a no-SNI client connecting by IP can verify it),
/// then a wildcard, then an exact name that the wildcard also covers.
fn fixture() -> Fixture {
    let ca = Ca::new();
    let dir = TempDir::new();
    let default = ca.leaf(&["portico.contoso.com", "127.0.0.1"]);
    let wildcard = ca.leaf(&["*.contoso.com"]);
    let exact = ca.leaf(&["lyncweb.contoso.com"]);
    let mut certs = Vec::new();
    for (stem, leaf) in [
        ("default", &default),
        ("wild", &wildcard),
        ("exact", &exact),
    ] {
        leaf.write_to(&dir, stem);
        certs.push(
            load_certificate(&CertificateSpec {
                cert: dir.path(&format!("{stem}.pem")),
                key: dir.path(&format!("{stem}.key")),
                allow_expired: false,
            })
            .unwrap(),
        );
    }
    Fixture {
        ca,
        _dir: dir,
        default,
        wildcard,
        exact,
        certs,
    }
}

fn options(http1_only: &[&str]) -> ListenerTlsOptions {
    ListenerTlsOptions {
        http1_only_hosts: http1_only.iter().map(|s| s.to_string()).collect(),
        ..ListenerTlsOptions::default()
    }
}

struct Outcome {
    peer_cert: Vec<u8>,
    client_alpn: Option<Vec<u8>>,
    h2: bool,
    sni: Option<String>,
    version: &'static str,
}

/// One real handshake over 127.0.0.1, plus a byte each way to prove the stream works.
async fn handshake(
    tls: ListenerTls,
    client: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let mut acc = tls.accept(sock).await.unwrap();
        let mut b = [0u8; 1];
        acc.stream.read_exact(&mut b).await.unwrap();
        acc.stream.write_all(&b).await.unwrap();
        acc.stream.flush().await.unwrap();
        (acc.h2(), acc.sni, acc.version)
    });
    let sock = TcpStream::connect(addr).await.unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(client)
        .connect(name, sock)
        .await
        .unwrap();
    stream.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    stream.read_exact(&mut b).await.unwrap();
    let conn = stream.get_ref().1;
    let peer_cert = conn.peer_certificates().unwrap()[0].to_vec();
    let client_alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let (h2, sni, version) = server.await.unwrap();
    Outcome {
        peer_cert,
        client_alpn,
        h2,
        sni,
        version,
    }
}

fn dns(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_owned()).unwrap()
}

const BOTH: &[&[u8]] = &[b"h2", b"http/1.1"];
const ALL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

#[tokio::test]
async fn wildcard_certificate_served_for_covered_sni() {
    let f = fixture();
    let tls = ListenerTls::new(f.certs, 0, options(&[])).unwrap();
    let out = handshake(
        tls,
        f.ca.client(BOTH, ALL_VERSIONS),
        dns("meet.contoso.com"),
    )
    .await;
    assert_eq!(out.peer_cert, f.wildcard.der);
    assert_eq!(out.sni.as_deref(), Some("meet.contoso.com"));
    assert_eq!(out.version, "TLSv1.3");
}

#[tokio::test]
async fn exact_certificate_preferred_over_wildcard() {
    let f = fixture();
    let tls = ListenerTls::new(f.certs, 0, options(&[])).unwrap();
    let out = handshake(
        tls,
        f.ca.client(BOTH, ALL_VERSIONS),
        dns("LyncWeb.Contoso.com"),
    )
    .await;
    assert_eq!(out.peer_cert, f.exact.der);
    assert_eq!(out.sni.as_deref(), Some("lyncweb.contoso.com"));
}

#[tokio::test]
async fn client_without_sni_gets_default_certificate() {
    let f = fixture();
    let tls = ListenerTls::new(f.certs, 0, options(&[])).unwrap();
    let ip = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let out = handshake(tls, f.ca.client(BOTH, ALL_VERSIONS), ip).await;
    assert_eq!(out.peer_cert, f.default.der);
    assert_eq!(out.sni, None);
}

#[tokio::test]
async fn chosen_default_index_serves_sni_clients() {
    let f = fixture();
    let tls = ListenerTls::new(f.certs, 2, options(&[])).unwrap();
    let mut client = (*f.ca.client(BOTH, ALL_VERSIONS)).clone();
    client.enable_sni = false;
    let out = handshake(tls, Arc::new(client), dns("lyncweb.contoso.com")).await;
    assert_eq!(out.peer_cert, f.exact.der);
    assert_eq!(out.sni, None);
}

#[tokio::test]
async fn http1_only_host_negotiates_http1_others_h2() {
    let f = fixture();
    let opts = options(&["lyncweb.contoso.com", "*.fabrikam.com"]);
    let client = f.ca.client(BOTH, ALL_VERSIONS);

    let tls = ListenerTls::new(f.certs.clone(), 0, opts.clone()).unwrap();
    let out = handshake(tls, client.clone(), dns("lyncweb.contoso.com")).await;
    assert!(!out.h2);
    assert_eq!(out.client_alpn.as_deref(), Some(&b"http/1.1"[..]));

    let tls = ListenerTls::new(f.certs, 0, opts).unwrap();
    let out = handshake(tls, client, dns("meet.contoso.com")).await;
    assert!(out.h2);
    assert_eq!(out.client_alpn.as_deref(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn tls12_client_reports_tls12() {
    let f = fixture();
    let tls = ListenerTls::new(f.certs, 0, options(&[])).unwrap();
    let client = f.ca.client(BOTH, &[&rustls::version::TLS12]);
    let out = handshake(tls, client, dns("meet.contoso.com")).await;
    assert_eq!(out.version, "TLSv1.2");
    assert!(out.h2);
}

#[tokio::test]
async fn tls13_minimum_refuses_tls12_client() {
    let f = fixture();
    let opts = ListenerTlsOptions {
        min_version: TlsVersion::Tls13,
        ..options(&[])
    };
    let tls = ListenerTls::new(f.certs, 0, opts).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        tls.accept(sock).await.map(|_| ())
    });
    let client = f.ca.client(BOTH, &[&rustls::version::TLS12]);
    let sock = TcpStream::connect(addr).await.unwrap();
    let res = tokio_rustls::TlsConnector::from(client)
        .connect(dns("meet.contoso.com"), sock)
        .await;
    assert!(res.is_err());
    assert!(server.await.unwrap().is_err());
}

#[tokio::test]
async fn handshake_times_out_for_silent_client() {
    let f = fixture();
    let opts = ListenerTlsOptions {
        handshake_timeout: Duration::from_millis(100),
        ..options(&[])
    };
    let tls = ListenerTls::new(f.certs, 0, opts).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _silent = TcpStream::connect(addr).await.unwrap();
    let (sock, _) = listener.accept().await.unwrap();
    let started = std::time::Instant::now();
    let err = tls.accept(sock).await.err().expect("must time out");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn resolver_prefers_exact_then_wildcard_then_default() {
    let f = fixture();
    let r = SniResolver::new(slots(&f.certs), 0);
    let is = |sni: Option<&str>, i: usize| Arc::ptr_eq(&r.select(sni), &f.certs[i].key);
    assert!(is(Some("lyncweb.contoso.com"), 2));
    assert!(is(Some("LYNCWEB.contoso.com."), 2));
    assert!(is(Some("meet.contoso.com"), 1));
    assert!(is(Some("a.b.contoso.com"), 0));
    assert!(is(Some("contoso.com"), 0));
    assert!(is(Some("portico.contoso.com"), 0));
    assert!(is(Some("other.fabrikam.com"), 0));
    assert!(is(None, 0));
}

#[test]
fn earlier_certificate_wins_a_shared_name() {
    let f = fixture();
    f.ca.leaf(&["*.contoso.com", "lyncweb.contoso.com"])
        .write_to(&f._dir, "later");
    let later = load_certificate(&CertificateSpec {
        cert: f._dir.path("later.pem"),
        key: f._dir.path("later.key"),
        allow_expired: false,
    })
    .unwrap();
    let mut certs = f.certs.clone();
    certs.push(later);
    let r = SniResolver::new(slots(&certs), 0);
    assert!(Arc::ptr_eq(
        &r.select(Some("meet.contoso.com")),
        &certs[1].key
    ));
    assert!(Arc::ptr_eq(
        &r.select(Some("lyncweb.contoso.com")),
        &certs[2].key
    ));
}

fn slots(certs: &[LoadedCertificate]) -> Vec<Arc<CertSlot>> {
    certs
        .iter()
        .map(|c| {
            let spec = CertificateSpec {
                cert: c.cert_path.clone(),
                key: c.cert_path.clone(),
                allow_expired: false,
            };
            CertSlot::new(CertSource::File(spec), c.clone())
        })
        .collect()
}

#[test]
fn swapped_certificate_is_selected_and_its_new_names_follow() {
    let f = fixture();
    let slots = slots(&f.certs);
    let r = SniResolver::new(slots.clone(), 0);
    assert!(Arc::ptr_eq(
        &r.select(Some("dialin.fabrikam.com")),
        &f.certs[0].key
    ));
    f.ca.leaf(&["lyncweb.contoso.com", "dialin.fabrikam.com"])
        .write_to(&f._dir, "renewed");
    let renewed = load_certificate(&CertificateSpec {
        cert: f._dir.path("renewed.pem"),
        key: f._dir.path("renewed.key"),
        allow_expired: false,
    })
    .unwrap();
    slots[2].store(renewed.clone());
    assert!(Arc::ptr_eq(
        &r.select(Some("lyncweb.contoso.com")),
        &renewed.key
    ));
    assert!(Arc::ptr_eq(
        &r.select(Some("dialin.fabrikam.com")),
        &renewed.key
    ));
}

#[test]
fn host_set_matches_exact_and_one_label_wildcards() {
    let set = HostSet::new(&["Lync.Contoso.com.".into(), "*.fabrikam.com".into()]).unwrap();
    assert!(set.contains("lync.contoso.com"));
    assert!(set.contains("LYNC.contoso.com"));
    assert!(set.contains("owa.fabrikam.com"));
    assert!(!set.contains("a.owa.fabrikam.com"));
    assert!(!set.contains("fabrikam.com"));
    assert!(!set.contains("meet.contoso.com"));
}

#[test]
fn bad_http1_only_patterns_are_rejected() {
    for bad in [
        "",
        "*",
        "*.",
        "a.*.com",
        "foo..com",
        "bad host.com",
        "**.x.com",
    ] {
        let err = HostSet::new(&[bad.to_string()]).unwrap_err();
        assert!(
            matches!(err, TlsError::BadHostPattern { .. }),
            "{bad}: {err:?}"
        );
        assert!(err.to_string().starts_with("http1_only_hosts:"), "{err}");
    }
}

#[test]
fn new_rejects_empty_list_and_bad_default_index() {
    let err = ListenerTls::new(vec![], 0, ListenerTlsOptions::default()).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificates));
    let f = fixture();
    let err = ListenerTls::new(f.certs, 3, ListenerTlsOptions::default()).unwrap_err();
    assert!(matches!(
        err,
        TlsError::DefaultOutOfRange { index: 3, count: 3 }
    ));
}

#[test]
fn certificates_are_exposed_in_order() {
    let f = fixture();
    let paths: Vec<_> = f.certs.iter().map(|c| c.cert_path.clone()).collect();
    let tls = ListenerTls::new(f.certs, 0, ListenerTlsOptions::default()).unwrap();
    let got: Vec<_> = tls
        .certificates()
        .iter()
        .map(|c| c.cert_path.clone())
        .collect();
    assert_eq!(got, paths);
}
