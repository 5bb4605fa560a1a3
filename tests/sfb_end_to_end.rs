//! The Skype for Business scenario end to end: real TLS both sides, real members, the real
//! binary, real clients.

mod common;

use common::*;
use portico::demo::backend::{Backend, Role};
use std::net::{IpAddr, SocketAddr};

/// Three front-end members (one per farm so routing is visible), each on its own loopback
/// address with the pool's real ports 4443 (TLS) and 8080, and a Portico in front.
struct SfbLab {
    lab: Lab,
    proxy_ip: IpAddr,
    _members: Vec<(String, IpAddr)>,
    _backends: Vec<Backend>,
    portico: Portico,
}

const HTTPS: u16 = 8443;
const HTTP: u16 = 8081;

fn sfb_config(proxy_ip: IpAddr, members: &[(String, IpAddr)], extra: &str) -> String {
    let mut resolve = String::new();
    for (name, ip) in members {
        resolve.push_str(&format!("\"{name}\" = [\"{ip}\"]\n"));
    }
    let farm = |farm: &str, member: &str| {
        format!(
            "[[farm]]\nname = \"{farm}\"\nmembers = [ {{ address = \"{member}\" }} ]\nhttps_port = 4443\nhttp_port = 8080\nssl_offload = false\ntimeout = \"960s\"\n\n"
        )
    };
    let rule = |name: &str, host: &str| {
        format!(
            "[[rule]]\nname = \"{name}\"\nmatch = \".*\"\nconditions = [ {{ input = \"{{HTTP_HOST}}\", pattern = \"^{host}\\\\.\" }} ]\naction = {{ route = \"{name}\", path = \"/{{R:0}}\" }}\nstop = true\n\n"
        )
    };
    format!(
        r#"workers = 2

[[listener]]
bind = "{proxy_ip}:{HTTPS}"
tls = {{ certificates = [ {{ cert = "external.pem", key = "external.key" }}, {{ cert = "lyncweb.pem", key = "lyncweb.key" }} ] }}

[[listener]]
bind = "{proxy_ip}:{HTTP}"

[resolve]
{resolve}
[upstream]
ca = "internal-ca.pem"

{f1}{f2}{f3}{extra}
{r1}{r2}{r3}"#,
        f1 = farm("meet", &members[0].0),
        f2 = farm("dialin", &members[1].0),
        f3 = farm("lyncweb", &members[2].0),
        r1 = rule("meet", "meet"),
        r2 = rule("dialin", "dialin"),
        r3 = rule("lyncweb", "(lyncweb|lyncdiscover)"),
    )
}

impl SfbLab {
    async fn start(extra: &str) -> SfbLab {
        let lab = Lab::new();
        // The wildcard covers meet/dialin; lyncweb has a certificate of its own (SNI picks it).
        lab.external_cert("external", &["*.contoso.com"]);
        lab.external_cert(
            "lyncweb",
            &["lyncweb.contoso.com", "lyncdiscover.contoso.com"],
        );
        let proxy_ip = unique_loopback();
        let members: Vec<(String, IpAddr)> = ["fe-meet", "fe-dialin", "fe-web"]
            .iter()
            .map(|n| (format!("{n}.contoso.local"), unique_loopback()))
            .collect();
        let mut backends = Vec::new();
        for (name, ip) in &members {
            backends.push(
                lab.tls_member(SocketAddr::new(*ip, 4443), name, Role::FrontEnd)
                    .await,
            );
            backends.push(
                lab.plain_member(SocketAddr::new(*ip, 8080), name, Role::FrontEnd)
                    .await,
            );
        }
        let cfg = lab.write_config(&sfb_config(proxy_ip, &members, extra));
        let portico = Portico::start(&cfg, SocketAddr::new(proxy_ip, HTTPS));
        SfbLab {
            lab,
            proxy_ip,
            _members: members,
            _backends: backends,
            portico,
        }
    }

    async fn get(&self, host: &str, path: &str, extra: &[&str]) -> Reply {
        curl_https(&self.lab, host, self.proxy_ip, HTTPS, path, extra).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_simple_urls_reach_three_farms_over_reencrypted_tls_on_4443_with_host_kept() {
    let l = SfbLab::start("").await;
    for (host, member) in [
        ("meet.contoso.com", "fe-meet.contoso.local"),
        ("dialin.contoso.com", "fe-dialin.contoso.local"),
        ("lyncweb.contoso.com", "fe-web.contoso.local"),
    ] {
        let r = l.get(host, "/echo/x?a=1", &[]).await;
        assert_eq!(r.status, 200, "{host}: {r:?}\n{}", l.portico.log_text());
        assert_eq!(r.header("x-backend"), Some(member), "{host}");
        let body = r.text();
        assert_eq!(json_field(&body, "tls").as_deref(), Some("true"), "{body}");
        assert_eq!(
            json_field(&body, "local_port").as_deref(),
            Some("4443"),
            "{body}"
        );
        assert_eq!(
            json_field(&body, "host").as_deref(),
            Some(format!("{host}:{HTTPS}").as_str()),
            "{body}"
        );
        assert_eq!(
            json_field(&body, "uri").as_deref(),
            Some("/echo/x?a=1"),
            "{body}"
        );
    }
    // The SfB pages themselves.
    let meet = l.get("meet.contoso.com", "/", &[]).await;
    assert_eq!(meet.status, 200);
    assert!(
        meet.text().to_lowercase().contains("meet"),
        "{}",
        meet.text()
    );
    let dialin = l.get("dialin.contoso.com", "/", &[]).await;
    assert_eq!(dialin.status, 200);
    assert!(
        dialin.text().to_lowercase().contains("dial"),
        "{}",
        dialin.text()
    );
    let disc = l
        .get(
            "lyncdiscover.contoso.com",
            "/",
            &[
                "-H",
                "Accept: application/vnd.microsoft.rtc.autodiscover+json;v=1",
            ],
        )
        .await;
    assert_eq!(disc.status, 200);
    assert!(disc.text().contains("_links"), "{}", disc.text());
    assert!(
        disc.text().contains("https://lyncdiscover.contoso.com"),
        "member saw the public host: {}",
        disc.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_set_and_client_forwarded_for_is_replaced() {
    let l = SfbLab::start("").await;
    let r = l
        .get(
            "meet.contoso.com",
            "/echo",
            &["-H", "X-Forwarded-For: 6.6.6.6"],
        )
        .await;
    let body = r.text();
    assert!(body.contains("[\"x-forwarded-for\",\"127."), "{body}");
    assert!(!body.contains("6.6.6.6"), "{body}");
    assert!(body.contains("[\"x-forwarded-proto\",\"https\"]"), "{body}");
    assert!(
        body.contains("[\"x-forwarded-host\",\"meet.contoso.com:8443\"]"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_listener_is_bridged_to_8080_in_clear() {
    let l = SfbLab::start("").await;
    let url = format!("http://dialin.contoso.com:{HTTP}/echo");
    let resolve = format!("dialin.contoso.com:{HTTP}:{}", l.proxy_ip);
    let r = curl(&["--resolve", &resolve, &url]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(json_field(&r.text(), "local_port").as_deref(), Some("8080"));
    assert_eq!(json_field(&r.text(), "tls").as_deref(), Some("false"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_auth_challenges_pass_through_untouched() {
    let l = SfbLab::start("").await;
    for path in ["/abs/handler", "/GroupExpansion/service.svc"] {
        let r = l.get("lyncweb.contoso.com", path, &[]).await;
        assert_eq!(r.status, 401, "{path}");
        let challenges = r.headers_named("www-authenticate");
        assert!(challenges.contains(&"NTLM"), "{challenges:?}");
        assert!(challenges.contains(&"Negotiate"), "{challenges:?}");
    }
    let r = l
        .get("lyncweb.contoso.com", "/ucwa/v1/applications", &[])
        .await;
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap_or("")
            .starts_with("MsRtcOAuth href="),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_clients_are_served_and_http1_clients_too() {
    let l = SfbLab::start("").await;
    let r = l.get("meet.contoso.com", "/echo", &["--http2"]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.http_version, "HTTP/2");
    // The member still sees HTTP/1.1 with a Host header built from :authority.
    assert_eq!(
        json_field(&r.text(), "host").as_deref(),
        Some("meet.contoso.com:8443")
    );
    let r = l.get("meet.contoso.com", "/echo", &["--http1.1"]).await;
    assert_eq!(r.http_version, "HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_and_queries_are_forwarded_byte_for_byte() {
    let l = SfbLab::start("").await;
    for target in [
        "/echo/wv/wordviewerframe.aspx?WopiSrc=http%253A%252F%252Fsp%252F_vti_bin%252Fwopi.ashx&ui=en-US",
        "/echo/a%2Fb/../c/%7e?x=%20y+z",
        "/echo//double//slash",
    ] {
        let r = l.get("lyncweb.contoso.com", target, &["--path-as-is"]).await;
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(json_field(&r.text(), "uri").as_deref(), Some(target));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_that_covers_the_name() {
    let l = SfbLab::start("").await;
    // curl verifies the name against the certificate it gets, so success proves the choice;
    // -v shows the subject.
    for (host, subject) in [
        ("meet.contoso.com", "*.contoso.com"),
        ("lyncweb.contoso.com", "lyncweb.contoso.com"),
    ] {
        let r = l.get(host, "/echo", &["-v"]).await;
        assert_eq!(r.status, 200, "{host}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!("subject: CN={subject}")),
            "{host}: {}",
            r.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_gets_404_from_portico_not_a_default_farm() {
    let l = SfbLab::start("").await;
    let r = l.get("unknown.contoso.com", "/echo", &[]).await;
    assert_eq!(r.status, 404);
    assert!(r.header("x-backend").is_none());
    assert!(r.text().contains("unknown.contoso.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_down_gives_502_naming_the_farm_but_no_internal_address() {
    let lab = Lab::new();
    lab.external_cert("external", &["*.contoso.com"]);
    lab.external_cert("lyncweb", &["lyncweb.contoso.com"]);
    let proxy_ip = unique_loopback();
    let members: Vec<(String, IpAddr)> = ["fe-meet", "fe-dialin", "fe-web"]
        .iter()
        .map(|n| (format!("{n}.contoso.local"), unique_loopback()))
        .collect();
    // No member is started at all.
    let cfg = lab.write_config(&sfb_config(proxy_ip, &members, ""));
    let p = Portico::start(&cfg, SocketAddr::new(proxy_ip, HTTPS));
    let r = curl_https(&lab, "meet.contoso.com", proxy_ip, HTTPS, "/", &[]).await;
    assert_eq!(r.status, 502, "{}", p.log_text());
    let body = r.text();
    assert!(body.contains("\"meet\""), "{body}");
    assert!(
        !body.contains("contoso.local") && !body.contains(&members[0].1.to_string()),
        "{body}"
    );
}
