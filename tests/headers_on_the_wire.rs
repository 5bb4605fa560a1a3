//! Header names and sizes on the wire, as Outlook and Kerberos need them: case kept both ways
//! on HTTP/1.1 (raw bytes read by a raw TCP member and a raw TLS client), a 63,000-character
//! Negotiate header and a 96 KiB head by default, and a 431 naming the limit over it.

mod common;

use common::*;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A member that is only a TCP socket: it records every request head byte for byte and
/// answers each with `response` (so the test sees exactly what went over the wire).
struct RawMember {
    heads: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl RawMember {
    async fn start(addr: SocketAddr, response: &'static [u8]) -> RawMember {
        let listener = TcpListener::bind(addr).await.expect("bind raw member");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&heads);
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    while let Some(head) = read_head(&mut tcp).await {
                        seen.lock().unwrap().push(head);
                        if tcp.write_all(response).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        RawMember { heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads
            .lock()
            .unwrap()
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect()
    }
}

/// Reads a whole response sent with `Connection: close` (until the proxy closes).
async fn read_to_close<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

const MIXED_CASE_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nX-FEServer: EX01\r\nX-BEServer: EX02\r\nrequest-id: 6d0c7a52-1f3e\r\nX-OWA-Version: 15.2.1544.4\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";

/// A TLS listener on `proxy_ip:8443` for `*.contoso.com` and a clear one on 8081, one farm
/// `ex` whose member is `member:8080` in clear, `listener_extra` in both listeners.
fn proxy_config(proxy_ip: IpAddr, member: IpAddr, listener_extra: &str) -> String {
    format!(
        r#"
[[listener]]
bind = "{proxy_ip}:8443"
tls = {{ certificates = [ {{ cert = "external.pem", key = "external.key" }} ] }}
{listener_extra}

[[listener]]
bind = "{proxy_ip}:8081"
{listener_extra}

[[farm]]
name = "ex"
members = [ {{ address = "{member}" }} ]
http_port = 8080

[[rule]]
name = "ex"
action = {{ route = "ex", scheme = "http" }}
"#
    )
}

/// The lab, a Portico on [`proxy_config`] (with `listener_extra`) and its raw member, which
/// answers [`MIXED_CASE_RESPONSE`].
struct Running {
    lab: Lab,
    proxy_ip: IpAddr,
    member: RawMember,
    _portico: Portico,
}

impl Running {
    async fn start(listener_extra: &str) -> Running {
        let lab = Lab::new();
        lab.external_cert("external", &["*.contoso.com"]);
        let proxy_ip = unique_loopback();
        let member_ip = unique_loopback();
        let member = RawMember::start(SocketAddr::new(member_ip, 8080), MIXED_CASE_RESPONSE).await;
        let cfg = lab.write_config(&proxy_config(proxy_ip, member_ip, listener_extra));
        let _portico = Portico::start(&cfg, SocketAddr::new(proxy_ip, 8443));
        Running {
            lab,
            proxy_ip,
            member,
            _portico,
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, request: &[u8]) -> String {
    s.write_all(request).await.unwrap();
    s.flush().await.unwrap();
    read_to_close(s).await
}

#[tokio::test]
async fn header_names_keep_their_case_both_ways_on_http1_over_tls() {
    let Running {
        lab,
        proxy_ip,
        member,
        _portico,
    } = Running::start("").await;

    let mut tls = tls_client(&lab, SocketAddr::new(proxy_ip, 8443), "mail.contoso.com").await;
    let got = exchange(
        &mut tls,
        b"GET /owa/ HTTP/1.1\r\nHost: mail.contoso.com\r\nX-AnchorMailbox: alice@contoso.com\r\nUser-Agent: MSRPC\r\nX-ClientApplication: Outlook/16.0.4266\r\nx-lower: 1\r\nCONNECTION: close\r\n\r\n",
    )
    .await;
    // The client reads the member's spelling, byte for byte.
    for line in [
        "X-FEServer: EX01\r\n",
        "X-BEServer: EX02\r\n",
        "request-id: 6d0c7a52-1f3e\r\n",
        "X-OWA-Version: 15.2.1544.4\r\n",
        "Content-Type: text/plain\r\n",
    ] {
        assert!(got.contains(line), "response lacks {line:?}:\n{got}");
    }
    let heads = member.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    // The member reads the client's spelling; headers Portico adds are Title-Case.
    for line in [
        "Host: mail.contoso.com\r\n",
        "X-AnchorMailbox: alice@contoso.com\r\n",
        "User-Agent: MSRPC\r\n",
        "X-ClientApplication: Outlook/16.0.4266\r\n",
        "x-lower: 1\r\n",
    ] {
        assert!(
            heads[0].contains(line),
            "member got no {line:?}:\n{}",
            heads[0]
        );
    }
}

#[tokio::test]
async fn header_case_is_kept_on_clear_http1_and_on_a_kept_alive_connection() {
    let Running {
        lab: _lab,
        proxy_ip,
        member,
        _portico,
    } = Running::start("").await;
    let mut tcp = TcpStream::connect(SocketAddr::new(proxy_ip, 8081))
        .await
        .unwrap();
    // Two requests on one connection: the second reuses the pooled member connection.
    let got = exchange(
        &mut tcp,
        b"GET /ews/exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nX-AnchorMailbox: a@contoso.com\r\n\r\nGET /ews/exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nX-AnchorMailbox: b@contoso.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(got.matches("X-FEServer: EX01\r\n").count(), 2, "{got}");
    assert_eq!(got.matches("request-id: 6d0c7a52-1f3e\r\n").count(), 2);
    let heads = member.heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(heads[0].contains("X-AnchorMailbox: a@contoso.com\r\n"));
    assert!(heads[1].contains("X-AnchorMailbox: b@contoso.com\r\n"));
}

/// A Kerberos token of 48,000 bytes is ~64,000 base64 characters.
fn negotiate_header(len: usize) -> String {
    let token: String = "YIIA".chars().cycle().take(len).collect();
    format!("Negotiate {token}")
}

#[tokio::test]
async fn a_63000_character_negotiate_header_and_a_96_kib_head_reach_the_member_by_default() {
    let Running {
        lab,
        proxy_ip,
        member,
        _portico,
    } = Running::start("").await;

    let auth = negotiate_header(63_000);
    let cookie: String = "c".repeat(36_000);
    let request = format!(
        "POST /ews/exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: {auth}\r\nCookie: big={cookie}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    assert!(request.len() > 96 * 1024, "{}", request.len());
    let mut tls = tls_client(&lab, SocketAddr::new(proxy_ip, 8443), "mail.contoso.com").await;
    let got = exchange(&mut tls, request.as_bytes()).await;
    assert!(
        got.starts_with("HTTP/1.1 200"),
        "{}",
        &got[..got.len().min(400)]
    );
    let heads = member.heads();
    assert_eq!(heads.len(), 1);
    assert!(
        heads[0].contains(&format!("Authorization: {auth}\r\n")),
        "the member did not get the whole Negotiate header"
    );
    assert!(heads[0].contains(&cookie));
}

#[tokio::test]
async fn a_head_over_max_header_bytes_gets_431_naming_the_limit() {
    let Running {
        lab,
        proxy_ip,
        member,
        _portico,
    } = Running::start("max_header_bytes = 16384").await;
    let auth = negotiate_header(20_000);
    let request = format!(
        "GET /ews/ HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
    );
    let mut tcp = TcpStream::connect(SocketAddr::new(proxy_ip, 8081))
        .await
        .unwrap();
    let got = exchange(&mut tcp, request.as_bytes()).await;
    assert!(got.starts_with("HTTP/1.1 431"), "{got}");
    assert!(got.contains("max_header_bytes = 16384"), "{got}");
    assert!(got.contains("largest header: authorization"), "{got}");
    assert!(
        member.heads().is_empty(),
        "an over-limit head reached the member"
    );

    // h2 takes the same limit, with the same named answer.
    let big = format!("Cookie: big={}", "c".repeat(20_000));
    let r = curl_https(
        &lab,
        "mail.contoso.com",
        proxy_ip,
        8443,
        "/owa/",
        &["--http2", "-H", &big],
    )
    .await;
    assert_eq!(r.http_version, "HTTP/2", "{r:?}");
    assert_eq!(r.status, 431, "{r:?}");
    assert!(
        r.text().contains("max_header_bytes = 16384"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn a_64_kib_cookie_passes_over_h2_by_default() {
    let Running {
        lab,
        proxy_ip,
        member,
        _portico,
    } = Running::start("").await;
    let value = "c".repeat(63_000);
    let big = format!("Cookie: big={value}");
    let r = curl_https(
        &lab,
        "mail.contoso.com",
        proxy_ip,
        8443,
        "/owa/",
        &["--http2", "-H", &big],
    )
    .await;
    assert_eq!(r.http_version, "HTTP/2", "{r:?}");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(member.heads()[0].contains(&value));
}

#[tokio::test]
async fn an_h2_request_reaches_an_http1_member_with_title_case_names() {
    let Running {
        lab,
        proxy_ip,
        member,
        _portico,
    } = Running::start("").await;
    let r = curl_https(
        &lab,
        "mail.contoso.com",
        proxy_ip,
        8443,
        "/owa/",
        &["--http2", "-H", "x-anchormailbox: a@contoso.com"],
    )
    .await;
    assert_eq!(r.http_version, "HTTP/2", "{r:?}");
    let heads = member.heads();
    assert!(
        heads[0].contains("X-Anchormailbox: a@contoso.com\r\n"),
        "{}",
        heads[0]
    );
}

/// A clear-text connection's protocol is told by its first bytes. A first segment that could
/// begin the h2 preface ("P", "PR": POST, PROPFIND) cannot tell, and is sniffed further; one
/// that cannot ("G") goes straight to HTTP/1.1. Each request must be read whole and
/// answered, with the case kept.
#[tokio::test]
async fn a_clear_request_whose_first_segment_is_one_or_two_bytes_is_served_whole() {
    let Running {
        lab: _lab,
        proxy_ip,
        member,
        _portico,
    } = Running::start("").await;
    for (first, rest) in [
        ("P", "OST /ews/exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        ("PR", "OPFIND /ews/exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        ("G", "ET /ews/exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nX-AnchorMailbox: a@contoso.com\r\nConnection: close\r\n\r\n"),
    ] {
        let mut tcp = TcpStream::connect(SocketAddr::new(proxy_ip, 8081))
            .await
            .unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.write_all(first.as_bytes()).await.unwrap();
        // Long enough for Portico to see the first segment alone.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let got = exchange(&mut tcp, rest.as_bytes()).await;
        assert!(got.starts_with("HTTP/1.1 200"), "{first:?}: {got}");
        assert!(got.contains("X-FEServer: EX01\r\n"), "{first:?}: {got}");
    }
    let heads = member.heads();
    assert_eq!(heads.len(), 3, "{heads:?}");
    assert!(
        heads[0].starts_with("POST /ews/exchange.asmx HTTP/1.1\r\n"),
        "{heads:?}"
    );
    assert!(
        heads[1].starts_with("PROPFIND /ews/exchange.asmx HTTP/1.1\r\n"),
        "{heads:?}"
    );
    assert!(
        heads[2].contains("X-AnchorMailbox: a@contoso.com\r\n"),
        "{heads:?}"
    );
}
