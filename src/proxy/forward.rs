//! Forwarding a routed request to a member of its farm: choice (affinity, balancing),
//! pinned Windows-auth connections, pooled or new connections, fail-over and retries.

use super::affinity;
use super::body::{InFlight, ResponseBody};
use super::headers;
use super::pages;
use super::pin::{self, PinnedConnection};
use super::{ConnInfo, ProxyError, Snapshot};
use crate::access_log::AccessRecord;
use crate::config::HashKey;
use crate::farm::{fnv1a, Farm, Member, PickInput};
use crate::upstream::{self, RequestBody, Sender, Target};
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use hyper::body::Incoming;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Where the routed request goes and how.
pub(super) struct Route<'a> {
    pub farm: &'a Arc<Farm>,
    pub host: HeaderValue,
    pub new_path: Option<PathAndQuery>,
    pub tls: bool,
    pub max_body: Option<u64>,
}

pub(super) async fn forward(
    snap: &Snapshot,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    record: Option<&Arc<AccessRecord>>,
    route: Route<'_>,
) -> Result<Response<ResponseBody>, ProxyError> {
    let Route {
        farm,
        host,
        new_path,
        tls,
        max_body,
    } = route;
    // A declared length over the limit is refused before a byte reaches a member; a chunked
    // body is cut when it passes the limit (`RequestBody`).
    if let Some(limit) = max_body {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Ok(pages::too_large(&farm.name, limit));
        }
    }
    let h2 = req.version() == Version::HTTP_2;
    let authenticates = pin::request_authenticates(req.headers());
    if h2 && authenticates {
        // IIS refuses Windows auth over h2, and one h2 connection carries many clients'
        // requests: ask the client to retry this over HTTP/1.1 (RFC 9113 HTTP_1_1_REQUIRED).
        return Err(ProxyError::Http11Required(
            h2::Reason::HTTP_1_1_REQUIRED.into(),
        ));
    }

    // Choose before the headers are edited: affinity and hash read the client's request.
    let set = farm.members();
    let hash = match &farm.load_balancing {
        crate::config::LoadBalancing::RequestHash(key) => {
            Some(request_hash(key, &req, &host, conn))
        }
        _ => None,
    };
    let cookie_name = farm.affinity.as_ref().map(|a| a.cookie.as_str());
    // Per-path health checks decide on the path the client asked for (issue 11 hook).
    let pick_path = req.uri().path().to_owned();
    let first = {
        let affinity = cookie_name.and_then(|n| affinity::cookie_value(req.headers(), n));
        farm.pick(
            &set,
            &PickInput {
                affinity,
                hash,
                path: &pick_path,
            },
        )
    };
    let had_cookie_for = |m: &Member| {
        cookie_name.is_some_and(|n| {
            affinity::cookie_value(req.headers(), n) == Some(m.affinity_key.as_str())
        })
    };
    let cookie_ok_for: Vec<bool> = if cookie_name.is_some() {
        set.members.iter().map(|m| had_cookie_for(m)).collect()
    } else {
        Vec::new()
    };

    let upgrade = req.version() == Version::HTTP_11 && headers::wants_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    // Origin-form target, byte for byte as the client sent it unless a rule rewrote it.
    parts.uri = match new_path.or_else(|| parts.uri.path_and_query().cloned()) {
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
            conn.trusted_peer,
        );
    }
    let mut req = Request::from_parts(parts, RequestBody::client(body, record.cloned(), max_body));

    let ctx = Exchange {
        farm,
        conn,
        h2,
        authenticates,
        tls,
        record,
        max_body,
    };

    // A client connection that authenticated keeps its member connection.
    if !h2 {
        let pinned = conn.take_pin(&farm.name, tls);
        if let Some(mut p) = pinned {
            set_host(&mut req, farm, &p.member, &host, tls);
            if p.sender.ready().await.is_ok() {
                let guard = InFlight::new(Arc::clone(&p.member));
                let started = Instant::now();
                match send(&mut p.sender, req, farm.timeout).await {
                    Sent::Resp(resp) => {
                        let member = Arc::clone(&p.member);
                        conn.put_pin(p);
                        return Ok(ctx.finish(
                            &member,
                            None,
                            resp,
                            client_upgrade,
                            guard,
                            started,
                            true,
                        ));
                    }
                    Sent::Back(back) => req = back,
                    Sent::Failed(e) => return Ok(ctx.failed(&p.member, e)),
                    Sent::HeadTimeout => return Ok(ctx.head_timeout(&p.member)),
                }
            } else {
                tracing::debug!(farm = %farm.name, member = %p.member.label(), "pinned member connection closed; the client must authenticate again");
            }
        }
    }

    let Some(first) = first else {
        return Ok(pages::unavailable(&farm.name));
    };
    let mut req = Some(req);
    for idx in farm.failover_order(&set, first, &pick_path) {
        let member = &set.members[idx];
        let Some(mut r) = req.take() else { break };
        set_host(&mut r, farm, member, &host, tls);
        if authenticates && !PinnedConnection::has_room(member, farm.max_pinned_per_member) {
            return Ok(pages::too_many_pinned(&farm.name));
        }
        let had_cookie = cookie_ok_for.get(idx).copied().unwrap_or(false);
        let guard = InFlight::new(Arc::clone(member));
        let pool = member.pool(tls);
        // A pooled connection that turns out closed hands the request back unsent. One that
        // dies after the request went out may cost an idempotent, bodyless request one retry.
        while let Some(mut sender) = pool.checkout() {
            if sender.ready().await.is_err() {
                continue;
            }
            let copy = replayable_copy(&r);
            let started = Instant::now();
            match send(&mut sender, r, farm.timeout).await {
                Sent::Resp(resp) => {
                    return Ok(ctx.finish(
                        member,
                        Some(sender),
                        resp,
                        client_upgrade,
                        guard,
                        started,
                        had_cookie,
                    ))
                }
                Sent::Back(back) => r = back,
                Sent::Failed(e) => match copy {
                    Some(copy) => {
                        tracing::debug!(farm = %farm.name, member = %member.label(), "pooled connection died under an idempotent request; retrying once on a new one");
                        r = copy;
                        break;
                    }
                    None => return Ok(ctx.failed(member, e)),
                },
                Sent::HeadTimeout => return Ok(ctx.head_timeout(member)),
            }
        }
        let port = if tls {
            member.https_port
        } else {
            member.http_port
        };
        let target = Target {
            host: &member.host,
            ip: member.ip,
            port,
            tls: if tls {
                member.server_name.as_ref().map(|n| (&farm.tls, n))
            } else {
                None
            },
            connect_timeout: farm.connect_timeout,
            idle_timeout: farm.timeout,
        };
        // Boxed: the TLS handshake state is large and must not stay in every held request.
        match Box::pin(snap.connector.connect(&target)).await {
            Ok(mut sender) => {
                pool.note_created();
                let started = Instant::now();
                match send(&mut sender, r, farm.timeout).await {
                    Sent::Resp(resp) => {
                        return Ok(ctx.finish(
                            member,
                            Some(sender),
                            resp,
                            client_upgrade,
                            guard,
                            started,
                            had_cookie,
                        ))
                    }
                    // Never written: safe to offer it to the next member.
                    Sent::Back(back) => {
                        ctx.count_failure(member);
                        req = Some(back);
                    }
                    Sent::Failed(e) => return Ok(ctx.failed(member, e)),
                    Sent::HeadTimeout => return Ok(ctx.head_timeout(member)),
                }
            }
            Err(e) => {
                ctx.count_failure(member);
                tracing::warn!(farm = %farm.name, member = %member.label(), port, error = %e, "member unreachable; trying the next one");
                req = Some(r);
            }
        }
    }
    Ok(pages::bad_gateway(&farm.name))
}

/// The exchange failed because of the client's upload (too large, malformed, cut off), not
/// because of the member.
fn body_error(err: &hyper::Error) -> Option<&upstream::BodyError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(b) = e.downcast_ref::<upstream::BodyError>() {
            return Some(b);
        }
        cur = e.source();
    }
    None
}

/// What became of a request handed to a member connection.
enum Sent {
    Resp(Response<Incoming>),
    /// Not written: the connection was not usable; the request comes back whole.
    Back(Request<RequestBody>),
    Failed(hyper::Error),
    HeadTimeout,
}

/// Sends and waits for the response head. The per-read idle timeout cannot stop a member that
/// trickles header bytes; so a bodyless request's head must also arrive within `timeout` in
/// all. (With a body the member may rightly answer only after a long upload.)
async fn send(
    sender: &mut Sender,
    req: Request<RequestBody>,
    timeout: std::time::Duration,
) -> Sent {
    let bodyless = req.body().is_end_stream();
    let fut = sender.try_send_request(req);
    let result = if bodyless {
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => return Sent::HeadTimeout,
        }
    } else {
        fut.await
    };
    match result {
        Ok(resp) => Sent::Resp(resp),
        Err(mut e) => match e.take_message() {
            Some(back) => Sent::Back(back),
            None => Sent::Failed(e.into_error()),
        },
    }
}

/// A copy to replay when the original may have been lost on a dead pooled connection:
/// only for idempotent methods without a body (RFC 9110 9.2.2), never for POST.
fn replayable_copy(r: &Request<RequestBody>) -> Option<Request<RequestBody>> {
    let idempotent = matches!(
        *r.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    if !idempotent || !r.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(RequestBody::Empty);
    *copy.method_mut() = r.method().clone();
    *copy.uri_mut() = r.uri().clone();
    *copy.version_mut() = r.version();
    *copy.headers_mut() = r.headers().clone();
    Some(copy)
}

fn request_hash(
    key: &HashKey,
    req: &Request<Incoming>,
    host: &HeaderValue,
    conn: &ConnInfo,
) -> u64 {
    match key {
        HashKey::Variable(v) => {
            let value: std::borrow::Cow<'_, [u8]> = match v.as_str() {
                "REMOTE_ADDR" => match conn.remote.ip() {
                    std::net::IpAddr::V4(ip) => ip.octets().to_vec().into(),
                    std::net::IpAddr::V6(ip) => ip.octets().to_vec().into(),
                },
                "HTTP_HOST" => host.as_bytes().into(),
                "URL" => req.uri().path().as_bytes().into(),
                "QUERY_STRING" => req.uri().query().unwrap_or("").as_bytes().into(),
                "REQUEST_URI" => req
                    .uri()
                    .path_and_query()
                    .map_or("", |p| p.as_str())
                    .as_bytes()
                    .into(),
                other => {
                    let name = other.trim_start_matches("HTTP_").replace('_', "-");
                    req.headers()
                        .get(name.as_str())
                        .map_or(&b""[..], |v| v.as_bytes())
                        .to_vec()
                        .into()
                }
            };
            fnv1a(&[&value])
        }
        HashKey::Query(names) => {
            let q = req.uri().query().unwrap_or("");
            let mut parts: Vec<&[u8]> = Vec::with_capacity(names.len());
            for name in names {
                let v = q
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map_or("", |(_, v)| v);
                parts.push(v.as_bytes());
            }
            fnv1a(&parts)
        }
    }
}

fn set_host(
    req: &mut Request<RequestBody>,
    farm: &Farm,
    member: &Arc<Member>,
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
            member.host.clone()
        } else {
            format!("{}:{port}", member.host)
        };
        HeaderValue::from_str(&text).unwrap_or_else(|_| host.clone())
    };
    req.headers_mut().insert(header::HOST, value);
    req.body_mut().set_member(member);
}

/// One request's facts needed after the member answered.
struct Exchange<'a> {
    farm: &'a Farm,
    conn: &'a ConnInfo,
    h2: bool,
    authenticates: bool,
    tls: bool,
    record: Option<&'a Arc<AccessRecord>>,
    max_body: Option<u64>,
}

impl Exchange<'_> {
    fn count_failure(&self, member: &Member) {
        member.stats.failures.fetch_add(1, Ordering::Relaxed);
        if let Some(crate::farm::health::Transition::WentDown) = member
            .health
            .record_failure(&self.farm.live_traffic, self.farm.health.is_some())
        {
            tracing::warn!(farm = %self.farm.name, member = %member.label(), "member failing live traffic: taken out");
        }
    }

    fn head_timeout(&self, member: &Member) -> Response<ResponseBody> {
        self.count_failure(member);
        if let Some(r) = self.record {
            r.set_member(member.label());
        }
        tracing::warn!(farm = %self.farm.name, member = %member.label(), timeout_secs = self.farm.timeout.as_secs(), "member did not finish its response head in time");
        pages::gateway_timeout(&self.farm.name, self.farm.timeout.as_secs())
    }

    fn failed(&self, member: &Member, err: hyper::Error) -> Response<ResponseBody> {
        // The client's fault, not the member's: answer it, and do not count it against the
        // member (a client sending broken bodies must not take a farm out of service).
        match body_error(&err) {
            Some(upstream::BodyError::TooLarge) => {
                return pages::too_large(&self.farm.name, self.max_body.unwrap_or(0));
            }
            Some(upstream::BodyError::Client(e)) => {
                tracing::debug!(farm = %self.farm.name, error = %e, "client request body broke off");
                return pages::bad_request_close(
                    "The request body was malformed or cut off.",
                    !self.h2,
                );
            }
            None => {}
        }
        self.count_failure(member);
        if let Some(r) = self.record {
            r.set_member(member.label());
        }
        if upstream::is_idle_timeout(&err) {
            tracing::warn!(farm = %self.farm.name, member = %member.label(), timeout_secs = self.farm.timeout.as_secs(), "member timed out");
            pages::gateway_timeout(&self.farm.name, self.farm.timeout.as_secs())
        } else {
            tracing::warn!(farm = %self.farm.name, member = %member.label(), error = %err, "member failed before answering");
            pages::bad_gateway(&self.farm.name)
        }
    }

    /// Turns the member's response into the client's, deciding on the way whether the
    /// member connection is pooled, pinned to this client, or consumed by a tunnel.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        member: &Arc<Member>,
        sender: Option<Sender>,
        mut resp: Response<Incoming>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        guard: InFlight,
        started: Instant,
        had_cookie: bool,
    ) -> Response<ResponseBody> {
        let farm = self.farm;
        if let Some(r) = self.record {
            r.set_member(member.label());
        }
        member
            .stats
            .record_response_time(started.elapsed().as_micros() as u64);
        let status = resp.status().as_u16();
        if farm
            .live_traffic
            .failure_codes
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&status))
        {
            self.count_failure(member);
        } else if let Some(crate::farm::health::Transition::CameBack) =
            member.health.record_success()
        {
            tracing::info!(farm = %farm.name, member = %member.label(), "member answered again: back in");
        }

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
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
            tracing::warn!(farm = %farm.name, member = %member.label(), "member switched protocols without being asked");
            return pages::bad_gateway(&farm.name);
        }

        let mut checkin = None;
        if let Some(sender) = sender {
            let pin_it =
                !self.h2 && (self.authenticates || pin::response_challenges(resp.headers()));
            if pin_it {
                match PinnedConnection::try_new(
                    &farm.name,
                    self.tls,
                    member,
                    sender,
                    farm.max_pinned_per_member,
                ) {
                    Ok(p) => self.conn.put_pin(p),
                    Err(_) => {
                        tracing::warn!(farm = %farm.name, member = %member.label(), cap = farm.max_pinned_per_member, "pinned-connection cap reached");
                        return pages::too_many_pinned(&farm.name);
                    }
                }
            } else {
                checkin = Some((Arc::clone(member.pool(self.tls)), sender));
            }
        }

        let (mut parts, body) = resp.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers, false);
        let disabled = affinity::member_disables(&mut parts.headers);
        if let Some(a) = &farm.affinity {
            if !disabled && !had_cookie {
                if let Some(c) =
                    affinity::set_cookie(&a.cookie, &member.affinity_key, self.conn.https)
                {
                    parts.headers.append(header::SET_COOKIE, c);
                }
            }
        }
        Response::from_parts(parts, ResponseBody::upstream(body, guard, checkin))
    }
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
