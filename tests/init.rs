//! `portico init`: the generated configs validate, and the SfB one, run unchanged against test
//! members, routes every published name to the right member the right way.

mod common;

use common::*;
use portico::demo::backend::Role;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::{Command, Output, Stdio};

const HTTPS: u16 = 8443;
const HTTP: u16 = 8081;

fn portico(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run portico")
}

fn validate(config: &std::path::Path) {
    let out = portico(
        &["validate", "--config", config.to_str().unwrap()],
        config.parent().unwrap(),
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(config).unwrap()
    );
}

/// Office Online and Exchange members listen on 443 as in production; where this test may not
/// bind 443 it moves them (and only them) to 9443 in the generated file.
fn can_bind_443(ip: IpAddr) -> bool {
    TcpListener::bind(SocketAddr::new(ip, 443)).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_sfb_config_validates_and_routes_every_published_name() {
    let lab = Lab::new();
    lab.external_cert(
        "external",
        &[
            "lyncweb.contoso.com",
            "meet.contoso.com",
            "dialin.contoso.com",
            "lyncdiscover.contoso.com",
            "owas.contoso.com",
            "mail.contoso.com",
        ],
    );
    let proxy_ip = unique_loopback();
    let fe = [unique_loopback(), unique_loopback()];
    let owas = unique_loopback();
    let ex = unique_loopback();
    let members = format!("fe01.contoso.local={},fe02.contoso.local={}", fe[0], fe[1]);
    let oos_members = format!("owas01.contoso.local={owas}");
    let ex_members = format!("ex01.contoso.local={ex}");
    let proxy = proxy_ip.to_string();
    let (https, http) = (HTTPS.to_string(), HTTP.to_string());
    let out = portico(
        &[
            "init",
            "sfb",
            "--sip-domain",
            "contoso.com",
            "--webext",
            "lyncweb.contoso.com",
            "--pool",
            "pool01.contoso.local",
            "--members",
            &members,
            "--oos",
            "owas.contoso.com",
            "--oos-members",
            &oos_members,
            "--exchange",
            "mail.contoso.com",
            "--exchange-members",
            &ex_members,
            "--cert",
            "external.pem",
            "--key",
            "external.key",
            "--ca",
            "internal-ca.pem",
            "--listen",
            &proxy,
            "--https-port",
            &https,
            "--http-port",
            &http,
            "--output",
            "portico.toml",
        ],
        lab.dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = lab.path("portico.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    for must in [
        "https_port = 4443",
        "http_port = 8080",
        "ssl_offload = false",
        "timeout = \"960s\"",
        "timeout = \"3900s\"",
        "http1_only",
        "min_version = \"1.2\"",
        "500 MB",
        "2 GB",
    ] {
        assert!(text.contains(must), "missing {must}:\n{text}");
    }
    let oos_port = if can_bind_443(owas) && can_bind_443(ex) {
        443
    } else {
        text = text.replace("https_port = 443 ", "https_port = 9443 ");
        std::fs::write(&config, &text).unwrap();
        9443
    };
    validate(&config);

    let mut backends = Vec::new();
    for (ip, name) in [(fe[0], "fe01.contoso.local"), (fe[1], "fe02.contoso.local")] {
        backends.push(
            lab.tls_member(SocketAddr::new(ip, 4443), name, Role::FrontEnd)
                .await,
        );
        backends.push(
            lab.plain_member(SocketAddr::new(ip, 8080), name, Role::FrontEnd)
                .await,
        );
    }
    backends.push(
        lab.tls_member(
            SocketAddr::new(owas, oos_port),
            "owas01.contoso.local",
            Role::OfficeOnline,
        )
        .await,
    );
    backends.push(
        lab.tls_member(
            SocketAddr::new(ex, oos_port),
            "ex01.contoso.local",
            Role::Exchange,
        )
        .await,
    );
    let p = Portico::start(&config, SocketAddr::new(proxy_ip, HTTPS));
    let fes = ["fe01.contoso.local", "fe02.contoso.local"];

    // Every pool name reaches a pool member over TLS on 4443, Host kept.
    for host in [
        "lyncweb.contoso.com",
        "meet.contoso.com",
        "dialin.contoso.com",
        "lyncdiscover.contoso.com",
    ] {
        let r = curl_https(&lab, host, proxy_ip, HTTPS, "/echo/x?a=1", &[]).await;
        assert_eq!(r.status, 200, "{host}: {r:?}\n{}", p.log_text());
        assert!(
            fes.contains(&r.header("x-backend").unwrap_or("")),
            "{host}: {r:?}"
        );
        let body = r.text();
        assert_eq!(
            json_field(&body, "local_port").as_deref(),
            Some("4443"),
            "{host}: {body}"
        );
        assert_eq!(
            json_field(&body, "tls").as_deref(),
            Some("true"),
            "{host}: {body}"
        );
        assert_eq!(
            json_field(&body, "host").as_deref(),
            Some(format!("{host}:{HTTPS}").as_str())
        );
        assert_eq!(json_field(&body, "uri").as_deref(), Some("/echo/x?a=1"));
    }
    // What each name serves.
    let meet = curl_https(&lab, "meet.contoso.com", proxy_ip, HTTPS, "/", &[]).await;
    assert!(
        meet.status == 200 && meet.text().contains("Join the meeting"),
        "{meet:?}"
    );
    let dialin = curl_https(&lab, "dialin.contoso.com", proxy_ip, HTTPS, "/", &[]).await;
    assert!(
        dialin.status == 200 && dialin.text().contains("Dial-in"),
        "{dialin:?}"
    );
    let disc = curl_https(
        &lab,
        "lyncdiscover.contoso.com",
        proxy_ip,
        HTTPS,
        "/",
        &[
            "-H",
            "Accept: application/vnd.microsoft.rtc.autodiscover+json;v=1",
        ],
    )
    .await;
    assert!(
        disc.status == 200 && disc.text().contains("_links"),
        "{disc:?}"
    );
    let abs = curl_https(
        &lab,
        "lyncweb.contoso.com",
        proxy_ip,
        HTTPS,
        "/abs/handler",
        &["--http2"],
    )
    .await;
    assert_eq!(abs.status, 401, "{abs:?}");
    assert_eq!(
        abs.http_version, "HTTP/1.1",
        "Windows auth host must stay HTTP/1.1"
    );
    // Office Online: not bridged, its own member.
    let oos = curl_https(
        &lab,
        "owas.contoso.com",
        proxy_ip,
        HTTPS,
        "/hosting/discovery",
        &[],
    )
    .await;
    assert_eq!(oos.status, 200, "{oos:?}\n{}", p.log_text());
    assert_eq!(oos.header("x-backend"), Some("owas01.contoso.local"));
    assert!(oos.text().contains("wopi-discovery"));
    // Exchange: its own member, Host kept.
    let owa = curl_https(&lab, "mail.contoso.com", proxy_ip, HTTPS, "/echo/owa/", &[]).await;
    assert_eq!(
        owa.header("x-backend"),
        Some("ex01.contoso.local"),
        "{owa:?}"
    );
    assert_eq!(
        json_field(&owa.text(), "local_port"),
        Some(oos_port.to_string())
    );
    // Port 80 is bridged to 8080 in clear.
    let url = format!("http://dialin.contoso.com:{HTTP}/echo");
    let resolve = format!("dialin.contoso.com:{HTTP}:{proxy_ip}");
    let r = curl(&["--resolve", &resolve, &url]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(json_field(&r.text(), "local_port").as_deref(), Some("8080"));
    assert_eq!(json_field(&r.text(), "tls").as_deref(), Some("false"));
    // A name the config does not publish reaches nobody.
    let r = curl_https(
        &lab,
        "meet.contoso.com.evil",
        proxy_ip,
        HTTPS,
        "/echo",
        &["-k"],
    )
    .await;
    assert!(r.header("x-backend").is_none(), "{r:?}");
}

#[test]
fn init_exchange_and_init_oos_alone_validate() {
    let lab = Lab::new();
    lab.external_cert("mail", &["mail.contoso.com", "autodiscover.contoso.com"]);
    lab.external_cert("owas", &["owas.contoso.com"]);
    let out = portico(
        &[
            "init",
            "exchange",
            "--namespace",
            "mail.contoso.com",
            "--namespace",
            "autodiscover.contoso.com",
            "--members",
            "ex01.contoso.local=10.0.2.11,ex02.contoso.local=10.0.2.12",
            "--cert",
            "mail.pem",
            "--key",
            "mail.key",
            "--ca",
            "internal-ca.pem",
            "--output",
            "exchange.toml",
        ],
        lab.dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(lab.path("exchange.toml")).unwrap();
    assert!(
        text.contains("timeout = \"3900s\"") && !text.contains("4443"),
        "{text}"
    );
    validate(&lab.path("exchange.toml"));
    // To stdout this time.
    let out = portico(
        &[
            "init",
            "oos",
            "--fqdn",
            "owas.contoso.com",
            "--members",
            "owas01.contoso.local=10.0.1.21",
            "--cert",
            "owas.pem",
            "--key",
            "owas.key",
            "--ca",
            "internal-ca.pem",
        ],
        lab.dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(lab.path("oos.toml"), &out.stdout).unwrap();
    validate(&lab.path("oos.toml"));
}

#[test]
fn init_without_required_facts_and_no_terminal_names_the_missing_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = portico(&["init", "sfb"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--sip-domain"), "{err}");
    let out = portico(&["init", "sfb", "--sip-domain", "contoso.com"], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--webext") && err.contains("--pool"), "{err}");
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_exchange_config_run_unchanged_serves_every_workload() {
    let lab = Lab::new();
    lab.external_cert(
        "external",
        &["mail.contoso.com", "autodiscover.contoso.com"],
    );
    let proxy_ip = unique_loopback();
    let ex = [unique_loopback(), unique_loopback()];
    let members = format!("ex01.contoso.local={},ex02.contoso.local={}", ex[0], ex[1]);
    let proxy = proxy_ip.to_string();
    let (https, http) = (HTTPS.to_string(), HTTP.to_string());
    let out = portico(
        &[
            "init",
            "exchange",
            "--namespace",
            "mail.contoso.com",
            "--namespace",
            "autodiscover.contoso.com",
            "--members",
            &members,
            "--cert",
            "external.pem",
            "--key",
            "external.key",
            "--ca",
            "internal-ca.pem",
            "--listen",
            &proxy,
            "--https-port",
            &https,
            "--http-port",
            &http,
            "--no-prompt",
            "--output",
            "portico.toml",
        ],
        lab.dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = lab.path("portico.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("timeout = \"3900s\""), "{text}");
    for vdir in portico::demo::backend::WORKLOADS {
        let check = format!("{{ url = \"/{vdir}/healthcheck.htm\", path = \"/{vdir}\"");
        assert!(
            text.contains(&check),
            "no per-protocol check for {vdir}:\n{text}"
        );
    }
    // Only the members' port changes, where this test may not bind 443.
    let port = if ex.iter().all(|ip| can_bind_443(*ip)) {
        443
    } else {
        text = text.replace("https_port = 443 ", "https_port = 9443 ");
        std::fs::write(&config, &text).unwrap();
        9443
    };
    validate(&config);
    let mut backends = Vec::new();
    for (ip, name) in [(ex[0], "ex01.contoso.local"), (ex[1], "ex02.contoso.local")] {
        backends.push(
            lab.tls_member(SocketAddr::new(ip, port), name, Role::Exchange)
                .await,
        );
    }
    let p = Portico::start(&config, SocketAddr::new(proxy_ip, HTTPS));
    let servers = ["ex01.contoso.local", "ex02.contoso.local"];
    let get = |host: &'static str, path: String, extra: Vec<&'static str>| {
        let lab = &lab;
        async move { curl_https(lab, host, proxy_ip, HTTPS, &path, &extra).await }
    };
    // Every workload's health page, through the proxy, from an Exchange server.
    for vdir in portico::demo::backend::WORKLOADS {
        let r = get(
            "mail.contoso.com",
            format!("/{vdir}/healthcheck.htm"),
            vec![],
        )
        .await;
        assert_eq!(r.status, 200, "{vdir}: {r:?}\n{}", p.log_text());
        assert!(
            servers.contains(&r.header("x-feserver").unwrap_or("")),
            "{r:?}"
        );
    }
    let owa = get("mail.contoso.com", "/owa/".into(), vec![]).await;
    assert!(
        owa.status == 200 && owa.header("x-owa-version").is_some(),
        "{owa:?}"
    );
    let ecp = get("mail.contoso.com", "/ecp/".into(), vec![]).await;
    assert_eq!(ecp.status, 200, "{ecp:?}");
    for (host, path) in [
        ("mail.contoso.com", "/EWS/Exchange.asmx"),
        ("autodiscover.contoso.com", "/autodiscover/autodiscover.xml"),
        ("mail.contoso.com", "/oab/"),
        ("mail.contoso.com", "/rpc/rpcproxy.dll"),
        ("mail.contoso.com", "/mapi/emsmdb/"),
    ] {
        let r = get(host, path.into(), vec!["--http2"]).await;
        assert_eq!(r.status, 401, "{host}{path}: {r:?}");
        assert_eq!(
            r.http_version, "HTTP/1.1",
            "Windows auth names must stay HTTP/1.1"
        );
        let auth = r.headers_named("www-authenticate");
        assert!(
            auth.contains(&"Negotiate") && auth.contains(&"NTLM"),
            "{path}: {auth:?}"
        );
    }
    let eas = get(
        "mail.contoso.com",
        "/Microsoft-Server-ActiveSync".into(),
        vec!["-X", "OPTIONS"],
    )
    .await;
    assert!(
        eas.status == 200 && eas.header("ms-asprotocolversions").is_some(),
        "{eas:?}"
    );
    let mapi = get(
        "mail.contoso.com",
        "/mapi/emsmdb/?MailboxId=alice@contoso.com&work_ms=600&pending_ms=200".into(),
        vec![
            "-X",
            "POST",
            "-H",
            "Authorization: Negotiate dGVzdA==",
            "--data-binary",
            "x",
        ],
    )
    .await;
    assert!(
        mapi.status == 200 && mapi.text().starts_with("PROCESSING") && mapi.text().contains("DONE"),
        "{mapi:?}"
    );
    let ping = get(
        "mail.contoso.com",
        "/Microsoft-Server-ActiveSync?Cmd=Ping&User=alice&DeviceId=A&DeviceType=iPhone".into(),
        vec![
            "-H",
            "Authorization: Basic YWxpY2U6cA==",
            "--data-binary",
            "<Ping><HeartbeatInterval>1</HeartbeatInterval></Ping>",
        ],
    )
    .await;
    assert!(
        ping.status == 200 && ping.text().contains("<Status>1</Status>"),
        "{ping:?}"
    );
    drop(backends);
}

#[test]
fn init_exchange_with_ecp_from_and_lockout_keeps_ecp_inside_and_protects_sign_ins() {
    let lab = Lab::new();
    lab.external_cert("mail", &["mail.contoso.com"]);
    let out = portico(
        &[
            "init",
            "exchange",
            "--namespace",
            "mail.contoso.com",
            "--members",
            "ex01.contoso.local=10.0.2.11",
            "--cert",
            "mail.pem",
            "--key",
            "mail.key",
            "--ecp-from",
            "10.0.0.0/8,fd00::/8",
            "--lockout",
            "--instances",
            "2",
            "--trusted",
            "10.0.0.0/8",
            "--output",
            "exchange.toml",
        ],
        lab.dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(lab.path("exchange.toml")).unwrap();
    for want in [
        "match = \"^ecp(/.*)?$\"",
        "cidr = [ \"10.0.0.0/8\", \"fd00::/8\" ], negate = true",
        "respond = 403",
        "OWA's Options pages live under /ecp",
        "[lockout]",
        "threshold = 2 ",
        "ad_threshold = 10",
        "lockout = true",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    // The /ecp rule comes before the rule that routes everything else of the name.
    assert!(text.find("exchange-ecp-internal-only") < text.find("name = \"exchange\"\nmatch"));
    validate(&lab.path("exchange.toml"));
    // Without the flags nothing is on; the lockout block is offered in a comment.
    let out = portico(
        &[
            "init",
            "exchange",
            "--namespace",
            "mail.contoso.com",
            "--cert",
            "mail.pem",
            "--key",
            "mail.key",
        ],
        lab.dir.path(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("\nlockout = true") && !text.contains("\n[lockout]"),
        "{text}"
    );
    assert!(text.contains("# [lockout]"), "{text}");
    let bad = portico(
        &[
            "init",
            "exchange",
            "--namespace",
            "mail.contoso.com",
            "--ecp-from",
            "10.0.0.0/99",
            "--no-prompt",
        ],
        lab.dir.path(),
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--ecp-from"));
}
