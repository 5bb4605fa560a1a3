//! Forwarding behaviour: streaming both ways with flat memory, long polls, idle timeouts,
//! WebSocket tunnels, rule actions and fail-over.

mod common;

use common::*;
use portico::demo::backend::{Backend, Role};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

struct Setup {
    lab: Lab,
    proxy_ip: IpAddr,
    portico: Portico,
    _members: Vec<Backend>,
}

const HTTPS: u16 = 8443;
const HTTP: u16 = 8081;

/// One farm "app" (TLS members on 4443) behind listeners on 8443 (TLS) and 8081, with
/// `farm_extra` lines added to the farm and `rules` placed before the catch-all route.
async fn setup(member_count: usize, farm_extra: &str, rules: &str) -> Setup {
    let lab = Lab::new();
    lab.external_cert("external", &["*.contoso.com"]);
    let proxy_ip = unique_loopback();
    let mut members = Vec::new();
    let mut resolve = String::new();
    let mut list = Vec::new();
    for i in 0..member_count {
        let ip = unique_loopback();
        let name = format!("fe0{i}.contoso.local");
        members.push(
            lab.tls_member(SocketAddr::new(ip, 4443), &name, Role::FrontEnd)
                .await,
        );
        members.push(
            lab.plain_member(SocketAddr::new(ip, 8080), &name, Role::FrontEnd)
                .await,
        );
        resolve.push_str(&format!("\"{name}\" = [\"{ip}\"]\n"));
        list.push(format!("{{ address = \"{name}\" }}"));
    }
    let toml = format!(
        r#"
[[listener]]
bind = "{proxy_ip}:{HTTPS}"
tls = {{ certificates = [ {{ cert = "external.pem", key = "external.key" }} ] }}

[[listener]]
bind = "{proxy_ip}:{HTTP}"

[resolve]
{resolve}
[upstream]
ca = "internal-ca.pem"
connect_timeout = "2s"

[[farm]]
name = "app"
members = [ {members} ]
https_port = 4443
http_port = 8080
{farm_extra}

{rules}

[[rule]]
name = "app"
match = ".*"
conditions = [ {{ input = "{{HTTP_HOST}}", pattern = "^app\\." }} ]
action = {{ route = "app" }}
"#,
        members = list.join(", ")
    );
    let cfg = lab.write_config(&toml);
    let portico = Portico::start(&cfg, SocketAddr::new(proxy_ip, HTTPS));
    Setup {
        lab,
        proxy_ip,
        portico,
        _members: members,
    }
}

impl Setup {
    async fn get(&self, path: &str, extra: &[&str]) -> Reply {
        curl_https(
            &self.lab,
            "app.contoso.com",
            self.proxy_ip,
            HTTPS,
            path,
            extra,
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_and_download_stream_through_with_flat_memory() {
    let s = setup(1, "timeout = \"200s\"", "").await;
    // Warm up so the baseline includes the TLS and connection buffers.
    assert_eq!(s.get("/echo", &[]).await.status, 200);
    let baseline = s.portico.rss_kib();
    let pid_rss = {
        let pid = s.portico.pid();
        move || -> u64 {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|st| {
                    st.lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                })
                .unwrap_or(0)
        }
    };
    let sampler = {
        tokio::spawn(async move {
            let mut peak = 0;
            for _ in 0..1200 {
                peak = peak.max(pid_rss());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        })
    };
    const SIZE: u64 = 200 * 1024 * 1024;
    // Download: counted by curl, never held by the test.
    let r = s
        .get(
            &format!("/download?bytes={SIZE}"),
            &["-o", "/dev/null", "-w", "%{size_download}"],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), SIZE.to_string());
    // Upload: streamed from /dev/zero through curl's chunked upload.
    let ca = s.lab.path("public-ca.pem");
    let cmd = format!(
        "head -c {SIZE} /dev/zero | curl -sS --cacert {} --resolve app.contoso.com:{HTTPS}:{} -T - -X POST https://app.contoso.com:{HTTPS}/upload",
        ca.display(),
        s.proxy_ip
    );
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .output()
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.contains(&format!("\"received\":{SIZE}")),
        "{body} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    sampler.abort();
    let peak = pid_rss().max(baseline);
    let growth_mib = peak.saturating_sub(baseline) / 1024;
    assert!(
        growth_mib < 40,
        "RSS grew by {growth_mib} MiB moving 2 x 200 MiB (baseline {baseline} KiB)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_outlives_the_30_second_default_of_other_proxies() {
    let s = setup(1, "timeout = \"960s\"", "").await;
    let started = Instant::now();
    let r = s.get("/long-poll?secs=35", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text().trim(), "done");
    assert!(started.elapsed() >= Duration::from_secs(35));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_member_is_cut_at_the_farm_timeout_with_504() {
    let s = setup(1, "timeout = \"2s\"", "").await;
    let started = Instant::now();
    let r = s.get("/stall", &[]).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{r:?}");
    assert!(r.text().contains("\"app\""));
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    // A body that keeps trickling within the timeout is not cut: idle, not total.
    let r = s.get("/slow-body?secs=1", &[]).await;
    assert_eq!(r.status, 200);
}

/// On a clear-text listener the ACME HTTP-01 path is looked up before any rule, the one
/// request that may wait before routing; a token this instance is not waiting for, or a path
/// that is not a token, is then routed like any other request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acme_challenge_path_that_is_not_ours_is_routed_like_any_request() {
    let s = setup(1, "", "").await;
    for path in [
        "/.well-known/acme-challenge/NotATokenWeWaitFor_-1",
        "/.well-known/acme-challenge/",
        "/.well-known/acme-challenge/a.b",
    ] {
        let url = format!("http://{}:{HTTP}{path}", s.proxy_ip);
        let r = curl(&["-H", "Host: app.contoso.com", &url]).await;
        assert_eq!(
            r.header("x-backend"),
            Some("fe00.contoso.local"),
            "{path} did not reach the member: {r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_tunnelled() {
    let s = setup(1, "", "").await;
    let mut tcp = TcpStream::connect(SocketAddr::new(s.proxy_ip, HTTP)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "GET /ws HTTP/1.1\r\nHost: app.contoso.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
    // A masked text frame "hello"; the member echoes it unmasked.
    let mask = [1u8, 2, 3, 4];
    let payload = b"hello";
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    tcp.write_all(&frame).unwrap();
    let mut reply = [0u8; 7];
    tcp.read_exact(&mut reply).unwrap();
    assert_eq!(reply[0], 0x81);
    assert_eq!(reply[1], 5);
    assert_eq!(&reply[2..], b"hello");
}

const RULES: &str = r#"
[[rule]]
name = "moved"
match = "^old/(.*)"
action = { redirect = "https://{HTTP_HOST}/new/{R:1}", status = 308 }

[[rule]]
name = "deny-admin"
match = "^admin"
action = { respond = 403, reason = "Admin Not Published", body = "no admin here", content_type = "text/plain" }

[[rule]]
name = "kill"
match = "^kill"
action = { abort = true }

[[rule]]
name = "v1"
match = "^v1/(.*)"
action = { rewrite = "/echo/{ToLower:{R:1}}" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_custom_response_abort_and_rewrite_rules_act() {
    let s = setup(1, "", RULES).await;
    let r = s.get("/old/page?x=1", &[]).await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some("https://app.contoso.com:8443/new/page?x=1")
    );
    let r = s.get("/admin/x", &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "no admin here");
    let r = s.get("/admin/x", &["--http1.1"]).await;
    assert_eq!(r.status_line, "HTTP/1.1 403 Admin Not Published");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    let r = s.get("/kill", &[]).await;
    assert_eq!(r.status, 0, "abort closes without an answer: {r:?}");
    assert!(
        r.stderr.contains("Empty reply")
            || r.stderr.contains("reset")
            || r.stderr.contains("closed"),
        "{}",
        r.stderr
    );
    let r = s.get("/v1/ABC?q=2", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        json_field(&r.text(), "uri").as_deref(),
        Some("/echo/abc?q=2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_refuses_connections_is_skipped_for_the_next() {
    let lab = Lab::new();
    lab.external_cert("external", &["*.contoso.com"]);
    let proxy_ip = unique_loopback();
    let dead = unique_loopback();
    let alive = unique_loopback();
    let _m = lab
        .tls_member(
            SocketAddr::new(alive, 4443),
            "alive.contoso.local",
            Role::FrontEnd,
        )
        .await;
    let toml = format!(
        r#"
[[listener]]
bind = "{proxy_ip}:{HTTPS}"
tls = {{ certificates = [ {{ cert = "external.pem", key = "external.key" }} ] }}
[resolve]
"dead.contoso.local" = ["{dead}"]
"alive.contoso.local" = ["{alive}"]
[upstream]
ca = "internal-ca.pem"
[[farm]]
name = "app"
members = [ {{ address = "dead.contoso.local" }}, {{ address = "alive.contoso.local" }} ]
https_port = 4443
[[rule]]
name = "app"
action = {{ route = "app" }}
"#
    );
    let cfg = lab.write_config(&toml);
    let p = Portico::start(&cfg, SocketAddr::new(proxy_ip, HTTPS));
    for _ in 0..6 {
        let r = curl_https(&lab, "app.contoso.com", proxy_ip, HTTPS, "/echo", &[]).await;
        assert_eq!(r.status, 200, "{}", p.log_text());
        assert_eq!(r.header("x-backend"), Some("alive.contoso.local"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_with_a_certificate_from_another_ca_is_refused() {
    let lab = Lab::new();
    lab.external_cert("external", &["*.contoso.com"]);
    let proxy_ip = unique_loopback();
    let ip = unique_loopback();
    // The member's certificate comes from the public CA, not the internal one Portico trusts.
    let issued = lab.public.issue(&["rogue.contoso.local"]).unwrap();
    let tls =
        portico::demo::backend::server_config_from_pem(&issued.cert_pem, &issued.key_pem).unwrap();
    let _m = Backend::start(
        SocketAddr::new(ip, 4443),
        portico::demo::backend::BackendOptions {
            name: "rogue".into(),
            tls: Some(tls),
            role: Role::FrontEnd,
        },
    )
    .await
    .unwrap();
    let toml = format!(
        r#"
[[listener]]
bind = "{proxy_ip}:{HTTPS}"
tls = {{ certificates = [ {{ cert = "external.pem", key = "external.key" }} ] }}
[resolve]
"rogue.contoso.local" = ["{ip}"]
[upstream]
ca = "internal-ca.pem"
[[farm]]
name = "app"
members = [ {{ address = "rogue.contoso.local" }} ]
https_port = 4443
[[rule]]
name = "app"
action = {{ route = "app" }}
"#
    );
    let cfg = lab.write_config(&toml);
    let p = Portico::start(&cfg, SocketAddr::new(proxy_ip, HTTPS));
    let r = curl_https(&lab, "app.contoso.com", proxy_ip, HTTPS, "/echo", &[]).await;
    assert_eq!(r.status, 502);
    assert!(p.log_text().contains("TLS handshake"), "{}", p.log_text());
}
