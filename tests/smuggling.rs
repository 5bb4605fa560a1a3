//! Request smuggling and malformed HTTP/1 over raw TCP against the real binary: every case
//! gets a 4xx and a closed connection (or just the close), and the member proves it saw
//! nothing it should not — never the smuggled second request.

mod common;

use common::*;
use portico::demo::backend::{Backend, Role};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HTTP: u16 = 8081;
const HOST: &str = "app.contoso.com";

struct Setup {
    _lab: Lab,
    addr: SocketAddr,
    _portico: Portico,
    member: Backend,
}

async fn setup() -> Setup {
    let lab = Lab::new();
    let proxy_ip = unique_loopback();
    let member_ip = unique_loopback();
    let member = lab
        .plain_member(SocketAddr::new(member_ip, 8080), "fe01", Role::Echo)
        .await;
    let toml = format!(
        r#"
[[listener]]
bind = "{proxy_ip}:{HTTP}"

[resolve]
"fe01.contoso.local" = ["{member_ip}"]

[[farm]]
name = "app"
members = [ {{ address = "fe01.contoso.local" }} ]
http_port = 8080

[[rule]]
name = "app"
match = ".*"
action = {{ route = "app", scheme = "http" }}
"#
    );
    let cfg = lab.write_config(&toml);
    let addr = SocketAddr::new(proxy_ip, HTTP);
    let portico = Portico::start(&cfg, addr);
    Setup {
        _lab: lab,
        addr,
        _portico: portico,
        member,
    }
}

/// What came back on one connection: every status line, and whether the server closed it.
#[derive(Debug)]
struct Seen {
    statuses: Vec<u16>,
    closed: bool,
}

/// Sends `raw` on a new connection, then reads until the server closes or `wait` passes
/// without a byte.
async fn exchange(addr: SocketAddr, raw: &[u8], wait: Duration) -> Seen {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A server that closes early may reset the rest of a big write: that is an answer too.
    let _ = tcp.write_all(raw).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = loop {
        match tokio::time::timeout(wait, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let text = String::from_utf8_lossy(&got);
    let statuses = text
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect();
    Seen { statuses, closed }
}

fn req(lines: &str) -> Vec<u8> {
    lines.replace("{HOST}", HOST).into_bytes()
}

/// The second request hidden in a body by each trick below.
const SMUGGLED: &str = "GET /echo/smuggled HTTP/1.1\r\nHost: {HOST}\r\n\r\n";

/// How a case must end.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// A 4xx, the connection closed, and the member saw nothing.
    Refused,
    /// The headers are sound and only the body is broken: Portico streams bodies, so the
    /// request may be on its way before the bad chunk arrives. The client gets a 4xx/5xx or a
    /// close, the member at most that one request — never the smuggled one behind it.
    BodyError,
}

struct Case {
    name: &'static str,
    raw: Vec<u8>,
    expect: Expect,
}

fn case(name: &'static str, raw: String) -> Case {
    Case {
        name,
        raw: req(&raw),
        expect: Expect::Refused,
    }
}

fn body_case(name: &'static str, raw: String) -> Case {
    Case {
        expect: Expect::BodyError,
        ..case(name, raw)
    }
}

fn corpus() -> Vec<Case> {
    let post = "POST /echo HTTP/1.1\r\nHost: {HOST}\r\n";
    let chunked = format!("{post}Transfer-Encoding: chunked\r\n");
    vec![
        // Content-Length with Transfer-Encoding is refused outright (RFC 9112 §6.1 allows a
        // server to; nginx and HAProxy do): no reading of which header wins.
        case(
            "CL.TE: Content-Length and Transfer-Encoding",
            format!("{post}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        case(
            "TE.CL: Transfer-Encoding then Content-Length",
            format!("{post}Transfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        case(
            "two differing Content-Length headers",
            format!("{post}Content-Length: 0\r\nContent-Length: 48\r\n\r\n{SMUGGLED}"),
        ),
        case(
            "Content-Length list with differing values",
            format!("{post}Content-Length: 0, 48\r\n\r\n{SMUGGLED}"),
        ),
        case(
            "Content-Length with a sign",
            format!("{post}Content-Length: +0\r\n\r\n{SMUGGLED}"),
        ),
        case(
            "Content-Length in hex",
            format!("{post}Content-Length: 0x0\r\n\r\n{SMUGGLED}"),
        ),
        case(
            "Transfer-Encoding: chunked, identity",
            format!("{post}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        case(
            "Transfer-Encoding: xchunked",
            format!("{post}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        case(
            "Transfer-Encoding: gzip, chunked",
            format!("{post}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        case(
            "Transfer-Encoding in two header lines",
            format!("{post}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        case(
            "Transfer-Encoding on HTTP/1.0",
            format!("POST /echo HTTP/1.0\r\nHost: {{HOST}}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        case(
            "space before the colon",
            format!("{post}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        case(
            "tab before the colon",
            format!("{post}Content-Length\t: 0\r\n\r\n{SMUGGLED}"),
        ),
        case(
            "obs-fold continuation line",
            format!("{post}X-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
        ),
        case(
            "obs-fold hiding Transfer-Encoding",
            format!("{post}X-A: a\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        case(
            "bare CR inside a header line",
            format!("{post}X-A: a\rTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        case(
            "bare CR as line end",
            "GET /echo HTTP/1.1\rHost: {HOST}\r\r".to_string(),
        ),
        case(
            "NUL in a header value",
            format!("{post}X-A: a\0b\r\nContent-Length: 0\r\n\r\n"),
        ),
        case(
            "NUL in a header name",
            format!("{post}X-\0A: b\r\nContent-Length: 0\r\n\r\n"),
        ),
        case(
            "invalid character in a header name",
            format!("{post}X(A): b\r\nContent-Length: 0\r\n\r\n"),
        ),
        case(
            "control character in a header value",
            format!("{post}X-A: a\x01b\r\nContent-Length: 0\r\n\r\n"),
        ),
        case(
            "header line without a colon",
            format!("{post}Transfer-Encoding chunked\r\nContent-Length: 0\r\n\r\n"),
        ),
        case(
            "backslash in the path (IIS reads it as /, past a path rule)",
            "GET /echo\\..\\ecp/ HTTP/1.1\r\nHost: {HOST}\r\n\r\n".to_string(),
        ),
        case(
            "two Host headers",
            "GET /echo HTTP/1.1\r\nHost: {HOST}\r\nHost: evil.example\r\n\r\n".to_string(),
        ),
        case(
            "Host list in one header",
            "GET /echo HTTP/1.1\r\nHost: {HOST}, evil.example\r\n\r\n".to_string(),
        ),
        case(
            "absolute-form URI naming another host than Host",
            "GET http://evil.example/echo HTTP/1.1\r\nHost: {HOST}\r\n\r\n".to_string(),
        ),
        case(
            "Connection naming Content-Length (hop-by-hop stripping trick)",
            format!("{post}Connection: Content-Length\r\nContent-Length: 48\r\n\r\n{SMUGGLED}"),
        ),
        case(
            "Connection naming Transfer-Encoding",
            format!("{chunked}Connection: close, Transfer-Encoding\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        case(
            "space inside the request line",
            "GET /echo HTTP/1.1 \r\nHost: {HOST}\r\n\r\n".to_string(),
        ),
        case(
            "HTTP/1.1 without Host",
            "GET /echo HTTP/1.1\r\n\r\n".to_string(),
        ),
        case(
            "request line longer than the header limit",
            format!("GET /echo?{} HTTP/1.1\r\nHost: {{HOST}}\r\n\r\n", "a".repeat(70 * 1024)),
        ),
        case(
            "headers larger than the header limit",
            format!("GET /echo HTTP/1.1\r\nHost: {{HOST}}\r\n{}\r\n", "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(2000)),
        ),
        case(
            "too many headers",
            format!("GET /echo HTTP/1.1\r\nHost: {{HOST}}\r\n{}\r\n", (0..150).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()),
        ),
        body_case(
            "chunk size 0x10",
            format!("{chunked}\r\n0x10\r\n0123456789abcdef\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        body_case(
            "chunk size -1",
            format!("{chunked}\r\n-1\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        body_case(
            "chunk size overflowing 64 bits",
            format!("{chunked}\r\nFFFFFFFFFFFFFFFFF1\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        body_case(
            "chunk size with trailing garbage",
            format!("{chunked}\r\n5 x\r\nhello\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        body_case(
            "chunk extension with a bare LF",
            format!("{chunked}\r\n5;a\nb\r\nhello\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        body_case(
            "chunk extension with a bare CR",
            format!("{chunked}\r\n5;a\rb\r\nhello\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        body_case(
            "chunk data longer than its size",
            format!("{chunked}\r\n2\r\nhello\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        body_case(
            "chunk without CRLF after its data",
            format!("{chunked}\r\n5\r\nhello0\r\n\r\n{SMUGGLED}"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_and_malformed_requests_get_400_and_reach_no_member() {
    let s = setup().await;
    // The harness itself: a sound request is answered and counted once.
    let ok = exchange(
        s.addr,
        &req("GET /echo HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(ok.statuses, vec![200], "control request: {ok:?}");
    assert_eq!(s.member.requests_seen(), 1);

    let mut failures = Vec::new();
    for c in corpus() {
        let before = s.member.requests_seen();
        let seen = exchange(s.addr, &c.raw, Duration::from_secs(3)).await;
        // Let anything Portico forwarded land at the member before counting.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let member_saw = s.member.requests_seen() - before;
        let ok = match c.expect {
            Expect::Refused => {
                matches!(seen.statuses.as_slice(), [] | [400 | 413 | 414 | 431]) && member_saw == 0
            }
            Expect::BodyError => {
                matches!(seen.statuses.as_slice(), [] | [400 | 413 | 502 | 503]) && member_saw <= 1
            }
        };
        let line = format!(
            "{}: statuses {:?}, closed {}, member saw {member_saw}",
            c.name, seen.statuses, seen.closed
        );
        eprintln!("{line}");
        if !ok || !seen.closed {
            failures.push(line);
        }
    }
    assert!(
        failures.is_empty(),
        "requests that were not refused cleanly:\n{}",
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_lf_line_endings_are_read_as_crlf_and_forwarded_normalised() {
    // RFC 9112 §2.2 lets a recipient accept a bare LF as a line end; hyper does, and Portico
    // writes CRLF to the member, so the member reads the same single request Portico read.
    let s = setup().await;
    let seen = exchange(
        s.addr,
        &req("GET /echo HTTP/1.1\nHost: {HOST}\nConnection: close\n\n"),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(seen.statuses, vec![200], "{seen:?}");
    assert_eq!(s.member.requests_seen(), 1);
    // A bare LF cannot hide a header: Portico sees both headers in one request and refuses.
    let seen = exchange(
        s.addr,
        &req("GET /echo HTTP/1.1\r\nHost: {HOST}\nHost: evil.example\r\n\r\n"),
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(seen.statuses, vec![400], "{seen:?}");
    assert!(seen.closed);
    assert_eq!(s.member.requests_seen(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_client_bodies_do_not_take_the_member_out_of_service() {
    // A hostile client must not be able to mark members failed: the fault is its own body.
    let s = setup().await;
    let bad =
        req("POST /echo HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n\r\n");
    for _ in 0..6 {
        exchange(s.addr, &bad, Duration::from_secs(3)).await;
    }
    let ok = exchange(
        s.addr,
        &req("GET /echo HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(ok.statuses, vec![200], "{ok:?}");
}
