//! Exchange through Portico against Exchange-like members: Outlook Anywhere, MAPI and
//! ActiveSync streaming (plain, with a body limit, on an NTLM-pinned connection), health per
//! protocol, and `portico check --exchange`.

mod common;

use common::*;
use portico::demo::backend::{Backend, Role};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

struct ExchangeLab {
    lab: Lab,
    proxy_ip: IpAddr,
    members: Vec<Backend>,
    _portico: Portico,
}

/// `count` Exchange members `ex0N.contoso.local` (TLS on 444, internal CA) in one farm
/// `exchange` behind a TLS listener on `proxy_ip:8443`; `farm_extra` lines go into the farm,
/// `action_extra` into the route action.
async fn exchange_lab(count: usize, farm_extra: &str, action_extra: &str) -> ExchangeLab {
    exchange_lab_with(count, farm_extra, action_extra, false).await
}

/// With `same_certificate`, the members present the proxy's own certificate (issued for the
/// published names and theirs), as Extended Protection wants.
async fn exchange_lab_with(
    count: usize,
    farm_extra: &str,
    action_extra: &str,
    same_certificate: bool,
) -> ExchangeLab {
    let lab = Lab::new();
    lab.external_cert(
        "external",
        &[
            "mail.contoso.com",
            "autodiscover.contoso.com",
            "ex01.contoso.local",
            "ex02.contoso.local",
        ],
    );
    let proxy_ip = unique_loopback();
    let mut members = Vec::new();
    let mut resolve = String::new();
    let mut list = Vec::new();
    for i in 1..=count {
        let ip = unique_loopback();
        let name = format!("ex0{i}.contoso.local");
        let addr = SocketAddr::new(ip, 444);
        let member = if same_certificate {
            let cert = std::fs::read_to_string(lab.path("external.pem")).unwrap();
            let key = std::fs::read_to_string(lab.path("external.key")).unwrap();
            let tls = portico::demo::backend::server_config_from_pem(&cert, &key).unwrap();
            let opts = portico::demo::backend::BackendOptions {
                name: name.clone(),
                tls: Some(tls),
                role: Role::Exchange,
            };
            Backend::start(addr, opts).await.unwrap()
        } else {
            lab.tls_member(addr, &name, Role::Exchange).await
        };
        members.push(member);
        resolve.push_str(&format!("\"{name}\" = [\"{ip}\"]\n"));
        list.push(format!("{{ address = \"{name}\" }}"));
    }
    let toml = format!(
        r#"
[[listener]]
bind = "{proxy_ip}:8443"
tls = {{ certificates = [ {{ cert = "external.pem", key = "external.key" }} ], http1_only = [ "mail.contoso.com" ] }}

[admin]
bind = "{proxy_ip}:9901"

[resolve]
{resolve}
[upstream]
ca = "{ca}"

[[farm]]
name = "exchange"
members = [ {members} ]
https_port = 444
timeout = "3600s"
{farm_extra}

[[rule]]
name = "exchange"
action = {{ route = "exchange"{action_extra} }}
"#,
        members = list.join(", "),
        ca = if same_certificate {
            "public-ca.pem"
        } else {
            "internal-ca.pem"
        },
    );
    let cfg = lab.write_config(&toml);
    let portico = Portico::start(&cfg, SocketAddr::new(proxy_ip, 8443));
    ExchangeLab {
        lab,
        proxy_ip,
        members,
        _portico: portico,
    }
}

impl ExchangeLab {
    async fn client(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        tls_client(
            &self.lab,
            SocketAddr::new(self.proxy_ip, 8443),
            "mail.contoso.com",
        )
        .await
    }
}

/// Reads one response head (through the blank line), within `limit`.
async fn response_head<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> String {
    let head = tokio::time::timeout(limit, read_head(s))
        .await
        .expect("response head in time")
        .expect("a response head");
    String::from_utf8(head).unwrap()
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0)
}

/// One request and its Content-Length response on a kept-alive connection.
async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    request: &str,
) -> (String, String) {
    s.write_all(request.as_bytes()).await.unwrap();
    let head = response_head(s, Duration::from_secs(10)).await;
    let mut body = vec![0u8; content_length(&head)];
    s.read_exact(&mut body).await.unwrap();
    (head, String::from_utf8_lossy(&body).into_owned())
}

const RPC_IN_HEAD: &str = "RPC_IN_DATA /rpc/rpcproxy.dll?ex01.contoso.local:6001 HTTP/1.1\r\nHost: mail.contoso.com\r\nUser-Agent: MSRPC\r\nAccept: application/rpc\r\nContent-Length: 1073741824\r\n";

/// Sends 256 KiB of an RPC_IN_DATA body in 16 KiB pieces and checks that the member has all
/// of it within a second while the request is still open.
async fn first_256k_reach_the_member_at_once<S: AsyncWrite + Unpin>(
    client: &mut S,
    member: &Backend,
    head: &str,
) {
    client.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let piece = vec![0x5au8; 16 * 1024];
    for _ in 0..16 {
        client.write_all(&piece).await.unwrap();
        client.flush().await.unwrap();
    }
    loop {
        let seen = member.rpc_in_progress();
        if let Some(p) = seen.last().filter(|p| p.first_256k_at.is_some()) {
            assert!(
                p.ended_at.is_none(),
                "the member saw the RPC_IN_DATA body end"
            );
            assert_eq!(p.received, 256 * 1024, "{p:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "after 1 s the member has {:?} of the first 256 KiB",
            seen.last().map(|p| p.received)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn rpc_in_data_declaring_1_gib_streams_to_the_member_as_it_arrives() {
    let x = exchange_lab(1, "", "").await;
    let mut c = x.client().await;
    let head = format!("{RPC_IN_HEAD}Authorization: Negotiate dGVzdA==\r\n\r\n");
    first_256k_reach_the_member_at_once(&mut c, &x.members[0], &head).await;
}

#[tokio::test]
async fn rpc_in_data_streams_with_a_body_limit_configured() {
    let x = exchange_lab(1, "", ", max_body = \"4GB\"").await;
    let mut c = x.client().await;
    let head = format!("{RPC_IN_HEAD}Authorization: Negotiate dGVzdA==\r\n\r\n");
    first_256k_reach_the_member_at_once(&mut c, &x.members[0], &head).await;
}

#[tokio::test]
async fn rpc_in_data_streams_on_an_ntlm_pinned_connection() {
    let x = exchange_lab(1, "", "").await;
    let mut c = x.client().await;
    let [t1, t3] = common::ntlm_legs("alice");
    let (h, _) = round_trip(
        &mut c,
        &format!(
            "GET /auth/ntlm HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: {t1}\r\n\r\n"
        ),
    )
    .await;
    assert!(h.starts_with("HTTP/1.1 401"), "{h}");
    let (h, body) = round_trip(
        &mut c,
        &format!(
            "GET /auth/ntlm HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: {t3}\r\n\r\n"
        ),
    )
    .await;
    assert!(h.starts_with("HTTP/1.1 200"), "{h}{body}");
    // No Authorization now: only the pinned, authenticated member connection lets it in.
    let head = format!("{RPC_IN_HEAD}\r\n");
    first_256k_reach_the_member_at_once(&mut c, &x.members[0], &head).await;
    assert_eq!(
        x.members[0].connections_accepted(),
        1,
        "the RPC channel left the pinned connection"
    );
}

#[tokio::test]
async fn rpc_out_data_pieces_reach_the_client_at_once() {
    let x = exchange_lab(1, "", "").await;
    let mut c = x.client().await;
    let body = "x".repeat(76);
    c.write_all(format!("RPC_OUT_DATA /rpc/rpcproxy.dll?ex01.contoso.local:6001 HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: Negotiate dGVzdA==\r\nContent-Length: 76\r\n\r\n{body}").as_bytes()).await.unwrap();
    let head = response_head(&mut c, Duration::from_secs(2)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Content-Length: 1073741824\r\n"), "{head}");
    let got_head = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let mut first_at: Option<Duration> = None;
    // The member writes a 28-byte piece at once and one every 500 ms.
    while !String::from_utf8_lossy(&seen).contains("piece 00000002") {
        let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf))
            .await
            .expect("RPC_OUT_DATA piece in time")
            .unwrap();
        assert!(n > 0, "the channel closed");
        seen.extend_from_slice(&buf[..n]);
        if first_at.is_none() && String::from_utf8_lossy(&seen).contains("piece 00000001") {
            first_at = Some(got_head.elapsed());
        }
    }
    let first_at = first_at.expect("first piece");
    assert!(
        first_at < Duration::from_millis(300),
        "first piece after {first_at:?}"
    );
    assert!(
        got_head.elapsed() < Duration::from_millis(1200),
        "{:?}",
        got_head.elapsed()
    );
}

#[tokio::test]
async fn mapi_processing_reaches_the_client_before_done_is_written() {
    let x = exchange_lab(1, "", "").await;
    let mut c = x.client().await;
    c.write_all(b"POST /mapi/emsmdb/?MailboxId=alice@contoso.com&work_ms=1500&pending_ms=300 HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: Negotiate dGVzdA==\r\nX-RequestType: Execute\r\nContent-Type: application/mapi-http\r\nContent-Length: 4\r\n\r\nexec").await.unwrap();
    let head = response_head(&mut c, Duration::from_secs(2)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("X-ResponseCode: 0\r\n"), "{head}");
    assert!(head.contains("X-PendingPeriod: 300\r\n"), "{head}");
    let mut seen = String::new();
    let mut processing_at = None;
    let mut pending_before_done = 0;
    let mut buf = [0u8; 4096];
    while !seen.contains("DONE") {
        let n = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf))
            .await
            .expect("MAPI keep-alive in time")
            .unwrap();
        assert!(n > 0, "closed before DONE");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        if processing_at.is_none() && seen.contains("PROCESSING") {
            processing_at = Some(Instant::now());
        }
        if !seen.contains("DONE") {
            pending_before_done = seen.matches("PENDING").count();
        }
    }
    let processing_at = processing_at.expect("PROCESSING");
    let done = x.members[0].mapi_done_written();
    assert_eq!(done.len(), 1);
    assert!(
        processing_at + Duration::from_millis(1000) < done[0],
        "PROCESSING reached the client only {:?} before DONE was written",
        done[0].saturating_duration_since(processing_at)
    );
    assert!(pending_before_done >= 2, "{seen}");
}

#[tokio::test]
async fn activesync_ping_is_held_for_its_heartbeat() {
    let x = exchange_lab(1, "", "").await;
    let mut c = x.client().await;
    let body = "<Ping><HeartbeatInterval>3</HeartbeatInterval></Ping>";
    let started = Instant::now();
    let (head, text) = round_trip(
        &mut c,
        &format!("POST /Microsoft-Server-ActiveSync?Cmd=Ping&User=alice&DeviceId=ABC&DeviceType=iPhone HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: Basic YWxpY2U6cA==\r\nMS-ASProtocolVersion: 16.1\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}", body.len()),
    )
    .await;
    let held = started.elapsed();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(text.contains("<Status>1</Status>"), "{text}");
    assert!(held >= Duration::from_secs(3), "{held:?}");
    assert!(held < Duration::from_secs(5), "{held:?}");
}

/// Per-protocol checks on every Exchange workload, each guarding its virtual directory.
fn per_protocol_health(extra: &str) -> String {
    let checks: Vec<String> = portico::demo::backend::WORKLOADS
        .iter()
        .map(|w| {
            format!("{{ url = \"/{w}/healthcheck.htm\", path = \"/{w}\", interval = \"300ms\", fall = 1, rise = 1 }}")
        })
        .collect();
    format!("health = [ {}{extra} ]", checks.join(", "))
}

/// Which member served each of `n` requests to `path` (its `X-FEServer`).
async fn served_by(x: &ExchangeLab, path: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = curl_https(
            &x.lab,
            "mail.contoso.com",
            x.proxy_ip,
            8443,
            path,
            &["-H", "Authorization: Negotiate dGVzdA=="],
        )
        .await;
        assert!(r.status == 200, "{path}: {r:?}");
        out.push(r.header("x-feserver").unwrap_or("").to_string());
    }
    out
}

async fn wait_for_check(x: &ExchangeLab, check: &str, member: &str, up: u8) -> String {
    let started = Instant::now();
    loop {
        let m = curl(&[&format!("http://{}:9901/metrics", x.proxy_ip)]).await;
        let text = m.text();
        let hit = text.lines().any(|l| {
            l.starts_with("portico_member_check_up{")
                && l.contains(&format!("check=\"{check}\""))
                && l.contains(member)
                && l.ends_with(&format!(" {up}"))
        });
        if hit {
            return text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "check {check} of {member} never {up}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn ews_down_on_one_of_two_servers_moves_only_ews() {
    let x = exchange_lab(2, &per_protocol_health(""), "").await;
    // Both members serve both workloads at first (round robin).
    wait_for_check(&x, "/ews", "ex02", 1).await;
    let ews = served_by(&x, "/ews/exchange.asmx", 4).await;
    assert!(
        ews.contains(&"ex01.contoso.local".to_string())
            && ews.contains(&"ex02.contoso.local".to_string()),
        "{ews:?}"
    );

    x.members[1].set_workload_up("ews", false);
    let metrics = wait_for_check(&x, "/ews", "ex02", 0).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("portico_member_check_up{")
                && l.contains("check=\"/owa\"")
                && l.contains("ex02")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l.starts_with("portico_member_up{")
            && l.contains("ex02")
            && l.ends_with(" 1")),
        "ex02 as a whole must stay up:\n{metrics}"
    );

    let ews = served_by(&x, "/ews/exchange.asmx", 6).await;
    assert!(
        ews.iter().all(|m| m == "ex01.contoso.local"),
        "EWS still reached ex02: {ews:?}"
    );
    let owa = served_by(&x, "/owa/", 6).await;
    assert!(
        owa.contains(&"ex02.contoso.local".to_string()),
        "OWA moved too: {owa:?}"
    );

    // The API and the status page say which check of which member failed.
    let api = curl(&[&format!("http://{}:9901/api/status", x.proxy_ip)]).await;
    let json: serde_json::Value = serde_json::from_slice(&api.body).unwrap();
    let m2 = json["farms"][0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["host"] == "ex02.contoso.local")
        .unwrap();
    let ews_check = m2["health"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "/ews")
        .unwrap();
    assert_eq!(ews_check["up"], false, "{m2}");
    assert!(
        ews_check["last"]["detail"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{m2}"
    );
    let page = curl(&[&format!("http://{}:9901/", x.proxy_ip)]).await;
    assert!(page.text().contains("/ews down"), "{}", page.text());

    // EWS back: ex02 gets EWS again.
    x.members[1].set_workload_up("ews", true);
    wait_for_check(&x, "/ews", "ex02", 1).await;
    let ews = served_by(&x, "/ews/exchange.asmx", 4).await;
    assert!(ews.contains(&"ex02.contoso.local".to_string()), "{ews:?}");
}

#[tokio::test]
async fn a_tcp_check_on_another_port_takes_the_whole_member_out_when_it_fails() {
    // ex01 listens on 5061 (as an SfB Front End's SIP port would); ex02 does not.
    let x = exchange_lab(
        2,
        &per_protocol_health(
            ", { tcp = true, port = 5061, interval = \"300ms\", fall = 1, rise = 1 }",
        ),
        "",
    )
    .await;
    let sip = std::net::TcpListener::bind(SocketAddr::new(x.members[0].addr.ip(), 5061)).unwrap();
    wait_for_check(&x, "tcp:5061", "ex02", 0).await;
    wait_for_check(&x, "tcp:5061", "ex01", 1).await;
    let owa = served_by(&x, "/owa/", 4).await;
    assert!(owa.iter().all(|m| m == "ex01.contoso.local"), "{owa:?}");
    drop(sip);
}

// ---- portico check --exchange ----

async fn check_exchange(
    x: &ExchangeLab,
    extra: &[String],
) -> (String, Vec<(String, String, String)>) {
    let resolve = format!("mail.contoso.com:8443:{}", x.proxy_ip);
    let ca = x.lab.path("public-ca.pem");
    let mut args: Vec<String> = [
        "check",
        "--exchange",
        "mail.contoso.com",
        "--resolve",
        &resolve,
        "--port",
        "8443",
        "--ca",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(ca.to_str().unwrap().to_string());
    args.extend(extra.iter().cloned());
    args.push("--json".into());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(&args)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let checks = text
        .lines()
        .filter(|l| l.trim_start().starts_with("{\"id\":"))
        .map(|l| {
            (
                json_field(l, "id").unwrap_or_default(),
                json_field(l, "status").unwrap_or_default(),
                json_field(l, "detail").unwrap_or_default(),
            )
        })
        .collect();
    (text, checks)
}

#[tokio::test]
async fn check_names_an_extended_protection_mismatch_and_reports_the_build() {
    let x = exchange_lab(1, "", "").await;
    let server = format!("{}", x.members[0].addr);
    let (text, checks) = check_exchange(&x, &["--exchange-server".into(), server]).await;
    let ep: Vec<_> = checks
        .iter()
        .filter(|(id, _, _)| id == "extended-protection")
        .collect();
    assert_eq!(ep.len(), 1, "{text}");
    assert_eq!(ep[0].1, "warn", "{text}");
    assert!(ep[0].2.contains("Extended Protection trap"), "{text}");
    assert!(
        ep[0].2.contains("Contoso Internal Root CA"),
        "the server's issuer is named: {text}"
    );
    let build = checks
        .iter()
        .find(|(id, _, _)| id == "exchange-build")
        .expect("build");
    assert_eq!(build.1, "pass");
    assert!(
        build.2.contains("15.2.1544.4") && build.2.contains("Exchange Server 2019"),
        "{text}"
    );
    for vdir in [
        "owa",
        "ecp",
        "ews",
        "mapi",
        "rpc",
        "oab",
        "activesync",
        "autodiscover",
    ] {
        let id = format!("exchange-health-{vdir}");
        let c = checks
            .iter()
            .find(|(i, _, _)| *i == id)
            .unwrap_or_else(|| panic!("{id}: {text}"));
        assert_eq!(c.1, "pass", "{id}: {text}");
    }
    for id in ["exchange-ews", "exchange-autodiscover", "exchange-mapi"] {
        let c = checks.iter().find(|(i, _, _)| i == id).unwrap();
        assert_eq!(c.1, "pass", "{id}: {text}");
    }

    // A protocol down on the only server: its health page check fails.
    x.members[0].set_workload_up("mapi", false);
    let (text, checks) = check_exchange(&x, &[]).await;
    let mapi = checks
        .iter()
        .find(|(i, _, _)| i == "exchange-health-mapi")
        .unwrap();
    assert_eq!(mapi.1, "fail", "{text}");
    assert!(mapi.2.contains("Managed Availability"), "{text}");
}

#[tokio::test]
async fn check_passes_extended_protection_when_proxy_and_servers_share_the_certificate() {
    let x = exchange_lab_with(1, "", "", true).await;
    // From the config: the members of the farm mail.contoso.com is routed to.
    let cfg = x.lab.path("portico.toml");
    let resolve = format!("mail.contoso.com:8443:{}", x.proxy_ip);
    let ca = x.lab.path("public-ca.pem");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["check", "--config"])
        .arg(&cfg)
        .args(["--resolve", &resolve, "--ca"])
        .arg(&ca)
        .arg("--json")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let ep: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("\"id\":\"extended-protection\"") && l.contains("\"mail.contoso.com\"")
        })
        .collect();
    assert!(
        !ep.is_empty(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for l in ep {
        assert_eq!(json_field(l, "status").as_deref(), Some("pass"), "{l}");
        assert!(
            l.contains("same certificate as Exchange server ex01.contoso.local"),
            "{l}"
        );
    }
}
