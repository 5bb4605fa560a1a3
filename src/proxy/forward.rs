//! Forwarding a routed request to a member of its farm: the farm chooses (affinity,
//! balancing, health), `upstream` sends (pooled, new or pinned connection), and this loop
//! moves to the next candidate when the error allows it.

use super::affinity;
use super::body::ResponseBody;
use super::headers;
use super::pages;
use super::pin::{self, PinHome, PinSlot};
use super::{Answer, ConnInfo, ProxyError, Snapshot};
use crate::access_log::AccessRecord;
use crate::config::HashKey;
use crate::downstream::{ClientBody, ClientIo};
use crate::farm::{fnv1a, Farm, Member, MemberSet, PickInput};
use crate::http1::server::{OnUpgrade, Upgrading};
use crate::http1::{Present, Upgraded};
use crate::upstream::{
    ErrorKind, Exchange, Fault, InFlight, MemberIo, Reach, Reply, RequestBody, Retry, SendError,
};
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// Where the routed request goes and how.
pub(super) struct Route {
    pub farm: Arc<Farm>,
    /// The names the client's request carries.
    pub present: Present,
    pub host: HeaderValue,
    pub new_path: Option<PathAndQuery>,
    pub tls: bool,
    pub max_body: Option<u64>,
    /// The client as `{REMOTE_ADDR}` names it (PROXY protocol, trusted X-Forwarded-For).
    pub client: IpAddr,
}

/// A routed request once everything that needs no waiting is done: the farm has chosen
/// (affinity and hash read the client's request, so before it was edited) and the request is
/// the member's. It owns what the sending needs, so the future that sends holds one request,
/// the member's, and no moved-from copy of the client's.
pub(super) struct Prepared {
    snap: Arc<Snapshot>,
    conn: Arc<ConnInfo>,
    record: Option<Arc<AccessRecord>>,
    farm: Arc<Farm>,
    set: Arc<MemberSet>,
    first: Option<usize>,
    /// The member the client's affinity cookie names: it needs no new cookie.
    cookie_member: Option<usize>,
    pick_path: String,
    req: Request<RequestBody>,
    client_upgrade: Option<Upgrading<ClientIo>>,
    host: HeaderValue,
    /// What X-Forwarded-For says; `None` for a farm that sends no forwarding fields.
    forwarded: Option<headers::ForwardedFor>,
    max_body: Option<u64>,
    tls: bool,
    h2: bool,
    authenticates: bool,
}

/// Checks, chooses and rewrites without waiting; `Err` is the answer when the request goes
/// no further (a declared body over the limit, Windows auth over h2: rare, so boxed).
#[inline]
pub(super) fn prepare(
    snap: Arc<Snapshot>,
    conn: Arc<ConnInfo>,
    req: Request<ClientBody>,
    record: Option<Arc<AccessRecord>>,
    route: Route,
) -> Result<Prepared, Box<Answer>> {
    let Route {
        farm,
        present,
        host,
        new_path,
        tls,
        max_body,
        client,
    } = route;
    // A declared length over the limit is refused before a byte reaches a member; a chunked
    // body is cut when it passes the limit (`RequestBody`).
    if let Some(limit) = max_body.filter(|_| present.any(Present::CONTENT_LENGTH)) {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(Box::new(Ok(pages::too_large(&farm.name, limit))));
        }
    }
    let h2 = req.version() == Version::HTTP_2;
    let authenticates =
        present.any(Present::AUTHORIZATION) && pin::request_authenticates(req.headers());
    if h2 && authenticates {
        // IIS refuses Windows auth over h2, and one h2 connection carries many clients'
        // requests: ask the client to retry this over HTTP/1.1 (RFC 9113 HTTP_1_1_REQUIRED).
        return Err(Box::new(Err(ProxyError::Http11Required(
            h2::Reason::HTTP_1_1_REQUIRED.into(),
        ))));
    }

    // Choose before the headers are edited: affinity and hash read the client's request.
    let set = farm.members();
    let hash = match &farm.load_balancing {
        crate::config::LoadBalancing::RequestHash(key) => {
            Some(request_hash(key, &req, &host, client))
        }
        _ => None,
    };
    let cookie = farm
        .affinity_cookie()
        .and_then(|n| affinity::cookie_value(req.headers(), n));
    let cookie_member = cookie.and_then(|c| set.members.iter().position(|m| m.affinity_key == c));
    // Per-path health checks (Exchange: /ews down, /owa up) decide on the client's path;
    // copied only for farms that have such checks (String::new() does not allocate).
    let pick_path = if farm.health_checks.iter().any(|c| c.path.is_some()) {
        req.uri().path().to_owned()
    } else {
        String::new()
    };
    let first = farm.pick(
        &set,
        &PickInput {
            affinity: cookie,
            hash,
            path: &pick_path,
        },
    );
    let (req, client_upgrade, forwarded) = outgoing(
        req,
        present,
        new_path,
        &farm,
        &conn,
        record.as_ref(),
        max_body,
    );
    Ok(Prepared {
        snap,
        conn,
        record,
        farm,
        set,
        first,
        cookie_member,
        pick_path,
        req,
        client_upgrade,
        host,
        forwarded,
        max_body,
        tls,
        h2,
        authenticates,
    })
}

/// Sends the prepared request: on the client connection's pinned member connection if it
/// has one, else to each candidate in turn while the error allows another try. A plain fn
/// returning an async block that uses `p` in place (see `proxy::handle`).
#[allow(clippy::manual_async_fn)] // on purpose: see above
#[inline] // builds its future in the caller's place instead of moving 2 KB
pub(super) fn send(mut p: Prepared) -> impl std::future::Future<Output = Answer> + Send {
    async move {
        let farm = &p.farm;
        let conn = &p.conn;
        let tls = p.tls;
        let host = &p.host;
        let authenticates = p.authenticates;
        let ctx = Ctx {
            farm,
            conn,
            h2: p.h2,
            authenticates,
            tls,
            record: p.record.as_ref(),
            max_body: p.max_body,
        };
        let reach = Reach {
            connector: &p.snap.connector,
            tls: tls.then_some(&farm.tls),
            connect_timeout: farm.connect_timeout,
            read_timeout: farm.timeout,
            pool_idle_timeout: farm.pool_idle_timeout,
        };
        // `p.req` and `p.client_upgrade` are used in place: a local moved from them would be
        // a second copy in this future's state.
        let forwarded = p
            .forwarded
            .as_ref()
            .map(|f| headers::Forwarded::new(f, &conn.forwarded_for, conn.https, host));
        let added = forwarded.as_ref().map_or(&[][..], |f| f.fields());

        // A client connection that authenticated keeps its member connection.
        if !p.h2 {
            if let Some((member, in_flight, started, sent)) =
                pinned_try(conn, farm, tls, &mut p.req, host, &reach, added).await
            {
                match sent {
                    Ok(x) => {
                        return Ok(ctx.finish(
                            &member,
                            x,
                            p.client_upgrade,
                            in_flight,
                            started,
                            true,
                        ));
                    }
                    Err(mut e) => match (e.retry(), e.take_request()) {
                        (Retry::NotSent, Some(back)) => {
                            tracing::debug!(farm = %farm.name, member = %member.label(), "pinned member connection closed; the client must authenticate again");
                            p.req = back;
                        }
                        _ => return Ok(ctx.failed(&member, e)),
                    },
                }
            }
        }

        let Some(first) = p.first else {
            return Ok(pages::unavailable(&farm.name));
        };
        let set = &p.set;
        let mut candidates = farm.failover_order(set, first, &p.pick_path);
        let mut next = candidates.next();
        let mut replayed = false;
        while let Some(idx) = next {
            let member = &set.members[idx];
            let endpoint = member.endpoint(tls);
            if authenticates && !endpoint.has_pin_room(farm.max_pinned_per_member) {
                return Ok(pages::too_many_pinned(&farm.name));
            }
            set_host(&mut p.req, farm, member, host, tls);
            let in_flight = InFlight::new(endpoint);
            let started = Instant::now();
            let sent = if replayed {
                endpoint.send_new(&reach, p.req, added).await
            } else {
                endpoint.send(&reach, p.req, added).await
            };
            let mut err = match sent {
                Ok(x) => {
                    let had_cookie = p.cookie_member == Some(idx);
                    return Ok(ctx.finish(
                        member,
                        x,
                        p.client_upgrade,
                        in_flight,
                        started,
                        had_cookie,
                    ));
                }
                Err(e) => e,
            };
            p.req = match (err.retry(), err.take_request()) {
                // A pooled connection died under an idempotent request: once more, same member,
                // on a new connection.
                (Retry::Idempotent, Some(copy)) if !replayed => {
                    replayed = true;
                    copy
                }
                // Never written: any other member may take it.
                (Retry::NotSent, Some(back)) if err.fault() != Fault::Local => {
                    farm.report_failure(member, tls);
                    tracing::warn!(farm = %farm.name, member = %member.label(), error = %err, "member unreachable; trying the next one");
                    next = candidates.next();
                    back
                }
                _ => return Ok(ctx.failed(member, err)),
            };
        }
        Ok(pages::bad_gateway(&farm.name))
    }
}

/// The try on the client connection's pinned member connection, if it has one for this farm
/// and scheme. Made here and awaited where it is made, so that `send`'s state holds this
/// future alone: built in `send` itself, the pin's slot, its destructured parts and the
/// moved-from connection stayed in every request's future beside the send (560 bytes of a
/// 2,088-byte future, `-Zprint-type-sizes`), pinned or not.
#[inline]
fn pinned_try<'a>(
    conn: &ConnInfo,
    farm: &Farm,
    tls: bool,
    req: &mut Request<RequestBody>,
    host: &HeaderValue,
    reach: &'a Reach<'a>,
    added: crate::http1::write::Added<'a>,
) -> PinnedTry<'a> {
    let Some(PinSlot {
        member,
        conn: pinned,
        ..
    }) = conn.take_pin(&farm.name, tls)
    else {
        return PinnedTry {
            sending: None,
            held: None,
        };
    };
    set_host(req, farm, &member, host, tls);
    let in_flight = InFlight::new(pinned.endpoint());
    let started = Instant::now();
    // Handed back in the error when the connection turns out closed before it took a byte.
    let req = std::mem::replace(req, Request::new(RequestBody::Empty));
    PinnedTry {
        sending: Some(pinned.send(reach, req, added)),
        held: Some((member, in_flight, started)),
    }
}

pin_project_lite::pin_project! {
    /// [`pinned_try`]'s future: `None` at once when there is no pinned connection, else the
    /// member, its in-flight count, the start time and the send's result.
    struct PinnedTry<'a> {
        #[pin]
        sending: Option<crate::upstream::Exchanging<'a>>,
        held: Option<(Arc<Member>, InFlight, Instant)>,
    }
}

type PinnedSent = (Arc<Member>, InFlight, Instant, Result<Exchange, SendError>);

impl std::future::Future for PinnedTry<'_> {
    type Output = Option<PinnedSent>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let Some(sending) = this.sending.as_pin_mut() else {
            return std::task::Poll::Ready(None);
        };
        let sent = std::task::ready!(sending.poll(cx));
        let (member, in_flight, started) = this.held.take().expect("a pinned try holds its member");
        std::task::Poll::Ready(Some((member, in_flight, started, sent)))
    }
}

/// The request as the member gets it: origin-form target (byte for byte as the client sent
/// it, unless a rule rewrote it), HTTP/1.1, hop-by-hop headers gone, the client's own
/// forwarding fields gone (what the member gets instead is the third value, for farms that
/// send them).
fn outgoing(
    mut req: Request<ClientBody>,
    present: Present,
    new_path: Option<PathAndQuery>,
    farm: &Farm,
    conn: &ConnInfo,
    record: Option<&Arc<AccessRecord>>,
    max_body: Option<u64>,
) -> (
    Request<RequestBody>,
    Option<Upgrading<ClientIo>>,
    Option<headers::ForwardedFor>,
) {
    let upgrade = req.version() == Version::HTTP_11
        && present.any(Present::UPGRADE)
        && headers::wants_upgrade(req.headers());
    let client_upgrade = req
        .extensions_mut()
        .remove::<OnUpgrade<ClientIo>>()
        .filter(|_| upgrade)
        .and_then(|o| o.take());
    let (mut parts, body) = req.into_parts();
    parts.uri = match new_path.or_else(|| parts.uri.path_and_query().cloned()) {
        Some(pq) => Uri::from(pq),
        None => Uri::from_static("/"),
    };
    parts.version = Version::HTTP_11;
    headers::remove_hop_by_hop(&mut parts.headers, upgrade);
    if present.any(Present::EXPECT) {
        parts.headers.remove(header::EXPECT);
    }
    if present.any(Present::COOKIE) {
        headers::join_cookies(&mut parts.headers);
    }
    if upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let forwarded = farm.x_forwarded.then(|| {
        headers::take_forwarded(
            &mut parts.headers,
            present,
            &conn.forwarded_for,
            conn.trusted_peer,
        )
    });
    let body = RequestBody::client(body, record.cloned(), max_body);
    (Request::from_parts(parts, body), client_upgrade, forwarded)
}

/// `client`: the address `{REMOTE_ADDR}` means in rules, so hashing on it agrees with them.
fn request_hash(
    key: &HashKey,
    req: &Request<ClientBody>,
    host: &HeaderValue,
    client: IpAddr,
) -> u64 {
    match key {
        HashKey::Variable(v) => {
            let value: std::borrow::Cow<'_, [u8]> = match v.as_str() {
                "REMOTE_ADDR" => match client {
                    IpAddr::V4(ip) => ip.octets().to_vec().into(),
                    IpAddr::V6(ip) => ip.octets().to_vec().into(),
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
    member: &Member,
    host: &HeaderValue,
    tls: bool,
) {
    let value = if farm.preserve_host {
        // The client's own Host is `host`, byte for byte (`decide` copied it): kept as it is.
        // Inserting the copy would be an insertion and, at its first clone, an allocation.
        if req.headers().contains_key(header::HOST) {
            return;
        }
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
}

/// One request's facts needed after the member answered or failed.
struct Ctx<'a> {
    farm: &'a Arc<Farm>,
    conn: &'a Arc<ConnInfo>,
    h2: bool,
    authenticates: bool,
    tls: bool,
    record: Option<&'a Arc<AccessRecord>>,
    max_body: Option<u64>,
}

impl Ctx<'_> {
    /// The answer for a failed send; the member's health hears only of its own faults.
    fn failed(&self, member: &Member, err: SendError) -> Response<ResponseBody> {
        let farm = self.farm;
        if err.counts_against_member() {
            farm.report_failure(member, self.tls);
        }
        if let Some(r) = self.record {
            r.set_member(member.label());
        }
        match &err.kind {
            ErrorKind::Client(crate::upstream::BodyError::TooLarge) => {
                pages::too_large(&farm.name, self.max_body.unwrap_or(0))
            }
            ErrorKind::Client(e) => {
                tracing::debug!(farm = %farm.name, error = %e, "client request body broke off");
                pages::bad_request_close("The request body was malformed or cut off.", !self.h2)
            }
            ErrorKind::HeadTimeout(_) => {
                tracing::warn!(farm = %farm.name, member = %member.label(), timeout_secs = farm.timeout.as_secs(), "member did not finish its response head in time");
                pages::gateway_timeout(&farm.name, farm.timeout.as_secs())
            }
            ErrorKind::IdleTimeout(_) => {
                tracing::warn!(farm = %farm.name, member = %member.label(), timeout_secs = farm.timeout.as_secs(), "member timed out");
                pages::gateway_timeout(&farm.name, farm.timeout.as_secs())
            }
            ErrorKind::Local(e) => {
                tracing::error!(farm = %farm.name, member = %member.label(), error = %e, "Portico is out of resources (raise the open-files limit or lower max_connections); the member is not blamed");
                pages::overloaded(&farm.name)
            }
            _ => {
                tracing::warn!(farm = %farm.name, member = %member.label(), error = %err, "member failed before answering");
                pages::bad_gateway(&farm.name)
            }
        }
    }

    /// Turns the member's response into the client's, deciding on the way whether the
    /// member connection goes back to the pool, is pinned to this client, or is consumed by
    /// a tunnel.
    fn finish(
        &self,
        member: &Arc<Member>,
        sent: Exchange,
        client_upgrade: Option<Upgrading<ClientIo>>,
        in_flight: InFlight,
        started: Instant,
        had_cookie: bool,
    ) -> Response<ResponseBody> {
        let farm = self.farm;
        if let Some(r) = self.record {
            r.set_member(member.label());
        }
        let Exchange { response, lease } = sent;
        farm.report_response(
            member,
            self.tls,
            response.status().as_u16(),
            started.elapsed(),
        );
        let (mut parts, reply) = response.into_parts();
        let body = match reply {
            Reply::Body(body) => body,
            Reply::Switched(member_io) => {
                let Some(client_upgrade) = client_upgrade else {
                    // `http1::client` takes a 101 only for a request that asked to upgrade.
                    return pages::bad_gateway(&farm.name);
                };
                tokio::spawn(tunnel(client_upgrade, member_io, in_flight));
                headers::remove_hop_by_hop(&mut parts.headers, true);
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                return Response::from_parts(parts, ResponseBody::empty());
            }
        };

        let present = Present::of(&parts.headers);
        let pin_it = !self.h2
            && (self.authenticates
                || (present.any(Present::WWW_AUTHENTICATE)
                    && pin::response_challenges(&parts.headers)));
        let lease = if pin_it {
            match lease.pin(farm.max_pinned_per_member) {
                Ok(l) => l,
                Err(_) => {
                    tracing::warn!(farm = %farm.name, member = %member.label(), cap = farm.max_pinned_per_member, "pinned-connection cap reached");
                    return pages::too_many_pinned(&farm.name);
                }
            }
        } else {
            lease
        };
        let pin_home = lease.is_pinned().then(|| {
            Box::new(PinHome {
                client: Arc::clone(self.conn),
                farm: Arc::clone(farm),
                tls: self.tls,
                member: Arc::clone(member),
            })
        });

        headers::remove_hop_by_hop(&mut parts.headers, false);
        // Its header is not a standard name: only a response with one can carry it.
        let disabled = present.any(Present::OTHER) && affinity::member_disables(&mut parts.headers);
        if let Some(name) = farm.affinity_cookie() {
            if !disabled && !had_cookie {
                if let Some(c) = affinity::set_cookie(name, &member.affinity_key, self.conn.https) {
                    parts.headers.append(header::SET_COOKIE, c);
                }
            }
        }
        Response::from_parts(
            parts,
            ResponseBody::upstream(body, in_flight, lease, pin_home),
        )
    }
}

/// Copies bytes both ways once client and member have both switched protocols; what each
/// side sent past its head goes to the other first.
async fn tunnel(client: Upgrading<ClientIo>, member: Upgraded<MemberIo>, _in_flight: InFlight) {
    use tokio::io::AsyncWriteExt;
    let Some(client) = client.await else {
        tracing::debug!("upgrade failed: the client connection closed before the 101 was written");
        return;
    };
    let (mut c, mut m) = (client.io, member.io);
    let ahead = async {
        m.write_all(&client.read_ahead).await?;
        c.write_all(&member.read_ahead).await
    };
    if let Err(e) = ahead.await {
        tracing::debug!(error = %e, "tunnel closed");
        return;
    }
    if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut m).await {
        tracing::debug!(error = %e, "tunnel closed");
    }
}
