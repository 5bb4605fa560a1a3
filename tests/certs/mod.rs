//! Helpers for the certificate tests: what a TLS listener serves, seen by real clients.
#![allow(dead_code)]

use std::net::IpAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `openssl s_client` saw: the leaf certificate (PEM) and the full text output.
pub struct Handshake {
    pub leaf_pem: Option<String>,
    pub text: String,
}

/// One handshake with `openssl s_client` (SNI `name`), `extra` arguments added (e.g. `-status`).
pub async fn s_client(ip: IpAddr, port: u16, name: &str, extra: &[&str]) -> Handshake {
    let connect = format!("{ip}:{port}");
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &connect, "-servername", name])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let leaf_pem = text.find("-----BEGIN CERTIFICATE-----").and_then(|b| {
        let end = "-----END CERTIFICATE-----";
        text[b..]
            .find(end)
            .map(|e| text[b..b + e + end.len()].to_string() + "\n")
    });
    Handshake { leaf_pem, text }
}

/// The first certificate of a PEM chain, normalised to compare with `s_client` output.
pub fn first_pem(chain: &str) -> String {
    let end = "-----END CERTIFICATE-----";
    let b = chain.find("-----BEGIN CERTIFICATE-----").expect("PEM");
    let e = chain[b..].find(end).expect("PEM end");
    chain[b..b + e + end.len()].to_string() + "\n"
}

/// Waits (bounded) until the listener serves `want` (a leaf PEM) for `name`.
pub async fn wait_served(ip: IpAddr, port: u16, name: &str, want: &str, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if s_client(ip, port, name, &[]).await.leaf_pem.as_deref() == Some(want) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

/// A bounded load: new-connection HTTPS requests with curl, one after another, until
/// stopped or `limit` passed. Counts successes (HTTP 200) and failures.
pub struct Load {
    pub ok: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Load {
    /// `args` are curl arguments (trust, --resolve, URL).
    pub fn start(args: Vec<String>, limit: Duration) -> Load {
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (o, f, s) = (ok.clone(), failed.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut errors = Vec::new();
            while !s.load(Ordering::Relaxed) && start.elapsed() < limit {
                let out = tokio::process::Command::new("curl")
                    .args([
                        "-sS",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code}",
                        "--max-time",
                        "10",
                    ])
                    .args(&args)
                    .output()
                    .await
                    .expect("run curl");
                if out.stdout == b"200" {
                    o.fetch_add(1, Ordering::Relaxed);
                } else {
                    f.fetch_add(1, Ordering::Relaxed);
                    errors.push(format!(
                        "{} {}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
            errors
        });
        Load {
            ok,
            failed,
            stop,
            task,
        }
    }

    /// Stops the load; returns (successes, failures, failure messages).
    pub async fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let errors = self.task.await.unwrap();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            errors,
        )
    }
}

/// Writes `text` to `path` through a temporary file and a rename, as deploy tools do.
pub fn replace_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp-new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
