//! PROXY protocol on a listener: the client address from the header reaches the member,
//! and only the configured balancers may send one.

mod common;

use common::*;
use portico::demo::backend::Role;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn exchange(addr: SocketAddr, prefix: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(prefix).await;
    // Refused connections may be closed before this is written.
    let _ = s.write_all(b"GET /echo HTTP/1.1\r\nHost: app.contoso.com\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n").await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_address_from_a_proxy_header_reaches_the_member_and_logs() {
    let lab = Lab::new();
    let proxy_ip = unique_loopback();
    let member = unique_loopback();
    let _m = lab
        .plain_member(SocketAddr::new(member, 8080), "fe01", Role::FrontEnd)
        .await;
    let cfg = lab.write_config(&one_member_config(
        proxy_ip,
        member,
        "proxy_protocol = { from = [\"127.0.0.0/8\"] }",
        &format!(
            "[[listener]]\nbind = \"{proxy_ip}:8082\"\nproxy_protocol = {{ from = [\"10.9.9.0/24\"] }}\n[log]\naccess_log = \"access.log\"\naccess_format = \"json\"\n"
        ),
    ));
    let p = Portico::start(&cfg, SocketAddr::new(proxy_ip, 8081));
    let addr = SocketAddr::new(proxy_ip, 8081);
    // v1
    let r = exchange(addr, b"PROXY TCP4 198.51.100.7 203.0.113.10 51000 443\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("[\"x-forwarded-for\",\"198.51.100.7\"]"), "{r}");
    // v2, TCP over IPv4: signature, version 2 / PROXY, AF_INET + STREAM, 12 address bytes.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[
        0x21, 0x11, 0x00, 0x0c, 192, 0, 2, 44, 203, 0, 113, 10, 0xc3, 0x50, 0x01, 0xbb,
    ]);
    let r = exchange(addr, &v2).await;
    assert!(r.contains("[\"x-forwarded-for\",\"192.0.2.44\"]"), "{r}");
    // No header where one is required: closed unanswered.
    let r = exchange(addr, b"").await;
    assert!(r.is_empty(), "{r}");
    // From a source that is not a configured balancer: refused.
    let r = exchange(
        SocketAddr::new(proxy_ip, 8082),
        b"PROXY TCP4 198.51.100.7 203.0.113.10 51000 443\r\n",
    )
    .await;
    assert!(r.is_empty(), "{r}");
    assert!(
        p.log_text()
            .contains("PROXY protocol is accepted only from"),
        "{}",
        p.log_text()
    );
    // The access log names the real client.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let log = std::fs::read_to_string(lab.path("access.log")).unwrap();
    assert!(log.contains("\"client\":\"198.51.100.7\""), "{log}");
}
