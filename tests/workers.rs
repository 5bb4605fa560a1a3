//! Worker per core (`portico::worker`): `portico run` with `workers = 2` serves each
//! connection on one worker. Listener limits still hold for the listener, not per worker;
//! each worker reuses its own member connections; a reload's new listener is served by
//! the workers too.

mod common;

use common::*;
use portico::demo::backend::Role;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A lab with one plain member and Portico (`workers = 2`) running its config. Fields drop
/// in this order: Portico is stopped first, the lab's files removed last.
struct Running {
    p: Portico,
    member: portico::demo::backend::Backend,
    proxy: IpAddr,
    member_ip: IpAddr,
    cfg: std::path::PathBuf,
    _lab: Lab,
}

impl Running {
    async fn start(listener_extra: &str) -> Running {
        let lab = Lab::new();
        let proxy = unique_loopback();
        let member_ip = unique_loopback();
        let member = lab
            .plain_member(SocketAddr::new(member_ip, 8080), "fe01", Role::FrontEnd)
            .await;
        let cfg = lab.write_config(&two_workers(proxy, member_ip, listener_extra));
        let p = Portico::start(&cfg, SocketAddr::new(proxy, 8081));
        Running {
            _lab: lab,
            proxy,
            member_ip,
            member,
            cfg,
            p,
        }
    }
}

fn two_workers(proxy: IpAddr, member: IpAddr, listener_extra: &str) -> String {
    format!(
        "workers = 2\n{}",
        one_member_config(proxy, member, listener_extra, "")
    )
}

/// 16 connections at once against `max_connections = 4` on two workers: exactly 4 are
/// served. Counted per worker, each worker would admit 4 (the kernel spreads 16 new
/// connections over both; all on one has probability 2 * 2^-16).
#[tokio::test]
async fn max_connections_holds_for_the_listener_across_workers() {
    let t = Running::start("max_connections = 4").await;
    // Portico::start's own probe connection must be gone before the limit is counted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(H1::connect(SocketAddr::new(t.proxy, 8081)).await.unwrap());
    }
    let mut served = 0;
    for c in held.iter_mut() {
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            c.get("app.contoso.com", "/echo", &[]),
        )
        .await
        .expect("an answer or a closed connection, not a hang");
        if matches!(r, Ok(ref r) if r.status == 200) {
            served += 1;
        }
    }
    assert_eq!(
        served,
        4,
        "max_connections = 4 must hold for the listener; log:\n{}",
        t.p.log_text()
    );
}

/// 8 clients, 25 requests each, on two workers: every worker reuses the member
/// connections it opened, so the member sees at most one per client connection (8),
/// never one per request (200).
#[tokio::test]
async fn each_worker_reuses_its_member_connections() {
    let t = Running::start("").await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        tasks.push(tokio::spawn(async move {
            let mut c = H1::connect(SocketAddr::new(t.proxy, 8081)).await.unwrap();
            for _ in 0..25 {
                let r = c.get("app.contoso.com", "/echo", &[]).await.unwrap();
                assert_eq!(r.status, 200);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let opened = t.member.connections_accepted();
    assert!(
        (1..=8).contains(&opened),
        "200 requests on 8 client connections opened {opened} member connections; log:\n{}",
        t.p.log_text()
    );
    let worker_threads = std::fs::read_dir(format!("/proc/{}/task", t.p.pid()))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("portico-w"))
        .count();
    assert_eq!(worker_threads, 2, "workers = 2 runs two worker threads");
}

/// A listener added by a reload is served by the workers, and one the reload removes stops
/// accepting on every worker.
#[tokio::test]
async fn a_reloaded_listener_is_served_by_the_workers() {
    let t = Running::start("").await;
    let moved = two_workers(t.proxy, t.member_ip, "").replace(":8081", ":8082");
    std::fs::write(&t.cfg, moved).unwrap();
    t.p.signal("HUP");
    let mut answered = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if H1::connect(SocketAddr::new(t.proxy, 8082)).await.is_ok() {
            break;
        }
    }
    // Several connections, so both workers' accept loops are exercised.
    for _ in 0..8 {
        let mut c = H1::connect(SocketAddr::new(t.proxy, 8082)).await.unwrap();
        if c.get("app.contoso.com", "/echo", &[]).await.unwrap().status == 200 {
            answered += 1;
        }
    }
    assert_eq!(answered, 8, "log:\n{}", t.p.log_text());
    assert!(
        tokio::net::TcpStream::connect(SocketAddr::new(t.proxy, 8081))
            .await
            .is_err(),
        "the removed listener still accepts; log:\n{}",
        t.p.log_text()
    );
}

/// `workers` is fixed for the process: a reload that changes it still applies the rest and
/// says the new count waits for a restart.
#[tokio::test]
async fn a_reload_that_changes_workers_says_it_takes_effect_at_restart() {
    let t = Running::start("").await;
    let one = two_workers(t.proxy, t.member_ip, "").replace("workers = 2", "workers = 1");
    std::fs::write(&t.cfg, one).unwrap();
    t.p.signal("HUP");
    let mut said = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if t.p.log_text().contains("takes effect at the next restart") {
            said = true;
            break;
        }
    }
    assert!(said, "log:\n{}", t.p.log_text());
    assert!(
        t.p.log_text().contains("config reloaded"),
        "{}",
        t.p.log_text()
    );
    let mut c = H1::connect(SocketAddr::new(t.proxy, 8081)).await.unwrap();
    assert_eq!(
        c.get("app.contoso.com", "/echo", &[]).await.unwrap().status,
        200
    );
}

/// A client that connected before SIGTERM and sends its request a moment after still gets
/// its answer: hyper closes a connection that is idle when told to shut down, so shutdown
/// waits (up to 2 s) for accepted connections to start their first request. Behind an L4
/// balancer that sends PROXY headers this was a failed request in a graceful drain.
#[tokio::test]
async fn a_connection_accepted_before_sigterm_gets_its_first_request_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = Running::start("").await;
    let mut tcp = tokio::net::TcpStream::connect(SocketAddr::new(t.proxy, 8081))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    t.p.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    tcp.write_all(b"GET /echo HTTP/1.1\r\nHost: app.contoso.com\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&got);
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "got {head:?}; log:\n{}",
        t.p.log_text()
    );
}
