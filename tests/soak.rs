//! A bounded soak: mixed traffic (normal requests, uploads, slow clients that never finish
//! their headers, requests to a member that keeps failing) for `PORTICO_SOAK_SECS` (default
//! 20 s). Afterwards file descriptors and memory are back near their baseline and no request
//! that should have succeeded failed.

mod common;

use common::*;
use portico::demo::backend::Role;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_traffic_with_slow_clients_and_failing_members_leaks_nothing() {
    let secs: u64 = std::env::var("PORTICO_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let lab = Lab::new();
    let proxy_ip = unique_loopback();
    let good = unique_loopback();
    let bad = unique_loopback();
    let _g = lab
        .plain_member(SocketAddr::new(good, 8080), "good", Role::FrontEnd)
        .await;
    let _b = lab
        .plain_member(SocketAddr::new(bad, 8080), "bad", Role::FrontEnd)
        .await;
    let cfg = lab.write_config(&format!(
        r#"
[[listener]]
bind = "{proxy_ip}:8081"
header_read_timeout = "2s"
[[farm]]
name = "good"
members = [ {{ address = "{good}" }} ]
http_port = 8080
[[farm]]
name = "bad"
members = [ {{ address = "{bad}" }} ]
http_port = 8080
timeout = "1s"
[[rule]]
name = "bad"
conditions = [ {{ input = "{{HTTP_HOST}}", pattern = "^bad\\." }} ]
action = {{ route = "bad", scheme = "http" }}
stop = true
[[rule]]
name = "good"
action = {{ route = "good", scheme = "http" }}
"#
    ));
    let addr = SocketAddr::new(proxy_ip, 8081);
    let p = Portico::start(&cfg, addr);
    // Baseline after a warm-up.
    for _ in 0..20 {
        H1::connect(addr)
            .await
            .unwrap()
            .get("good", "/echo", &[])
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (fd0, rss0) = (fds(p.pid()), p.rss_kib());

    let stop = Arc::new(AtomicBool::new(false));
    let good_ok = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    // Normal keep-alive clients and uploads: every one must succeed.
    for i in 0..4 {
        let (stop, ok) = (Arc::clone(&stop), Arc::clone(&good_ok));
        tasks.push(tokio::spawn(async move {
            let mut c = H1::connect(addr).await.unwrap();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = if i % 2 == 0 {
                    c.get("good", "/echo", &[]).await
                } else {
                    c.send(
                        "POST",
                        "good",
                        "/upload",
                        &[],
                        bytes::Bytes::from(vec![7u8; 256 * 1024]),
                    )
                    .await
                };
                match r {
                    Ok(r) if r.status == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures.push(format!("status {}", r.status)),
                    Err(e) => failures.push(e),
                }
            }
            failures
        }));
    }
    // Slow clients: half a request head, then silence (cut by header_read_timeout).
    {
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..20 {
                    if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                        let _ = s
                            .write_all(b"GET /echo HTTP/1.1\r\nHost: good\r\nX-Slow: ")
                            .await;
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(4)).await;
                            drop(s);
                        });
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Vec::new()
        }));
    }
    // A member that stalls (504) or drops (502): errors expected, but nothing may leak.
    {
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let path = ["/stall", "/drop", "/status/500"][fastrand() % 3];
                if let Ok(mut c) = H1::connect(addr).await {
                    let _ = c.get("bad.contoso.com", path, &[]).await;
                }
            }
            Vec::new()
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let failures = t.await.unwrap();
        assert!(
            failures.is_empty(),
            "requests that should succeed failed: {:?}",
            &failures[..failures.len().min(5)]
        );
    }
    assert!(good_ok.load(Ordering::Relaxed) > 100, "the soak barely ran");
    // Slow clients are cut, pooled connections expire, the heap is trimmed.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (fd1, rss1) = (fds(p.pid()), p.rss_kib());
    assert!(fd1 <= fd0 + 8, "file descriptors grew from {fd0} to {fd1}");
    assert!(
        rss1 < rss0 + 30 * 1024,
        "memory grew from {rss0} KiB to {rss1} KiB"
    );
}

fn fastrand() -> usize {
    use std::sync::atomic::AtomicUsize;
    static X: AtomicUsize = AtomicUsize::new(12345);
    let v = X.fetch_add(0x9E3779B9, Ordering::Relaxed);
    (v ^ (v >> 7)) % 1000
}
