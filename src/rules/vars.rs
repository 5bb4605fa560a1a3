//! Server variables: names resolved at compile time, values borrowed from the request.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use http::header::{HeaderName, COOKIE};

use super::RequestView;

/// A server variable, resolved from its `{NAME}` spelling once at compile time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Var {
    HttpHost,
    Https,
    ServerPort,
    RequestUri,
    QueryString,
    RemoteAddr,
    RequestMethod,
    Url,
    ServerName,
    Header(HeaderName),
}

/// The spellings listed in error messages.
pub(crate) const VAR_NAMES: &str = "HTTP_HOST, HTTPS, SERVER_PORT, REQUEST_URI, QUERY_STRING, \
     REMOTE_ADDR, REQUEST_METHOD, URL, SERVER_NAME, HTTP_<HEADER> (any request header, `_` for \
     `-`)";

impl Var {
    /// Case-insensitive, as in IIS. `Err` carries the message for an unknown name.
    pub(crate) fn parse(name: &str) -> Result<Var, String> {
        let upper = name.to_ascii_uppercase();
        Ok(match upper.as_str() {
            "HTTP_HOST" => Var::HttpHost,
            "HTTPS" => Var::Https,
            "SERVER_PORT" => Var::ServerPort,
            "REQUEST_URI" => Var::RequestUri,
            "QUERY_STRING" => Var::QueryString,
            "REMOTE_ADDR" => Var::RemoteAddr,
            "REQUEST_METHOD" => Var::RequestMethod,
            "URL" => Var::Url,
            "SERVER_NAME" => Var::ServerName,
            _ => match upper.strip_prefix("HTTP_") {
                Some(h) if !h.is_empty() => {
                    let header = h.replace('_', "-").to_ascii_lowercase();
                    let name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                        format!("`{{{name}}}` does not name a valid HTTP header (`{header}`)")
                    })?;
                    Var::Header(name)
                }
                _ => {
                    return Err(format!(
                        "unknown server variable `{{{name}}}`; accepted: {VAR_NAMES}, \
                         back-references R:n and C:n, functions ToLower:, UrlEncode:, UrlDecode:"
                    ))
                }
            },
        })
    }
}

/// Variables that need formatting, rendered once per evaluation on the stack.
pub(crate) struct Rendered {
    pub server_port: StackStr,
    pub remote_addr: StackStr,
}

impl Rendered {
    pub(crate) fn new(req: &RequestView<'_>, port: bool, addr: bool) -> Rendered {
        let mut r = Rendered {
            server_port: StackStr::new(),
            remote_addr: StackStr::new(),
        };
        if port {
            // A u16 always fits; the Err arm cannot happen with a 48-byte buffer.
            let _ = write!(r.server_port, "{}", req.server_port);
        }
        if addr {
            let _ = write!(r.remote_addr, "{}", req.remote_addr);
        }
        r
    }
}

/// Reads a variable. `url`/`query` are the current (possibly rewritten) URL.
pub(crate) fn value<'x>(
    var: &Var,
    req: &'x RequestView<'x>,
    url: &'x str,
    query: Option<&'x str>,
    rendered: &'x Rendered,
) -> Cow<'x, str> {
    match var {
        Var::HttpHost => Cow::Borrowed(req.host),
        Var::Https => Cow::Borrowed(if req.https { "on" } else { "off" }),
        Var::ServerPort => Cow::Borrowed(rendered.server_port.as_str()),
        Var::RequestUri => match req.query {
            None => Cow::Borrowed(req.path),
            Some(q) => Cow::Owned(format!("{}?{}", req.path, q)),
        },
        Var::QueryString => Cow::Borrowed(query.unwrap_or("")),
        Var::RemoteAddr => Cow::Borrowed(rendered.remote_addr.as_str()),
        Var::RequestMethod => Cow::Borrowed(req.method),
        Var::Url => Cow::Borrowed(url),
        Var::ServerName => Cow::Borrowed(server_name(req.host)),
        Var::Header(name) => header(req, name),
    }
}

/// Appends a variable to `out`; avoids the temporary `value` would build for REQUEST_URI.
pub(crate) fn push<'x>(
    out: &mut String,
    var: &Var,
    req: &'x RequestView<'x>,
    url: &'x str,
    query: Option<&'x str>,
    rendered: &'x Rendered,
) {
    if let (Var::RequestUri, Some(q)) = (var, req.query) {
        out.push_str(req.path);
        out.push('?');
        out.push_str(q);
    } else {
        out.push_str(&value(var, req, url, query, rendered));
    }
}

/// Host without its port; an IPv6 literal keeps its brackets.
fn server_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

fn header<'x>(req: &'x RequestView<'x>, name: &HeaderName) -> Cow<'x, str> {
    let mut values = req.headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Cow::Borrowed("");
    };
    let mut out = String::from_utf8_lossy(first.as_bytes());
    // h2 splits cookies into several fields; they rejoin with "; " (RFC 9113 8.2.3).
    let sep = if name == COOKIE { "; " } else { ", " };
    for v in values {
        let s = out.to_mut();
        s.push_str(sep);
        s.push_str(&String::from_utf8_lossy(v.as_bytes()));
    }
    out
}

/// A small formatted string on the stack (an IPv6 address is at most 45 bytes).
pub(crate) struct StackStr {
    buf: [u8; 48],
    len: usize,
}

impl StackStr {
    fn new() -> StackStr {
        StackStr {
            buf: [0; 48],
            len: 0,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so the bytes are valid UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
