//! Background work per farm, one task each per Portico instance (not per worker thread):
//! active health checks and DNS refresh. Both stop when the config snapshot that started
//! them is dropped.

use super::health::Transition;
use super::{Farm, Member};
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
    if farm.health.is_some() {
        let mut stop = stop;
        tokio::spawn(async move {
            let Some(interval) = farm.health.as_ref().map(|h| h.interval) else {
                return;
            };
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
                    let (farm, m, c) = (Arc::clone(&farm), Arc::clone(m), Arc::clone(&connector));
                    checks.spawn(async move { check_member(&farm, &m, &c).await });
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

/// One active check: GET the health URL on the member, as requests reach it.
async fn check_member(farm: &Farm, member: &Member, connector: &Connector) {
    let Some(cfg) = &farm.health else { return };
    let result = tokio::time::timeout(cfg.timeout, probe(farm, member, connector)).await;
    let (ok, detail) = match result {
        Err(_) => (
            false,
            format!("no answer within {}s", cfg.timeout.as_secs()),
        ),
        Ok(Err(e)) => (false, e),
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
    match member.health.record_check(ok, detail.clone(), cfg) {
        Some(Transition::WentDown) => {
            tracing::warn!(farm = %farm.name, member = %member.label(), %detail, "member failed its health check: taken out")
        }
        Some(Transition::CameBack) => {
            tracing::info!(farm = %farm.name, member = %member.label(), "member passed its health check: back in")
        }
        None => {}
    }
}

async fn probe(
    farm: &Farm,
    member: &Member,
    connector: &Connector,
) -> Result<(u16, String), String> {
    let Some(cfg) = &farm.health else {
        return Err("no check configured".into());
    };
    let tls = !farm.ssl_offload;
    let target = Target {
        host: &member.host,
        ip: member.ip,
        port: if tls {
            member.https_port
        } else {
            member.http_port
        },
        tls: if tls {
            member.server_name.as_ref().map(|n| (&farm.tls, n))
        } else {
            None
        },
        connect_timeout: farm.connect_timeout.min(cfg.timeout),
        idle_timeout: cfg.timeout,
    };
    let mut sender = connector
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
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
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
