//! OCSP stapling against a real `openssl ocsp` responder the test starts: the staple is in
//! the handshake, refreshed before nextUpdate, and absent-but-harmless once the responder
//! is gone.

mod certs;
mod common;

use certs::*;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, KeyPair};
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TLS: u16 = 8443;
const NAME: &str = "lyncweb.contoso.com";

/// AuthorityInfoAccess with one OCSP URL.
fn aia_ocsp(url: &str) -> CustomExtension {
    let mut location = vec![0x86, url.len() as u8];
    location.extend_from_slice(url.as_bytes());
    let mut desc = vec![0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];
    desc.extend(location);
    let mut access = vec![0x30, desc.len() as u8];
    access.extend(desc);
    let mut seq = vec![0x30, access.len() as u8];
    seq.extend(access);
    CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], seq)
}

/// A free TCP port on all interfaces (`openssl ocsp -port` binds the wildcard address and
/// takes only a port number); the kernel does not hand it out again within the test.
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Responder(Child);

impl Responder {
    /// Waits for the responder's "waiting" line rather than probing the port: `openssl
    /// ocsp` (3.0) hangs on a connection that closes without a request.
    fn start(lab: &Lab, port: u16) -> Responder {
        let log = lab.path("ocsp-responder.log");
        let child = Command::new("openssl")
            .current_dir(lab.dir.path())
            .args(["ocsp", "-index", "index.txt", "-port", &port.to_string()])
            .args(["-rsigner", "ca.pem", "-rkey", "ca.key", "-CA", "ca.pem"])
            .args(["-nmin", "1", "-ignore_err"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start openssl ocsp");
        let start = Instant::now();
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("waiting for OCSP client connections")
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "responder did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Responder(child)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn this_update(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("This Update:"))
        .map(|s| s.trim().to_string())
}

async fn wait_for(
    portico: &Portico,
    ip: IpAddr,
    limit: Duration,
    what: &str,
    pred: impl Fn(&Handshake) -> bool,
) -> Handshake {
    let start = Instant::now();
    loop {
        let h = s_client(ip, TLS, NAME, &["-status"]).await;
        if pred(&h) {
            return h;
        }
        assert!(
            start.elapsed() < limit,
            "{what}: last handshake: {}\nlog: {}",
            h.text,
            portico.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staple_is_served_refreshed_and_dropped_harmlessly_when_the_responder_is_gone() {
    let lab = Lab::new();
    let ip = unique_loopback();
    let port = free_port();

    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "OCSP Test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(vec![NAME.to_string()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, NAME);
    leaf_params
        .custom_extensions
        .push(aia_ocsp(&format!("http://127.0.0.1:{port}/")));
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    std::fs::write(lab.path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(lab.path("ca.key"), ca_key.serialize_pem()).unwrap();
    std::fs::write(lab.path("web.pem"), format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(lab.path("web.key"), leaf_key.serialize_pem()).unwrap();
    let serial = String::from_utf8(
        Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(lab.path("web.pem"))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let serial = serial.trim().strip_prefix("serial=").unwrap().to_string();
    std::fs::write(
        lab.path("index.txt"),
        format!("V\t391231235959Z\t\t{serial}\tunknown\t/CN={NAME}\n"),
    )
    .unwrap();

    let responder = Responder::start(&lab, port);
    let cfg = lab.write_config(&format!(
        r#"
[[listener]]
bind = "{ip}:{TLS}"
tls = {{ certificates = [ {{ cert = "web.pem", key = "web.key" }} ] }}

[[rule]]
name = "ok"
action = {{ respond = 200, body = "ok" }}
"#
    ));
    let portico = Portico::start(&cfg, (ip, TLS).into());

    let first = wait_for(&portico, ip, Duration::from_secs(20), "no staple", |h| {
        h.text.contains("OCSP Response Status: successful") && h.text.contains("Cert Status: good")
    })
    .await;
    let first_update = this_update(&first.text).expect("This Update");

    // nextUpdate is a minute out: the staple is refreshed halfway.
    let refreshed = wait_for(
        &portico,
        ip,
        Duration::from_secs(60),
        "staple not refreshed",
        |h| this_update(&h.text).is_some_and(|t| t != first_update),
    )
    .await;
    assert!(refreshed.text.contains("Cert Status: good"));

    // Responder gone: handshakes go on, first with the still-valid staple, then without.
    drop(responder);
    let h = s_client(ip, TLS, NAME, &["-status"]).await;
    assert!(h.leaf_pem.is_some(), "{}", h.text);
    let bare = wait_for(
        &portico,
        ip,
        Duration::from_secs(90),
        "expired staple kept",
        |h| h.text.contains("OCSP response: no response sent"),
    )
    .await;
    assert!(bare.leaf_pem.is_some(), "{}", bare.text);
    let r = curl(&[
        "--cacert",
        lab.path("ca.pem").to_str().unwrap(),
        "--resolve",
        &format!("{NAME}:{TLS}:{ip}"),
        &format!("https://{NAME}:{TLS}/"),
    ])
    .await;
    assert_eq!(r.status, 200, "{}", r.stderr);
    let log = portico.log_text();
    assert!(log.contains("OCSP fetch failed"), "{log}");
    assert!(
        log.contains("OCSP staple expired without a refresh"),
        "{log}"
    );
}
