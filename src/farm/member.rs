//! One member of a farm: where it is, its administrative state, health and counters.

use super::health::HealthState;
use crate::config::MemberState;
use crate::upstream::{Endpoint, EndpointStats};
use crate::worker::Counter;
use rustls::pki_types::ServerName;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

/// The member's own figure for load balancing: a moving average of the time to response
/// headers, in microseconds (connection counters live in its endpoints).
#[derive(Default)]
pub struct ResponseTime(AtomicU64);

impl ResponseTime {
    pub(crate) fn micros(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Folds one response time into the moving average (weight 1/5 for the new sample).
    pub fn record(&self, micros: u64) {
        let old = self.0.load(Ordering::Relaxed);
        let new = if old == 0 {
            micros
        } else {
            (old * 4 + micros) / 5
        };
        self.0.store(new.max(1), Ordering::Relaxed);
    }

    pub(crate) fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// Identity of a member across DNS refreshes and reloads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemberKey {
    pub(crate) host: String,
    pub(crate) ip: Option<IpAddr>,
    pub(crate) http_port: u16,
    pub(crate) https_port: u16,
}

/// One member of a farm: where it is, and its health, counters and connection pool.
pub struct Member {
    /// The configured name: SNI, certificate check, and Host when the farm does not keep it.
    pub host: String,
    /// The address this member stands for when its name has several (DNS load balancing);
    /// None: resolve at connect time.
    pub ip: Option<IpAddr>,
    pub(crate) weight: u32,
    pub(crate) http_port: u16,
    pub(crate) https_port: u16,
    pub(crate) server_name: Option<ServerName<'static>>,
    /// Value of the affinity cookie naming this member: the same on every instance.
    pub affinity_key: String,
    /// Hash input for rendezvous hashing, derived from the key.
    pub hash_seed: u64,
    state: AtomicU8,
    pub(crate) health: HealthState,
    pub(crate) response_time: ResponseTime,
    /// The member reached in clear text (`http_port`) and over TLS (`https_port`).
    http: Arc<Endpoint>,
    https: Arc<Endpoint>,
}

/// FNV-1a: small, stable across processes and versions (affinity must not change on upgrade).
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

impl Member {
    pub(crate) fn new(
        farm: &str,
        key: &MemberKey,
        weight: u32,
        state: MemberState,
        pool_max_idle: usize,
    ) -> Member {
        let ip_text = key.ip.map(|ip| ip.to_string()).unwrap_or_default();
        let hash = fnv1a(&[
            farm.as_bytes(),
            key.host.as_bytes(),
            ip_text.as_bytes(),
            &key.http_port.to_be_bytes(),
            &key.https_port.to_be_bytes(),
        ]);
        let m = Member {
            host: key.host.clone(),
            ip: key.ip,
            weight,
            http_port: key.http_port,
            https_port: key.https_port,
            server_name: crate::upstream::server_name(&key.host),
            affinity_key: format!("{hash:016x}"),
            hash_seed: hash,
            state: AtomicU8::new(0),
            health: HealthState::default(),
            response_time: ResponseTime::default(),
            http: Arc::new(Endpoint::new(
                &key.host,
                key.ip,
                key.http_port,
                pool_max_idle,
            )),
            https: Arc::new(Endpoint::new(
                &key.host,
                key.ip,
                key.https_port,
                pool_max_idle,
            )),
        };
        m.set_state(state);
        m
    }

    pub(crate) fn key(&self) -> MemberKey {
        MemberKey {
            host: self.host.clone(),
            ip: self.ip,
            http_port: self.http_port,
            https_port: self.https_port,
        }
    }

    /// "fe01.contoso.local" or "pool01.contoso.local (10.0.1.12)" — for logs and the status page.
    pub fn label(&self) -> String {
        match self.ip {
            Some(ip) if self.host != ip.to_string() => format!("{} ({ip})", self.host),
            _ => self.host.clone(),
        }
    }

    pub(crate) fn state(&self) -> MemberState {
        match self.state.load(Ordering::Relaxed) {
            0 => MemberState::Available,
            1 => MemberState::Draining,
            _ => MemberState::Unavailable,
        }
    }

    pub(crate) fn set_state(&self, state: MemberState) {
        let v = match state {
            MemberState::Available => 0,
            MemberState::Draining => 1,
            MemberState::Unavailable => 2,
        };
        self.state.store(v, Ordering::Relaxed);
        if state != MemberState::Available {
            self.http.clear();
            self.https.clear();
        }
    }

    /// May take new requests.
    pub fn is_selectable(&self) -> bool {
        self.state() == MemberState::Available && self.health.is_up()
    }

    /// May take a new request for `path`: selectable, and no failing per-path health check
    /// guards the path (Exchange: EWS down on this server, OWA still served).
    pub fn is_selectable_for(&self, path: &str) -> bool {
        self.state() == MemberState::Available && self.health.is_up_for(path)
    }

    /// May take requests from clients with affinity to it (draining keeps those).
    pub fn accepts_affinity(&self) -> bool {
        self.state() != MemberState::Unavailable && self.health.is_up()
    }

    /// The endpoint a request reaches the member through.
    pub fn endpoint(&self, tls: bool) -> &Arc<Endpoint> {
        if tls {
            &self.https
        } else {
            &self.http
        }
    }

    /// A sum over both endpoints of one counter.
    pub fn total(&self, counter: impl Fn(&EndpointStats) -> &Counter) -> u64 {
        counter(&self.http.stats)
            .get()
            .wrapping_add(counter(&self.https.stats).get())
    }

    /// Client connections holding a pinned (NTLM/Negotiate) connection on either endpoint.
    pub fn pinned(&self) -> u64 {
        self.http.stats.pinned.load(Ordering::Relaxed)
            + self.https.stats.pinned.load(Ordering::Relaxed)
    }

    /// Requests in flight on either endpoint (least-requests balancing reads this).
    pub fn in_flight(&self) -> u64 {
        self.total(|s| &s.in_flight)
    }

    /// Idle pooled connections on both endpoints.
    pub fn idle_connections(&self) -> usize {
        self.http.idle() + self.https.idle()
    }

    /// Zeroes the totals (the status page's "reset counters"); live gauges stay.
    pub fn reset_counters(&self) {
        self.http.stats.reset();
        self.https.stats.reset();
        self.response_time.reset();
    }
}
