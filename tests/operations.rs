//! Operations: reload under load, graceful shutdown, access log.

mod common;

use common::*;
use portico::demo::backend::Role;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HTTP: u16 = 8081;

fn config(proxy_ip: IpAddr, a: IpAddr, b: IpAddr, with_new_route: bool, extra: &str) -> String {
    let new_route = if with_new_route {
        "[[rule]]\nname = \"new\"\nconditions = [ { input = \"{HTTP_HOST}\", pattern = \"^new\\\\.\" } ]\naction = { route = \"b\", scheme = \"https\" }\nstop = true\n"
    } else {
        ""
    };
    format!(
        r#"{extra}
[[listener]]
bind = "{proxy_ip}:{HTTP}"

[resolve]
"a.contoso.local" = ["{a}"]
"b.contoso.local" = ["{b}"]

[upstream]
ca = "internal-ca.pem"

[[farm]]
name = "a"
members = [ {{ address = "a.contoso.local" }} ]
https_port = 4443
timeout = "960s"

[[farm]]
name = "b"
members = [ {{ address = "b.contoso.local" }} ]
https_port = 4443

{new_route}
[[rule]]
name = "app"
conditions = [ {{ input = "{{HTTP_HOST}}", pattern = "^app\\." }} ]
action = {{ route = "a", scheme = "https" }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_reloads_under_load_lose_nothing_and_new_routes_take_effect() {
    let lab = Lab::new();
    let proxy_ip = unique_loopback();
    let (a, b) = (unique_loopback(), unique_loopback());
    let _ma = lab
        .tls_member(SocketAddr::new(a, 4443), "a.contoso.local", Role::FrontEnd)
        .await;
    let _mb = lab
        .tls_member(SocketAddr::new(b, 4443), "b.contoso.local", Role::FrontEnd)
        .await;
    let path = lab.write_config(&config(proxy_ip, a, b, false, ""));
    let p = Portico::start(&path, SocketAddr::new(proxy_ip, HTTP));
    let addr = SocketAddr::new(proxy_ip, HTTP);

    // A long poll that starts before the reloads and must finish after them.
    let poll = tokio::spawn(async move {
        let mut c = H1::connect(addr).await.unwrap();
        c.get("app.contoso.com", "/long-poll?secs=6", &[]).await
    });
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut loops = Vec::new();
    for _ in 0..3 {
        let (stop, ok) = (Arc::clone(&stop), Arc::clone(&ok));
        loops.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut c = H1::connect(addr).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                match c.get("app.contoso.com", "/echo", &[]).await {
                    Ok(r) if r.status == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures.push(format!("status {}", r.status)),
                    Err(e) => {
                        failures.push(e);
                        c = H1::connect(addr).await.unwrap();
                    }
                }
            }
            failures
        }));
    }
    let reloaded = |n: usize| {
        let log = p.log_text();
        log.matches("config reloaded").count() + log.matches("reload rejected").count() >= n
    };
    for i in 0..10 {
        let text = match i {
            4 => "this is [not valid toml".to_string(),
            _ => config(proxy_ip, a, b, i % 2 == 1 || i == 9, ""),
        };
        std::fs::write(&path, text).unwrap();
        p.signal("HUP");
        let t = Instant::now();
        while !reloaded(i + 1) {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "reload {i} never finished: {}",
                p.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        let failures = l.await.unwrap();
        assert!(
            failures.is_empty(),
            "failed requests during reloads: {failures:?}"
        );
    }
    assert!(ok.load(Ordering::Relaxed) > 50, "the load loop barely ran");
    assert_eq!(
        p.log_text().matches("reload rejected").count(),
        1,
        "{}",
        p.log_text()
    );
    let poll = poll.await.unwrap().expect("long poll survived the reloads");
    assert_eq!(poll.status, 200);
    assert_eq!(poll.body, "done");
    // The last good config added the `new` route.
    let mut c = H1::connect(addr).await.unwrap();
    let r = c.get("new.contoso.com", "/echo", &[]).await.unwrap();
    assert_eq!(
        r.header("x-backend"),
        Some("b.contoso.local"),
        "{r:?}\n{}",
        p.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_request_in_flight_finish_and_refuses_new_connections() {
    let lab = Lab::new();
    let proxy_ip = unique_loopback();
    let (a, b) = (unique_loopback(), unique_loopback());
    let _ma = lab
        .tls_member(SocketAddr::new(a, 4443), "a.contoso.local", Role::FrontEnd)
        .await;
    let path = lab.write_config(&config(proxy_ip, a, b, false, ""));
    let mut p = Portico::start(&path, SocketAddr::new(proxy_ip, HTTP));
    let addr = SocketAddr::new(proxy_ip, HTTP);
    let inflight = tokio::spawn(async move {
        let mut c = H1::connect(addr).await.unwrap();
        c.get("app.contoso.com", "/long-poll?secs=2", &[]).await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    p.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "still accepting after SIGTERM"
    );
    let r = inflight
        .await
        .unwrap()
        .expect("request in flight completed");
    assert_eq!(r.status, 200);
    let status = p
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("did not exit");
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_carry_the_fields_and_reopen_on_sigusr1() {
    for format in ["json", "w3c"] {
        let lab = Lab::new();
        let proxy_ip = unique_loopback();
        let (a, b) = (unique_loopback(), unique_loopback());
        let _ma = lab
            .tls_member(SocketAddr::new(a, 4443), "a.contoso.local", Role::FrontEnd)
            .await;
        let extra = format!("[log]\naccess_log = \"access.log\"\naccess_format = \"{format}\"\n");
        let path = lab.write_config(&config(proxy_ip, a, b, false, &extra));
        let p = Portico::start(&path, SocketAddr::new(proxy_ip, HTTP));
        let addr = SocketAddr::new(proxy_ip, HTTP);
        let mut c = H1::connect(addr).await.unwrap();
        c.send(
            "POST",
            "app.contoso.com",
            "/echo/x?q=1",
            &[],
            bytes::Bytes::from_static(b"12345"),
        )
        .await
        .unwrap();
        c.get("nowhere.contoso.com", "/", &[]).await.unwrap();
        let log_path = lab.path("access.log");
        let lines = wait_lines(&log_path, 2).await;
        if format == "json" {
            let l = &lines[0];
            for (k, v) in [
                ("method", "POST"),
                ("path", "/echo/x"),
                ("query", "q=1"),
                ("status", "200"),
                ("bytes_in", "5"),
                ("farm", "a"),
                ("rule", "app"),
                ("host", "app.contoso.com"),
            ] {
                assert_eq!(json_field(l, k).as_deref(), Some(v), "{k} in {l}");
            }
            assert!(
                json_field(l, "member")
                    .unwrap()
                    .starts_with("a.contoso.local"),
                "{l}"
            );
            assert!(json_field(l, "bytes_out").unwrap().parse::<u64>().unwrap() > 100);
            assert!(json_field(l, "time").unwrap().ends_with('Z'));
            assert!(json_field(l, "client").unwrap().starts_with("127."), "{l}");
            assert_eq!(
                json_field(l, "tls").as_deref(),
                Some(""),
                "plain listener: {l}"
            );
            assert_eq!(json_field(&lines[1], "status").as_deref(), Some("404"));
        } else {
            let all = std::fs::read_to_string(&log_path).unwrap();
            let fields: Vec<&str> = all
                .lines()
                .find(|l| l.starts_with("#Fields:"))
                .unwrap()
                .split_whitespace()
                .skip(1)
                .collect();
            let l: Vec<&str> = lines[0].split_whitespace().collect();
            assert_eq!(l.len(), fields.len(), "{:?} vs {fields:?}", lines[0]);
            let get = |name: &str| l[fields.iter().position(|f| *f == name).unwrap()];
            assert_eq!(get("cs-method"), "POST");
            assert_eq!(get("cs-uri-stem"), "/echo/x");
            assert_eq!(get("sc-status"), "200");
            assert_eq!(get("cs-bytes"), "5");
            assert_eq!(get("x-farm"), "a");
        }
        // logrotate: move the file away, SIGUSR1, the next line goes to a new file.
        std::fs::rename(&log_path, lab.path("access.log.1")).unwrap();
        p.signal("USR1");
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.get("app.contoso.com", "/echo", &[]).await.unwrap();
        let fresh = wait_lines(&log_path, 1).await;
        assert_eq!(fresh.len(), 1, "{fresh:?}");
    }
}

async fn wait_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(String::from)
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "access log has {} lines: {text}",
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_waiting_at_the_configured_deadline() {
    let lab = Lab::new();
    let proxy_ip = unique_loopback();
    let (a, b) = (unique_loopback(), unique_loopback());
    let _ma = lab
        .tls_member(SocketAddr::new(a, 4443), "a.contoso.local", Role::FrontEnd)
        .await;
    let path = lab.write_config(&config(
        proxy_ip,
        a,
        b,
        false,
        "shutdown_timeout = \"1s\"\n",
    ));
    let mut p = Portico::start(&path, SocketAddr::new(proxy_ip, HTTP));
    let addr = SocketAddr::new(proxy_ip, HTTP);
    let inflight = tokio::spawn(async move {
        let mut c = H1::connect(addr).await.unwrap();
        c.get("app.contoso.com", "/long-poll?secs=20", &[]).await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let t = Instant::now();
    p.signal("TERM");
    let exited = p.wait_exit(Duration::from_secs(6)).await;
    assert!(
        exited.is_some(),
        "still running {:?} after SIGTERM with a 1 s deadline",
        t.elapsed()
    );
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "did not wait for the request in flight"
    );
    assert!(
        inflight.await.unwrap().is_err(),
        "the 20 s poll cannot have completed"
    );
}

/// A raw TLS client that offers no ALPN: served HTTP/1.1 (h2 over TLS needs ALPN).
async fn tls_without_alpn(
    lab: &Lab,
    addr: SocketAddr,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut lab.public.cert_pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("app.contoso.com").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS to the proxy")
}

/// Each protocol a TLS connection can be served by (h2 and HTTP/1.1 chosen by ALPN, HTTP/1.1
/// without ALPN) hears the shutdown: its request in flight is answered, an idle keep-alive
/// connection is closed, and the process exits long before `shutdown_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_https_connections_whatever_protocol_alpn_chose() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const TLS: u16 = 8443;
    let lab = Lab::new();
    lab.external_cert("external", &["*.contoso.com"]);
    let proxy_ip = unique_loopback();
    let (a, b) = (unique_loopback(), unique_loopback());
    let _ma = lab
        .tls_member(SocketAddr::new(a, 4443), "a.contoso.local", Role::FrontEnd)
        .await;
    let extra = format!(
        "shutdown_timeout = \"60s\"\n[[listener]]\nbind = \"{proxy_ip}:{TLS}\"\ntls = {{ certificates = [ {{ cert = \"external.pem\", key = \"external.key\" }} ] }}\n"
    );
    let path = lab.write_config(&config(proxy_ip, a, b, false, &extra));
    let mut p = Portico::start(&path, SocketAddr::new(proxy_ip, TLS));
    let addr = SocketAddr::new(proxy_ip, TLS);
    let url = format!("https://app.contoso.com:{TLS}/long-poll?secs=2");
    let resolve = format!("app.contoso.com:{TLS}:{proxy_ip}");
    let ca = lab.path("public-ca.pem").display().to_string();
    let curl_in_flight = |version: &'static str| {
        let (url, resolve, ca) = (url.clone(), resolve.clone(), ca.clone());
        tokio::spawn(async move {
            let out = tokio::process::Command::new("curl")
                .args(["-sS", version, "--cacert", &ca, "--resolve", &resolve])
                .args([
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{http_version}",
                    &url,
                ])
                .output()
                .await
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    let h2 = curl_in_flight("--http2");
    let h1 = curl_in_flight("--http1.1");
    let mut raw = tls_without_alpn(&lab, addr).await;
    raw.write_all(b"GET /long-poll?secs=2 HTTP/1.1\r\nHost: app.contoso.com\r\n\r\n")
        .await
        .unwrap();
    // Idle: one request answered, then nothing.
    let mut idle = tls_without_alpn(&lab, addr).await;
    idle.write_all(b"GET /long-poll?secs=0 HTTP/1.1\r\nHost: app.contoso.com\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    tokio::time::sleep(Duration::from_millis(800)).await;

    let t = Instant::now();
    p.signal("TERM");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(_))),
        "the idle connection was not closed: {closed:?}"
    );
    assert_eq!(h2.await.unwrap(), "200 2", "h2 request in flight");
    assert_eq!(h1.await.unwrap(), "200 1.1", "HTTP/1.1 request in flight");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut got)).await;
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("HTTP/1.1 200"),
        "request in flight without ALPN: {got:?}"
    );
    // Within 10 s of the signal, not of this line.
    let status = p
        .wait_exit(Duration::from_secs(10).saturating_sub(t.elapsed()))
        .await;
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running {:?} after SIGTERM: a connection did not hear the shutdown",
            t.elapsed()
        )
    });
    assert!(status.success(), "{status}");
}
