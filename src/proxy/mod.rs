//! The per-request path: rules → farm → member → stream the response back.

mod body;
pub mod headers;
mod pages;

pub use body::{InFlight, ResponseBody};

use crate::config::Config;
use crate::farm::{Farm, Member};
use crate::rules::{Outcome, RequestView, Scheme};
use crate::upstream::{self, Connector, RequestBody, Sender, Target};
use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Everything one config produces at run time. Swapped whole on reload; a request keeps
/// the snapshot it started with.
pub struct Snapshot {
    pub config: Config,
    pub farms: Vec<Arc<Farm>>,
    pub connector: Connector,
}

impl Snapshot {
    pub fn new(config: Config) -> Snapshot {
        let farms = config
            .farms
            .iter()
            .map(|f| Arc::new(Farm::new(f, &config.upstream)))
            .collect();
        let connector = Connector::new(Arc::clone(&config.resolve), config.upstream.source_address);
        Snapshot {
            config,
            farms,
            connector,
        }
    }
}

/// The shared proxy state: the current snapshot.
pub struct Proxy {
    pub current: ArcSwap<Snapshot>,
}

impl Proxy {
    pub fn new(snapshot: Snapshot) -> Proxy {
        Proxy {
            current: ArcSwap::from_pointee(snapshot),
        }
    }
}

/// Facts about the client connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub https: bool,
    pub tls_version: Option<&'static str>,
}

/// A rule said to drop the connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("request aborted by rule {0:?}")]
pub struct Aborted(pub String);

/// Serves one request. An `Err` makes hyper close the connection (h1) or reset the stream (h2).
pub async fn handle(
    proxy: Arc<Proxy>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Aborted> {
    let snap = proxy.current.load_full();
    let host_value = match req.headers().get(header::HOST) {
        Some(h) => Some(h.clone()),
        None => req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    };
    let Some(host_value) = host_value else {
        return Ok(pages::bad_request(
            "The request names no host (Host header missing).",
        ));
    };
    let Ok(host) = host_value.to_str() else {
        return Ok(pages::bad_request("The Host header is not valid text."));
    };
    let view = RequestView {
        method: req.method().as_str(),
        host,
        https: conn.https,
        server_port: conn.local.port(),
        path: req.uri().path(),
        query: req.uri().query(),
        remote_addr: conn.remote.ip(),
        headers: req.headers(),
    };
    match snap.config.rules.evaluate(&view) {
        Outcome::Route {
            farm,
            scheme,
            path_and_query,
            rule,
        } => {
            let farm = Arc::clone(&snap.farms[farm]);
            let path_and_query = match path_and_query {
                None => None,
                Some(p) => match PathAndQuery::try_from(p) {
                    Ok(p) => Some(p),
                    Err(_) => {
                        tracing::warn!(rule, "rule produced an invalid path; answering 400");
                        return Ok(pages::bad_request("The rewritten URL is not valid."));
                    }
                },
            };
            let tls = match scheme {
                Some(Scheme::Https) => true,
                Some(Scheme::Http) => false,
                None => conn.https && !farm.ssl_offload,
            };
            Ok(forward(&snap, &farm, &conn, req, host_value, path_and_query, tls).await)
        }
        Outcome::Redirect {
            status, location, ..
        } => {
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
            ..
        } => {
            let mut r = Response::new(ResponseBody::full(body));
            *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            if let Ok(ct) = HeaderValue::from_str(content_type) {
                r.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            Ok(r)
        }
        Outcome::Abort { rule } => Err(Aborted(rule.to_string())),
        Outcome::NoMatch => Ok(pages::no_route(host)),
    }
}

/// Sends the request to a member of `farm` and streams the answer back.
async fn forward(
    snap: &Snapshot,
    farm: &Arc<Farm>,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    host: HeaderValue,
    new_path: Option<PathAndQuery>,
    tls: bool,
) -> Response<ResponseBody> {
    let upgrade = req.version() == Version::HTTP_11 && headers::wants_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();

    // Origin-form target, byte for byte as the client sent it unless a rule rewrote it.
    let pq = new_path.or_else(|| parts.uri.path_and_query().cloned());
    parts.uri = match pq {
        Some(pq) => Uri::from(pq),
        None => Uri::from_static("/"),
    };
    parts.version = Version::HTTP_11;
    headers::remove_hop_by_hop(&mut parts.headers, upgrade);
    parts.headers.remove(header::EXPECT);
    headers::join_cookies(&mut parts.headers);
    if upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if farm.x_forwarded {
        headers::set_forwarded(
            &mut parts.headers,
            conn.remote.ip(),
            conn.https,
            Some(&host),
        );
    }

    let Some(first) = farm.pick() else {
        return pages::unavailable(&farm.name);
    };
    let mut req = Some(Request::from_parts(parts, RequestBody::Client(body)));
    let n = farm.members.len();
    for attempt in 0..n {
        let Some(idx) = farm.next_after(first, attempt) else {
            break;
        };
        let member = &farm.members[idx];
        let Some(mut r) = req.take() else { break };
        set_host(&mut r, farm, member, &host, tls);
        let guard = InFlight::new(Arc::clone(member));
        let pool = member.pool(tls);
        // A pooled connection that turns out closed hands the request back unsent.
        while let Some(mut sender) = pool.checkout() {
            match sender.try_send_request(r).await {
                Ok(resp) => return respond(farm, member, sender, resp, client_upgrade, tls, guard),
                Err(mut e) => match e.take_message() {
                    Some(back) => r = back,
                    None => return upstream_failed(farm, member, e.into_error()),
                },
            }
        }
        let port = if tls {
            member.https_port
        } else {
            member.http_port
        };
        let target = Target {
            host: &member.address,
            port,
            tls: if tls {
                member.server_name.as_ref().map(|n| (&farm.tls, n))
            } else {
                None
            },
            connect_timeout: farm.connect_timeout,
            idle_timeout: farm.timeout,
        };
        match snap.connector.connect(&target).await {
            Ok(mut sender) => {
                pool.note_created();
                match sender.try_send_request(r).await {
                    Ok(resp) => {
                        return respond(farm, member, sender, resp, client_upgrade, tls, guard)
                    }
                    Err(mut e) => match e.take_message() {
                        // Never written: safe to offer it to the next member.
                        Some(back) => {
                            member.stats.failures.fetch_add(1, Ordering::Relaxed);
                            req = Some(back);
                        }
                        None => return upstream_failed(farm, member, e.into_error()),
                    },
                }
            }
            Err(e) => {
                member.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(farm = %farm.name, member = %member.address, port, error = %e, "member unreachable; trying the next one");
                req = Some(r);
            }
        }
    }
    pages::bad_gateway(&farm.name)
}

fn set_host(
    req: &mut Request<RequestBody>,
    farm: &Farm,
    member: &Member,
    host: &HeaderValue,
    tls: bool,
) {
    let value = if farm.preserve_host {
        host.clone()
    } else {
        let port = if tls {
            member.https_port
        } else {
            member.http_port
        };
        let default = if tls { 443 } else { 80 };
        let text = if port == default {
            member.address.clone()
        } else {
            format!("{}:{port}", member.address)
        };
        HeaderValue::from_str(&text).unwrap_or_else(|_| host.clone())
    };
    req.headers_mut().insert(header::HOST, value);
}

fn upstream_failed(farm: &Farm, member: &Member, err: hyper::Error) -> Response<ResponseBody> {
    member.stats.failures.fetch_add(1, Ordering::Relaxed);
    if upstream::is_idle_timeout(&err) {
        tracing::warn!(farm = %farm.name, member = %member.address, timeout_secs = farm.timeout.as_secs(), "member timed out");
        pages::gateway_timeout(&farm.name, farm.timeout.as_secs())
    } else {
        tracing::warn!(farm = %farm.name, member = %member.address, error = %err, "member failed before answering");
        pages::bad_gateway(&farm.name)
    }
}

fn respond(
    farm: &Farm,
    member: &Arc<Member>,
    sender: Sender,
    mut resp: Response<Incoming>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    tls: bool,
    guard: InFlight,
) -> Response<ResponseBody> {
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(tunnel(client_upgrade, upstream_upgrade, guard));
            let (mut parts, _) = resp.into_parts();
            headers::remove_hop_by_hop(&mut parts.headers, true);
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            return Response::from_parts(parts, ResponseBody::empty());
        }
        tracing::warn!(farm = %farm.name, member = %member.address, "member switched protocols without being asked");
        return pages::bad_gateway(&farm.name);
    }
    member.pool(tls).checkin(sender);
    let (mut parts, body) = resp.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers, false);
    Response::from_parts(parts, ResponseBody::Upstream { body, guard })
}

/// Copies bytes both ways once client and member have both switched protocols.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    _guard: InFlight,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = hyper_util::rt::TokioIo::new(client);
    let mut upstream = hyper_util::rt::TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "tunnel closed");
    }
}
