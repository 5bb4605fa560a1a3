//! Request checks against smuggling and ambiguity, run before any rule or member sees a
//! request. Only what the parsers let through is checked here; `tests/smuggling.rs` sends
//! the whole corpus to the binary and shows which layer refuses each case.
//!
//! What Portico's HTTP/1 parser ([`crate::http1::head`], with httparse) already refuses
//! with 400 and a close, before the request reaches this guard: whitespace before the
//! colon, obs-fold, a bare CR (as a line end too, at once rather than at the timeout), NUL
//! and control characters in names or values, lines without a colon, CONNECT, and a request
//! target that is not a path, an absolute URI or an OPTIONS `*`, holds a fragment, or that
//! `http::Uri` cannot parse. A target over 65,534 bytes gets 414; a head over the limit, or
//! with more than 100 field lines, gets 431. Names holding `_` are dropped, as nginx does.
//! Bare LF line ends are accepted (RFC 9112 §2.2 allows it; what is forwarded is
//! re-serialised with CRLF). The parser frames the body with [`crate::http1::framing`],
//! which refuses Content-Length together with Transfer-Encoding (a member behind another
//! proxy might read the length where Portico reads chunked), a Transfer-Encoding other than
//! exactly one `chunked` (`chunked, identity`, `xchunked`, `gzip, chunked`),
//! Transfer-Encoding on HTTP/1.0, and several or malformed Content-Length fields (`+0`,
//! `0x0`, `0, 48`). Malformed chunk sizes, extensions and framing come later, as a body
//! error ([`crate::http1::chunked`]).
//!
//! What gets through the parsers and is refused here: several Host headers or a Host list,
//! a Host that is not an authority, an absolute-form URI (or h2 `:authority`) naming another
//! host than Host, no Host on HTTP/1.1 (RFC 9112 §3.2), a `Connection` header naming Host,
//! Content-Length or Transfer-Encoding (hop-by-hop removal would strip them before the
//! member sees the request), and a backslash in the path (IIS reads it as `/`, past a path
//! rule). h2 requests, which hyper parses, get the framing checks here: any
//! Transfer-Encoding, and Content-Length as [`crate::http1::framing`] reads it.
//!
//! The framing rules themselves (Content-Length and Transfer-Encoding) are
//! [`crate::http1::framing`]'s, the one place that decides how an HTTP/1 body is delimited.

use http::header::{self, HeaderMap};
use http::{Request, Version};

use crate::http1::framing::{self, FramingError};
use crate::http1::Present;

/// Checks one request; `Err` says why it must be answered 400 (and, on HTTP/1, the connection
/// closed). `is_h1`: the request came over HTTP/1.0 or 1.1.
/// `present`: the names `req` carries ([`Present::of`] its headers).
pub(crate) fn check_request<B>(
    req: &Request<B>,
    is_h1: bool,
    present: Present,
) -> Result<(), &'static str> {
    let headers = req.headers();
    check_path(req.uri().path())?;
    check_framing(headers, req.version(), is_h1)?;
    check_host(req, is_h1)?;
    if present.any(Present::CONNECTION) {
        check_connection(headers)?;
    }
    check_values(headers)
}

/// IIS reads a backslash in a path as `/` (HTTP.sys canonicalisation), while Portico's rules
/// match the path as sent: `/ecp\` would pass a rule that keeps `/ecp/` internal and reach
/// the Exchange admin center. Refused in the path only: a query may carry `DOMAIN\user`.
fn check_path(path: &str) -> Result<(), &'static str> {
    if path.contains('\\') {
        return Err("The request path holds a backslash.");
    }
    Ok(())
}

/// Body framing is [`crate::http1::framing`]'s to judge; HTTP/2 frames bodies itself, so
/// there a Transfer-Encoding is refused outright and only Content-Length is checked.
fn check_framing(headers: &HeaderMap, version: Version, is_h1: bool) -> Result<(), &'static str> {
    if !is_h1 && headers.contains_key(header::TRANSFER_ENCODING) {
        return Err("Transfer-Encoding is not allowed in HTTP/2.");
    }
    let fields = headers
        .iter()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
    framing::request(version == Version::HTTP_10, fields)
        .map(|_| ())
        .map_err(FramingError::message)
}

fn check_host<B>(req: &Request<B>, is_h1: bool) -> Result<(), &'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err("The request has more than one Host header.");
    }
    let uri_authority = req.uri().authority();
    let Some(host) = host else {
        if is_h1 && req.version() == Version::HTTP_11 {
            return Err("HTTP/1.1 requests must carry a Host header.");
        }
        return Ok(());
    };
    // The common case, a plain name and port with no target authority to compare, is
    // checked without parsing an `Authority`, which copies the value into a new buffer.
    if uri_authority.is_none() && is_plain_host(host.as_bytes()) {
        return Ok(());
    }
    let host = parse_host(host.as_bytes())
        .ok_or("The Host header is not a valid host name (and port).")?;
    if let Some(target) = uri_authority {
        let default_port = match req.uri().scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => 443,
            _ => 80,
        };
        let same_host = target.host().eq_ignore_ascii_case(host.host());
        let same_port =
            target.port_u16().unwrap_or(default_port) == host.port_u16().unwrap_or(default_port);
        if !same_host || !same_port {
            return Err("The host in the request target differs from the Host header.");
        }
    }
    Ok(())
}

fn parse_host(value: &[u8]) -> Option<http::uri::Authority> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
        .filter(|a| !a.host().is_empty() && !a.as_str().contains('@'))
}

/// `name` or `name:port`, the name of letters, digits, `.` and `-` (at most 255), the port
/// of 1 to 5 digits: a subset of what [`parse_host`] accepts, told apart without allocating.
fn is_plain_host(value: &[u8]) -> bool {
    let (name, port) = match value.iter().rposition(|&b| b == b':') {
        Some(i) => (&value[..i], Some(&value[i + 1..])),
        None => (value, None),
    };
    !name.is_empty()
        && name.len() <= 255
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'-')
        && port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.iter().all(u8::is_ascii_digit))
}

fn check_connection(headers: &HeaderMap) -> Result<(), &'static str> {
    for v in headers.get_all(header::CONNECTION) {
        for token in v.as_bytes().split(|b| *b == b',') {
            let t = token.trim_ascii();
            if t.eq_ignore_ascii_case(b"host")
                || t.eq_ignore_ascii_case(b"content-length")
                || t.eq_ignore_ascii_case(b"transfer-encoding")
            {
                return Err(
                    "The Connection header names Host, Content-Length or Transfer-Encoding.",
                );
            }
        }
    }
    Ok(())
}

/// The parsers refuse these already (httparse in `http1::head` for HTTP/1, `HeaderValue` in
/// hyper's h2); checked again because a forwarded CR, LF or NUL is how a request splits in
/// two at the member. By `memchr3`, many bytes at a time: a browser's request carries a
/// kilobyte or more of values (cookies), which a byte-by-byte loop walked one at a time.
fn check_values(headers: &HeaderMap) -> Result<(), &'static str> {
    if headers.values().any(|v| splits(v.as_bytes())) {
        return Err("A header value contains CR, LF or NUL.");
    }
    Ok(())
}

/// Whether `value` holds a byte that ends a line or a string at the member.
fn splits(value: &[u8]) -> bool {
    memchr::memchr3(b'\r', b'\n', 0, value).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cr_lf_or_nul_anywhere_in_a_value_is_found_and_nothing_else_is() {
        // Long enough for the vector loops and their tails, at every position.
        for len in [1usize, 15, 16, 31, 32, 33, 64, 100, 4096] {
            let clean: Vec<u8> = (0..len).map(|i| b' ' + (i % 94) as u8).collect();
            assert!(!splits(&clean), "clean value of {len} bytes");
            for at in 0..len {
                for bad in [b'\r', b'\n', 0] {
                    let mut v = clean.clone();
                    v[at] = bad;
                    assert!(splits(&v), "{bad:#x} at {at} of {len}");
                }
            }
        }
        // Tab and obs-text are allowed in values.
        assert!(!splits(b"a\tb\x80\xff"));
    }

    fn check(req: &Request<()>, is_h1: bool) -> Result<(), &'static str> {
        check_request(req, is_h1, Present::of(req.headers()))
    }

    fn request(version: Version, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().version(version).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    /// Name, version, request target, headers.
    type Case<'a> = (&'a str, Version, &'a str, &'a [(&'a str, &'a str)]);

    const H11: Version = Version::HTTP_11;
    const H2: Version = Version::HTTP_2;
    const HOST: (&str, &str) = ("host", "app.contoso.com");

    #[test]
    fn a_plain_host_is_one_the_full_parse_accepts_too() {
        let plain = [
            "app.contoso.com",
            "app.contoso.com:8443",
            "APP.Contoso.COM:443",
            "localhost",
            "10.0.0.1",
            "10.0.0.1:80",
            "a",
            "-",
            "xn--bcher-kva.example:65535",
            "a:99999",
        ];
        for h in plain {
            assert!(is_plain_host(h.as_bytes()), "{h}");
            assert!(
                parse_host(h.as_bytes()).is_some(),
                "{h} is plain but does not parse"
            );
        }
        let not_plain = [
            "",
            ":80",
            "a:",
            "a:123456",
            "[2001:db8::1]:443",
            "user@host",
            "a b",
            "a_b.contoso.com",
            "host:80:80",
            "a%41",
        ];
        for h in not_plain {
            assert!(!is_plain_host(h.as_bytes()), "{h}");
        }
        let long = "a".repeat(256);
        assert!(!is_plain_host(long.as_bytes()));
    }

    #[test]
    fn sound_requests_pass() {
        let cases: &[Case] = &[
            ("plain GET", H11, "/", &[HOST]),
            (
                "Host with port",
                H11,
                "/",
                &[("host", "app.contoso.com:8443")],
            ),
            ("IPv6 Host", H11, "/", &[("host", "[2001:db8::1]:443")]),
            (
                "Content-Length",
                H11,
                "/",
                &[HOST, ("content-length", "42")],
            ),
            (
                "chunked",
                H11,
                "/",
                &[HOST, ("transfer-encoding", "chunked")],
            ),
            (
                "Chunked, any case",
                H11,
                "/",
                &[HOST, ("transfer-encoding", "Chunked")],
            ),
            (
                "absolute-form, same host",
                H11,
                "http://app.contoso.com/x",
                &[HOST],
            ),
            (
                "backslash in the query",
                H11,
                "/Microsoft-Server-ActiveSync?User=CONTOSO\\jdoe",
                &[HOST],
            ),
            (
                "absolute-form, host case differs",
                H11,
                "http://APP.contoso.com/x",
                &[HOST],
            ),
            (
                "absolute-form, default port written",
                H11,
                "http://app.contoso.com:80/",
                &[HOST],
            ),
            (
                "https absolute-form, port 443",
                H11,
                "https://app.contoso.com/",
                &[("host", "app.contoso.com:443")],
            ),
            ("HTTP/1.0 without Host", Version::HTTP_10, "/", &[]),
            (
                "h2 with :authority only",
                H2,
                "https://app.contoso.com/",
                &[],
            ),
            (
                "h2 with matching host",
                H2,
                "https://app.contoso.com/",
                &[HOST],
            ),
            (
                "Connection: close, Upgrade",
                H11,
                "/",
                &[HOST, ("connection", "close, Upgrade")],
            ),
            (
                "obs-text in a value",
                H11,
                "/",
                &[HOST, ("x-name", "caf\u{e9}")],
            ),
        ];
        for (name, version, uri, headers) in cases {
            let is_h1 = *version < H2;
            assert_eq!(
                check(&request(*version, uri, headers), is_h1),
                Ok(()),
                "{name}"
            );
        }
    }

    #[test]
    fn ambiguous_requests_are_refused() {
        let cases: &[Case] = &[
            (
                "CL and TE",
                H11,
                "/",
                &[
                    HOST,
                    ("content-length", "4"),
                    ("transfer-encoding", "chunked"),
                ],
            ),
            (
                "two CL, same value",
                H11,
                "/",
                &[HOST, ("content-length", "4"), ("content-length", "4")],
            ),
            ("CL list", H11, "/", &[HOST, ("content-length", "4, 4")]),
            ("backslash in the path", H11, "/ecp\\..\\owa/", &[HOST]),
            ("CL with sign", H11, "/", &[HOST, ("content-length", "+4")]),
            ("CL empty", H11, "/", &[HOST, ("content-length", "")]),
            (
                "CL too long",
                H11,
                "/",
                &[HOST, ("content-length", "99999999999999999999")],
            ),
            (
                "TE gzip, chunked",
                H11,
                "/",
                &[HOST, ("transfer-encoding", "gzip, chunked")],
            ),
            (
                "TE chunked, chunked",
                H11,
                "/",
                &[HOST, ("transfer-encoding", "chunked, chunked")],
            ),
            (
                "TE two lines",
                H11,
                "/",
                &[
                    HOST,
                    ("transfer-encoding", "gzip"),
                    ("transfer-encoding", "chunked"),
                ],
            ),
            (
                "TE identity",
                H11,
                "/",
                &[HOST, ("transfer-encoding", "identity")],
            ),
            (
                "TE on h2",
                H2,
                "https://app.contoso.com/",
                &[("transfer-encoding", "chunked")],
            ),
            ("two Host", H11, "/", &[HOST, ("host", "evil.example")]),
            ("two identical Host", H11, "/", &[HOST, HOST]),
            (
                "Host list",
                H11,
                "/",
                &[("host", "app.contoso.com, evil.example")],
            ),
            (
                "Host with userinfo",
                H11,
                "/",
                &[("host", "user@app.contoso.com")],
            ),
            ("Host with path", H11, "/", &[("host", "app.contoso.com/x")]),
            ("empty Host", H11, "/", &[("host", "")]),
            ("HTTP/1.1 without Host", H11, "/", &[]),
            (
                "absolute-form, other host",
                H11,
                "http://evil.example/",
                &[HOST],
            ),
            (
                "absolute-form, other port",
                H11,
                "http://app.contoso.com:8080/",
                &[HOST],
            ),
            (
                "h2 :authority differs from host",
                H2,
                "https://evil.example/",
                &[HOST],
            ),
            (
                "Connection: content-length",
                H11,
                "/",
                &[HOST, ("connection", "Content-Length")],
            ),
            (
                "Connection: close, transfer-encoding",
                H11,
                "/",
                &[HOST, ("connection", "close, Transfer-Encoding")],
            ),
            (
                "Connection: host",
                H11,
                "/",
                &[HOST, ("connection", "host")],
            ),
        ];
        for (name, version, uri, headers) in cases {
            let is_h1 = *version < H2;
            assert!(
                check(&request(*version, uri, headers), is_h1).is_err(),
                "{name} passed"
            );
        }
    }
}
