//! ACME against Pebble (Let's Encrypt's test CA) on loopback, with pebble-challtestsrv as
//! its DNS so every name resolves to Portico's address: HTTP-01 and TLS-ALPN-01 SAN
//! certificates, renewal under load, two instances sharing storage ordering once, and a CA
//! that refuses.

mod certs;
mod common;

use certs::*;
use common::*;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HTTP: u16 = 5002;
const TLS: u16 = 5001;
const NAMES: [&str; 3] = [
    "meet.contoso.test",
    "dialin.contoso.test",
    "lyncweb.contoso.test",
];

fn pebble_missing() -> bool {
    let missing = !Path::new("/usr/bin/pebble").exists()
        || !Path::new("/usr/bin/pebble-challtestsrv").exists();
    if missing {
        eprintln!("SKIPPED: pebble / pebble-challtestsrv not installed (Debian package `pebble`)");
    }
    missing
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Pebble and its DNS on their own loopback address; names resolve to `portico_ip`.
struct Pebble {
    ip: IpAddr,
    _pebble: Kill,
    _dns: Kill,
    /// Trust for Pebble's own TLS (directory_ca).
    pub tls_ca: PathBuf,
    /// Pebble's issuing root, for clients of Portico.
    pub root: PathBuf,
    pub log: PathBuf,
}

impl Pebble {
    async fn start(lab: &Lab, portico_ip: IpAddr, validity_secs: Option<u64>) -> Pebble {
        let ip = unique_loopback();
        let tls_ca = lab.path("pebble-tls-ca.pem");
        std::fs::write(&tls_ca, lab.internal.cert_pem()).unwrap();
        lab.internal
            .issue(&[&ip.to_string(), "localhost"])
            .unwrap()
            .write(lab.dir.path(), "pebble-tls")
            .unwrap();
        let validity = validity_secs
            .map(|v| format!(",\n    \"certificateValidityPeriod\": {v}"))
            .unwrap_or_default();
        let cfg = lab.path("pebble.json");
        std::fs::write(
            &cfg,
            format!(
                r#"{{
  "pebble": {{
    "listenAddress": "{ip}:14000",
    "managementListenAddress": "{ip}:15000",
    "certificate": "{}",
    "privateKey": "{}",
    "httpPort": {HTTP},
    "tlsPort": {TLS},
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false{validity}
  }}
}}"#,
                lab.path("pebble-tls.pem").display(),
                lab.path("pebble-tls.key").display()
            ),
        )
        .unwrap();
        let dns = Command::new("pebble-challtestsrv")
            .args([
                "-dns01",
                &format!("{ip}:8053"),
                "-http01",
                "",
                "-https01",
                "",
            ])
            .args(["-tlsalpn01", "", "-management", &format!("{ip}:8055")])
            .args(["-defaultIPv4", &portico_ip.to_string(), "-defaultIPv6", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble-challtestsrv");
        let log = lab.path("pebble.log");
        let pebble = Command::new("pebble")
            .args(["-config"])
            .arg(&cfg)
            .args(["-dnsserver", &format!("{ip}:8053")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_VA_ALWAYS_VALID", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble");
        let start = Instant::now();
        while std::net::TcpStream::connect((ip, 15000)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "pebble did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let root = lab.path("pebble-root.pem");
        let r = curl(&[
            "--cacert",
            tls_ca.to_str().unwrap(),
            &format!("https://{ip}:15000/roots/0"),
        ])
        .await;
        assert_eq!(r.status, 200, "roots/0: {}", r.stderr);
        std::fs::write(&root, &r.body).unwrap();
        Pebble {
            ip,
            _pebble: Kill(pebble),
            _dns: Kill(dns),
            tls_ca,
            root,
            log,
        }
    }

    fn directory(&self) -> String {
        format!("https://{}:14000/dir", self.ip)
    }
}

fn acme_table(
    pebble: &Pebble,
    directory: &str,
    challenge: &str,
    storage: &Path,
    extra: &str,
) -> String {
    let names: Vec<String> = NAMES.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        r#"
[[acme]]
name = "public"
directory = "{directory}"
contact = ["mailto:admin@contoso.test"]
names = [{}]
challenge = "{challenge}"
storage = "{}"
directory_ca = "{}"
{extra}
"#,
        names.join(", "),
        storage.display(),
        pebble.tls_ca.display()
    )
}

fn listeners(ip: IpAddr, http: bool, reuse_port: bool) -> String {
    let http = if http {
        format!("[[listener]]\nbind = \"{ip}:{HTTP}\"\nreuse_port = {reuse_port}\n")
    } else {
        String::new()
    };
    format!(
        r#"
{http}
[[listener]]
bind = "{ip}:{TLS}"
reuse_port = {reuse_port}
tls = {{ certificates = [ {{ acme = "public" }} ] }}

[[rule]]
name = "ok"
action = {{ respond = 200, body = "ok" }}
"#
    )
}

/// curl to `name` on Portico trusting only Pebble's root.
async fn get(pebble: &Pebble, ip: IpAddr, name: &str) -> Reply {
    curl(&[
        "--cacert",
        pebble.root.to_str().unwrap(),
        "--resolve",
        &format!("{name}:{TLS}:{ip}"),
        &format!("https://{name}:{TLS}/"),
    ])
    .await
}

async fn wait_trusted(pebble: &Pebble, ip: IpAddr, portico: &Portico, limit: Duration) {
    let start = Instant::now();
    loop {
        let r = get(pebble, ip, NAMES[0]).await;
        if r.status == 200 {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "no Pebble certificate served: {}\n{}\npebble: {}",
            r.stderr,
            portico.log_text(),
            std::fs::read_to_string(&pebble.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn state(storage: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(storage.join("state.json")).unwrap()).unwrap()
}

async fn obtains_san_certificate(challenge: &str, http_listener: bool) {
    let lab = Lab::new();
    let ip = unique_loopback();
    let pebble = Pebble::start(&lab, ip, None).await;
    let storage = lab.path("acme");
    let cfg = lab.write_config(&format!(
        "{}{}",
        acme_table(&pebble, &pebble.directory(), challenge, &storage, ""),
        listeners(ip, http_listener, false)
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let portico = Portico::start(&cfg, (ip, TLS).into());
    wait_trusted(&pebble, ip, &portico, Duration::from_secs(60)).await;
    for name in NAMES {
        let r = get(&pebble, ip, name).await;
        assert_eq!(r.status, 200, "{name}: {}", r.stderr);
    }
    let log = portico.log_text();
    assert!(log.contains("serving a self-signed placeholder"), "{log}");
    assert_eq!(state(&storage)["orders"], 1);
    use std::os::unix::fs::PermissionsExt;
    for f in ["key.pem", "account.json", "state.json", "cert.pem"] {
        let mode = std::fs::metadata(storage.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_obtains_one_san_certificate_for_every_name() {
    if pebble_missing() {
        return;
    }
    obtains_san_certificate("http-01", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_obtains_one_san_certificate_for_every_name() {
    if pebble_missing() {
        return;
    }
    obtains_san_certificate("tls-alpn-01", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_is_renewed_before_expiry_without_a_failed_request() {
    if pebble_missing() {
        return;
    }
    let lab = Lab::new();
    let ip = unique_loopback();
    // 45 s certificates: renewal is due 30 s into each.
    let pebble = Pebble::start(&lab, ip, Some(45)).await;
    let storage = lab.path("acme");
    let cfg = lab.write_config(&format!(
        "{}{}",
        acme_table(&pebble, &pebble.directory(), "http-01", &storage, ""),
        listeners(ip, true, false)
    ));
    let portico = Portico::start(&cfg, (ip, TLS).into());
    wait_trusted(&pebble, ip, &portico, Duration::from_secs(60)).await;
    let first = s_client(ip, TLS, NAMES[0], &[]).await.leaf_pem.unwrap();

    let load = Load::start(
        vec![
            "--cacert".into(),
            pebble.root.display().to_string(),
            "--resolve".into(),
            format!("{}:{TLS}:{ip}", NAMES[1]),
            format!("https://{}:{TLS}/", NAMES[1]),
        ],
        Duration::from_secs(90),
    );
    let start = Instant::now();
    let mut renewed = false;
    while start.elapsed() < Duration::from_secs(60) {
        let now = s_client(ip, TLS, NAMES[0], &[]).await.leaf_pem;
        if now.is_some() && now.as_deref() != Some(first.as_str()) {
            renewed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok, failed, errors) = load.finish().await;
    assert!(renewed, "not renewed: {}", portico.log_text());
    assert_eq!(failed, 0, "{errors:?}");
    assert!(ok >= 5, "{ok}");
    assert!(state(&storage)["orders"].as_u64().unwrap() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_storage_order_once() {
    if pebble_missing() {
        return;
    }
    let lab = Lab::new();
    let ip = unique_loopback();
    let pebble = Pebble::start(&lab, ip, None).await;
    let storage = lab.path("shared-acme");
    let body = format!(
        "{}{}",
        acme_table(&pebble, &pebble.directory(), "http-01", &storage, ""),
        listeners(ip, true, true)
    );
    std::fs::create_dir_all(lab.path("a")).unwrap();
    std::fs::create_dir_all(lab.path("b")).unwrap();
    std::fs::write(lab.path("a/portico.toml"), &body).unwrap();
    std::fs::write(lab.path("b/portico.toml"), &body).unwrap();
    // Both bind the same addresses (SO_REUSEPORT): the CA's validation reaches either one.
    let a = Portico::start(&lab.path("a/portico.toml"), (ip, TLS).into());
    let b = Portico::start(&lab.path("b/portico.toml"), (ip, TLS).into());
    wait_trusted(&pebble, ip, &a, Duration::from_secs(60)).await;
    // Every instance serves it: many new connections, spread by the kernel over both.
    let start = Instant::now();
    let mut all = false;
    while !all && start.elapsed() < Duration::from_secs(20) {
        let mut good = 0;
        for _ in 0..10 {
            if get(&pebble, ip, NAMES[2]).await.status == 200 {
                good += 1;
            }
        }
        all = good == 10;
    }
    assert!(all, "a: {}\nb: {}", a.log_text(), b.log_text());
    assert_eq!(
        state(&storage)["orders"],
        1,
        "a: {}\nb: {}",
        a.log_text(),
        b.log_text()
    );
    let ordered = [a.log_text(), b.log_text()]
        .iter()
        .filter(|l| l.contains("ordering a certificate"))
        .count();
    assert_eq!(ordered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_ca_gets_back_off_and_the_old_certificate_keeps_serving() {
    if pebble_missing() {
        return;
    }
    let lab = Lab::new();
    let ip = unique_loopback();
    let pebble = Pebble::start(&lab, ip, None).await;
    let storage = lab.path("acme");
    std::fs::create_dir_all(&storage).unwrap();
    // A stored certificate two thirds through its life: renewal is due now.
    let now = std::time::SystemTime::now();
    let old = lab
        .public
        .issue_with(&NAMES, |p| {
            p.not_before = (now - Duration::from_secs(20 * 86_400)).into();
            p.not_after = (now + Duration::from_secs(10 * 86_400)).into();
        })
        .unwrap();
    std::fs::write(storage.join("cert.pem"), &old.cert_pem).unwrap();
    std::fs::write(storage.join("key.pem"), &old.key_pem).unwrap();
    let refusing = format!("https://{}:14000/no-such-directory", pebble.ip);
    let cfg = lab.write_config(&format!(
        "{}{}",
        acme_table(
            &pebble,
            &refusing,
            "http-01",
            &storage,
            "retry_first = \"20s\""
        ),
        listeners(ip, true, false)
    ));
    let portico = Portico::start(&cfg, (ip, TLS).into());
    let start = Instant::now();
    while !storage.join("state.json").exists() && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let st = state(&storage);
    assert_eq!(st["failures"], 1, "{st}");
    let wait = st["next_attempt"].as_f64().unwrap() - st["last_attempt"].as_f64().unwrap();
    assert!((15.0..=25.0).contains(&wait), "back-off {wait} s: {st}");
    assert!(portico.log_text().contains("ACME order failed"));

    // No tight loop: still one failure a few seconds later, and the old certificate serves.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(state(&storage)["failures"], 1);
    let leaf = s_client(ip, TLS, NAMES[0], &[]).await.leaf_pem;
    assert_eq!(leaf.as_deref(), Some(first_pem(&old.cert_pem).as_str()));
    let r = curl_https(&lab, NAMES[0], ip, TLS, "/", &[]).await;
    assert_eq!(r.status, 200, "{}", r.stderr);
}

#[test]
fn init_with_acme_writes_an_acme_entry_for_every_name_that_validates_offline() {
    let lab = Lab::new();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_portico"))
            .args(args)
            .current_dir(lab.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&[
        "init",
        "exchange",
        "--namespace",
        "mail.contoso.com",
        "--namespace",
        "autodiscover.contoso.com",
        "--members",
        "ex01.contoso.local=10.0.2.11",
        "--ca",
        "internal-ca.pem",
        // Never reached: validate must not need the network.
        "--acme",
        "https://acme.invalid/directory",
        "--acme-contact",
        "mailto:admin@contoso.com",
        "--output",
        "exchange.toml",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(lab.path("exchange.toml")).unwrap();
    assert!(text.contains("{ acme = \"public\" }"), "{text}");
    assert!(text.contains("[[acme]]"), "{text}");
    assert!(
        text.contains("names = [ \"mail.contoso.com\", \"autodiscover.contoso.com\" ]"),
        "{text}"
    );
    assert!(
        text.contains("contact = [ \"mailto:admin@contoso.com\" ]"),
        "{text}"
    );
    let out = run(&["validate", "--config", "exchange.toml"]);
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without network the placeholder was not stored: storage stays empty until `run`.
    assert!(!lab.path("acme/cert.pem").exists());

    let bad = run(&[
        "init",
        "oos",
        "--fqdn",
        "owas.contoso.com",
        "--members",
        "owas01.contoso.local=10.0.1.21",
        "--acme",
        "https://acme.invalid/directory",
        "--acme-contact",
        "admin@contoso.com",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--acme-contact"));
}

#[test]
fn acme_config_errors_name_the_key_and_the_accepted_values() {
    let lab = Lab::new();
    let cfg = lab.write_config(
        r#"
[[acme]]
name = "public"
directory = "http://acme.invalid/directory"
contact = ["admin@contoso.com"]
names = ["meet.contoso.com", "bad name"]
challenge = "dns-01"
storage = "acme"
key_type = "rsa-1024"

[[listener]]
bind = "127.0.0.1:8443"
tls = { certificates = [ { acme = "other" }, { cert = "x.pem" } ] }
"#,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "acme[0].directory",
        "is not an https:// URL",
        "acme[0].contact",
        "is not a mailto: URL",
        "acme[0].names",
        "\"bad name\" is not a DNS name",
        "acme[0].challenge",
        "accepted: \"http-01\" (default), \"tls-alpn-01\"",
        "acme[0].key_type",
        "accepted: \"ecdsa-p256\" (default), \"rsa-2048\"",
        "listener[0].tls.certificates[0].acme",
        "no [[acme]] entry is named \"other\" (defined: public)",
        "listener[0].tls.certificates[1]",
        "give either cert and key files",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}
