//! The admin listener, driven over real sockets against the real binary: the JSON API and
//! its token, `/metrics` read by a strict OpenMetrics parser, `portico reload`, and the
//! status page in headless Chromium (its drain button really drains).

mod common;

#[path = "admin/cdp.rs"]
mod cdp;
#[path = "admin/openmetrics.rs"]
mod openmetrics;

use common::*;
use portico::demo::backend::{Backend, BackendOptions, Role};
use serde_json::Value;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const HTTP: u16 = 8081;
const ADMIN: u16 = 9901;
const TOKEN: &str = "s3cret-admin-token";

fn member_name(i: usize) -> String {
    format!("fe0{i}.contoso.local")
}

/// Two farms: `web` (fe00, fe01) and `pool` (one name that `[resolve]` expands to both
/// addresses, so its members are `pool.contoso.local@ip`). `web_members` picks which of
/// fe00/fe01 the `web` farm lists; `extra_listener` adds a second listener.
fn config(proxy_ip: IpAddr, ips: &[IpAddr], web_members: &[usize], extra_listener: &str) -> String {
    let web: Vec<String> = web_members
        .iter()
        .map(|i| format!("{{ address = \"{}\" }}", member_name(*i)))
        .collect();
    format!(
        r#"
[[listener]]
bind = "{proxy_ip}:{HTTP}"
{extra_listener}

[admin]
bind = "{proxy_ip}:{ADMIN}"
token_file = "admin.token"

[resolve]
"{fe0}" = ["{ip0}"]
"{fe1}" = ["{ip1}"]
"pool.contoso.local" = ["{ip0}", "{ip1}"]

[upstream]
ca = "internal-ca.pem"
connect_timeout = "1s"

[[farm]]
name = "web"
members = [ {web} ]
https_port = 4443

[[farm]]
name = "pool"
members = [ {{ address = "pool.contoso.local" }} ]
https_port = 4443

[[rule]]
name = "pool"
conditions = [ {{ input = "{{HTTP_HOST}}", pattern = "^pool\\." }} ]
action = {{ route = "pool", scheme = "https" }}
stop = true

[[rule]]
name = "web"
action = {{ route = "web", scheme = "https" }}
"#,
        fe0 = member_name(0),
        fe1 = member_name(1),
        ip0 = ips[0],
        ip1 = ips[1],
        web = web.join(", "),
    )
}

struct AdminLab {
    lab: Lab,
    proxy_ip: IpAddr,
    member_ips: Vec<IpAddr>,
    _members: Vec<Backend>,
    portico: Portico,
    config_path: PathBuf,
}

impl AdminLab {
    async fn start() -> AdminLab {
        let lab = Lab::new();
        let proxy_ip = unique_loopback();
        let member_ips: Vec<IpAddr> = (0..2).map(|_| unique_loopback()).collect();
        let mut members = Vec::new();
        for (i, ip) in member_ips.iter().enumerate() {
            // Each member also answers as pool.contoso.local (the DNS-balanced name).
            let issued = lab
                .internal
                .issue(&[&member_name(i), "pool.contoso.local"])
                .unwrap();
            let tls =
                portico::demo::backend::server_config_from_pem(&issued.cert_pem, &issued.key_pem)
                    .unwrap();
            let options = BackendOptions {
                name: member_name(i),
                tls: Some(tls),
                role: Role::FrontEnd,
            };
            members.push(
                Backend::start(SocketAddr::new(*ip, 4443), options)
                    .await
                    .expect("start member"),
            );
        }
        std::fs::write(lab.path("admin.token"), format!("{TOKEN}\n")).unwrap();
        let config_path = lab.write_config(&config(proxy_ip, &member_ips, &[0, 1], ""));
        let portico = Portico::start(&config_path, SocketAddr::new(proxy_ip, ADMIN));
        let l = AdminLab {
            lab,
            proxy_ip,
            member_ips,
            _members: members,
            portico,
            config_path,
        };
        l.wait_for(SocketAddr::new(proxy_ip, HTTP));
        l
    }

    fn wait_for(&self, addr: SocketAddr) {
        let start = Instant::now();
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nothing listens on {addr}: {}",
                self.portico.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://{}:{ADMIN}{path}", self.proxy_ip)
    }

    async fn get(&self, path: &str) -> Reply {
        curl(&[&self.admin_url(path)]).await
    }

    async fn status(&self) -> Value {
        let r = self.get("/api/status").await;
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_slice(&r.body).expect("status is JSON")
    }

    async fn post(&self, path: &str, body: &str, token: Option<&str>) -> Reply {
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let mut args = vec!["-X", "POST", "--data-binary", body];
        if let Some(a) = &auth {
            args.extend(["-H", a.as_str()]);
        }
        let url = self.admin_url(path);
        args.push(&url);
        curl(&args).await
    }

    /// `n` requests on one keep-alive connection; which member served each.
    async fn send(&self, host: &str, n: usize) -> HashMap<String, usize> {
        let mut client = H1::connect(SocketAddr::new(self.proxy_ip, HTTP))
            .await
            .expect("connect to portico");
        let mut served = HashMap::new();
        for _ in 0..n {
            let r = client
                .get(host, "/echo", &[])
                .await
                .expect("proxied request");
            assert_eq!(r.status, 200, "{}", r.body);
            *served
                .entry(r.header("x-backend").unwrap_or("?").to_string())
                .or_insert(0) += 1;
        }
        served
    }

    fn reload_cli(&self, config: &std::path::Path) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_portico"))
            .args(["reload", "--config"])
            .arg(config)
            .output()
            .expect("run portico reload")
    }
}

fn member<'a>(status: &'a Value, farm: &str, id: &str) -> &'a Value {
    status["farms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == farm)
        .unwrap_or_else(|| panic!("no farm {farm} in {status:#}"))["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no member {id} in farm {farm}: {status:#}"))
}

fn member_ids(status: &Value) -> Vec<(String, Vec<String>)> {
    status["farms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["id"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

fn expected_members(l: &AdminLab) -> Vec<(String, Vec<String>)> {
    vec![
        ("web".into(), vec![member_name(0), member_name(1)]),
        (
            "pool".into(),
            l.member_ips
                .iter()
                .map(|ip| format!("pool.contoso.local@{ip}"))
                .collect(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_every_member_and_drain_needs_the_token() {
    let l = AdminLab::start().await;
    assert_eq!(l.get("/healthz").await.status, 200);
    assert_eq!(l.get("/readyz").await.status, 200);

    let status = l.status().await;
    assert_eq!(member_ids(&status), expected_members(&l));
    assert_eq!(status["ready"], true);
    assert_eq!(
        status["config"]["file"].as_str().map(PathBuf::from),
        Some(l.config_path.clone())
    );
    let fe0 = member_name(0);
    assert_eq!(member(&status, "web", &fe0)["state"], "available");

    let path = format!("/api/farms/web/members/{fe0}/state");
    let none = l.post(&path, "draining", None).await;
    assert_eq!(none.status, 401, "{}", none.text());
    let wrong = l.post(&path, "draining", Some("guess")).await;
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    assert_eq!(l.post("/api/reset", "", None).await.status, 401);
    assert_eq!(
        member(&l.status().await, "web", &fe0)["state"],
        "available",
        "a refused action changed nothing"
    );

    // Both members serve before the drain.
    let before = l.send("app.contoso.com", 6).await;
    assert_eq!(before.len(), 2, "round robin uses both: {before:?}");

    let ok = l.post(&path, "draining", Some(TOKEN)).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(member(&l.status().await, "web", &fe0)["state"], "draining");
    let after = l.send("app.contoso.com", 6).await;
    assert_eq!(
        after,
        HashMap::from([(member_name(1), 6)]),
        "a drained member takes no new requests"
    );

    // A DNS-expanded member is named host@ip; a bare host that names two is refused.
    let pool0 = format!("pool.contoso.local@{}", l.member_ips[0]);
    let p = format!("/api/farms/pool/members/{pool0}/state");
    assert_eq!(
        l.post(&p, "unavailable", Some(TOKEN)).await.status,
        200,
        "host@ip names one member"
    );
    let s = l.status().await;
    assert_eq!(member(&s, "pool", &pool0)["state"], "unavailable");
    let pool1 = format!("pool.contoso.local@{}", l.member_ips[1]);
    assert_eq!(member(&s, "pool", &pool1)["state"], "available");
    let ambiguous = l
        .post(
            "/api/farms/pool/members/pool.contoso.local/state",
            "draining",
            Some(TOKEN),
        )
        .await;
    assert_eq!(ambiguous.status, 404, "{}", ambiguous.text());
    assert!(ambiguous.text().contains(&pool1), "{}", ambiguous.text());
    assert_eq!(
        l.post(&path, "sleeping", Some(TOKEN)).await.status,
        400,
        "unknown state"
    );

    // Back to available: both serve again; reset zeroes the totals.
    assert_eq!(l.post(&path, "available", Some(TOKEN)).await.status, 200);
    assert_eq!(l.send("app.contoso.com", 4).await.len(), 2);
    assert_eq!(l.post("/api/reset", "", Some(TOKEN)).await.status, 200);
    let s = l.status().await;
    assert_eq!(member(&s, "web", &fe0)["requests"], 0);
    assert_eq!(member(&s, "web", &member_name(1))["requests"], 0);

    // The page is served, escaped, self-contained.
    let page = l.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains(&fe0));
    assert!(!page.text().contains("src=\"http"), "no external resources");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_strictly_and_count_exactly_what_was_sent() {
    let l = AdminLab::start().await;
    let mut web: HashMap<String, usize> = HashMap::new();
    let mut body_bytes: HashMap<String, usize> = HashMap::new();
    let mut client = H1::connect(SocketAddr::new(l.proxy_ip, HTTP))
        .await
        .unwrap();
    for _ in 0..7 {
        let r = client.get("app.contoso.com", "/echo", &[]).await.unwrap();
        assert_eq!(r.status, 200);
        let who = r.header("x-backend").unwrap().to_string();
        *web.entry(who.clone()).or_insert(0) += 1;
        *body_bytes.entry(who).or_insert(0) += r.body.len();
    }
    let pool = l.send("pool.contoso.com", 3).await;
    assert_eq!(web.values().sum::<usize>(), 7);

    let r = l.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("application/openmetrics-text"),
        "{:?}",
        r.header("content-type")
    );
    let parsed = openmetrics::parse(&r.text()).unwrap_or_else(|e| panic!("{e}\n{}", r.text()));
    assert_eq!(
        parsed
            .types
            .get("portico_member_requests")
            .map(String::as_str),
        Some("counter")
    );

    let value = |name: &str, farm: &str, member: &str| -> f64 {
        parsed
            .samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.get("farm").map(String::as_str) == Some(farm)
                    && s.labels.get("member").map(String::as_str) == Some(member)
            })
            .unwrap_or_else(|| panic!("no {name}{{farm={farm},member={member}}}"))
            .value
    };
    for i in 0..2 {
        let name = member_name(i);
        let sent = web.get(&name).copied().unwrap_or(0) as f64;
        assert_eq!(
            value("portico_member_requests_total", "web", &name),
            sent,
            "{name}"
        );
        assert_eq!(value("portico_member_failures_total", "web", &name), 0.0);
        assert_eq!(
            value("portico_member_in_flight_requests", "web", &name),
            0.0
        );
        assert_eq!(value("portico_member_up", "web", &name), 1.0);
        assert_eq!(
            value("portico_member_response_bytes_total", "web", &name),
            body_bytes.get(&name).copied().unwrap_or(0) as f64,
            "{name}: response body bytes"
        );
        if sent > 0.0 {
            assert!(value("portico_member_response_time_seconds", "web", &name) > 0.0);
        }
    }
    let pool_total: f64 = parsed
        .samples
        .iter()
        .filter(|s| {
            s.name == "portico_member_requests_total"
                && s.labels.get("farm").map(String::as_str) == Some("pool")
        })
        .map(|s| s.value)
        .sum();
    assert_eq!(pool_total, pool.values().sum::<usize>() as f64);
    let available = parsed
        .samples
        .iter()
        .filter(|s| {
            s.name == "portico_member_state"
                && s.labels.get("state").map(String::as_str) == Some("available")
        })
        .count();
    assert_eq!(available, 4, "one state series per member and state");
    assert!(parsed
        .samples
        .iter()
        .any(|s| s.name == "portico_process_start_time_seconds" && s.value > 1.6e9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portico_reload_applies_a_good_config_and_reports_a_rejected_one() {
    let l = AdminLab::start().await;
    assert_eq!(l.send("app.contoso.com", 4).await.len(), 2);

    // Good: the web farm now lists fe01 only.
    std::fs::write(&l.config_path, config(l.proxy_ip, &l.member_ips, &[1], "")).unwrap();
    let out = l.reload_cli(&l.config_path);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("reloaded"));
    assert_eq!(
        l.send("app.contoso.com", 4).await,
        HashMap::from([(member_name(1), 4)])
    );
    let s = l.status().await;
    assert_eq!(s["last_reload"]["ok"], true);

    // Bad file: refused before the running instance is asked.
    let broken = l.lab.path("broken.toml");
    std::fs::write(&broken, "[[listener]]\nbind = \"nowhere\"\n").unwrap();
    let out = l.reload_cli(&broken);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("broken.toml"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Valid file the running instance cannot apply (its new listener's port is taken):
    // rejected there, the error on the status page, the old config still serving.
    let busy = std::net::TcpListener::bind(SocketAddr::new(l.proxy_ip, 8082)).unwrap();
    let extra = format!("[[listener]]\nbind = \"{}:8082\"\n", l.proxy_ip);
    std::fs::write(
        &l.config_path,
        config(l.proxy_ip, &l.member_ips, &[0, 1], &extra),
    )
    .unwrap();
    let out = l.reload_cli(&l.config_path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("8082"), "{stderr}");
    let s = l.status().await;
    assert_eq!(s["last_reload"]["ok"], false);
    assert!(
        s["last_reload"]["message"]
            .as_str()
            .unwrap()
            .contains("8082"),
        "{s:#}"
    );
    let page = l.get("/").await.text();
    assert!(
        page.contains("rejected"),
        "the page shows the failed reload"
    );
    assert_eq!(
        l.send("app.contoso.com", 4).await,
        HashMap::from([(member_name(1), 4)]),
        "the previous config keeps serving"
    );
    drop(busy);

    // No [admin] table: the command says to signal the process instead.
    let plain = l.lab.path("no-admin.toml");
    let text = config(l.proxy_ip, &l.member_ips, &[0], "");
    let cut = text.find("[admin]").unwrap();
    let end = text.find("[resolve]").unwrap();
    std::fs::write(&plain, format!("{}{}", &text[..cut], &text[end..])).unwrap();
    let out = l.reload_cli(&plain);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kill -HUP"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_chromium_shows_every_member_and_its_drain_button_drains() {
    let Some(chromium) = cdp::find_chromium() else {
        println!("SKIPPED: chromium not installed");
        return;
    };
    let l = AdminLab::start().await;
    let url = l.admin_url("/");
    let fe0 = member_name(0);
    let expected = expected_members(&l);
    let token_typed = tokio::task::block_in_place(|| {
        let mut page = cdp::Browser::launch(&chromium, &url).expect("start chromium");
        // The script has run once it has written the connection line.
        page.wait_until("document.getElementById('conn').textContent.indexOf('ready') === 0")
            .expect("page refreshed itself from /api/status");
        let shown: Vec<(String, Vec<String>)> = serde_json::from_value(
            page.eval(
                "Array.from(document.querySelectorAll('section.farm')).map(function (s) { \
                   return [s.getAttribute('data-farm'), Array.from(s.querySelectorAll('tbody tr')) \
                     .map(function (r) { return r.cells[0].textContent; })]; })",
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(shown, expected, "the page lists every farm and member");

        let button =
            format!("button[data-act=\"draining\"][data-farm=\"web\"][data-member=\"{fe0}\"]");
        // Without the token: refused, shown, nothing changes.
        page.click(&button).unwrap();
        page.wait_until("document.getElementById('msg').textContent.indexOf('token') >= 0")
            .expect("the page shows the refusal");
        page.type_into("#token", TOKEN).unwrap();
        page.click(&button).unwrap();
        page.wait_until("document.getElementById('msg').textContent.indexOf('now draining') >= 0")
            .expect("the page confirms the drain");
        page.wait_until(&format!(
            "document.querySelector('tr[data-member=\"{fe0}\"] td:nth-child(2)').textContent === 'draining'"
        ))
        .expect("the row shows draining");
        page.eval("sessionStorage.getItem('portico-token')")
            .unwrap()
    });
    assert_eq!(token_typed, TOKEN, "the token is kept for the tab");
    assert_eq!(member(&l.status().await, "web", &fe0)["state"], "draining");
    assert_eq!(
        l.send("app.contoso.com", 6).await,
        HashMap::from([(member_name(1), 6)]),
        "after the click, requests avoid the drained member"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_statuses_are_counted_against_the_member_that_sent_them() {
    let l = AdminLab::start().await;
    let mut client = H1::connect(SocketAddr::new(l.proxy_ip, HTTP))
        .await
        .unwrap();
    let mut failed: HashMap<String, f64> = HashMap::new();
    for _ in 0..2 {
        let r = client
            .get("app.contoso.com", "/status/500", &[])
            .await
            .unwrap();
        assert_eq!(r.status, 500);
        *failed
            .entry(r.header("x-backend").unwrap().to_string())
            .or_insert(0.0) += 1.0;
    }
    let r = l.get("/metrics").await;
    let parsed = openmetrics::parse(&r.text()).unwrap_or_else(|e| panic!("{e}\n{}", r.text()));
    for i in 0..2 {
        let name = member_name(i);
        let counted = parsed
            .samples
            .iter()
            .find(|s| {
                s.name == "portico_member_failures_total"
                    && s.labels.get("farm").map(String::as_str) == Some("web")
                    && s.labels.get("member").map(String::as_str) == Some(name.as_str())
            })
            .map(|s| s.value)
            .unwrap_or_else(|| panic!("no failures series for {name}"));
        assert_eq!(
            counted,
            failed.get(&name).copied().unwrap_or(0.0),
            "{name}: 500s it sent"
        );
    }
}
