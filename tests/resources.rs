//! Portico's own limits are never blamed on a member: running out of file descriptors
//! refuses clients cleanly and leaves member health alone.

mod common;

use common::*;
use portico::demo::backend::Role;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_refuses_clients_and_never_takes_a_member_out() {
    let lab = Lab::new();
    let proxy_ip = unique_loopback();
    let member_ip = unique_loopback();
    let _m = lab
        .plain_member(SocketAddr::new(member_ip, 8080), "app01", Role::Echo)
        .await;
    // Five failures in 30 s would take the member out if Portico blamed it.
    let cfg = lab.write_config(&one_member_config(proxy_ip, member_ip, "", ""));
    let proxy = SocketAddr::new(proxy_ip, 8081);
    // 96 descriptors: each held request needs a client and a member one, so the 150 held
    // below must run out whatever the process needs for itself.
    let p = Portico::start_with_open_files_limit(&cfg, proxy, 96);

    // Client connections first, idle, so that the descriptors are gone when their requests
    // need member connections: those connects fail with EMFILE.
    let mut conns = Vec::new();
    for _ in 0..150 {
        if let Ok(s) = TcpStream::connect(proxy).await {
            conns.push(s);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut held = Vec::new();
    for mut s in conns {
        held.push(tokio::spawn(async move {
            let req = "GET /long-poll?secs=1 HTTP/1.1\r\nHost: app.contoso.com\r\nConnection: close\r\n\r\n";
            if s.write_all(req.as_bytes()).await.is_err() {
                return String::from("closed");
            }
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
            String::from_utf8_lossy(&out).lines().next().unwrap_or("closed").to_owned()
        }));
    }
    let (mut ok, mut overloaded, mut closed) = (0, 0, 0);
    for h in held {
        let line = h.await.unwrap();
        if line.contains(" 200 ") {
            ok += 1;
        } else if line.contains(" 503 ") {
            overloaded += 1;
        } else {
            assert_eq!(
                line, "closed",
                "a client Portico cannot serve gets a 503 or a close"
            );
            closed += 1;
        }
    }
    let log = p.log_text();
    // Five member failures would have taken it out; each 503 here was one before.
    assert!(
        overloaded >= 5 && log.contains("out of resources"),
        "the test must make member connects fail with EMFILE to mean anything (served {ok}, 503 {overloaded}, closed {closed}): {log}"
    );
    assert!(
        !log.contains("taken out"),
        "Portico's own exhaustion took a healthy member out: {log}"
    );
    // Once the surge is over, the member serves every request.
    for _ in 0..10 {
        let mut c = H1::connect(proxy).await.unwrap();
        let r = c.get("app.contoso.com", "/echo", &[]).await.unwrap();
        assert_eq!(r.status, 200, "member still in after the surge");
    }
}

/// A client that connects and sends nothing (or half a head) holds a connection slot only
/// for `header_read_timeout`: on clear text the timer runs before the first byte, while the
/// protocol is not known yet, and on after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_after_the_header_read_timeout() {
    let lab = Lab::new();
    let proxy_ip = unique_loopback();
    let member_ip = unique_loopback();
    let _m = lab
        .plain_member(SocketAddr::new(member_ip, 8080), "app01", Role::Echo)
        .await;
    let cfg = lab.write_config(&one_member_config(
        proxy_ip,
        member_ip,
        "header_read_timeout = \"1s\"",
        "",
    ));
    let proxy = SocketAddr::new(proxy_ip, 8081);
    let _p = Portico::start(&cfg, proxy);
    for first in [&b""[..], &b"P"[..], &b"GET /echo HTTP/1.1\r\nHost: app"[..]] {
        let mut s = TcpStream::connect(proxy).await.unwrap();
        s.write_all(first).await.unwrap();
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        assert!(
            matches!(closed, Ok(Ok(_))),
            "{:?}: not closed within 10 s ({closed:?})",
            String::from_utf8_lossy(first)
        );
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
            "{:?}: closed after {waited:?}, header_read_timeout is 1 s",
            String::from_utf8_lossy(first)
        );
    }
}
