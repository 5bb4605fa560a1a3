//! Member tests over real sockets on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ws::accept_key;
use super::*;

async fn start(name: &str, role: Role) -> Backend {
    let opts = BackendOptions {
        name: name.to_string(),
        tls: None,
        role,
    };
    Backend::start("127.0.0.1:0".parse().unwrap(), opts)
        .await
        .unwrap()
}

/// An HTTP/1.1 client connection (one TCP connection, keep-alive).
async fn client_on<S>(io: S) -> SendRequest<Payload>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn client(addr: SocketAddr) -> SendRequest<Payload> {
    client_on(TcpStream::connect(addr).await.unwrap()).await
}

struct Got {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Got {
    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }
}

async fn send(c: &mut SendRequest<Payload>, req: Request<Payload>) -> Got {
    c.ready().await.unwrap();
    let resp = c.send_request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Got {
        status,
        headers,
        body,
    }
}

fn get(host: &str, target: &str) -> Request<Payload> {
    Request::get(target)
        .header("host", host)
        .body(Payload::empty())
        .unwrap()
}

/// Sends raw bytes and reads the whole response (the request must say `Connection: close`).
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn every_response_carries_x_backend_including_404() {
    let b = start("fe1", Role::FrontEnd).await;
    let mut c = client(b.addr).await;
    for target in ["/meet", "/nope", "/status/503"] {
        let r = send(&mut c, get("webext.contoso.com", target)).await;
        assert_eq!(r.all("x-backend"), ["fe1"], "{target}");
    }
    let r = send(&mut c, get("webext.contoso.com", "/nope")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(b.connections_accepted(), 1);
    assert_eq!(b.requests_seen(), 4);
}

#[tokio::test]
async fn echo_reports_exact_target_and_host() {
    let b = start("e1", Role::Echo).await;
    let target = "/echo/a%2Fb/../c?WopiSrc=http%253A%252F%252Fx&y";
    let resp = raw(
        b.addr,
        &format!(
            "POST {target} HTTP/1.1\r\nHost: Meet.Contoso.com:4443\r\nX-Q: \"q\"\r\n\
Content-Length: 5\r\nConnection: close\r\n\r\nhello"
        ),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(&format!("\"uri\":\"{target}\"")), "{resp}");
    assert!(
        resp.contains("\"host\":\"Meet.Contoso.com:4443\""),
        "{resp}"
    );
    assert!(resp.contains("\"method\":\"POST\""), "{resp}");
    assert!(resp.contains("\"tls\":false"), "{resp}");
    assert!(resp.contains(&format!("\"local_port\":{}", b.addr.port())));
    assert!(resp.contains("[\"x-q\",\"\\\"q\\\"\"]"), "{resp}");
    assert!(resp.contains("\"body_bytes\":5"), "{resp}");
    assert!(resp.contains("\"backend\":\"e1\""), "{resp}");
}

#[tokio::test]
async fn download_streams_requested_bytes_with_pattern() {
    let b = start("e1", Role::Echo).await;
    let mut c = client(b.addr).await;
    let n = 3 * 64 * 1024 + 17;
    let r = send(&mut c, get("x", &format!("/download?bytes={n}"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-length"], n.to_string().as_str());
    assert_eq!(r.body.len(), n);
    assert!(r.body.iter().enumerate().all(|(i, b)| *b == i as u8));
    let r = send(&mut c, get("x", "/download?bytes=-1")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn upload_counts_ten_mebibytes() {
    let b = start("e1", Role::Echo).await;
    let mut c = client(b.addr).await;
    let n: u64 = 10 * 1024 * 1024;
    let req = Request::post("/upload")
        .header("host", "x")
        .header("content-length", n)
        .body(Payload::Download { remaining: n })
        .unwrap();
    let r = send(&mut c, req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), format!("{{\"received\":{n}}}"));
}

#[tokio::test]
async fn abs_and_group_expansion_challenge_with_ntlm_and_negotiate() {
    let b = start("fe1", Role::FrontEnd).await;
    let mut c = client(b.addr).await;
    for target in [
        "/abs",
        "/abs/handler",
        "/GroupExpansion/service.svc",
        "/CertProv/CertProvisioningService.svc",
    ] {
        let r = send(&mut c, get("webext.contoso.com", target)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{target}");
        assert_eq!(r.all("www-authenticate"), ["NTLM", "Negotiate"], "{target}");
    }
}

#[tokio::test]
async fn lyncdiscover_answers_json_or_xml_by_accept_with_received_host() {
    let b = start("fe1", Role::FrontEnd).await;
    let mut c = client(b.addr).await;
    let host = "lyncdiscover.contoso.com";
    let r = send(&mut c, get(host, "/")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers["content-type"],
        "application/vnd.microsoft.rtc.autodiscover+json; v=1"
    );
    let expected_self = "\"self\":{\"href\":\"https://lyncdiscover.contoso.com/Autodiscover/\
AutodiscoverService.svc/root?originalDomain=contoso.com\"}";
    assert!(r.text().contains(expected_self), "{}", r.text());
    assert!(r.text().contains("\"xframe\""));

    let mut req = get(host, "/");
    req.headers_mut().insert(
        "accept",
        http::HeaderValue::from_static("application/vnd.microsoft.rtc.autodiscover+xml;v=1"),
    );
    let r = send(&mut c, req).await;
    assert_eq!(
        r.headers["content-type"],
        "application/vnd.microsoft.rtc.autodiscover+xml; v=1"
    );
    assert!(r
        .text()
        .contains("<Link token=\"User\" href=\"https://lyncdiscover.contoso.com/"));

    // Path-style on the web services FQDN, no Accept: JSON (Microsoft's health probe).
    let r = send(
        &mut c,
        get(
            "webext.contoso.com",
            "/Autodiscover/AutodiscoverService.svc/root",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r
        .text()
        .contains("https://webext.contoso.com/Autodiscover/"));
}

#[tokio::test]
async fn simple_urls_serve_by_host_and_path_and_ucwa_asks_for_oauth() {
    let b = start("fe1", Role::FrontEnd).await;
    let mut c = client(b.addr).await;
    let r = send(&mut c, get("meet.contoso.com", "/")).await;
    assert!(r.text().contains("Meeting troubleshooting"));
    let r = send(&mut c, get("webext.contoso.com", "/meet/alice/ABC123")).await;
    assert!(r.text().contains("Meeting troubleshooting"));
    let r = send(&mut c, get("dialin.contoso.com", "/anything")).await;
    assert!(r.text().contains("Dial-in"));
    let r = send(&mut c, get("webext.contoso.com", "/Scheduler")).await;
    assert!(r.text().contains("<form"));
    let r = send(&mut c, get("webext.contoso.com", "/ucwa/v1/applications")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.all("www-authenticate"),
        ["MsRtcOAuth href=\"https://webext.contoso.com/WebTicket/oauthtoken\",grant_type=\"urn:microsoft.rtc:windows,urn:microsoft.rtc:anonmeeting,password\""]
    );
}

#[tokio::test]
async fn office_online_serves_discovery_and_echoes_raw_target() {
    let b = start("oos1", Role::OfficeOnline).await;
    let mut c = client(b.addr).await;
    let r = send(&mut c, get("oos.contoso.com", "/hosting/discovery")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r
        .text()
        .contains("<wopi-discovery><net-zone name=\"external-https\">"));
    assert!(r
        .text()
        .contains("urlsrc=\"https://oos.contoso.com/wv/wordviewerframe.aspx?&amp;\""));
    let target = "/p/PowerPointFrame.aspx?WopiSrc=https%253A%252F%252Ffe%252Fx";
    let r = send(&mut c, get("oos.contoso.com", target)).await;
    assert!(r.text().contains(target), "{}", r.text());
    let r = send(&mut c, get("oos.contoso.com", "/meet")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

fn ntlm(token: &str) -> String {
    format!("NTLM {}", codec::base64_encode(token.as_bytes()))
}

fn auth_req(token: Option<&str>) -> Request<Payload> {
    let mut req = get("webext.contoso.com", "/auth/ntlm");
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", http::HeaderValue::from_str(t).unwrap());
    }
    req
}

#[tokio::test]
async fn ntlm_leg_three_succeeds_only_on_the_challenged_connection() {
    let b = start("fe1", Role::FrontEnd).await;
    let mut c1 = client(b.addr).await;
    let r = send(&mut c1, auth_req(None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.all("www-authenticate"), ["NTLM", "Negotiate"]);

    let r = send(&mut c1, auth_req(Some(&ntlm("TYPE1")))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let challenge = r.all("www-authenticate")[0].strip_prefix("NTLM ").unwrap();
    assert_eq!(codec::base64_decode(challenge).unwrap(), b"CHALLENGE:1");

    // Leg 3 on a different connection fails.
    let mut c2 = client(b.addr).await;
    let r = send(&mut c2, auth_req(Some(&ntlm("TYPE3:alice")))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Leg 3 on the challenged connection succeeds, and the connection stays authenticated.
    let r = send(&mut c1, auth_req(Some(&ntlm("TYPE3:alice")))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "authenticated as alice on connection 1");
    let r = send(&mut c1, auth_req(None)).await;
    assert_eq!(r.text(), "authenticated as alice on connection 1");
    let r = send(&mut c2, auth_req(None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(b.connections_accepted(), 2);
}

#[test]
/// RFC 6455 section 1.3 (the value is checked against Python hashlib too).
fn websocket_accept_key_matches_rfc6455_sample() {
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

/// Reads a response head from a raw stream, byte by byte (so nothing after it is consumed).
async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(s.read_u8().await.unwrap());
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn websocket_handshake_then_frames_echo_and_close() {
    let b = start("e1", Role::Echo).await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    assert!(head.to_ascii_lowercase().contains("x-backend: e1"));

    // Masked text frame "Hello" (RFC 6455 section 5.7 sample).
    s.write_all(&[
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ])
    .await
    .unwrap();
    let mut echoed = [0u8; 7];
    s.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"\x81\x05Hello");

    // Masked 300-byte binary frame (16-bit length).
    let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x82, 0xFE, 0x01, 0x2C];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).await.unwrap();
    let mut hdr = [0u8; 4];
    s.read_exact(&mut hdr).await.unwrap();
    assert_eq!(hdr, [0x82, 0x7E, 0x01, 0x2C]);
    let mut got = vec![0u8; 300];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(got, payload);

    // Close 1000 → close echoed, then EOF.
    s.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8])
        .await
        .unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, [0x88, 0x02, 0x03, 0xE8]);
}

#[tokio::test]
async fn tls_backend_answers_over_tls_with_alpn_http11() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let config = server_config_from_pem(&ck.cert.pem(), &ck.key_pair.serialize_pem()).unwrap();
    let opts = BackendOptions {
        name: "fe-tls".into(),
        tls: Some(config),
        role: Role::FrontEnd,
    };
    let b = Backend::start("127.0.0.1:0".parse().unwrap(), opts)
        .await
        .unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cc = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cc.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cc));
    let tcp = TcpStream::connect(b.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut c = client_on(tls).await;
    let r = send(&mut c, get("webext.contoso.com", "/echo")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("\"tls\":true"), "{}", r.text());
    assert_eq!(r.all("x-backend"), ["fe-tls"]);
}

#[test]
fn server_config_from_pem_rejects_garbage() {
    assert!(matches!(
        server_config_from_pem("nothing here", "nor here"),
        Err(BackendError::NoCertificate)
    ));
}

#[tokio::test]
async fn shutdown_drops_open_connections_and_stops_accepting() {
    let b = start("e1", Role::Echo).await;
    let addr = b.addr;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Let the member see the request before killing it.
    for _ in 0..100 {
        if b.requests_seen() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.requests_seen(), 1);
    b.shutdown();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn slow_body_sends_first_chunk_before_waiting() {
    let b = start("e1", Role::Echo).await;
    let mut c = client(b.addr).await;
    c.ready().await.unwrap();
    let resp = c.send_request(get("x", "/slow-body?secs=1")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_millis(500), body.frame())
        .await
        .expect("first chunk arrives before the wait")
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first chunk\n");
    let started = std::time::Instant::now();
    let last = body.frame().await.unwrap().unwrap();
    assert_eq!(last.into_data().unwrap(), "last chunk\n");
    assert!(started.elapsed() >= Duration::from_millis(800));
}

#[tokio::test]
async fn long_poll_waits_and_status_answers_requested_code() {
    let b = start("e1", Role::Echo).await;
    let mut c = client(b.addr).await;
    let r = send(&mut c, get("x", "/long-poll?secs=0")).await;
    assert_eq!(r.text(), "done");
    let r = send(&mut c, get("x", "/status/418")).await;
    assert_eq!(r.status.as_u16(), 418);
    let r = send(&mut c, get("x", "/status/99")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn stall_never_answers_and_ends_when_client_closes() {
    let b = start("e1", Role::Echo).await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    s.write_all(b"GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
    assert!(early.is_err(), "stall must send nothing");
    // Half-close: the member sees EOF and drops the stalled request with the connection.
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
}
