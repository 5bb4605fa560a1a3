//! Perimeter protection end to end: real `curl --ntlm` and Basic clients against a member
//! that signs users in with real NTLM (pyspnego, tests/members/ntlm_member.py) and counts
//! what reaches it; address conditions from a file changed while running (IPv4 and IPv6);
//! rate limits; tables that stay bounded under a flood of PROXY-protocol addresses.
//!
//! Different client addresses come from binding curl to other loopback addresses
//! (`--interface 127.0.0.N`); the fixed ones used here are only ever sources.

mod common;

use common::*;
use portico::demo::backend::Role;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "s3cret-admin-token";

/// The pyspnego member: `CONTOSO:alice:Secret1!` and friends.
struct NtlmMember {
    child: Child,
    addr: SocketAddr,
}

impl NtlmMember {
    fn start(lab: &Lab, ip: IpAddr) -> NtlmMember {
        let users = lab.path("ntlm-users.txt");
        std::fs::write(
            &users,
            "CONTOSO:alice:Secret1!\nCONTOSO:bob:Hunter2!\nCONTOSO:carol:Carol3!\nCONTOSO:erin:Erin4!\n",
        )
        .unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/members/ntlm_member.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(ip.to_string())
            .arg("8080")
            .env("NTLM_USER_FILE", &users)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 (with pyspnego: pip install pyspnego)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the NTLM member did not start (is pyspnego installed?)"
        );
        NtlmMember {
            child,
            addr: SocketAddr::new(ip, 8080),
        }
    }

    /// Credentialed requests that reached the member for `user`.
    async fn attempts(&self, user: &str) -> u64 {
        let r = curl(&[&format!("http://{}/count", self.addr)]).await;
        let v: Value = serde_json::from_slice(&r.body).expect("count JSON");
        v["attempts"][user].as_u64().unwrap_or(0)
    }
}

impl Drop for NtlmMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lockout_config(proxy: IpAddr, member: IpAddr, lockout: &str) -> String {
    format!(
        r#"
[[listener]]
bind = "{proxy}:8081"

[admin]
bind = "{proxy}:9901"
token_file = "admin.token"

[log]
access_log = "access.log"
access_format = "json"

[lockout]
{lockout}

[[farm]]
name = "exchange"
members = [ {{ address = "{member}" }} ]
http_port = 8080
lockout = true

[[rule]]
name = "owa"
action = {{ route = "exchange", scheme = "http" }}
"#
    )
}

/// `curl --ntlm` (or Basic with `basic = true`) from source address `from`.
async fn sign_in(proxy: IpAddr, from: &str, user: &str, basic: bool) -> Reply {
    let url = format!("http://{proxy}:8081/owa/");
    let mut args = vec!["--interface", from, "-u", user];
    if !basic {
        args.push("--ntlm");
    }
    args.push(&url);
    curl(&args).await
}

async fn metric(proxy: IpAddr, name: &str) -> f64 {
    let r = curl(&[&format!("http://{proxy}:9901/metrics")]).await;
    metric_in(&r.text(), name)
}

fn metric_in(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_spray_stops_at_the_threshold_while_real_users_still_sign_in() {
    let lab = Lab::new();
    let proxy = unique_loopback();
    let member_ip = unique_loopback();
    let member = NtlmMember::start(&lab, member_ip);
    std::fs::write(lab.path("admin.token"), TOKEN).unwrap();
    let cfg = lab.write_config(&lockout_config(
        proxy,
        member_ip,
        "threshold = 3\nwindow = \"5m\"\ntrusted = [\"127.0.0.2/32\"]\naddress_threshold = 8",
    ));
    let _p = Portico::start(&cfg, SocketAddr::new(proxy, 8081));

    // carol signs in from home first: 127.0.0.4 becomes a familiar location for her.
    let r = sign_in(proxy, "127.0.0.4", "CONTOSO\\carol:Carol3!", false).await;
    assert_eq!(r.status, 200, "{r:?}");

    // The spray: wrong NTLM passwords for alice from 127.0.0.3.
    let mut statuses = Vec::new();
    for i in 0..6 {
        let r = sign_in(
            proxy,
            "127.0.0.3",
            &format!("CONTOSO\\alice:wrong{i}"),
            false,
        )
        .await;
        if r.status == 429 {
            let secs: u64 = r
                .header("retry-after")
                .expect("Retry-After")
                .parse()
                .unwrap();
            assert!((1..=300).contains(&secs), "{secs}");
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429]);
    assert_eq!(
        member.attempts("alice").await,
        3,
        "held attempts must not reach the member"
    );
    // Another spelling of the same account, over Basic: held too.
    let r = sign_in(proxy, "127.0.0.3", "alice@contoso.com:wrong9", true).await;
    assert_eq!(r.status, 429);
    // Even the right password from outside is held: the answer tells a bot nothing.
    let r = sign_in(proxy, "127.0.0.3", "CONTOSO\\alice:Secret1!", false).await;
    assert_eq!(r.status, 429);
    assert_eq!(member.attempts("alice").await, 3);
    // Another account from the same address is not affected (NTLM and Basic).
    let r = sign_in(proxy, "127.0.0.3", "CONTOSO\\bob:Hunter2!", false).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = sign_in(proxy, "127.0.0.3", "bob:Hunter2!", true).await;
    assert_eq!(r.status, 200, "{r:?}");

    // The status API lists alice with her counts.
    let st = curl(&[&format!("http://{proxy}:9901/api/status")]).await;
    let st: Value = serde_json::from_slice(&st.body).unwrap();
    let held = st["perimeter"]["lockout"]["held"]
        .as_array()
        .unwrap()
        .clone();
    let alice = held
        .iter()
        .find(|h| h["name"] == "alice")
        .expect("alice held");
    assert_eq!(alice["kind"], "account");
    assert_eq!(alice["failures"], 3);
    assert!(alice["held_attempts"].as_u64().unwrap() >= 5, "{alice}");

    // From the trusted range the right password signs in.
    let r = sign_in(proxy, "127.0.0.2", "CONTOSO\\alice:Secret1!", false).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(member.attempts("alice").await, 4);

    // carol sprayed from elsewhere is held there, but signs in from her familiar address.
    for i in 0..3 {
        let r = sign_in(proxy, "127.0.0.5", &format!("carol:bad{i}"), true).await;
        assert_eq!(r.status, 401);
    }
    assert_eq!(
        sign_in(proxy, "127.0.0.5", "carol:bad", true).await.status,
        429
    );
    let r = sign_in(proxy, "127.0.0.4", "CONTOSO\\carol:Carol3!", false).await;
    assert_eq!(r.status, 200, "{r:?}");

    // A release through the API lifts a hold at once, and needs the token.
    for i in 0..3 {
        sign_in(proxy, "127.0.0.6", &format!("CONTOSO\\dave:x{i}"), false).await;
    }
    assert_eq!(
        sign_in(proxy, "127.0.0.6", "CONTOSO\\dave:x", false)
            .await
            .status,
        429
    );
    assert_eq!(member.attempts("dave").await, 3);
    let release = |token: &'static str| async move {
        curl(&[
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {token}"),
            "--data-binary",
            "dave@contoso.com",
            &format!("http://{proxy}:9901/api/lockout/release"),
        ])
        .await
    };
    assert_eq!(release("wrong-token").await.status, 401);
    let r = release(TOKEN).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("account dave released"), "{}", r.text());
    let r = sign_in(proxy, "127.0.0.6", "CONTOSO\\dave:x", false).await;
    assert_eq!(
        r.status, 401,
        "released: the attempt reaches the member again"
    );
    assert_eq!(member.attempts("dave").await, 4);

    // Negotiate tokens that are not NTLM (Kerberos) count against the address only.
    let krb = base64(&[
        0x60, 0x82, 0x02, 0x10, 0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02,
    ]);
    let neg = format!("Authorization: Negotiate {krb}");
    let url = format!("http://{proxy}:8081/owa/");
    let mut kerberos = Vec::new();
    for _ in 0..9 {
        let r = curl(&["--interface", "127.0.0.7", "-H", &neg, &url]).await;
        kerberos.push(r.status);
    }
    assert_eq!(kerberos, [401, 401, 401, 401, 401, 401, 401, 401, 429]);
    let r = curl(&["--interface", "127.0.0.8", "-H", &neg, &url]).await;
    assert_eq!(r.status, 401, "another address is not held");

    // Counters in /metrics.
    // alice 5, carol 1, dave 1, the Kerberos address 1.
    assert_eq!(metric(proxy, "portico_lockout_blocks_total").await, 8.0);
    // alice 3, carol 3, dave 4, Kerberos 8 + 1.
    assert_eq!(metric(proxy, "portico_lockout_failures_total").await, 19.0);
    assert_eq!(metric(proxy, "portico_lockout_releases_total").await, 1.0);
    // The access log says when Portico answered for the member.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = std::fs::read_to_string(lab.path("access.log")).unwrap_or_default();
        let held_lines = log
            .lines()
            .filter(|l| l.contains("\"answered_by_portico\":\"lockout\""))
            .count();
        if held_lines >= 8 {
            assert!(log
                .lines()
                .any(|l| l.contains("\"status\":429") && l.contains("lockout")));
            break;
        }
        assert!(Instant::now() < deadline, "access log: {log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_account_is_let_through_again_once_the_window_passes() {
    let lab = Lab::new();
    let proxy = unique_loopback();
    let member_ip = unique_loopback();
    let member = NtlmMember::start(&lab, member_ip);
    std::fs::write(lab.path("admin.token"), TOKEN).unwrap();
    let cfg = lab.write_config(&lockout_config(
        proxy,
        member_ip,
        "threshold = 2\nwindow = \"3s\"",
    ));
    let _p = Portico::start(&cfg, SocketAddr::new(proxy, 8081));
    for i in 0..2 {
        let r = sign_in(proxy, "127.0.0.3", &format!("erin:bad{i}"), true).await;
        assert_eq!(r.status, 401);
    }
    let r = sign_in(proxy, "127.0.0.3", "CONTOSO\\erin:Erin4!", false).await;
    assert_eq!(r.status, 429);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3).contains(&wait), "{wait}");
    assert_eq!(member.attempts("erin").await, 2);
    tokio::time::sleep(Duration::from_millis(wait * 1000 + 300)).await;
    let r = sign_in(proxy, "127.0.0.3", "CONTOSO\\erin:Erin4!", false).await;
    assert_eq!(r.status, 200, "the window passed: {r:?}");
    assert_eq!(member.attempts("erin").await, 3);
}

/// A port on `[::1]` nothing listens on now.
fn free_v6_port() -> u16 {
    std::net::TcpListener::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_conditions_follow_a_range_file_changed_while_running() {
    let lab = Lab::new();
    let proxy = unique_loopback();
    let member = unique_loopback();
    let _m = lab
        .plain_member(SocketAddr::new(member, 8080), "fe01", Role::Echo)
        .await;
    let v6 = free_v6_port();
    std::fs::create_dir_all(lab.path("ranges")).unwrap();
    let file = lab.path("ranges/m365.txt");
    std::fs::write(&file, "# loopback v4 only\n127.0.0.0/8\n").unwrap();
    let cfg = lab.write_config(&format!(
        r#"
[[listener]]
bind = "{proxy}:8081"
[[listener]]
bind = "[::1]:{v6}"

[[farm]]
name = "app"
members = [ {{ address = "{member}" }} ]
http_port = 8080

[[rule]]
name = "ecp-internal-only"
match = "^ecp(/.*)?$"
conditions = [ {{ input = "{{REMOTE_ADDR}}", cidr = ["::1/128", "fd00::/8"], negate = true }} ]
action = {{ respond = 403, body = "ECP is internal only" }}
stop = true

[[rule]]
name = "hybrid"
match = "^(autodiscover|ews)/"
conditions = [ {{ input = "{{REMOTE_ADDR}}", cidr_file = "ranges/m365.txt" }} ]
action = {{ route = "app", scheme = "http" }}
stop = true

[[rule]]
name = "hybrid-refused"
match = "^(autodiscover|ews)/"
action = {{ respond = 403, body = "not from a Microsoft 365 range" }}
stop = true

[[rule]]
name = "rest"
action = {{ route = "app", scheme = "http" }}
"#
    ));
    let _p = Portico::start(&cfg, SocketAddr::new(proxy, 8081));
    let v4_url = |path: &str| format!("http://{proxy}:8081{path}");
    let v6_url = |path: &str| format!("http://[::1]:{v6}{path}");
    let reached = |r: &Reply| r.header("x-backend").is_some();

    // Inline ranges: /ecp only from ::1; the member is reached from there.
    let r = curl(&[&v4_url("/ecp/")]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "ECP is internal only");
    let r = curl(&[&v6_url("/ecp/")]).await;
    assert!(reached(&r), "{r:?}");
    // /owa is not /ecp: open to both.
    assert!(reached(&curl(&[&v4_url("/owa/")]).await));

    // The file: 127.0.0.0/8 in, ::1 out.
    assert!(reached(&curl(&[&v4_url("/ews/exchange.asmx")]).await));
    let r = curl(&[&v6_url("/ews/exchange.asmx")]).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (403, "not from a Microsoft 365 range")
    );

    // The admin edits the file: now ::1 in, IPv4 out. No reload.
    std::fs::write(&file, "::1/128 # v6 loopback\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reached(&curl(&[&v6_url("/ews/exchange.asmx")]).await) {
        assert!(
            Instant::now() < deadline,
            "the changed range file was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(curl(&[&v4_url("/autodiscover/x")]).await.status, 403);

    // A broken edit keeps the previous ranges and logs the line that is wrong.
    std::fs::write(&file, "::1/128\n10.0.0.0/33\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !_p.log_text().contains("m365.txt:2") {
        assert!(
            Instant::now() < deadline,
            "no error logged: {}",
            _p.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(reached(&curl(&[&v6_url("/ews/exchange.asmx")]).await));
    assert_eq!(curl(&[&v4_url("/ews/exchange.asmx")]).await.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_a_rate_limit_a_client_gets_429_with_retry_after_while_others_are_served() {
    let lab = Lab::new();
    let proxy = unique_loopback();
    let member = unique_loopback();
    let _m = lab
        .plain_member(SocketAddr::new(member, 8080), "fe01", Role::Echo)
        .await;
    let cfg = lab.write_config(&format!(
        r#"
[[listener]]
bind = "{proxy}:8081"
[[listener]]
bind = "{proxy}:8082"
max_connection_rate = {{ connections = 1, per = "30s", burst = 2 }}

[admin]
bind = "{proxy}:9901"

[[farm]]
name = "app"
members = [ {{ address = "{member}" }} ]
http_port = 8080

[[rule]]
name = "ews"
match = "^ews/"
action = {{ route = "app", scheme = "http" }}
rate_limit = {{ requests = 1, per = "30s", burst = 3 }}
stop = true

[[rule]]
name = "rest"
action = {{ route = "app", scheme = "http" }}
"#
    ));
    let _p = Portico::start(&cfg, SocketAddr::new(proxy, 8081));
    let url = format!("http://{proxy}:8081/ews/x");
    let from = |ip: &'static str| {
        let url = url.clone();
        async move { curl(&["--interface", ip, &url]).await }
    };
    for _ in 0..3 {
        assert!(from("127.0.0.5").await.header("x-backend").is_some());
    }
    let r = from("127.0.0.5").await;
    assert_eq!(r.status, 429);
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&secs), "{secs}");
    // Other clients, and other rules for the same client, are served.
    assert!(from("127.0.0.6").await.header("x-backend").is_some());
    let r = curl(&[
        "--interface",
        "127.0.0.5",
        &format!("http://{proxy}:8081/owa/"),
    ])
    .await;
    assert!(r.header("x-backend").is_some());

    // Connection rate at accept: the third connection within the burst is closed.
    let url2 = format!("http://{proxy}:8082/owa/");
    for _ in 0..2 {
        let r = curl(&["--interface", "127.0.0.7", &url2]).await;
        assert!(r.header("x-backend").is_some(), "{r:?}");
    }
    let r = curl(&["--interface", "127.0.0.7", &url2]).await;
    assert_eq!(r.status, 0, "closed at accept: {r:?}");
    let r = curl(&["--interface", "127.0.0.8", &url2]).await;
    assert!(r.header("x-backend").is_some());

    assert_eq!(
        metric(proxy, "portico_rate_limited_requests_total").await,
        1.0
    );
    assert_eq!(
        metric(proxy, "portico_rate_limited_connections_total").await,
        1.0
    );
}

/// One connection with a PROXY v2 header naming `src`, one request, read to the end.
async fn proxied_request(to: SocketAddr, from: IpAddr, src: [u8; 4]) -> bool {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let Ok(mut s) = socket.connect(to).await else {
        return false;
    };
    let mut msg = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    msg.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
    msg.extend_from_slice(&src);
    msg.extend_from_slice(&[203, 0, 113, 10, 0xc3, 0x50, 0x01, 0xbb]);
    msg.extend_from_slice(
        b"GET /ews/x HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n\r\n",
    );
    if s.write_all(&msg).await.is_err() {
        return false;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    out.starts_with(b"HTTP/1.1 ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_stay_bounded_under_a_flood_from_100000_addresses() {
    let lab = Lab::new();
    let proxy = unique_loopback();
    // No member listens: the flood measures Portico's tables, not a member (answers 502/503).
    let member = unique_loopback();
    const CAP: usize = 2000;
    let cfg = lab.write_config(&format!(
        r#"
[[listener]]
bind = "{proxy}:8081"
proxy_protocol = {{ from = ["127.0.0.0/8"] }}
max_connection_rate = {{ connections = 1, per = "60s", burst = 5, max_clients = {CAP} }}
max_connections_per_client = 100000

[admin]
bind = "{proxy}:9901"

[[farm]]
name = "app"
members = [ {{ address = "{member}" }} ]
http_port = 8080

[[rule]]
name = "ews"
action = {{ route = "app", scheme = "http" }}
rate_limit = {{ requests = 1, per = "60s", burst = 5, max_clients = {CAP} }}
"#
    ));
    let p = Portico::start(&cfg, SocketAddr::new(proxy, 8081));
    let to = SocketAddr::new(proxy, 8081);
    const TOTAL: u32 = 100_000;
    const TASKS: u32 = 16;
    let flood = |range: std::ops::Range<u32>| async move {
        let per = (range.end - range.start).div_ceil(TASKS);
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let lo = range.start + t * per;
            let hi = (lo + per).min(range.end);
            tasks.push(tokio::spawn(async move {
                let mut ok = 0u32;
                for n in lo..hi {
                    // Many local source addresses, so the client never runs out of ports.
                    let from = IpAddr::from([127, 1, (n % 200) as u8, 1 + (n / 200 % 200) as u8]);
                    let src = (0x0A00_0000u32 + n).to_be_bytes();
                    ok += u32::from(proxied_request(to, from, src).await);
                }
                ok
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += t.await.unwrap();
        }
        ok
    };
    let started = Instant::now();
    let warm = flood(0..10_000).await;
    let rss_warm = p.rss_kib();
    let rest = flood(10_000..TOTAL).await;
    let rss_end = p.rss_kib();
    let took = started.elapsed();
    assert!(warm + rest >= TOTAL * 99 / 100, "answered {}", warm + rest);
    let text = curl(&[&format!("http://{proxy}:9901/metrics")])
        .await
        .text();
    let entries = |table: &str| -> f64 {
        let needle = format!("portico_perimeter_table_entries{{table=\"{table}\"");
        text.lines()
            .find(|l| l.starts_with(&needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {needle} in {text}"))
    };
    let rate = entries("rate_limit");
    let conn = entries("connection_rate");
    eprintln!(
        "flood: {TOTAL} addresses in {took:?}; rate-limit table {rate}, connection-rate table {conn} (cap {CAP}); RSS {rss_warm} KiB after 10k, {rss_end} KiB after {TOTAL}"
    );
    assert!(rate <= CAP as f64 && rate > (CAP / 2) as f64, "{rate}");
    assert!(conn <= CAP as f64 && conn > (CAP / 2) as f64, "{conn}");
    assert!(metric_in(&text, "portico_perimeter_table_evictions_total") > 0.0);
    // 90,000 more addresses cost no more than a few MiB of allocator slack.
    assert!(
        rss_end < rss_warm + 16 * 1024,
        "RSS {rss_warm} -> {rss_end} KiB"
    );
}
