//! Server farms: members, their state and counters, and choosing one for a request.

mod balance;

pub use balance::Schedule;

use crate::config::{FarmConfig, LoadBalancing, MemberState, UpstreamConfig};
use crate::upstream::Pool;
use rustls::pki_types::ServerName;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Live counters for one member; read by the status page and metrics.
#[derive(Default)]
pub struct MemberStats {
    pub in_flight: AtomicU64,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

pub struct Member {
    pub address: String,
    pub weight: u32,
    pub http_port: u16,
    pub https_port: u16,
    /// SNI / verification name when re-encrypting.
    pub server_name: Option<ServerName<'static>>,
    state: AtomicU8,
    pub stats: MemberStats,
    pub pool_http: Arc<Pool>,
    pub pool_https: Arc<Pool>,
}

impl Member {
    pub fn state(&self) -> MemberState {
        match self.state.load(Ordering::Relaxed) {
            0 => MemberState::Available,
            1 => MemberState::Draining,
            _ => MemberState::Unavailable,
        }
    }

    pub fn set_state(&self, state: MemberState) {
        let v = match state {
            MemberState::Available => 0,
            MemberState::Draining => 1,
            MemberState::Unavailable => 2,
        };
        self.state.store(v, Ordering::Relaxed);
        if state != MemberState::Available {
            self.pool_http.clear();
            self.pool_https.clear();
        }
    }

    /// May take new requests.
    pub fn is_selectable(&self) -> bool {
        self.state() == MemberState::Available
    }

    pub fn pool(&self, tls: bool) -> &Arc<Pool> {
        if tls {
            &self.pool_https
        } else {
            &self.pool_http
        }
    }
}

pub struct Farm {
    pub name: String,
    pub members: Vec<Arc<Member>>,
    pub ssl_offload: bool,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub preserve_host: bool,
    pub x_forwarded: bool,
    pub tls: Arc<rustls::ClientConfig>,
    pub load_balancing: LoadBalancing,
    schedule: Schedule,
}

impl Farm {
    pub fn new(cfg: &FarmConfig, upstream: &UpstreamConfig) -> Farm {
        let idle = upstream.pool_idle_timeout.min(cfg.timeout);
        let members: Vec<Arc<Member>> = cfg
            .members
            .iter()
            .map(|m| {
                let member = Member {
                    server_name: crate::upstream::server_name(&m.address),
                    address: m.address.clone(),
                    weight: m.weight,
                    http_port: m.http_port,
                    https_port: m.https_port,
                    state: AtomicU8::new(0),
                    stats: MemberStats::default(),
                    pool_http: Arc::new(Pool::new(upstream.pool_max_idle_per_member, idle)),
                    pool_https: Arc::new(Pool::new(upstream.pool_max_idle_per_member, idle)),
                };
                member.set_state(m.state);
                Arc::new(member)
            })
            .collect();
        let weights: Vec<u32> = members.iter().map(|m| m.weight).collect();
        Farm {
            name: cfg.name.clone(),
            schedule: Schedule::new(&weights),
            members,
            ssl_offload: cfg.ssl_offload,
            timeout: cfg.timeout,
            connect_timeout: cfg.connect_timeout,
            preserve_host: cfg.preserve_host,
            x_forwarded: cfg.x_forwarded,
            tls: Arc::clone(&cfg.tls),
            load_balancing: cfg.load_balancing,
        }
    }

    /// Chooses the member for a new request, or None when no member may take one.
    pub fn pick(&self) -> Option<usize> {
        let selectable = |i: usize| self.members[i].is_selectable();
        match self.load_balancing {
            LoadBalancing::WeightedRoundRobin => self.schedule.next(selectable),
            LoadBalancing::LeastRequests => balance::least_requests(&self.members, &self.schedule),
            LoadBalancing::PowerOfTwoChoices => {
                balance::power_of_two(&self.members, &self.schedule)
            }
        }
    }

    /// The member to try after `tried` failed to connect: the next selectable one in order.
    pub fn next_after(&self, first: usize, attempt: usize) -> Option<usize> {
        let n = self.members.len();
        (attempt..n)
            .map(|k| (first + k) % n)
            .find(|&i| self.members[i].is_selectable())
    }
}
