//! Test harness: a lab of real sockets on loopback — demo members started in-process,
//! the real `portico` binary as a child process, real clients (curl, raw TCP).
#![allow(dead_code)]

use portico::demo::backend::{Backend, BackendOptions, Role};
use portico::demo::pki::TestCa;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A loopback address no other test uses, so fixed ports (4443, 8080, 8443) can be bound.
/// Deterministic: within a test binary (whose tests run in parallel threads) the counter
/// makes every address distinct; the process id spreads binaries over the second octet so
/// sockets a previous binary left in TIME_WAIT are not in the way.
pub fn unique_loopback() -> IpAddr {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    assert!(
        n < 250 * 250,
        "a test binary used more than 62,500 loopback addresses"
    );
    let b = 100 + (std::process::id() % 150) as u8;
    let c = (n / 250) as u8 + 1;
    let d = (n % 250) as u8 + 1;
    IpAddr::from([127, b, c, d])
}

/// Certificates and a folder for one test.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub internal: TestCa,
    pub public: TestCa,
}

impl Lab {
    pub fn new() -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        let internal = TestCa::new("Contoso Internal Root CA").expect("ca");
        let public = TestCa::new("Test Public CA").expect("ca");
        std::fs::write(dir.path().join("internal-ca.pem"), internal.cert_pem()).unwrap();
        std::fs::write(dir.path().join("public-ca.pem"), public.cert_pem()).unwrap();
        Lab {
            dir,
            internal,
            public,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues an external certificate from the public CA and writes `<stem>.pem/.key`.
    pub fn external_cert(&self, stem: &str, names: &[&str]) {
        self.public
            .issue(names)
            .unwrap()
            .write(self.dir.path(), stem)
            .unwrap();
    }

    pub fn write_config(&self, toml: &str) -> PathBuf {
        let p = self.path("portico.toml");
        std::fs::write(&p, toml).unwrap();
        p
    }

    /// A member serving TLS with a certificate for `name` from the internal CA.
    pub async fn tls_member(&self, addr: SocketAddr, name: &str, role: Role) -> Backend {
        let issued = self.internal.issue(&[name]).unwrap();
        let tls = portico::demo::backend::server_config_from_pem(&issued.cert_pem, &issued.key_pem)
            .unwrap();
        Backend::start(
            addr,
            BackendOptions {
                name: name.to_string(),
                tls: Some(tls),
                role,
            },
        )
        .await
        .expect("start TLS member")
    }

    pub async fn plain_member(&self, addr: SocketAddr, name: &str, role: Role) -> Backend {
        Backend::start(
            addr,
            BackendOptions {
                name: name.to_string(),
                tls: None,
                role,
            },
        )
        .await
        .expect("start member")
    }
}

/// The real binary, serving a config; killed when dropped.
pub struct Portico {
    pub child: Child,
    pub log: PathBuf,
}

impl Portico {
    /// Starts `portico run` and waits until `wait_for` accepts connections.
    pub fn start(config: &Path, wait_for: SocketAddr) -> Portico {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portico"));
        cmd.args(["run", "--config"]).arg(config);
        Portico::spawn(cmd, config, wait_for)
    }

    /// Like `start`, under a hard open-files limit of `nofile` (as `ulimit -n` sets it).
    pub fn start_with_open_files_limit(
        config: &Path,
        wait_for: SocketAddr,
        nofile: u32,
    ) -> Portico {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "ulimit -n {nofile} && exec \"$0\" run --config \"$1\""
            ))
            .arg(env!("CARGO_BIN_EXE_portico"))
            .arg(config);
        Portico::spawn(cmd, config, wait_for)
    }

    fn spawn(mut cmd: Command, config: &Path, wait_for: SocketAddr) -> Portico {
        let log = config.with_extension("log");
        let logf = std::fs::File::create(&log).unwrap();
        let child = cmd
            .env("RUST_LOG", "info,portico=debug")
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("spawn portico");
        let mut p = Portico { child, log };
        let start = Instant::now();
        while TcpStream::connect_timeout(&wait_for, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("portico exited early ({status}): {}", p.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "portico did not listen on {wait_for}: {}",
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        p
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
    }

    /// Waits up to `within` for the process to exit: its status, or None if it still runs.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if start.elapsed() >= within {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Portico {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What curl got: the final status, headers (lower-case names) and body.
#[derive(Debug)]
pub struct Reply {
    pub status_line: String,
    pub status: u16,
    pub http_version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub stderr: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Runs curl with `args` (plus -sS and header capture). Status 0 means no HTTP answer.
pub async fn curl(args: &[&str]) -> Reply {
    let hdr = tempfile::NamedTempFile::new().unwrap();
    let out = tokio::process::Command::new("curl")
        .arg("-sS")
        .arg("--max-time")
        .arg("120")
        .arg("-D")
        .arg(hdr.path())
        .args(args)
        .output()
        .await
        .expect("run curl");
    let raw = std::fs::read_to_string(hdr.path()).unwrap_or_default();
    // Only the last header block counts (a 100 Continue may precede it).
    let block = raw
        .split("\r\n\r\n")
        .filter(|b| b.starts_with("HTTP/"))
        .last()
        .unwrap_or("");
    let mut lines = block.lines();
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let http_version = parts.next().unwrap_or("").to_string();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status_line: status_line.trim().to_string(),
        status,
        http_version,
        headers,
        body: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `curl` against an HTTPS name published on `ip:port`, trusting the lab's public CA.
pub async fn curl_https(
    lab: &Lab,
    host: &str,
    ip: IpAddr,
    port: u16,
    path: &str,
    extra: &[&str],
) -> Reply {
    let ca = lab.path("public-ca.pem");
    let resolve = format!("{host}:{port}:{ip}");
    let url = format!("https://{host}:{port}{path}");
    let mut args = vec!["--cacert", ca.to_str().unwrap(), "--resolve", &resolve];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args).await
}

/// Minimal JSON field lookup for the member's /echo document (string or number values).
pub fn json_field(json: &str, field: &str) -> Option<String> {
    let key = format!("\"{field}\":");
    let start = json.find(&key)? + key.len();
    let rest = json[start..].trim_start();
    if let Some(s) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
                '"' => return Some(out),
                c => out.push(c),
            }
        }
        None
    } else {
        let end = rest.find([',', '}', ']']).unwrap_or(rest.len());
        Some(rest[..end].trim().to_string())
    }
}

/// A keep-alive HTTP/1.1 client on one TCP connection (pinning tests need exactly that).
pub struct H1 {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
}

/// What `H1` got back.
#[derive(Debug)]
pub struct H1Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl H1Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl H1 {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<H1> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(H1 { sender })
    }

    pub async fn get(
        &mut self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<H1Reply, String> {
        self.send("GET", host, path, headers, bytes::Bytes::new())
            .await
    }

    pub async fn send(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: bytes::Bytes,
    ) -> Result<H1Reply, String> {
        use http_body_util::BodyExt;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(http_body_util::Full::new(body))
            .map_err(|e| e.to_string())?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(H1Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// The `Authorization` values of the NTLM test double's legs 1 and 3 for `user`
/// (`demo::backend`'s `/auth/ntlm`: `TYPE1`, then `TYPE3:<user>`, base64).
pub fn ntlm_legs(user: &str) -> [String; 2] {
    [
        format!("NTLM {}", base64(b"TYPE1")),
        format!("NTLM {}", base64(format!("TYPE3:{user}").as_bytes())),
    ]
}

/// Standard base64 (the NTLM test double's tokens).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn unbase64(s: &str) -> Vec<u8> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|c| *c != b'=') {
        let Some(v) = T.iter().position(|t| *t == c) else {
            continue;
        };
        bits = (bits << 6) | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

/// The smallest lab config: a clear-text listener on `proxy_ip:8081` (plus `listener_extra`
/// lines), any further `tables`, and one farm "app" whose one member is `member:8080`.
pub fn one_member_config(
    proxy_ip: IpAddr,
    member: IpAddr,
    listener_extra: &str,
    tables: &str,
) -> String {
    format!(
        r#"
[[listener]]
bind = "{proxy_ip}:8081"
{listener_extra}
{tables}
[[farm]]
name = "app"
members = [ {{ address = "{member}" }} ]
http_port = 8080
[[rule]]
name = "app"
action = {{ route = "app", scheme = "http" }}
"#
    )
}

/// Reads one request head (through the blank line); None at end of stream. Only the head: a
/// body that follows stays unread.
pub async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::AsyncReadExt::read(s, &mut byte),
        )
        .await
        {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => return None,
        }
        if head.len() > 1 << 20 {
            return None;
        }
    }
    Some(head)
}

/// A raw TLS client to `addr` (SNI `sni`, ALPN `http/1.1`) trusting the lab's public CA, for
/// tests that read the bytes on the wire.
pub async fn tls_client(
    lab: &Lab,
    addr: SocketAddr,
    sni: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut lab.public.cert_pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS to the proxy")
}
