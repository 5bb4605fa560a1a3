//! Background work per farm, one task each per Portico instance (not per worker thread):
//! active health checks and DNS refresh. Both stop when the config snapshot that started
//! them is dropped.

use super::health::Transition;
use super::{Farm, Member};
use crate::config::HealthConfig;
use crate::upstream::{Connector, RequestBody, Target};
use http::{header, HeaderValue, Request};
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Starts the farm's health-check and DNS tasks; they end when `stop`'s sender is dropped.
pub fn spawn_background(
    farm: Arc<Farm>,
    connector: Arc<Connector>,
    resolve: Arc<HashMap<String, Vec<IpAddr>>>,
    dns_refresh: Duration,
    stop: watch::Receiver<()>,
) {
    let needs_dns = farm
        .configured_hosts()
        .any(|h| !resolve.contains_key(h) && h.parse::<IpAddr>().is_err());
    if needs_dns {
        let farm = Arc::clone(&farm);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            loop {
                refresh_dns(&farm, &resolve).await;
                tokio::select! {
                    _ = tokio::time::sleep(dns_refresh) => {}
                    _ = stop.changed() => return,
                }
            }
        });
    }
    // One task per check, each on its own interval; all of them check every member.
    for index in 0..farm.health_checks.len() {
        let farm = Arc::clone(&farm);
        let connector = Arc::clone(&connector);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let interval = farm.health_checks[index].interval;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                let set = farm.members();
                let mut checks = tokio::task::JoinSet::new();
                for m in &set.members {
                    // Members DNS added since, or kept from a config with other checks.
                    m.health.configure(&farm.health_checks);
                    let (farm, m, c) = (Arc::clone(&farm), Arc::clone(m), Arc::clone(&connector));
                    checks.spawn(async move { check_member(&farm, index, &m, &c).await });
                }
                while checks.join_next().await.is_some() {}
            }
        });
    }
}

async fn refresh_dns(farm: &Farm, resolve: &HashMap<String, Vec<IpAddr>>) {
    let mut found: HashMap<String, Vec<IpAddr>> = HashMap::new();
    let current = farm.members();
    for host in farm.configured_hosts() {
        if found.contains_key(host) {
            continue;
        }
        let ips = if let Some(ips) = resolve.get(host) {
            ips.clone()
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            vec![ip]
        } else {
            match tokio::net::lookup_host((host, 0)).await {
                Ok(addrs) => {
                    let mut ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
                    ips.sort();
                    ips.dedup();
                    ips
                }
                Err(e) => {
                    // A failed lookup keeps what we had: DNS hiccups must not empty a farm.
                    tracing::warn!(farm = %farm.name, host, error = %e, "member name did not resolve; keeping its previous addresses");
                    current
                        .members
                        .iter()
                        .filter(|m| m.host == host)
                        .filter_map(|m| m.ip)
                        .collect()
                }
            }
        };
        found.insert(host.to_string(), ips);
    }
    if farm.refresh(|h| found.get(h).cloned()) {
        let members: Vec<String> = farm.members().members.iter().map(|m| m.label()).collect();
        tracing::info!(farm = %farm.name, ?members, "member addresses changed");
    }
}

/// One active check: GET the health URL on the member, as requests reach it (or on the
/// check's own port), or only connect for a TCP check.
async fn check_member(farm: &Farm, index: usize, member: &Member, connector: &Connector) {
    let Some(cfg) = farm.health_checks.get(index) else {
        return;
    };
    let result = tokio::time::timeout(cfg.timeout, probe(farm, cfg, member, connector)).await;
    let (ok, detail) = match result {
        Err(_) => (
            false,
            format!("no answer within {}s", cfg.timeout.as_secs()),
        ),
        Ok(Err(e)) => (false, e),
        Ok(Ok(_)) if cfg.tcp => (true, "connected".to_string()),
        Ok(Ok((status, body))) => {
            let status_ok = cfg
                .expect
                .iter()
                .any(|(lo, hi)| (*lo..=*hi).contains(&status));
            let body_ok = cfg
                .body
                .as_ref()
                .is_none_or(|needle| body.contains(needle.as_str()));
            match (status_ok, body_ok) {
                (true, true) => (true, format!("{status}")),
                (false, _) => (
                    false,
                    format!("status {status}, expected {}", ranges(&cfg.expect)),
                ),
                (true, false) => (
                    false,
                    format!(
                        "status {status} but the body lacks {:?}",
                        cfg.body.as_deref().unwrap_or("")
                    ),
                ),
            }
        }
    };
    let out = member
        .health
        .record_check_at(index, ok, detail.clone(), cfg);
    let check = cfg.label.as_str();
    match (out.check, &cfg.path) {
        (Some(Transition::WentDown), Some(path)) => {
            tracing::warn!(farm = %farm.name, member = %member.label(), check, %detail, "member failed a health check: no more requests under {path} to it")
        }
        (Some(Transition::CameBack), Some(path)) => {
            tracing::info!(farm = %farm.name, member = %member.label(), check, "member passed a health check: requests under {path} go to it again")
        }
        _ => {}
    }
    match out.member {
        Some(Transition::WentDown) => {
            tracing::warn!(farm = %farm.name, member = %member.label(), check, %detail, "member failed its health check: taken out")
        }
        Some(Transition::CameBack) => {
            tracing::info!(farm = %farm.name, member = %member.label(), check, "member passed its health check: back in")
        }
        None => {}
    }
}

async fn probe(
    farm: &Farm,
    cfg: &HealthConfig,
    member: &Member,
    connector: &Connector,
) -> Result<(u16, String), String> {
    let tls = !farm.ssl_offload;
    let port = cfg.port.unwrap_or(if tls {
        member.https_port
    } else {
        member.http_port
    });
    if cfg.tcp {
        return tcp_connect(member, port, connector)
            .await
            .map(|()| (200, String::new()));
    }
    let target = Target {
        host: &member.host,
        ip: member.ip,
        port,
        tls: if tls {
            member.server_name.as_ref().map(|n| (&farm.tls, n))
        } else {
            None
        },
        connect_timeout: farm.connect_timeout.min(cfg.timeout),
        idle_timeout: cfg.timeout,
    };
    let conn = connector
        .connect(&target)
        .await
        .map_err(|e| e.to_string())?;
    let host = cfg.host.clone().unwrap_or_else(|| member.host.clone());
    let req = Request::get(cfg.url.as_str())
        .header(
            header::HOST,
            HeaderValue::from_str(&host).map_err(|e| e.to_string())?,
        )
        .header(header::USER_AGENT, "Portico-HealthCheck")
        .header(header::CONNECTION, "close")
        .body(RequestBody::Empty)
        .map_err(|e| e.to_string())?;
    let resp = match conn.send(req).await {
        Ok(crate::http1::client::Exchange::Response(r)) => r,
        Ok(crate::http1::client::Exchange::Upgraded(..)) => {
            return Err("the member switched protocols".into())
        }
        Err(f) => return Err(f.error.to_string()),
    };
    let status = resp.status().as_u16();
    let mut body = String::new();
    if cfg.body.is_some() {
        let limited = http_body_util::Limited::new(resp.into_body(), 64 * 1024);
        let bytes = limited
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        body = String::from_utf8_lossy(&bytes).into_owned();
    }
    Ok((status, body))
}

/// A TCP check: the member accepts a connection on `port` (any of its addresses).
async fn tcp_connect(member: &Member, port: u16, connector: &Connector) -> Result<(), String> {
    let addrs = match member.ip {
        Some(ip) => vec![std::net::SocketAddr::new(ip, port)],
        None => connector
            .resolve(&member.host, port)
            .await
            .map_err(|e| e.to_string())?,
    };
    let mut last = String::from("no address");
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("connect to {addr} failed: {e}"),
        }
    }
    Err(last)
}

fn ranges(r: &[(u16, u16)]) -> String {
    r.iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}
