//! The per-request path: rules → farm → member → stream the response back.

mod affinity;
mod body;
mod forward;
pub mod guard;
pub mod headers;
mod pages;
mod pin;
mod protect;

pub use body::ResponseBody;

use crate::access_log::{AccessLog, AccessRecord};
use crate::config::Config;
use crate::downstream::ClientBody;
use crate::farm::Farm;
use crate::http1::Present;
use crate::rules::{Outcome, RequestView, Scheme};
use crate::upstream::Connector;
use arc_swap::{ArcSwap, ArcSwapOption};
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode};
use pin::PinSlot;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Everything one config produces at run time. Swapped whole on reload; a request keeps
/// the snapshot it started with.
pub struct Snapshot {
    /// The config this snapshot was built from.
    pub config: Config,
    /// The run-time farms, in `config.farms` order (the order rules' farm ids index).
    pub farms: Vec<Arc<Farm>>,
    /// How this config reaches members: its `[resolve]` overrides and source address.
    pub connector: Arc<Connector>,
    /// When this config was built (start or reload), for the status page.
    pub loaded_at: std::time::SystemTime,
    /// Dropping the snapshot drops this, which stops its health-check and DNS tasks.
    stop: tokio::sync::watch::Sender<()>,
}

impl Snapshot {
    /// Builds the run-time state; members that `previous` already had keep their health and
    /// counters.
    pub fn new(config: Config, previous: Option<&Snapshot>) -> Snapshot {
        let farms = config
            .farms
            .iter()
            .map(|f| {
                let prev = previous.and_then(|p| p.farms.iter().find(|pf| pf.name == f.name));
                Arc::new(Farm::new(
                    Arc::clone(f),
                    &config.resolve,
                    prev.map(|a| &**a),
                ))
            })
            .collect();
        let connector = Arc::new(Connector::new(
            Arc::clone(&config.resolve),
            config.upstream.source_address,
        ));
        let (stop, _) = tokio::sync::watch::channel(());
        Snapshot {
            config,
            farms,
            connector,
            loaded_at: std::time::SystemTime::now(),
            stop,
        }
    }

    /// Starts the per-farm background tasks (health checks, DNS refresh). Needs a runtime.
    pub fn start_background(&self) {
        for farm in &self.farms {
            crate::farm::spawn_background(
                Arc::clone(farm),
                Arc::clone(&self.connector),
                Arc::clone(&self.config.resolve),
                self.config.upstream.dns_refresh,
                self.stop.subscribe(),
            );
        }
    }

    /// The farm a rule routed to (the runtime farms are built from `config.farms` in order,
    /// the list the rules' ids index).
    pub fn farm_by_id(&self, id: crate::rules::FarmId) -> &Arc<Farm> {
        &self.farms[id.index()]
    }

    /// The farm called `name`; None if this config has none.
    pub fn farm(&self, name: &str) -> Option<&Arc<Farm>> {
        self.farms.iter().find(|f| f.name == name)
    }
}

/// The shared proxy state: the current snapshot.
pub struct Proxy {
    /// The snapshot new requests start with; a reload stores a new one.
    pub current: ArcSwap<Snapshot>,
    /// Where request lines go; None when the access log is off.
    pub access_log: ArcSwapOption<AccessLog>,
    /// Lockout counters and perimeter totals; kept across reloads.
    pub perimeter: Arc<crate::perimeter::Perimeter>,
}

impl Proxy {
    /// Proxy state serving `snapshot`, with the access log off until configured.
    pub fn new(snapshot: Snapshot) -> Proxy {
        Proxy {
            current: ArcSwap::from_pointee(snapshot),
            access_log: ArcSwapOption::empty(),
            perimeter: Arc::default(),
        }
    }
}

/// Facts about the client connection a request arrived on, and what it owns.
pub struct ConnInfo {
    /// The client's address: the PROXY header's source when there is one, else the peer's.
    pub remote: SocketAddr,
    /// The listener address the connection arrived on (the socket's, not the PROXY header's).
    pub local: SocketAddr,
    /// The client connection is TLS.
    pub https: bool,
    /// The negotiated TLS version ("TLSv1.3", "TLSv1.2"); None for plain HTTP.
    pub tls_version: Option<&'static str>,
    /// The peer is a trusted proxy: its X-Forwarded-For is extended, not replaced.
    pub trusted_peer: bool,
    /// The listener's `max_header_bytes`: a larger request head is answered 431 naming it.
    pub max_header_bytes: usize,
    /// `remote`'s address formatted for X-Forwarded-For, once per connection instead of
    /// once per request.
    pub forwarded_for: http::HeaderValue,
    /// Counted among the listener's connections that have not started a request yet, until
    /// the first one starts: shutdown waits for those (`FirstRequest`).
    pub first_request: Option<FirstRequest>,
    /// The member connection this client connection authenticated on (HTTP/1.1 only:
    /// its requests come one after another, so the lock is never contended).
    pin: Mutex<Option<PinSlot>>,
}

/// One accepted client connection that has not started a request yet. A shutdown stops
/// accepting, then waits (briefly) until none is left before it tells connections to close:
/// the servers (Portico's HTTP/1.1, hyper's h2) close an idle connection at once, and one
/// accepted just before the stop, whose request is still on its way (behind a PROXY header,
/// a TLS handshake), would be closed unanswered. Given back when the first request starts or
/// the connection ends.
pub struct FirstRequest {
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    done: std::sync::atomic::AtomicBool,
}

impl FirstRequest {
    /// Counts one more connection into `waiting`.
    pub fn new(waiting: &Arc<std::sync::atomic::AtomicUsize>) -> FirstRequest {
        waiting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        FirstRequest {
            waiting: Arc::clone(waiting),
            done: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The first request started (later calls are one load).
    pub fn started(&self) {
        use std::sync::atomic::Ordering;
        if !self.done.load(Ordering::Relaxed) && !self.done.swap(true, Ordering::Relaxed) {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for FirstRequest {
    fn drop(&mut self) {
        self.started();
    }
}

impl ConnInfo {
    /// A connection that is not a trusted proxy and has no request-head limit yet.
    pub fn new(
        remote: SocketAddr,
        local: SocketAddr,
        https: bool,
        tls_version: Option<&'static str>,
    ) -> ConnInfo {
        ConnInfo {
            remote,
            local,
            https,
            tls_version,
            trusted_peer: false,
            max_header_bytes: usize::MAX,
            forwarded_for: headers::address_value(remote.ip()),
            first_request: None,
            pin: Mutex::new(None),
        }
    }

    /// Counts this connection as waiting for its first request until it starts.
    pub fn awaiting_first_request(mut self, first: FirstRequest) -> Self {
        self.first_request = Some(first);
        self
    }

    /// Marks the peer as a trusted proxy (its address is in the listener's `trusted_proxies`).
    pub fn trusting(mut self, trusted: bool) -> Self {
        self.trusted_peer = trusted;
        self
    }

    /// Sets the request-head limit (the listener's `max_header_bytes`).
    pub fn limiting_head(mut self, max_header_bytes: usize) -> Self {
        self.max_header_bytes = max_header_bytes;
        self
    }

    /// Takes the pinned connection out if it belongs to `farm` reached the same way.
    fn take_pin(&self, farm: &str, tls: bool) -> Option<PinSlot> {
        let mut g = self.pin.lock().unwrap_or_else(|p| p.into_inner());
        match &*g {
            Some(p) if p.farm.name == farm && p.tls == tls => g.take(),
            _ => None,
        }
    }

    fn put_pin(&self, p: PinSlot) {
        *self.pin.lock().unwrap_or_else(|p| p.into_inner()) = Some(p);
    }
}

/// Why a request gets no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A rule said to drop the connection without answering.
    #[error("request aborted by rule {0:?}")]
    Aborted(String),
    /// Windows authentication attempted over h2: the stream is reset with HTTP_1_1_REQUIRED.
    /// hyper resets the h2 stream with the reason found in the error's source chain.
    #[error("NTLM/Negotiate over HTTP/2: client must retry over HTTP/1.1")]
    Http11Required(#[source] h2::Error),
}

/// A request's answer: the response, or why it gets none.
type Answer = Result<Response<ResponseBody>, ProxyError>;

/// Serves one request. An `Err` makes `http1::server` close the connection (h1), or hyper's
/// h2 server reset the stream (h2).
///
/// The server holds the returned future for as long as the member takes to answer (a long
/// poll: minutes), so it is built to hold one request only: routing is done before the
/// future is made, and no async block or fn here keeps a moved-from argument beside the
/// future it moved it into (rustc does not overlap the two; see `crate::task`).
#[inline]
pub fn handle(
    proxy: Arc<Proxy>,
    conn: Arc<ConnInfo>,
    req: Request<ClientBody>,
) -> impl std::future::Future<Output = Answer> + Send + 'static {
    if let Some(first) = &conn.first_request {
        first.started();
    }
    let record = proxy.access_log.load_full().map(|log| {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("");
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        Arc::new(AccessRecord::new(
            log,
            conn.remote,
            host,
            req.method().as_str(),
            pq,
            conn.tls_version,
        ))
    });
    route_request(proxy, conn, req, record)
}

/// `answer` as the client gets it: the access record hears its status and follows its body.
fn recorded(answer: Answer, record: Option<Arc<AccessRecord>>) -> Answer {
    match (answer, record) {
        (Ok(mut resp), Some(record)) => {
            record.set_status(resp.status().as_u16());
            let body = std::mem::replace(resp.body_mut(), ResponseBody::empty());
            *resp.body_mut() = body.with_record(Some(record));
            Ok(resp)
        }
        (answer, _) => answer,
    }
}

pin_project_lite::pin_project! {
    /// A request being served, as routing decided: answered at once, forwarded to a farm,
    /// or (an ACME HTTP-01 path, rare) looked up first. The answer's access record hears
    /// its status and follows its body ([`recorded`]). One future from `handle` to the
    /// server: a wrapper around it was one more move of its 2 KB (callgrind: memcpy).
    #[project = RoutingProj]
    enum Routing<F> {
        Answered { answer: Option<Answer> },
        Forwarding {
            #[pin]
            sending: F,
            // The lockout attempt to settle when the member has answered.
            after: Option<(Arc<Proxy>, protect::Attempt)>,
            record: Option<Arc<AccessRecord>>,
        },
        Boxed { fut: Pin<Box<dyn std::future::Future<Output = Answer> + Send>> },
    }
}

impl<F> Routing<F> {
    fn answered(answer: Answer, record: Option<Arc<AccessRecord>>) -> Self {
        Routing::Answered {
            answer: Some(recorded(answer, record)),
        }
    }
}

impl<F: std::future::Future<Output = Answer>> std::future::Future for Routing<F> {
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        match self.project() {
            RoutingProj::Answered { answer } => {
                Poll::Ready(answer.take().expect("Routing polled after it answered"))
            }
            RoutingProj::Forwarding {
                sending,
                after,
                record,
            } => {
                let result = std::task::ready!(sending.poll(cx));
                if let (Some((proxy, attempt)), Ok(resp)) = (after.take(), &result) {
                    protect::after(&proxy.perimeter, attempt, resp.status());
                }
                Poll::Ready(recorded(result, record.take()))
            }
            RoutingProj::Boxed { fut } => fut.as_mut().poll(cx),
        }
    }
}

#[inline]
fn route_request(
    proxy: Arc<Proxy>,
    conn: Arc<ConnInfo>,
    req: Request<ClientBody>,
    record: Option<Arc<AccessRecord>>,
) -> Routing<impl std::future::Future<Output = Answer> + Send> {
    // ACME HTTP-01 validation, before any rule: only on clear-text listeners, only for a
    // token this instance (or one sharing its ACME storage) is waiting to be asked for. The
    // lookup may read a file, so it is the one case that waits before routing.
    if !conn.https && crate::acme::http01_token(req.uri().path()).is_some() {
        return Routing::Boxed {
            fut: Box::pin(async move {
                if let Some(answer) = crate::acme::answer_http01(req.uri().path()).await {
                    return recorded(Ok(pages::acme_http01(answer)), record);
                }
                decide(proxy, conn, req, record).await
            }),
        };
    }
    decide(proxy, conn, req, record)
}

/// Checks the request, runs the rules and answers or prepares the forwarding, all without
/// waiting.
fn decide(
    proxy: Arc<Proxy>,
    conn: Arc<ConnInfo>,
    req: Request<ClientBody>,
    record: Option<Arc<AccessRecord>>,
) -> Routing<impl std::future::Future<Output = Answer> + Send> {
    let snap = proxy.current.load_full();
    let is_h1 = req.version() < http::Version::HTTP_2;
    // One pass over the names, for the checks and edits below that need only look up a
    // name the request carries. The headers stay as they are until `forward::outgoing`.
    let present = Present::of(req.headers());
    if let Err(why) = guard::check_request(&req, is_h1, present) {
        return Routing::answered(Ok(pages::bad_request_close(why, is_h1)), record);
    }
    if let Some(resp) = check_head_size(&req, conn.max_header_bytes) {
        return Routing::answered(Ok(resp), record);
    }
    // A copy of its own: a clone would be a slice of the client's head buffer and keep the
    // whole head allocated while the member holds the request (a long poll).
    let host_value = match req.headers().get(header::HOST) {
        Some(h) => Some(HeaderValue::from_bytes(h.as_bytes()).unwrap_or_else(|_| h.clone())),
        None => req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    };
    let Some(host_value) = host_value else {
        return Routing::answered(
            Ok(pages::bad_request(
                "The request names no host (Host header missing).",
            )),
            record,
        );
    };
    let Ok(host) = host_value.to_str() else {
        return Routing::answered(
            Ok(pages::bad_request("The Host header is not valid text.")),
            record,
        );
    };
    // The PROXY-protocol client, or the one a trusted proxy named in X-Forwarded-For.
    let client = crate::perimeter::client_addr(conn.remote.ip(), conn.trusted_peer, req.headers());
    let view = RequestView {
        method: req.method().as_str(),
        host,
        https: conn.https,
        server_port: conn.local.port(),
        path: req.uri().path(),
        query: req.uri().query(),
        remote_addr: client,
        headers: req.headers(),
    };
    let outcome = snap.config.rules.evaluate(&view);
    let answer = match outcome {
        Outcome::Route {
            farm,
            scheme,
            path_and_query,
            rule,
            max_body,
            rate_limit,
        } => {
            let farm = Arc::clone(snap.farm_by_id(farm));
            let protected = farm.lockout;
            if let Some(r) = &record {
                r.set_rule(rule);
                r.set_farm(&farm.name);
            }
            let perimeter = &proxy.perimeter;
            if let Some(refused) =
                protect::rate_limit(perimeter, rate_limit, client, rule, record.as_ref())
            {
                return Routing::answered(Ok(refused), record);
            }
            let lockout = snap.config.lockout.as_ref().filter(|_| protected);
            let attempt = match protect::before(
                perimeter,
                lockout,
                req.headers(),
                client,
                is_h1,
                record.as_ref(),
            ) {
                Ok(a) => a,
                Err(answer) => return Routing::answered(Ok(*answer), record),
            };
            let path_and_query = match path_and_query {
                None => None,
                Some(p) => match PathAndQuery::try_from(p) {
                    Ok(p) => Some(p),
                    Err(_) => {
                        tracing::warn!(rule, "rule produced an invalid path; answering 400");
                        return Routing::answered(
                            Ok(pages::bad_request("The rewritten URL is not valid.")),
                            record,
                        );
                    }
                },
            };
            let tls = match scheme {
                Some(Scheme::Https) => true,
                Some(Scheme::Http) => false,
                None => conn.https && !farm.ssl_offload,
            };
            let route = forward::Route {
                farm,
                present,
                host: host_value,
                new_path: path_and_query,
                tls,
                max_body,
                client,
            };
            // The forwarding counts the body's bytes into the record; the answer sets it.
            let answer_record = record.clone();
            return match forward::prepare(snap, Arc::clone(&conn), req, record, route) {
                Ok(prepared) => Routing::Forwarding {
                    sending: forward::send(prepared),
                    after: attempt.map(|a| (proxy, a)),
                    record: answer_record,
                },
                Err(answer) => {
                    if let (Some(a), Ok(resp)) = (attempt, &*answer) {
                        protect::after(&proxy.perimeter, a, resp.status());
                    }
                    Routing::answered(*answer, answer_record)
                }
            };
        }
        Outcome::Redirect {
            status,
            location,
            rule,
        } => {
            if let Some(r) = &record {
                r.set_rule(rule);
            }
            let mut r = Response::new(ResponseBody::empty());
            *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
            match HeaderValue::from_str(&location) {
                Ok(v) => {
                    r.headers_mut().insert(header::LOCATION, v);
                    Ok(r)
                }
                Err(_) => Ok(pages::bad_request(
                    "The redirect target is not a valid URL.",
                )),
            }
        }
        Outcome::Respond {
            status,
            body,
            content_type,
            rule,
            reason,
        } => {
            if let Some(r) = &record {
                r.set_rule(rule);
            }
            let mut r = Response::new(ResponseBody::full(body));
            *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            // IIS's statusReason: HTTP/1.1 carries it in the status line (h2 has none).
            if let Some(phrase) = reason.filter(|p| !p.bytes().any(|b| b == b'\r' || b == b'\n')) {
                r.extensions_mut()
                    .insert(crate::http1::Reason(bytes::Bytes::copy_from_slice(
                        phrase.as_bytes(),
                    )));
            }
            if let Ok(ct) = HeaderValue::from_str(content_type) {
                r.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            Ok(r)
        }
        Outcome::Abort { rule } => Err(ProxyError::Aborted(rule.to_string())),
        Outcome::NoMatch => Ok(pages::no_route(host)),
    };
    Routing::answered(answer, record)
}

/// The size of a request head as HTTP/1.1 writes it: request line, then `name: value` lines.
pub fn head_size<B>(req: &Request<B>) -> usize {
    let line = req.method().as_str().len()
        + req.uri().path_and_query().map_or(1, |p| p.as_str().len())
        + " HTTP/1.1\r\n".len()
        + 1;
    req.headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + line
        + 2
}

/// 431 naming the limit when the head is over `max_header_bytes` (the servers read up to half
/// as much again, `listener::head_buffer_bytes`, so a head a little over the limit reaches
/// this check instead of the server's own 431, which names no size).
fn check_head_size<B>(req: &Request<B>, max_header_bytes: usize) -> Option<Response<ResponseBody>> {
    let size = head_size(req);
    if size <= max_header_bytes {
        return None;
    }
    let largest = req
        .headers()
        .iter()
        .max_by_key(|(k, v)| k.as_str().len() + v.len())
        .map(|(k, v)| format!(" (largest header: {k}, {} bytes)", v.len()))
        .unwrap_or_default();
    tracing::info!(
        size,
        max_header_bytes,
        "request head over the listener's max_header_bytes; answered 431"
    );
    Some(pages::head_too_large(&format!(
        "The request head is {size} bytes{largest}, over this listener's max_header_bytes = {max_header_bytes}."
    )))
}
