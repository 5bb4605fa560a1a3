//! Zero-downtime binary upgrade: a new process binds beside the old one (SO_REUSEPORT), the
//! old one is told to stop, and no request fails.

mod common;

use common::*;
use portico::demo::backend::Role;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_takes_over_the_sockets_and_the_old_one_finishes_without_a_failed_request() {
    let lab = Lab::new();
    let proxy_ip = unique_loopback();
    let member = unique_loopback();
    let _m = lab
        .plain_member(SocketAddr::new(member, 8080), "fe01", Role::FrontEnd)
        .await;
    let cfg = lab.write_config(&one_member_config(
        proxy_ip,
        member,
        "reuse_port = true",
        "",
    ));
    let addr = SocketAddr::new(proxy_ip, 8081);
    let mut old = Portico::start(&cfg, addr);
    // A request in flight on the old process when the upgrade happens.
    let inflight = tokio::spawn(async move {
        H1::connect(addr)
            .await
            .unwrap()
            .get("a", "/long-poll?secs=2", &[])
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let new = Portico::start(&cfg, addr);
    let loop_task = tokio::spawn(async move {
        let mut failures = Vec::new();
        let mut ok = 0;
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(4) {
            // A new connection each time so both processes' sockets are exercised.
            match H1::connect(addr).await {
                Ok(mut c) => match c.get("a", "/echo", &[]).await {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => failures.push(format!("status {}", r.status)),
                    Err(e) => failures.push(e),
                },
                Err(e) => failures.push(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (ok, failures)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    old.signal("TERM");
    let (ok, failures) = loop_task.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} failed of {}: {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 50);
    assert_eq!(
        inflight.await.unwrap().unwrap().status,
        200,
        "the old process dropped its request in flight"
    );
    assert!(old.child.wait().unwrap().success());
    drop(new);
}
