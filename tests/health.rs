//! `portico health` and `drain_delay`, driven against the real binary: what keepalived's
//! vrrp_script sees, and what clients see while an instance drains.

mod common;

use common::*;
use portico::demo::backend::Role;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

const HTTP: u16 = 8081;

/// `portico health --config PATH`: exit code and the one line it printed.
async fn health(config: &Path) -> (i32, String) {
    let t = Instant::now();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["health", "--config"])
        .arg(config)
        .output()
        .await
        .expect("run portico health");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "portico health took {:?}",
        t.elapsed()
    );
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(text.lines().count(), 1, "one line: {text:?}");
    (out.status.code().unwrap_or(-1), text)
}

/// Polls `portico health` until it exits `code` (members' health changes take a check).
async fn wait_health(config: &Path, code: i32, p: &Portico) -> String {
    let t = Instant::now();
    loop {
        let (c, line) = health(config).await;
        if c == code {
            return line;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "portico health stayed at {c} ({line}), wanted {code}\n{}",
            p.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn lab_config(proxy_ip: IpAddr, member: IpAddr, top: &str, tables: &str) -> String {
    let health =
        "health = { url = \"/echo\", interval = \"300ms\", timeout = \"1s\", fall = 1, rise = 1 }";
    let cfg = one_member_config(proxy_ip, member, "", tables);
    format!(
        "{top}\n{}",
        cfg.replace(
            "http_port = 8080",
            &format!("http_port = 8080\nssl_offload = true\n{health}"),
        )
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_instance_and_its_members_without_an_admin_listener() {
    let lab = Lab::new();
    let (proxy_ip, member_ip) = (unique_loopback(), unique_loopback());
    let path = lab.write_config(&lab_config(proxy_ip, member_ip, "", ""));
    assert!(!std::fs::read_to_string(&path).unwrap().contains("[admin]"));

    let (code, line) = health(&path).await;
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("no running Portico serves"), "{line}");

    let member = lab
        .plain_member(SocketAddr::new(member_ip, 8080), "m1", Role::FrontEnd)
        .await;
    let p = Portico::start(&path, SocketAddr::new(proxy_ip, HTTP));
    let line = wait_health(&path, 0, &p).await;
    assert!(line.starts_with("ready: "), "{line}");
    assert!(line.contains("1 listener(s) bound"), "{line}");
    assert!(line.contains("app 1/1"), "{line}");

    // The only farm's only member goes away: nothing here can serve, so hand the address over.
    drop(member);
    let line = wait_health(&path, 1, &p).await;
    assert!(
        line.starts_with("not ready: no farm that a rule routes to has a member"),
        "{line}"
    );
    let _member = lab
        .plain_member(SocketAddr::new(member_ip, 8080), "m1", Role::FrontEnd)
        .await;
    wait_health(&path, 0, &p).await;

    // A changed file on disk (reload pending) is still ready, and said so.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("# edited\n{text}")).unwrap();
    let (code, line) = health(&path).await;
    assert_eq!(code, 0, "{line}");
    assert!(line.contains("reload pending"), "{line}");

    // kill -9: nothing is left behind that could claim readiness.
    let mut p = p;
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    let (code, line) = health(&path).await;
    assert_eq!(code, 2, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_drain_delay_is_not_ready_at_once_but_accepts_until_the_delay_ends() {
    let lab = Lab::new();
    let (proxy_ip, member_ip) = (unique_loopback(), unique_loopback());
    let admin = SocketAddr::new(proxy_ip, 9901);
    let path = lab.write_config(&lab_config(
        proxy_ip,
        member_ip,
        "drain_delay = \"3s\"\nshutdown_timeout = \"10s\"",
        &format!("[admin]\nbind = \"{admin}\"\n"),
    ));
    let _member = lab
        .plain_member(SocketAddr::new(member_ip, 8080), "m1", Role::FrontEnd)
        .await;
    let mut p = Portico::start(&path, SocketAddr::new(proxy_ip, HTTP));
    let addr = SocketAddr::new(proxy_ip, HTTP);
    wait_health(&path, 0, &p).await;
    let readyz = || async move {
        curl(&[&format!("http://{admin}/readyz"), "-o", "/dev/null"])
            .await
            .status
    };
    assert_eq!(readyz().await, 200);

    // The config digest is what `sha256sum` says of the file: in the API, /metrics, the page.
    let out = std::process::Command::new("sha256sum")
        .arg(&path)
        .output()
        .unwrap();
    let sum = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(sum.len(), 64);
    let status = curl(&[&format!("http://{admin}/api/status")]).await.text();
    assert_eq!(json_field(&status, "digest").as_deref(), Some(sum.as_str()));
    let metrics = curl(&[&format!("http://{admin}/metrics")]).await.text();
    assert!(
        metrics.contains(&format!("portico_config_info{{digest=\"{sum}\"}} 1")),
        "{metrics}"
    );
    assert!(curl(&[&format!("http://{admin}/")])
        .await
        .text()
        .contains(&sum));

    // In flight across the whole drain: started before SIGTERM, ends after drain_delay.
    let inflight = tokio::spawn(async move {
        let mut c = H1::connect(addr).await.unwrap();
        c.get("app.contoso.com", "/long-poll?secs=5", &[]).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let term = Instant::now();
    p.signal("TERM");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (code, line) = health(&path).await;
    assert_eq!(code, 1, "{line}");
    assert!(line.starts_with("not ready: draining"), "{line}");
    assert_eq!(readyz().await, 503, "/readyz during drain_delay");
    assert!(
        term.elapsed() < Duration::from_millis(1500),
        "checks took too long"
    );

    // Still accepting new connections during drain_delay (the address has not moved yet).
    let mut fresh = H1::connect(addr)
        .await
        .expect("new connection during drain_delay");
    let r = fresh.get("app.contoso.com", "/echo", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(term.elapsed() < Duration::from_millis(2500));
    drop(fresh);

    // After drain_delay: no new connections; the request in flight still completes.
    while term.elapsed() < Duration::from_millis(3800) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "still accepting after drain_delay\n{}",
        p.log_text()
    );
    let r = inflight
        .await
        .unwrap()
        .expect("request in flight completed");
    assert_eq!((r.status, r.body.as_str()), (200, "done"));
    let status = p
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("did not exit");
    assert!(status.success(), "{status}");
}

#[test]
fn drain_delay_defaults_to_zero_and_a_bad_value_names_the_key() {
    let base = one_member_config(
        "127.0.0.1".parse().unwrap(),
        "127.0.0.2".parse().unwrap(),
        "",
        "",
    );
    let p = Path::new("/tmp/portico-health-test.toml");
    let c = portico::config::from_str(p, &base).unwrap();
    assert_eq!(c.drain_delay, Duration::ZERO);
    let c = portico::config::from_str(p, &format!("drain_delay = \"0s\"\n{base}")).unwrap();
    assert_eq!(c.drain_delay, Duration::ZERO);
    let c = portico::config::from_str(p, &format!("drain_delay = \"1500ms\"\n{base}")).unwrap();
    assert_eq!(c.drain_delay, Duration::from_millis(1500));
    let err = portico::config::from_str(p, &format!("drain_delay = \"5\"\n{base}"))
        .err()
        .expect("a bare number is refused")
        .to_string();
    assert!(err.contains("drain_delay") && err.contains(":1"), "{err}");
}
