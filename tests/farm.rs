//! Farms that stay up: health checks, balancing, affinity, retries, NTLM pinning, drain.

mod common;

use common::*;
use portico::demo::backend::{Backend, Role};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

const HTTP: u16 = 8081;

struct FarmLab {
    lab: Lab,
    proxy_ip: IpAddr,
    member_ips: Vec<IpAddr>,
    members: Vec<Option<Backend>>,
    portico: Portico,
    config: String,
}

fn member_name(i: usize) -> String {
    format!("fe0{i}.contoso.local")
}

fn farm_config(
    proxy_ip: IpAddr,
    ips: &[IpAddr],
    farm_extra: &str,
    member_extra: &[&str],
) -> String {
    let mut resolve = String::new();
    let mut list = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        resolve.push_str(&format!("\"{}\" = [\"{ip}\"]\n", member_name(i)));
        let extra = member_extra.get(i).copied().unwrap_or("");
        list.push(format!("{{ address = \"{}\"{extra} }}", member_name(i)));
    }
    format!(
        r#"
[[listener]]
bind = "{proxy_ip}:{HTTP}"

[resolve]
{resolve}
[upstream]
ca = "internal-ca.pem"
connect_timeout = "1s"

[[farm]]
name = "pool"
members = [ {members} ]
https_port = 4443
{farm_extra}

[[rule]]
name = "pool"
action = {{ route = "pool", scheme = "https" }}
"#,
        members = list.join(", ")
    )
}

impl FarmLab {
    async fn start(n: usize, farm_extra: &str, member_extra: &[&str]) -> FarmLab {
        let lab = Lab::new();
        let proxy_ip = unique_loopback();
        let member_ips: Vec<IpAddr> = (0..n).map(|_| unique_loopback()).collect();
        let mut members = Vec::new();
        for (i, ip) in member_ips.iter().enumerate() {
            members.push(Some(
                lab.tls_member(SocketAddr::new(*ip, 4443), &member_name(i), Role::FrontEnd)
                    .await,
            ));
        }
        let config = farm_config(proxy_ip, &member_ips, farm_extra, member_extra);
        let cfg = lab.write_config(&config);
        let portico = Portico::start(&cfg, SocketAddr::new(proxy_ip, HTTP));
        FarmLab {
            lab,
            proxy_ip,
            member_ips,
            members,
            portico,
            config,
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.proxy_ip, HTTP)
    }

    async fn client(&self) -> H1 {
        H1::connect(self.addr()).await.expect("connect to portico")
    }

    fn kill(&mut self, i: usize) {
        if let Some(m) = self.members[i].take() {
            m.shutdown();
        }
    }

    async fn restart(&mut self, i: usize) {
        self.members[i] = Some(
            self.lab
                .tls_member(
                    SocketAddr::new(self.member_ips[i], 4443),
                    &member_name(i),
                    Role::FrontEnd,
                )
                .await,
        );
    }

    /// A second, independent instance with the same members and `config`.
    fn second_instance(&self, config: &str) -> (Portico, SocketAddr) {
        let ip = unique_loopback();
        let text = config.replace(&self.proxy_ip.to_string(), &ip.to_string());
        let path = self.lab.path(&format!("second-{ip}.toml"));
        std::fs::write(&path, text).unwrap();
        let addr = SocketAddr::new(ip, HTTP);
        (Portico::start(&path, addr), addr)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_costs_only_its_in_flight_requests_and_comes_back_when_restarted() {
    let mut l = FarmLab::start(3, "health = { url = \"/status/200\", interval = \"500ms\", timeout = \"400ms\", fall = 1, rise = 1 }", &[]).await;
    let mut client = l.client().await;
    let mut served: HashMap<String, usize> = HashMap::new();
    let mut failures = Vec::new();
    let started = Instant::now();
    let mut killed_at = None;
    let mut restarted_at = None;
    let mut back_after = None;
    while started.elapsed() < Duration::from_secs(8) {
        let t = started.elapsed();
        if t > Duration::from_secs(2) && killed_at.is_none() {
            l.kill(1);
            // The member's tasks see the kill when the runtime next runs them: until its
            // port refuses connections (and a moment after, for its open connections), a
            // request it answers is one it was still alive for, not a dead member chosen.
            let addr = SocketAddr::new(l.member_ips[1], 4443);
            let down = Instant::now();
            while tokio::net::TcpStream::connect(addr).await.is_ok() {
                assert!(
                    down.elapsed() < Duration::from_secs(5),
                    "the killed member still accepts"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            killed_at = Some(Instant::now());
        }
        if t > Duration::from_secs(4) && restarted_at.is_none() {
            l.restart(1).await;
            restarted_at = Some(Instant::now());
        }
        match client.get("app.contoso.com", "/echo", &[]).await {
            Ok(r) if r.status == 200 => {
                let who = r.header("x-backend").unwrap_or("").to_string();
                if who == member_name(1) {
                    if let (Some(at), None) = (restarted_at, back_after) {
                        back_after = Some(at.elapsed());
                    }
                    assert!(
                        killed_at.is_none() || restarted_at.is_some(),
                        "a dead member was chosen"
                    );
                }
                *served.entry(who).or_default() += 1;
            }
            Ok(r) => failures.push(format!("status {} at {t:?}", r.status)),
            Err(e) => {
                failures.push(format!("{e} at {t:?}"));
                client = l.client().await;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        failures.is_empty(),
        "requests failed: {failures:?}\n{}",
        l.portico.log_text()
    );
    assert_eq!(served.len(), 3, "{served:?}");
    let back = back_after.expect("the restarted member never served again");
    assert!(
        back < Duration::from_secs(1) + Duration::from_millis(500),
        "came back after {back:?} (two intervals = 1 s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_requests_sends_new_work_away_from_a_member_holding_a_long_poll() {
    let l = FarmLab::start(2, "load_balancing = \"least-requests\"", &[]).await;
    let addr = l.addr();
    let poll = tokio::spawn(async move {
        let mut c = H1::connect(addr).await.unwrap();
        c.get("app.contoso.com", "/long-poll?secs=3", &[])
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = l.client().await;
    let mut short = HashSet::new();
    for _ in 0..10 {
        let r = c.get("app.contoso.com", "/echo", &[]).await.unwrap();
        short.insert(r.header("x-backend").unwrap().to_string());
    }
    let poll = poll.await.unwrap();
    assert_eq!(short.len(), 1, "short requests spread: {short:?}");
    assert!(
        !short.contains(poll.header("x-backend").unwrap()),
        "short requests went to the long-poll member"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_cookie_sticks_across_instances_and_falls_back_when_its_member_dies() {
    let mut l = FarmLab::start(3, "affinity = { cookie = \"MS-WSMAN\" }", &[]).await;
    let mut c = l.client().await;
    let first = c.get("app.contoso.com", "/echo", &[]).await.unwrap();
    let set_cookie = first
        .header("set-cookie")
        .expect("affinity cookie")
        .to_string();
    assert!(
        set_cookie.starts_with("MS-WSMAN=")
            && !set_cookie.contains("HttpOnly")
            && !set_cookie.contains("Expires"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let member = first.header("x-backend").unwrap().to_string();
    for _ in 0..6 {
        let r = c
            .get("app.contoso.com", "/echo", &[("cookie", &cookie)])
            .await
            .unwrap();
        assert_eq!(r.header("x-backend"), Some(member.as_str()));
        assert!(
            r.header("set-cookie").is_none(),
            "cookie re-sent although it was right"
        );
    }
    // Another instance with the same config honours the cookie.
    let (_second, addr2) = l.second_instance(&l.config.clone());
    let mut c2 = H1::connect(addr2).await.unwrap();
    for _ in 0..3 {
        let r = c2
            .get("app.contoso.com", "/echo", &[("cookie", &cookie)])
            .await
            .unwrap();
        assert_eq!(
            r.header("x-backend"),
            Some(member.as_str()),
            "second instance disagrees"
        );
    }
    // The member dies: the client lands elsewhere and gets a new cookie.
    let idx = (0..3).find(|i| member_name(*i) == member).unwrap();
    l.kill(idx);
    let r = c
        .get("app.contoso.com", "/echo", &[("cookie", &cookie)])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", l.portico.log_text());
    assert_ne!(r.header("x-backend"), Some(member.as_str()));
    let new_cookie = r.header("set-cookie").expect("new affinity cookie");
    assert!(!new_cookie.starts_with(&cookie));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_member_takes_no_new_clients_but_keeps_its_affinity_clients() {
    let l = FarmLab::start(2, "affinity = { cookie = \"ARRAffinity\" }", &[]).await;
    // Learn member 0's cookie from an instance where both are available.
    let mut c = l.client().await;
    let mut cookie0 = None;
    for _ in 0..6 {
        let r = c.get("app.contoso.com", "/echo", &[]).await.unwrap();
        if r.header("x-backend") == Some(member_name(0).as_str()) {
            cookie0 = Some(
                r.header("set-cookie")
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap()
                    .to_string(),
            );
            break;
        }
    }
    let cookie0 = cookie0.expect("round robin reaches member 0");
    let draining = farm_config(
        l.proxy_ip,
        &l.member_ips,
        "affinity = { cookie = \"ARRAffinity\" }",
        &[", state = \"draining\""],
    );
    let (_p, addr) = l.second_instance(&draining);
    let mut c = H1::connect(addr).await.unwrap();
    for _ in 0..6 {
        let r = c.get("app.contoso.com", "/echo", &[]).await.unwrap();
        assert_eq!(
            r.header("x-backend"),
            Some(member_name(1).as_str()),
            "new client sent to a draining member"
        );
    }
    let r = c
        .get("app.contoso.com", "/echo", &[("cookie", &cookie0)])
        .await
        .unwrap();
    assert_eq!(
        r.header("x-backend"),
        Some(member_name(0).as_str()),
        "affinity client lost during drain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_reached_a_member_is_never_replayed() {
    let l = FarmLab::start(2, "", &[]).await;
    let mut c = l.client().await;
    let r = c
        .send(
            "POST",
            "app.contoso.com",
            "/drop",
            &[],
            bytes::Bytes::from_static(b"charge the card once"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 502);
    let seen: u64 = l.members.iter().flatten().map(|m| m.requests_seen()).sum();
    assert_eq!(seen, 1, "the POST reached members {seen} times");
    // A GET on a fresh member connection that dies is not replayed either.
    let r = c.get("app.contoso.com", "/drop", &[]).await.unwrap();
    assert_eq!(r.status, 502);
    let seen: u64 = l.members.iter().flatten().map(|m| m.requests_seen()).sum();
    assert_eq!(seen, 2);
}

async fn ntlm_handshake(addr: SocketAddr, user: &str) -> Result<(H1, String), String> {
    let mut c = H1::connect(addr).await.map_err(|e| e.to_string())?;
    let r = c.get("app.contoso.com", "/auth/ntlm", &[]).await?;
    if r.status != 401 {
        return Err(format!("leg 0: {}", r.status));
    }
    let [t1, t3] = ntlm_legs(user);
    let r = c
        .get("app.contoso.com", "/auth/ntlm", &[("authorization", &t1)])
        .await?;
    if r.status == 503 {
        return Err("503".into());
    }
    let challenge = r
        .header("www-authenticate")
        .ok_or("no challenge")?
        .to_string();
    let token = unbase64(challenge.trim_start_matches("NTLM ").trim());
    let challenge = String::from_utf8_lossy(&token).into_owned();
    let r = c
        .get("app.contoso.com", "/auth/ntlm", &[("authorization", &t3)])
        .await?;
    if r.status != 200 {
        return Err(format!(
            "leg 3: {} {} (challenge {challenge})",
            r.status, r.body
        ));
    }
    let who = format!("{}|{}", r.header("x-backend").unwrap_or(""), r.body.trim());
    Ok((c, who))
}

/// NTLM legs 1 and 3 on the client connection `c`, for `user` at `host`: the challenge (401)
/// and the authenticated answer (200), both from `member`.
async fn authenticate(c: &mut H1, host: &str, user: &str, member: &str) {
    let [t1, t3] = ntlm_legs(user);
    for (auth, status) in [(&t1, 401), (&t3, 200)] {
        let r = c
            .get(host, "/auth/ntlm", &[("authorization", auth)])
            .await
            .unwrap();
        assert_eq!(r.status, status, "{r:?}");
        assert_eq!(r.header("x-backend"), Some(member), "{r:?}");
        if status == 200 {
            assert!(
                r.body.contains(&format!("authenticated as {user}")),
                "{r:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntlm_clients_each_keep_their_own_member_connection() {
    let l = FarmLab::start(2, "", &[]).await;
    let addr = l.addr();
    let mut tasks = Vec::new();
    for i in 0..24 {
        tasks.push(tokio::spawn(async move {
            let user = format!("user{i}");
            let (mut c, who) = ntlm_handshake(addr, &user).await?;
            // Later requests on the same client connection stay on the authenticated one.
            for _ in 0..3 {
                let r = c.get("app.contoso.com", "/auth/ntlm", &[]).await?;
                let again = format!("{}|{}", r.header("x-backend").unwrap_or(""), r.body.trim());
                if r.status != 200 || again != who {
                    return Err(format!("{user}: {} {again} != {who}", r.status));
                }
            }
            Ok::<_, String>((user, who))
        }));
    }
    // Meanwhile clients without credentials go through the shared pool: a pinned
    // (authenticated) member connection handed to one of them would answer 200.
    let mut anonymous = Vec::new();
    for _ in 0..4 {
        anonymous.push(tokio::spawn(async move {
            for _ in 0..30 {
                let mut c = H1::connect(addr).await.map_err(|e| e.to_string())?;
                let r = c.get("app.contoso.com", "/auth/ntlm", &[]).await?;
                if r.status != 401 {
                    return Err(format!("an anonymous client got {} {}", r.status, r.body));
                }
            }
            Ok::<_, String>(())
        }));
    }
    for a in anonymous {
        a.await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}\n{}", l.portico.log_text()));
    }
    let mut connections = HashSet::new();
    for t in tasks {
        let (user, who) = t
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}\n{}", l.portico.log_text()));
        assert!(
            who.contains(&format!("authenticated as {user} on connection")),
            "{who}"
        );
        let conn = who.split(" on connection ").nth(1).unwrap().to_string()
            + who.split('|').next().unwrap();
        assert!(
            connections.insert(conn),
            "two clients shared a member connection: {who}"
        );
    }
    // A new client connection never inherits someone's authenticated connection.
    let mut c = l.client().await;
    let r = c.get("app.contoso.com", "/auth/ntlm", &[]).await.unwrap();
    assert_eq!(r.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_serves_only_its_own_farm() {
    let lab = Lab::new();
    let proxy_ip = unique_loopback();
    let ips = [unique_loopback(), unique_loopback()];
    let mut members = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        members.push(
            lab.tls_member(SocketAddr::new(*ip, 4443), &member_name(i), Role::FrontEnd)
                .await,
        );
    }
    let cfg = lab.write_config(&format!(
        r#"
[[listener]]
bind = "{proxy_ip}:{HTTP}"
[resolve]
"{a}" = ["{ip_a}"]
"{b}" = ["{ip_b}"]
[upstream]
ca = "internal-ca.pem"
[[farm]]
name = "mail"
members = [ {{ address = "{a}" }} ]
https_port = 4443
[[farm]]
name = "meet"
members = [ {{ address = "{b}" }} ]
https_port = 4443
[[rule]]
name = "mail"
conditions = [ {{ input = "{{HTTP_HOST}}", pattern = "^mail\\." }} ]
action = {{ route = "mail", scheme = "https" }}
stop = true
[[rule]]
name = "meet"
action = {{ route = "meet", scheme = "https" }}
"#,
        a = member_name(0),
        b = member_name(1),
        ip_a = ips[0],
        ip_b = ips[1],
    ));
    let _p = Portico::start(&cfg, SocketAddr::new(proxy_ip, HTTP));
    let mut c = H1::connect(SocketAddr::new(proxy_ip, HTTP)).await.unwrap();
    authenticate(&mut c, "mail.contoso.com", "alice", &member_name(0)).await;
    // The same client connection asks the other farm: its pin is not for that farm, so
    // the request goes to that farm's member, which has not authenticated it.
    let r = c.get("meet.contoso.com", "/auth/ntlm", &[]).await.unwrap();
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        r.header("x-backend"),
        Some(member_name(1).as_str()),
        "{r:?}"
    );
    // A client connection keeps one pin: the other farm's challenge (a 401 with NTLM) has
    // taken its place, and that one now authenticates on its own member.
    authenticate(&mut c, "meet.contoso.com", "bob", &member_name(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_connection_the_member_closed_hands_the_request_on_whole() {
    let mut l = FarmLab::start(2, "", &[]).await;
    let (mut c, who) = ntlm_handshake(l.addr(), "alice").await.unwrap();
    assert!(who.contains("authenticated as alice"), "{who}");
    // The member that holds the authenticated connection goes away; the client's
    // connection to Portico stays.
    let pinned_on = (0..2)
        .find(|&i| who.starts_with(&member_name(i)))
        .unwrap_or_else(|| panic!("which member? {who}"));
    l.members[pinned_on]
        .take()
        .expect("the member runs")
        .shutdown_and_wait()
        .await;
    // The request was never written to the dead connection: it goes whole to the other
    // member, which asks the client to authenticate again (not a 502).
    let r = c.get("app.contoso.com", "/auth/ntlm", &[]).await.unwrap();
    assert_eq!(r.status, 401, "{r:?}");
    assert!(
        r.header("www-authenticate")
            .unwrap_or("")
            .starts_with("NTLM"),
        "{r:?}"
    );
    // The same client connection authenticates again, on the other member.
    authenticate(
        &mut c,
        "app.contoso.com",
        "alice",
        &member_name(1 - pinned_on),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_connections_are_capped_per_member_with_a_clear_503() {
    let l = FarmLab::start(1, "max_pinned_per_member = 2", &[]).await;
    let (_a, _) = ntlm_handshake(l.addr(), "a").await.unwrap();
    let (_b, _) = ntlm_handshake(l.addr(), "b").await.unwrap();
    let err = ntlm_handshake(l.addr(), "c")
        .await
        .err()
        .expect("third pin must be refused");
    assert!(err.contains("503"), "{err}");
    drop(_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    ntlm_handshake(l.addr(), "d")
        .await
        .expect("a slot frees when a client leaves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_auth_over_h2_is_sent_back_to_http1() {
    let lab = Lab::new();
    lab.external_cert("external", &["*.contoso.com"]);
    let proxy_ip = unique_loopback();
    let ip = unique_loopback();
    let _m = lab
        .tls_member(
            SocketAddr::new(ip, 4443),
            "fe00.contoso.local",
            Role::FrontEnd,
        )
        .await;
    let cfg = lab.write_config(&format!(
        r#"
[[listener]]
bind = "{proxy_ip}:8443"
tls = {{ certificates = [ {{ cert = "external.pem", key = "external.key" }} ] }}
[resolve]
"fe00.contoso.local" = ["{ip}"]
[upstream]
ca = "internal-ca.pem"
[[farm]]
name = "pool"
members = [ {{ address = "fe00.contoso.local" }} ]
https_port = 4443
[[rule]]
name = "pool"
action = {{ route = "pool" }}
"#
    ));
    let _p = Portico::start(&cfg, SocketAddr::new(proxy_ip, 8443));
    let [t1, _] = ntlm_legs("");
    let auth = format!("Authorization: {t1}");
    // curl retries over HTTP/1.1 when the stream is reset with HTTP_1_1_REQUIRED.
    let r = curl_https(
        &lab,
        "app.contoso.com",
        proxy_ip,
        8443,
        "/auth/ntlm",
        &["--http2", "-H", &auth, "-v"],
    )
    .await;
    assert_eq!(r.http_version, "HTTP/1.1", "{}", r.stderr);
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap_or("")
            .starts_with("NTLM "),
        "{r:?}"
    );
    // Without Windows auth, h2 is used.
    let r = curl_https(
        &lab,
        "app.contoso.com",
        proxy_ip,
        8443,
        "/echo",
        &["--http2"],
    )
    .await;
    assert_eq!(r.http_version, "HTTP/2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_hash_is_stable_and_every_dns_address_is_a_member() {
    // One name with three addresses: three members.
    let lab = Lab::new();
    let proxy_ip = unique_loopback();
    let ips: Vec<IpAddr> = (0..3).map(|_| unique_loopback()).collect();
    let mut ms = Vec::new();
    for ip in &ips {
        ms.push(
            lab.tls_member(
                SocketAddr::new(*ip, 4443),
                "pool01.contoso.local",
                Role::FrontEnd,
            )
            .await,
        );
    }
    let list: Vec<String> = ips.iter().map(|ip| format!("\"{ip}\"")).collect();
    let cfg = lab.write_config(&format!(
        r#"
[[listener]]
bind = "{proxy_ip}:{HTTP}"
[resolve]
"pool01.contoso.local" = [{list}]
[upstream]
ca = "internal-ca.pem"
[[farm]]
name = "pool"
members = [ {{ address = "pool01.contoso.local" }} ]
https_port = 4443
load_balancing = "request-hash"
hash_query = ["WopiSrc"]
[[rule]]
name = "pool"
action = {{ route = "pool", scheme = "https" }}
"#,
        list = list.join(", ")
    ));
    let _p = Portico::start(&cfg, SocketAddr::new(proxy_ip, HTTP));
    let mut c = H1::connect(SocketAddr::new(proxy_ip, HTTP)).await.unwrap();
    let mut seen_members = HashSet::new();
    for doc in 0..12 {
        let path = format!("/echo?WopiSrc=doc{doc}&t={doc}");
        let first = c.get("owas.contoso.com", &path, &[]).await.unwrap();
        let port_peer = first.body.clone();
        for t in 0..3 {
            let again = c
                .get(
                    "owas.contoso.com",
                    &format!("/echo?t={t}&WopiSrc=doc{doc}"),
                    &[],
                )
                .await
                .unwrap();
            assert!(json_field(&again.body, "connection").is_some());
            // Same document, same member address (the member reports the address it was reached on).
            assert_eq!(
                local_ip(&again.body),
                local_ip(&port_peer),
                "doc{doc} moved"
            );
        }
        seen_members.insert(local_ip(&port_peer));
    }
    // Which member a document hashes to depends on the members' (per-run) addresses, so
    // twelve documents miss one of three members now and then. Keep hashing new documents
    // until every member has shown up: missing one of three after 300 documents has a
    // probability of about 3 * (2/3)^300 (1e-52), so this cannot fail by chance.
    for doc in 12..300 {
        if seen_members.len() == 3 {
            break;
        }
        let r = c
            .get("owas.contoso.com", &format!("/echo?WopiSrc=doc{doc}"), &[])
            .await
            .unwrap();
        seen_members.insert(local_ip(&r.body));
    }
    assert_eq!(
        seen_members.len(),
        3,
        "every address of the name serves: {seen_members:?}"
    );
}

fn local_ip(echo: &str) -> String {
    json_field(echo, "local_addr")
        .or_else(|| json_field(echo, "local_ip"))
        .unwrap_or_else(|| echo.to_string())
}
