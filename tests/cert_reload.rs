//! File certificates reload live: replaced files are checked and swapped in without a
//! reload; a broken replacement is refused and the old certificate keeps serving.

mod certs;
mod common;

use certs::*;
use common::*;
use std::time::Duration;

const TLS: u16 = 8443;
const NAME: &str = "lyncweb.contoso.com";

fn config(ip: std::net::IpAddr) -> String {
    format!(
        r#"
[[listener]]
bind = "{ip}:{TLS}"
tls = {{ certificates = [ {{ cert = "web.pem", key = "web.key" }} ] }}

[[rule]]
name = "ok"
action = {{ respond = 200, body = "ok" }}
"#
    )
}

fn curl_args(lab: &Lab, ip: std::net::IpAddr) -> Vec<String> {
    vec![
        "--cacert".into(),
        lab.path("public-ca.pem").display().to_string(),
        "--resolve".into(),
        format!("{NAME}:{TLS}:{ip}"),
        format!("https://{NAME}:{TLS}/"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificate_files_are_served_without_a_failed_request() {
    let lab = Lab::new();
    let ip = unique_loopback();
    let first = lab.public.issue(&[NAME]).unwrap();
    first.write(lab.dir.path(), "web").unwrap();
    let cfg = lab.write_config(&config(ip));
    let portico = Portico::start(&cfg, (ip, TLS).into());
    let old_leaf = first_pem(&first.cert_pem);
    assert!(wait_served(ip, TLS, NAME, &old_leaf, Duration::from_secs(5)).await);

    let load = Load::start(curl_args(&lab, ip), Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Replaced in place, cert first, then key (a window where the pair does not match).
    let second = lab.public.issue(&[NAME, "meet.contoso.com"]).unwrap();
    std::fs::write(lab.path("web.pem"), &second.cert_pem).unwrap();
    std::fs::write(lab.path("web.key"), &second.key_pem).unwrap();
    let new_leaf = first_pem(&second.cert_pem);
    let swapped = wait_served(ip, TLS, NAME, &new_leaf, Duration::from_secs(15)).await;
    // The added name is served by the new certificate too: the SNI table followed.
    let meet = s_client(ip, TLS, "meet.contoso.com", &[]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed, errors) = load.finish().await;
    assert!(
        swapped,
        "new certificate not served: {}",
        portico.log_text()
    );
    assert_eq!(meet.leaf_pem.as_deref(), Some(new_leaf.as_str()));
    assert_eq!(failed, 0, "failed requests during the swap: {errors:?}");
    assert!(ok >= 5, "too little load to mean anything: {ok}");
    assert!(portico
        .log_text()
        .contains("certificate file changed: serving the new certificate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_replacement_is_refused_and_the_old_certificate_keeps_serving() {
    let lab = Lab::new();
    let ip = unique_loopback();
    let first = lab.public.issue(&[NAME]).unwrap();
    first.write(lab.dir.path(), "web").unwrap();
    let cfg = lab.write_config(&config(ip));
    let portico = Portico::start(&cfg, (ip, TLS).into());
    let old_leaf = first_pem(&first.cert_pem);
    assert!(wait_served(ip, TLS, NAME, &old_leaf, Duration::from_secs(5)).await);

    // A new certificate whose key is never deployed: the pair does not match.
    let other = lab.public.issue(&[NAME]).unwrap();
    replace_file(&lab.path("web.pem"), &other.cert_pem);
    let log_line = "certificate file changed but the new pair is refused";
    let start = std::time::Instant::now();
    while !portico.log_text().contains(log_line) && start.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = portico.log_text();
    assert!(log.contains(log_line), "{log}");
    assert!(
        log.contains("private key does not match the certificate"),
        "{log}"
    );
    assert!(
        log.contains(&lab.path("web.key").display().to_string()),
        "{log}"
    );
    let now = s_client(ip, TLS, NAME, &[]).await;
    assert_eq!(now.leaf_pem.as_deref(), Some(old_leaf.as_str()));
    let r = curl_https(&lab, NAME, ip, TLS, "/", &[]).await;
    assert_eq!(r.status, 200, "{}", r.stderr);

    // Garbage in the key file is refused too, naming the file.
    replace_file(&lab.path("web.key"), "not a key\n");
    let start = std::time::Instant::now();
    while !portico.log_text().contains("no private key found")
        && start.elapsed() < Duration::from_secs(15)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(portico.log_text().contains("no private key found"));
    let now = s_client(ip, TLS, NAME, &[]).await;
    assert_eq!(now.leaf_pem.as_deref(), Some(old_leaf.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_is_exported_per_certificate_and_name_and_warned_at_startup() {
    let lab = Lab::new();
    let ip = unique_loopback();
    let soon = std::time::SystemTime::now() + Duration::from_secs(10 * 86_400);
    lab.public
        .issue_with(&[NAME, "meet.contoso.com"], |p| p.not_after = soon.into())
        .unwrap()
        .write(lab.dir.path(), "web")
        .unwrap();
    let cfg = lab.write_config(&format!("{}\n[admin]\nbind = \"{ip}:9901\"\n", config(ip)));
    let portico = Portico::start(&cfg, (ip, 9901).into());
    assert!(
        portico.log_text().contains("certificate expires soon"),
        "{}",
        portico.log_text()
    );

    let metrics = curl(&[&format!("http://{ip}:9901/metrics")]).await.text();
    let file = lab.path("web.pem").display().to_string();
    for name in [NAME, "meet.contoso.com"] {
        let prefix = format!(
            "portico_certificate_expiry_seconds{{certificate=\"{file}\",name=\"{name}\"}} "
        );
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {metrics}"));
        let secs: f64 = line[prefix.len()..].trim().parse().unwrap();
        assert!((9.9 * 86_400.0..10.0 * 86_400.0).contains(&secs), "{line}");
    }

    let status = curl(&[&format!("http://{ip}:9901/api/status")])
        .await
        .text();
    assert!(
        status.contains("\"renewal\": \"watching file\""),
        "{status}"
    );
    let page = curl(&[&format!("http://{ip}:9901/")]).await.text();
    assert!(page.contains("<th>Renewal</th>"), "{page}");
}
