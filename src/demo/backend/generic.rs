//! Request routing and the generic test endpoints every role serves.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::watch;

use super::body::Payload;
use super::codec::{base64_decode, base64_encode, json_str};
use super::{exchange, roles, ws, ConnInfo, Role, Shared};

/// Longest wait `/long-poll` and `/slow-body` accept (an hour: beyond any proxy timeout tested).
const MAX_WAIT_SECS: u64 = 3600;

/// Builds a response with a content type and a complete body.
pub(super) fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Payload> {
    let mut r = Response::new(Payload::text(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub(super) fn not_found() -> Response<Payload> {
    reply(StatusCode::NOT_FOUND, "text/plain", "not found\n")
}

fn bad_request(why: &'static str) -> Response<Payload> {
    reply(StatusCode::BAD_REQUEST, "text/plain", why)
}

/// The Host the member received: the `Host` header, else the URI authority (HTTP/2).
pub(super) fn host_of<B>(req: &Request<B>) -> &str {
    req.headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// True when `path` is `prefix` or lies below it (`prefix/...`), ignoring ASCII case like IIS.
pub(super) fn under(path: &str, prefix: &str) -> bool {
    path.len() >= prefix.len()
        && path.is_char_boundary(prefix.len())
        && path[..prefix.len()].eq_ignore_ascii_case(prefix)
        && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
}

/// First value of query parameter `name` (undecoded).
fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `secs` query parameter, bounded by [`MAX_WAIT_SECS`].
fn secs_param(query: Option<&str>) -> Option<Duration> {
    match query_param(query, "secs").map(str::parse::<u64>) {
        Some(Ok(n)) if n <= MAX_WAIT_SECS => Some(Duration::from_secs(n)),
        _ => None,
    }
}

fn bad_secs() -> Response<Payload> {
    bad_request("secs must be an integer from 0 to 3600\n")
}

pub(super) async fn route(
    req: Request<Incoming>,
    shared: &Shared,
    conn: &ConnInfo,
    stop: watch::Receiver<()>,
) -> Response<Payload> {
    let path = req.uri().path();
    let query = req.uri().query();
    if path.starts_with("/echo") {
        return echo(req, shared, conn).await;
    }
    if path == "/download" {
        return match query_param(query, "bytes").map(str::parse::<u64>) {
            Some(Ok(n)) => {
                let mut r = Response::new(Payload::Download { remaining: n });
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                r.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(n));
                r
            }
            _ => bad_request("bytes must be a non-negative integer\n"),
        };
    }
    if path == "/upload" {
        if req.method() != Method::POST && req.method() != Method::PUT {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "POST or PUT\n",
            );
        }
        let n = drain(req.into_body()).await;
        return reply(
            StatusCode::OK,
            "application/json",
            format!("{{\"received\":{n}}}"),
        );
    }
    if path == "/long-poll" {
        return match secs_param(query) {
            Some(d) => {
                tokio::time::sleep(d).await;
                reply(StatusCode::OK, "text/plain", "done")
            }
            None => bad_secs(),
        };
    }
    if path == "/stall" {
        // Never answers; the connection task is dropped when the client or the member goes.
        std::future::pending::<()>().await;
    }
    if path == "/slow-body" {
        return match secs_param(query) {
            Some(d) => {
                let mut r = Response::new(Payload::slow(
                    Bytes::from_static(b"first chunk\n"),
                    d,
                    Bytes::from_static(b"last chunk\n"),
                ));
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                r
            }
            None => bad_secs(),
        };
    }
    if let Some(code) = path.strip_prefix("/status/") {
        return match code.parse::<u16>().ok().filter(|c| (200..=599).contains(c)) {
            Some(c) => match StatusCode::from_u16(c) {
                Ok(s) => reply(s, "text/plain", format!("status {c}\n")),
                Err(_) => bad_request("bad status\n"),
            },
            None => bad_request("status must be 200..=599\n"),
        };
    }
    if path == "/ws" {
        return ws::upgrade(req, stop);
    }
    if path == "/auth/ntlm" {
        return ntlm(&req, conn);
    }
    match shared.role {
        Role::FrontEnd => roles::front_end(&req, shared, conn.tls),
        Role::OfficeOnline => roles::office_online(&req),
        Role::Echo => not_found(),
        Role::Exchange => exchange::serve(req, shared, conn).await,
    }
}

/// Reads and counts a request body without keeping it.
pub(super) async fn drain(mut body: Incoming) -> u64 {
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    n += d.len() as u64;
                }
            }
            Err(_) => break,
        }
    }
    n
}

/// `/echo...`: what the member saw, as JSON.
async fn echo(req: Request<Incoming>, shared: &Shared, conn: &ConnInfo) -> Response<Payload> {
    let (parts, body) = req.into_parts();
    let mut out = String::with_capacity(512);
    out.push_str("{\"backend\":");
    json_str(&mut out, &shared.name);
    out.push_str(",\"method\":");
    json_str(&mut out, parts.method.as_str());
    out.push_str(",\"uri\":");
    json_str(&mut out, &parts.uri.to_string());
    out.push_str(",\"version\":");
    json_str(&mut out, &format!("{:?}", parts.version));
    out.push_str(",\"host\":");
    let host = parts
        .headers
        .get(HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .or_else(|| parts.uri.authority().map(|a| a.to_string()));
    match host {
        Some(h) => json_str(&mut out, &h),
        None => out.push_str("null"),
    }
    out.push_str(&format!(
        ",\"tls\":{},\"local_port\":{},\"connection\":{},\"peer\":",
        conn.tls,
        conn.local.port(),
        conn.id
    ));
    json_str(&mut out, &conn.peer.to_string());
    out.push_str(",\"local_addr\":");
    json_str(&mut out, &conn.local.ip().to_string());
    out.push_str(",\"headers\":[");
    for (i, (name, value)) in parts.headers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        json_str(&mut out, name.as_str());
        out.push(',');
        json_str(&mut out, &String::from_utf8_lossy(value.as_bytes()));
        out.push(']');
    }
    let n = drain(body).await;
    out.push_str(&format!("],\"body_bytes\":{n}}}"));
    reply(StatusCode::OK, "application/json", out)
}

/// NTLM progress of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NtlmState {
    Idle,
    Challenged,
    Authenticated(String),
}

fn ntlm_401(challenge: Option<String>) -> Response<Payload> {
    let mut r = reply(
        StatusCode::UNAUTHORIZED,
        "text/html",
        "<html><body><h1>401 - Unauthorized</h1></body></html>",
    );
    let h = r.headers_mut();
    match challenge {
        Some(c) => {
            if let Ok(v) = HeaderValue::from_str(&c) {
                h.append(WWW_AUTHENTICATE, v);
            }
        }
        None => {
            h.append(WWW_AUTHENTICATE, HeaderValue::from_static("NTLM"));
            h.append(WWW_AUTHENTICATE, HeaderValue::from_static("Negotiate"));
        }
    }
    r
}

/// `/auth/ntlm`: a connection-bound NTLM test double.
///
/// Token format (base64 after `NTLM ` or `Negotiate `, not real NTLMSSP):
/// - leg 1, client → `TYPE1`
/// - leg 2, member → `CHALLENGE:<connection id>` (401 `WWW-Authenticate: NTLM <token>`)
/// - leg 3, client → `TYPE3:<user>`: 200 `authenticated as <user> on connection <id>` only on
///   the connection that received the challenge, else 401 with a fresh `NTLM`/`Negotiate`.
///
/// Once authenticated, later requests on the same connection without `Authorization` succeed
/// too (as IIS does with keep-alive NTLM), so a proxy that re-balances them is caught.
fn ntlm(req: &Request<Incoming>, conn: &ConnInfo) -> Response<Payload> {
    let token = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, tok) = v.split_once(' ')?;
            (scheme.eq_ignore_ascii_case("NTLM") || scheme.eq_ignore_ascii_case("Negotiate"))
                .then(|| base64_decode(tok))
                .flatten()
        });
    let mut state = match conn.ntlm.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    let authenticated = |user: &str| {
        reply(
            StatusCode::OK,
            "text/plain",
            format!("authenticated as {user} on connection {}", conn.id),
        )
    };
    let Some(token) = token else {
        if let NtlmState::Authenticated(user) = &*state {
            return authenticated(user);
        }
        return ntlm_401(None);
    };
    if token == b"TYPE1" {
        *state = NtlmState::Challenged;
        let challenge = format!("CHALLENGE:{}", conn.id);
        return ntlm_401(Some(format!(
            "NTLM {}",
            base64_encode(challenge.as_bytes())
        )));
    }
    if let Some(user) = token.strip_prefix(b"TYPE3:") {
        if *state == NtlmState::Challenged {
            let user = String::from_utf8_lossy(user).into_owned();
            let r = authenticated(&user);
            *state = NtlmState::Authenticated(user);
            return r;
        }
    }
    *state = NtlmState::Idle;
    ntlm_401(None)
}
