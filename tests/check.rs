//! `portico check` against a real Portico (the binary) publishing demo members that imitate a
//! Skype for Business pool and an Office Online Server: a correct deployment passes, and each
//! injected fault is reported by its check id with a failing exit status.

mod common;

use common::*;
use portico::demo::backend::{Backend, BackendOptions, Faults, Role};
use std::net::{IpAddr, SocketAddr};
use std::process::Output;

const HTTPS: u16 = 8443;
/// Plays port 443 of a Front End: the pool's internal web site.
const FE_INTERNAL: u16 = 9443;
/// Office Online members stay on 443 in production; 9444 plays it here.
const OOS_PORT: u16 = 9444;

/// What to break.
#[derive(Default)]
struct Setup {
    /// Names of the lyncweb certificate (default: lyncweb + lyncdiscover).
    lyncweb_names: Option<Vec<&'static str>>,
    /// Faults of the member's external site (4443) and its clear port (8080).
    faults: Faults,
    /// Farm `https_port` (default 4443).
    https_port: Option<u16>,
    ssl_offload: bool,
    /// Farm timeout (default 960s).
    timeout: Option<&'static str>,
}

struct CheckLab {
    lab: Lab,
    proxy_ip: IpAddr,
    _backends: Vec<Backend>,
    portico: Portico,
}

impl CheckLab {
    async fn start(s: Setup) -> CheckLab {
        let lab = Lab::new();
        lab.external_cert(
            "external",
            &["meet.contoso.com", "dialin.contoso.com", "owas.contoso.com"],
        );
        let lyncweb_names = s
            .lyncweb_names
            .clone()
            .unwrap_or_else(|| vec!["lyncweb.contoso.com", "lyncdiscover.contoso.com"]);
        lab.external_cert("lyncweb", &lyncweb_names);
        let proxy_ip = unique_loopback();
        let fe_ip = unique_loopback();
        let oos_ip = unique_loopback();
        let fe = "fe-web.contoso.local";
        let oos = "owas01.contoso.local";
        let issued = lab.internal.issue(&[fe]).unwrap();
        let fe_tls =
            portico::demo::backend::server_config_from_pem(&issued.cert_pem, &issued.key_pem)
                .unwrap();
        let member = |tls: bool| BackendOptions {
            name: fe.to_string(),
            tls: tls.then(|| fe_tls.clone()),
            role: Role::FrontEnd,
        };
        let backends = vec![
            Backend::start_with_faults(
                SocketAddr::new(fe_ip, 4443),
                member(true),
                s.faults.clone(),
            )
            .await
            .unwrap(),
            Backend::start_with_faults(
                SocketAddr::new(fe_ip, 8080),
                member(false),
                s.faults.clone(),
            )
            .await
            .unwrap(),
            Backend::start_with_faults(
                SocketAddr::new(fe_ip, FE_INTERNAL),
                member(true),
                Faults {
                    internal_site: true,
                    ..Faults::default()
                },
            )
            .await
            .unwrap(),
            lab.tls_member(SocketAddr::new(oos_ip, OOS_PORT), oos, Role::OfficeOnline)
                .await,
        ];
        let cfg = format!(
            r#"workers = 2

[[listener]]
bind = "{proxy_ip}:{HTTPS}"
tls = {{ certificates = [ {{ cert = "external.pem", key = "external.key" }}, {{ cert = "lyncweb.pem", key = "lyncweb.key" }} ] }}

[resolve]
"{fe}" = ["{fe_ip}"]
"{oos}" = ["{oos_ip}"]

[upstream]
ca = "internal-ca.pem"

[[farm]]
name = "lyncweb"
members = [ {{ address = "{fe}" }} ]
https_port = {https_port}
http_port = 8080
ssl_offload = {ssl_offload}
timeout = "{timeout}"

[[farm]]
name = "oos"
members = [ {{ address = "{oos}" }} ]
https_port = {OOS_PORT}

[[rule]]
name = "sfb"
match = ".*"
conditions = [ {{ input = "{{HTTP_HOST}}", pattern = "^(lyncweb|lyncdiscover|meet|dialin)\\." }} ]
action = {{ route = "lyncweb" }}
stop = true

[[rule]]
name = "oos"
match = ".*"
conditions = [ {{ input = "{{HTTP_HOST}}", pattern = "^owas\\.contoso\\.com(:\\d+)?$" }} ]
action = {{ route = "oos" }}
stop = true
"#,
            https_port = s.https_port.unwrap_or(4443),
            ssl_offload = s.ssl_offload,
            timeout = s.timeout.unwrap_or("960s"),
        );
        let cfg = lab.write_config(&cfg);
        let portico = Portico::start(&cfg, SocketAddr::new(proxy_ip, HTTPS));
        CheckLab {
            lab,
            proxy_ip,
            _backends: backends,
            portico,
        }
    }

    /// `portico check` with every SfB/OOS name given by flag, resolved to the proxy.
    async fn check_flags(&self, extra: &[&str]) -> Output {
        let mut args: Vec<String> = vec!["check".into()];
        for (flag, name) in [
            ("--webext", "lyncweb.contoso.com"),
            ("--meet", "meet.contoso.com"),
            ("--dialin", "dialin.contoso.com"),
            ("--lyncdiscover", "lyncdiscover.contoso.com"),
            ("--oos", "owas.contoso.com"),
        ] {
            args.push(flag.into());
            args.push(name.into());
            args.push("--resolve".into());
            args.push(format!("{name}:{HTTPS}:{}", self.proxy_ip));
        }
        args.extend(
            [
                "--port",
                &HTTPS.to_string(),
                "--ca",
                self.lab.path("public-ca.pem").to_str().unwrap(),
                "--timeout",
                "5s",
                "--json",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        run_check(&args).await
    }
}

async fn run_check(args: &[String]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(args)
        .output()
        .await
        .expect("run portico check")
}

/// `(id, name, status)` of every check in the JSON report (one check object per line).
fn checks(out: &Output) -> Vec<(String, String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with("{\"id\":"))
        .map(|l| {
            (
                json_field(l, "id").unwrap_or_default(),
                json_field(l, "name").unwrap_or_default(),
                json_field(l, "status").unwrap_or_default(),
            )
        })
        .collect()
}

fn explain(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts the run failed and that check `id` failed for `name`.
fn assert_fault(out: &Output, id: &str, name: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", explain(out));
    let found = checks(out);
    assert!(
        found
            .iter()
            .any(|(i, n, s)| i == id && n == name && s == "fail"),
        "expected check {id} to fail for {name}: {}",
        explain(out)
    );
}

fn status_of(out: &Output, id: &str, name: &str) -> Option<String> {
    checks(out)
        .into_iter()
        .find(|(i, n, _)| i == id && n == name)
        .map(|(_, _, s)| s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correct_sfb_publishing_passes_by_flags_and_by_config() {
    let l = CheckLab::start(Setup::default()).await;

    let out = l.check_flags(&["--long-poll", "1"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    let found = checks(&out);
    assert!(
        found.iter().all(|(_, _, s)| s == "pass"),
        "{}",
        explain(&out)
    );
    for id in [
        "tls-handshake",
        "certificate-name",
        "certificate-chain",
        "certificate-expiry",
        "tls-version",
        "abs",
        "group-expansion",
        "ucwa",
        "autodiscover-root",
        "port-bridging",
        "ssl-offload",
        "internal-names",
        "long-poll",
    ] {
        assert!(
            status_of(&out, id, "lyncweb.contoso.com").is_some(),
            "{id} missing: {}",
            explain(&out)
        );
    }
    for (id, name) in [
        ("meet", "meet.contoso.com"),
        ("dialin", "dialin.contoso.com"),
        ("lyncdiscover-json", "lyncdiscover.contoso.com"),
        ("lyncdiscover-xml", "lyncdiscover.contoso.com"),
        ("lyncdiscover-no-accept", "lyncdiscover.contoso.com"),
        ("oos-discovery", "owas.contoso.com"),
    ] {
        assert_eq!(
            status_of(&out, id, name).as_deref(),
            Some("pass"),
            "{}",
            explain(&out)
        );
    }
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("checking "),
        "progress on stderr: {}",
        explain(&out)
    );

    // From the config alone: the names come from the rules and the certificates.
    let args: Vec<String> = [
        "check",
        "--config",
        l.lab.path("portico.toml").to_str().unwrap(),
        "--ca",
        l.lab.path("public-ca.pem").to_str().unwrap(),
        "--timeout",
        "5s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let text = run_check(&args).await;
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.status.code(), Some(0), "{}", explain(&text));
    assert!(stdout.contains("Names derived from the config"), "{stdout}");
    for (name, service) in [
        ("lyncweb.contoso.com", "webext"),
        ("lyncdiscover.contoso.com", "lyncdiscover"),
        ("meet.contoso.com", "meet"),
        ("dialin.contoso.com", "dialin"),
        ("owas.contoso.com", "oos"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(name) && l.contains(service) && l.contains("via")),
            "{name} as {service}: {stdout}"
        );
    }
    assert!(stdout.contains("PASS:"), "{stdout}");
    drop(l.portico);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_missing_from_the_certificate_is_reported_as_certificate_name() {
    let l = CheckLab::start(Setup {
        lyncweb_names: Some(vec!["lyncweb.contoso.com"]),
        ..Setup::default()
    })
    .await;
    let out = l.check_flags(&[]).await;
    assert_fault(&out, "certificate-name", "lyncdiscover.contoso.com");
    assert_eq!(
        status_of(&out, "certificate-name", "lyncweb.contoso.com").as_deref(),
        Some("pass")
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("subject alternative name"),
        "the fix is named: {}",
        explain(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_reached_on_its_internal_port_is_reported_as_port_bridging() {
    let l = CheckLab::start(Setup {
        https_port: Some(FE_INTERNAL),
        ..Setup::default()
    })
    .await;
    let out = l.check_flags(&[]).await;
    assert_fault(&out, "port-bridging", "lyncweb.contoso.com");
    assert_fault(&out, "port-bridging", "lyncdiscover.contoso.com");
    assert_fault(&out, "internal-names", "lyncdiscover.contoso.com");
    // The services themselves still answer: only the signs give the mistake away.
    assert_eq!(
        status_of(&out, "abs", "lyncweb.contoso.com").as_deref(),
        Some("pass")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_offloading_to_the_pool_is_reported_as_ssl_offload() {
    let l = CheckLab::start(Setup {
        ssl_offload: true,
        faults: Faults {
            require_ssl: true,
            ..Faults::default()
        },
        ..Setup::default()
    })
    .await;
    let out = l.check_flags(&[]).await;
    assert_fault(&out, "ssl-offload", "lyncweb.contoso.com");
    assert_fault(&out, "ssl-offload", "lyncdiscover.contoso.com");
    assert_fault(&out, "abs", "lyncweb.contoso.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lyncdiscover_406_for_the_xml_accept_is_reported_as_lyncdiscover_xml() {
    let l = CheckLab::start(Setup {
        faults: Faults {
            not_acceptable: Some("+xml".into()),
            ..Faults::default()
        },
        ..Setup::default()
    })
    .await;
    let out = l.check_flags(&[]).await;
    assert_fault(&out, "lyncdiscover-xml", "lyncdiscover.contoso.com");
    assert_eq!(
        status_of(&out, "lyncdiscover-json", "lyncdiscover.contoso.com").as_deref(),
        Some("pass")
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("NotAcceptable"),
        "{}",
        explain(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_timeout_shorter_than_the_long_poll_is_reported_as_long_poll() {
    let l = CheckLab::start(Setup {
        timeout: Some("2s"),
        ..Setup::default()
    })
    .await;
    let out = l.check_flags(&["--long-poll", "4"]).await;
    assert_fault(&out, "long-poll", "lyncweb.contoso.com");
    // Everything else is fine: the long poll is the only failure.
    let failed: Vec<_> = checks(&out)
        .into_iter()
        .filter(|(_, _, s)| s == "fail")
        .collect();
    assert_eq!(failed.len(), 1, "{}", explain(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_to_check_is_a_usage_error_with_exit_2() {
    let out = run_check(&["check".to_string()]).await;
    assert_eq!(out.status.code(), Some(2), "{}", explain(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--webext"));
}

/// Civil date (y, m, d) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_expiring_within_30_days_is_a_warning_not_a_failure() {
    // Any server, not only Portico: a member published directly, as another proxy would.
    let lab = Lab::new();
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 86_400;
    let (y, m, d) = civil_from_days(today + 10);
    let issued = lab
        .public
        .issue_with(&["meet.contoso.com"], |p| {
            p.not_after = rcgen::date_time_ymd(y, m, d);
        })
        .unwrap();
    let tls =
        portico::demo::backend::server_config_from_pem(&issued.cert_pem, &issued.key_pem).unwrap();
    let ip = unique_loopback();
    let _member = Backend::start(
        SocketAddr::new(ip, HTTPS),
        BackendOptions {
            name: "fe".into(),
            tls: Some(tls),
            role: Role::FrontEnd,
        },
    )
    .await
    .unwrap();
    let args: Vec<String> = [
        "check".to_string(),
        "--meet".into(),
        "meet.contoso.com".into(),
        "--resolve".into(),
        format!("meet.contoso.com:{HTTPS}:{ip}"),
        "--port".into(),
        HTTPS.to_string(),
        "--ca".into(),
        lab.path("public-ca.pem").to_str().unwrap().into(),
        "--json".into(),
    ]
    .to_vec();
    let out = run_check(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    assert_eq!(
        status_of(&out, "certificate-expiry", "meet.contoso.com").as_deref(),
        Some("warn"),
        "{}",
        explain(&out)
    );
}
