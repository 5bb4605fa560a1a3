//! What an Exchange Server (2016/2019/SE) Client Access member answers, closely enough to
//! prove a proxy in front of it: one health page per virtual directory (switchable at run
//! time, as Managed Availability does), OWA and ECP pages, Windows-auth challenges on EWS and
//! Autodiscover, and the streaming shapes of Outlook Anywhere, MAPI over HTTP and ActiveSync
//! Direct Push. Response headers are spelled as Exchange spells them (`X-FEServer`,
//! `request-id`), on the wire (see [`CaseFix`]).

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::body::Payload;
use super::generic::{reply, under, NtlmState};
use super::{ConnInfo, Shared};

/// The build the member reports (`X-OWA-Version`): Exchange Server 2019 CU14.
pub const EXCHANGE_BUILD: &str = "15.2.1544.4";

/// The virtual directories with a `/<vdir>/healthcheck.htm`, as Exchange names them: the
/// same list the profiles generate health checks for.
pub const WORKLOADS: [&str; 8] = crate::profiles::EXCHANGE_VDIRS;

/// Declared length of an Outlook Anywhere channel body (both directions).
pub const RPC_DECLARED_BYTES: u64 = 1 << 30;
/// Time between two RPC_OUT_DATA pieces.
const RPC_OUT_PIECE_EVERY: Duration = Duration::from_millis(500);
/// Longest ActiveSync heartbeat the member holds (Exchange's maximum is 59 minutes).
const MAX_HEARTBEAT_SECS: u64 = 3540;

/// The run-time state of an Exchange member: which workloads are down, and what the
/// streaming endpoints saw (tests read these).
#[derive(Default)]
pub(super) struct ExchangeState {
    down: Mutex<HashSet<String>>,
    rpc_in: Mutex<Vec<RpcInProgress>>,
    /// When each MAPI response's `DONE` was handed to the connection.
    mapi_done: std::sync::Arc<Mutex<Vec<Instant>>>,
    request_ids: AtomicU64,
}

/// How far one RPC_IN_DATA request body has come.
#[derive(Debug, Clone)]
pub struct RpcInProgress {
    /// When the request head arrived.
    pub started: Instant,
    /// Body bytes received so far.
    pub received: u64,
    /// When the first 256 KiB had arrived.
    pub first_256k_at: Option<Instant>,
    /// When the body ended (the client finished or went away).
    pub ended_at: Option<Instant>,
}

impl ExchangeState {
    pub(super) fn set_up(&self, workload: &str, up: bool) {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        if up {
            down.remove(&workload.to_ascii_lowercase());
        } else {
            down.insert(workload.to_ascii_lowercase());
        }
    }

    fn is_up(&self, workload: &str) -> bool {
        !self
            .down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&workload.to_ascii_lowercase())
    }

    pub(super) fn rpc_in(&self) -> Vec<RpcInProgress> {
        self.rpc_in
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn mapi_done(&self) -> Vec<Instant> {
        self.mapi_done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The workload a path belongs to (its first segment, matched without case like IIS).
fn workload_of(path: &str) -> Option<&'static str> {
    WORKLOADS
        .iter()
        .copied()
        .find(|w| under(path, &format!("/{w}")))
}

fn html(status: StatusCode, body: String) -> Response<Payload> {
    reply(status, "text/html; charset=utf-8", body)
}

/// A 401 as IIS sends it with Windows authentication on (Negotiate first, then NTLM).
fn windows_challenge(basic_realm: Option<&str>) -> Response<Payload> {
    let mut r = html(
        StatusCode::UNAUTHORIZED,
        "<html><body><h1>401 - Unauthorized: Access is denied due to invalid credentials.</h1></body></html>".into(),
    );
    let h = r.headers_mut();
    h.append(WWW_AUTHENTICATE, HeaderValue::from_static("Negotiate"));
    h.append(WWW_AUTHENTICATE, HeaderValue::from_static("NTLM"));
    if let Some(realm) =
        basic_realm.and_then(|r| HeaderValue::from_str(&format!("Basic realm=\"{r}\"")).ok())
    {
        h.append(WWW_AUTHENTICATE, realm);
    }
    r
}

fn authenticated<B>(req: &Request<B>, conn: &ConnInfo) -> bool {
    req.headers().contains_key(AUTHORIZATION)
        || matches!(
            *conn.ntlm.lock().unwrap_or_else(|p| p.into_inner()),
            NtlmState::Authenticated(_)
        )
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Serves one request as an Exchange Client Access member.
pub(super) async fn serve(
    req: Request<Incoming>,
    shared: &Shared,
    conn: &ConnInfo,
) -> Response<Payload> {
    let mut resp = route(req, shared, conn).await;
    let n = shared.exchange.request_ids.fetch_add(1, Ordering::Relaxed) + 1;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("6d0c7a52-1f3e-4c59-8b2a-{n:012x}")) {
        h.insert("request-id", v);
    }
    h.insert("x-feserver", shared.name_header.clone());
    h.insert("x-beserver", shared.name_header.clone());
    h.insert("x-powered-by", HeaderValue::from_static("ASP.NET"));
    resp
}

async fn route(req: Request<Incoming>, shared: &Shared, conn: &ConnInfo) -> Response<Payload> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    if path.eq_ignore_ascii_case("/portico-demo/workload") {
        return control(query.as_deref(), shared);
    }
    let Some(workload) = workload_of(&path) else {
        return reply(
            StatusCode::NOT_FOUND,
            "text/html",
            "<html><body><h2>404 - File or directory not found.</h2></body></html>",
        );
    };
    let state = &shared.exchange;
    let health_page = format!("/{workload}/healthcheck.htm");
    if path.eq_ignore_ascii_case(&health_page) {
        return if state.is_up(workload) {
            html(StatusCode::OK, format!("200 OK<br/>{}", shared.name))
        } else {
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                "<html><body><h2>503 Service Unavailable</h2></body></html>".into(),
            )
        };
    }
    if !state.is_up(workload) {
        // The application pool of a workload Managed Availability took down.
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            "<html><body><h2>503 Service Unavailable</h2></body></html>".into(),
        );
    }
    match workload {
        "owa" | "ecp" => {
            let title = if workload == "owa" { "Outlook" } else { "Exchange admin center" };
            let mut r = html(
                StatusCode::OK,
                format!("<!DOCTYPE html><html><head><title>{title}</title></head><body><form method=\"post\" action=\"/{workload}/auth.owa\"><label>Domain\\user name <input name=\"username\"></label><label>Password <input name=\"password\" type=\"password\"></label><button type=\"submit\">sign in</button></form></body></html>"),
            );
            r.headers_mut().insert("x-owa-version", HeaderValue::from_static(EXCHANGE_BUILD));
            r
        }
        "Microsoft-Server-ActiveSync" => activesync(req, conn).await,
        _ if !authenticated(&req, conn) => windows_challenge((workload == "autodiscover").then_some("mail.contoso.com")),
        "rpc" if req.method().as_str() == "RPC_IN_DATA" => rpc_in(req, state).await,
        "rpc" if req.method().as_str() == "RPC_OUT_DATA" => rpc_out(req).await,
        "mapi" if req.method() == Method::POST => mapi(req, query.as_deref(), state),
        "autodiscover" => reply(
            StatusCode::OK,
            "text/xml; charset=utf-8",
            format!("<?xml version=\"1.0\" encoding=\"utf-8\"?><Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\"><Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\"><Account><Protocol><Type>EXHTTP</Type><Server>mail.contoso.com</Server></Protocol></Account></Response><!-- {} --></Autodiscover>", shared.name),
        ),
        "ews" => reply(
            StatusCode::OK,
            "text/xml; charset=utf-8",
            format!("<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Header><h:ServerVersionInfo xmlns:h=\"http://schemas.microsoft.com/exchange/services/2006/types\" Version=\"V2018_01_08\" /></s:Header><s:Body /><!-- {} --></s:Envelope>", shared.name),
        ),
        _ => reply(StatusCode::OK, "text/plain", format!("{workload} on {}\n", shared.name)),
    }
}

/// `/portico-demo/workload?name=ews&up=0`: what Managed Availability does to a protocol.
fn control(query: Option<&str>, shared: &Shared) -> Response<Payload> {
    let name = query_param(query, "name")
        .and_then(|n| WORKLOADS.iter().find(|w| w.eq_ignore_ascii_case(n)));
    let up = match query_param(query, "up") {
        Some("1") | Some("true") => Some(true),
        Some("0") | Some("false") => Some(false),
        _ => None,
    };
    match (name, up) {
        (Some(n), Some(up)) => {
            shared.exchange.set_up(n, up);
            reply(
                StatusCode::OK,
                "text/plain",
                format!("{n} is {}\n", if up { "up" } else { "down" }),
            )
        }
        _ => reply(
            StatusCode::BAD_REQUEST,
            "text/plain",
            format!("use ?name=<one of {}>&up=0|1\n", WORKLOADS.join(", ")),
        ),
    }
}

/// RPC_IN_DATA: the client declares ~1 GB and sends small pieces for hours; the member reads
/// them as they come and answers only when the body ends.
async fn rpc_in(req: Request<Incoming>, state: &ExchangeState) -> Response<Payload> {
    let idx = {
        let mut all = state.rpc_in.lock().unwrap_or_else(|p| p.into_inner());
        all.push(RpcInProgress {
            started: Instant::now(),
            received: 0,
            first_256k_at: None,
            ended_at: None,
        });
        all.len() - 1
    };
    let mut body = req.into_body();
    let mut total = 0u64;
    loop {
        let frame = body.frame().await;
        let n = match &frame {
            Some(Ok(f)) => f.data_ref().map_or(0, |d| d.len() as u64),
            _ => 0,
        };
        total += n;
        let mut all = state.rpc_in.lock().unwrap_or_else(|p| p.into_inner());
        let p = &mut all[idx];
        p.received = total;
        if total >= 256 * 1024 && p.first_256k_at.is_none() {
            p.first_256k_at = Some(Instant::now());
        }
        if !matches!(frame, Some(Ok(_))) {
            p.ended_at = Some(Instant::now());
            break;
        }
    }
    let mut r = reply(
        StatusCode::OK,
        "application/rpc",
        format!("RPC_IN_DATA received {total} bytes\n"),
    );
    r.headers_mut().insert(
        CONTENT_LENGTH,
        HeaderValue::from(format!("RPC_IN_DATA received {total} bytes\n").len()),
    );
    r
}

/// RPC_OUT_DATA: a small request body, then a response declaring ~1 GB whose pieces come
/// one at a time for as long as the channel lives.
async fn rpc_out(req: Request<Incoming>) -> Response<Payload> {
    let _ = super::generic::drain(req.into_body()).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let mut sent = 0u64;
        let mut n = 0u64;
        while sent < RPC_DECLARED_BYTES {
            n += 1;
            let piece = Bytes::from(format!("RPC_OUT_DATA piece {n:08}\n"));
            sent += piece.len() as u64;
            if tx.send(piece).await.is_err() {
                return;
            }
            tokio::time::sleep(RPC_OUT_PIECE_EVERY).await;
        }
    });
    let mut r = Response::new(Payload::channel(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/rpc"));
    r.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(RPC_DECLARED_BYTES));
    r
}

/// MAPI over HTTP: 200 at once, a chunked body of `PROCESSING`, then `PENDING` every
/// pending period, then `DONE` and the result once the work (`work_ms`, default 2 s) is done.
fn mapi(req: Request<Incoming>, query: Option<&str>, state: &ExchangeState) -> Response<Payload> {
    let work = Duration::from_millis(
        query_param(query, "work_ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000)
            .min(600_000),
    );
    let pending = Duration::from_millis(
        query_param(query, "pending_ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(500)
            .clamp(50, 60_000),
    );
    let request_type = req.headers().get("x-requesttype").cloned();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let started = Instant::now();
    let log = std::sync::Arc::clone(&state.mapi_done);
    tokio::spawn(async move {
        let _body = req.into_body();
        if tx
            .send(Bytes::from_static(b"PROCESSING\r\n"))
            .await
            .is_err()
        {
            return;
        }
        while started.elapsed() + pending < work {
            tokio::time::sleep(pending).await;
            if tx.send(Bytes::from_static(b"PENDING\r\n")).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(work.saturating_sub(started.elapsed())).await;
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Instant::now());
        let done = format!(
            "DONE\r\nX-ElapsedTime: {}\r\nX-StartTime: 0\r\n\r\nresult\r\n",
            started.elapsed().as_millis()
        );
        let _ = tx.send(Bytes::from(done)).await;
    });
    let mut r = Response::new(Payload::channel(rx));
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/mapi-http"),
    );
    h.insert("x-responsecode", HeaderValue::from_static("0"));
    if let Ok(v) = HeaderValue::from_str(&pending.as_millis().to_string()) {
        h.insert("x-pendingperiod", v);
    }
    if let Some(t) = request_type {
        h.insert("x-requesttype", t);
    }
    r
}

/// ActiveSync: `OPTIONS` lists the protocol versions; anything else wants Basic (as Exchange
/// publishes it to devices); `Cmd=Ping` is held for its heartbeat (the
/// `<HeartbeatInterval>` of the body, in seconds; 60 when absent) and answers Status 1.
async fn activesync(req: Request<Incoming>, conn: &ConnInfo) -> Response<Payload> {
    if req.method() == Method::OPTIONS {
        let mut r = reply(StatusCode::OK, "text/plain", "");
        let h = r.headers_mut();
        h.insert("ms-server-activesync", HeaderValue::from_static("15.20"));
        h.insert(
            "ms-asprotocolversions",
            HeaderValue::from_static("2.0,2.1,2.5,12.0,12.1,14.0,14.1,16.0,16.1"),
        );
        h.insert("ms-asprotocolcommands", HeaderValue::from_static("Sync,SendMail,SmartForward,SmartReply,GetAttachment,FolderSync,FolderCreate,FolderDelete,FolderUpdate,MoveItems,GetItemEstimate,MeetingResponse,Search,Settings,Ping,ItemOperations,Provision,ResolveRecipients,ValidateCert,Find"));
        return r;
    }
    if !authenticated(&req, conn) {
        let mut r = reply(
            StatusCode::UNAUTHORIZED,
            "text/html",
            "<html><body><h1>401 - Unauthorized</h1></body></html>",
        );
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"mail.contoso.com\""),
        );
        return r;
    }
    let is_ping =
        query_param(req.uri().query(), "Cmd").is_some_and(|c| c.eq_ignore_ascii_case("Ping"));
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if !is_ping {
        return reply(StatusCode::OK, "application/vnd.ms-sync.wbxml", "");
    }
    let text = String::from_utf8_lossy(&body);
    let heartbeat = text
        .split_once("<HeartbeatInterval>")
        .and_then(|(_, rest)| rest.split_once("</HeartbeatInterval>"))
        .and_then(|(n, _)| n.trim().parse::<u64>().ok())
        .unwrap_or(60)
        .min(MAX_HEARTBEAT_SECS);
    tokio::time::sleep(Duration::from_secs(heartbeat)).await;
    reply(
        StatusCode::OK,
        "text/xml",
        format!("<?xml version=\"1.0\" encoding=\"utf-8\"?><Ping xmlns=\"Ping\"><Status>1</Status><HeldSeconds>{heartbeat}</HeldSeconds></Ping>"),
    )
}

/// Header names as Exchange and IIS write them. hyper writes names in lower case; this
/// member puts the Exchange spelling back on the wire so a proxy's case handling shows.
const SPELLINGS: [(&str, &str); 20] = [
    ("x-feserver", "X-FEServer"),
    ("x-beserver", "X-BEServer"),
    ("x-owa-version", "X-OWA-Version"),
    ("x-powered-by", "X-Powered-By"),
    ("x-responsecode", "X-ResponseCode"),
    ("x-pendingperiod", "X-PendingPeriod"),
    ("x-requesttype", "X-RequestType"),
    ("ms-server-activesync", "MS-Server-ActiveSync"),
    ("ms-asprotocolversions", "MS-ASProtocolVersions"),
    ("ms-asprotocolcommands", "MS-ASProtocolCommands"),
    ("www-authenticate", "WWW-Authenticate"),
    ("content-type", "Content-Type"),
    ("content-length", "Content-Length"),
    ("transfer-encoding", "Transfer-Encoding"),
    ("cache-control", "Cache-Control"),
    ("set-cookie", "Set-Cookie"),
    ("date", "Date"),
    ("x-backend", "X-Backend"),
    ("location", "Location"),
    ("server", "Server"),
];

/// Rewrites `\r\n<lower-case name>:` to the Exchange spelling in what the member writes.
/// Same length in and out, so framing is untouched; `request-id` stays lower case, as
/// Exchange sends it. A pattern split across two writes is left as it is (hyper writes a
/// response head in one piece).
pub(super) struct CaseFix<S> {
    pub(super) inner: S,
}

fn respell(buf: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for (lower, proper) in SPELLINGS {
        let pat = format!("\r\n{lower}:");
        let pat = pat.as_bytes();
        let hay = out.as_deref().unwrap_or(buf);
        let hits: Vec<usize> = hay
            .windows(pat.len())
            .enumerate()
            .filter(|(_, w)| *w == pat)
            .map(|(i, _)| i)
            .collect();
        if hits.is_empty() {
            continue;
        }
        let v = out.get_or_insert_with(|| buf.to_vec());
        for i in hits {
            v[i + 2..i + 2 + proper.len()].copy_from_slice(proper.as_bytes());
        }
    }
    out
}

impl<S: AsyncRead + Unpin> AsyncRead for CaseFix<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CaseFix<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match respell(buf) {
            Some(fixed) => Pin::new(&mut self.inner).poll_write(cx, &fixed),
            None => Pin::new(&mut self.inner).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::respell;

    #[test]
    fn respell_restores_exchange_spellings_in_a_head_and_keeps_lengths() {
        let head =
            b"HTTP/1.1 200 OK\r\nx-feserver: EX01\r\nrequest-id: 1\r\ncontent-length: 0\r\n\r\n";
        let fixed = respell(head).unwrap();
        assert_eq!(fixed.len(), head.len());
        assert_eq!(
            String::from_utf8(fixed).unwrap(),
            "HTTP/1.1 200 OK\r\nX-FEServer: EX01\r\nrequest-id: 1\r\nContent-Length: 0\r\n\r\n"
        );
        assert!(respell(b"body text without header lines").is_none());
    }
}
