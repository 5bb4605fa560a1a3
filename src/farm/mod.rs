//! Server farms: members, their state, choosing one for a request, and the background work
//! that keeps the member list true (active health checks, DNS refresh).

mod balance;
mod checker;
pub mod health;
mod member;

pub use balance::Schedule;
pub use checker::spawn_background;
pub use member::{fnv1a, Member, MemberKey, ResponseTime};

use crate::config::{FarmConfig, LoadBalancing};
use arc_swap::ArcSwap;
use health::Transition;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// The members of a farm at one moment, with the schedule built for them. Replaced whole
/// when DNS changes the member list.
pub struct MemberSet {
    pub(crate) members: Vec<Arc<Member>>,
    schedule: Schedule,
}

impl MemberSet {
    fn new(members: Vec<Arc<Member>>) -> MemberSet {
        let weights: Vec<u32> = members.iter().map(|m| m.weight).collect();
        MemberSet {
            schedule: Schedule::new(&weights),
            members,
        }
    }
}

/// What a request brings to the choice of a member.
#[derive(Default)]
pub struct PickInput<'a> {
    /// Value of the farm's affinity cookie, if the client sent one.
    pub affinity: Option<&'a str>,
    /// Hash of the request key for `request-hash`.
    pub hash: Option<u64>,
    /// The request path: per-path health checks decide which members may take it.
    pub path: &'a str,
}

/// A farm at run time: its compiled spec (the one place each setting lives) and the live
/// member list. Reads of settings go through to the spec by `Deref` (`farm.timeout` is the
/// spec's `timeout`).
pub struct Farm {
    spec: Arc<FarmConfig>,
    members: ArcSwap<MemberSet>,
}

impl std::ops::Deref for Farm {
    type Target = FarmConfig;

    fn deref(&self) -> &FarmConfig {
        &self.spec
    }
}

impl Farm {
    /// Builds the farm; names in `[resolve]` expand to one member per address now, other
    /// names when the DNS task first runs. `previous` members with the same identity are
    /// reused, so health and counters survive a reload.
    pub fn new(
        spec: Arc<FarmConfig>,
        resolve: &HashMap<String, Vec<IpAddr>>,
        previous: Option<&Farm>,
    ) -> Farm {
        let farm = Farm {
            spec,
            members: ArcSwap::from_pointee(MemberSet::new(Vec::new())),
        };
        let old: Vec<Arc<Member>> = previous
            .map(|p| p.members().members.clone())
            .unwrap_or_default();
        let expanded = farm.expand(
            |host| {
                if let Some(ips) = resolve.get(host) {
                    return Some(ips.clone());
                }
                if let Ok(ip) = host.parse::<IpAddr>() {
                    return Some(vec![ip]);
                }
                // Not known yet: keep what the previous config resolved, else resolve later.
                let known: Vec<IpAddr> = old
                    .iter()
                    .filter(|m| m.host == host)
                    .filter_map(|m| m.ip)
                    .collect();
                (!known.is_empty()).then_some(known)
            },
            &old,
        );
        farm.members.store(Arc::new(MemberSet::new(expanded)));
        farm
    }

    /// The current members (cheap: one atomic load and reference count).
    pub fn members(&self) -> Arc<MemberSet> {
        self.members.load_full()
    }

    /// One member per address of each configured name; `lookup` returns None for a name
    /// not resolved yet (it stays one member, resolved at connect time).
    fn expand(
        &self,
        lookup: impl Fn(&str) -> Option<Vec<IpAddr>>,
        reuse: &[Arc<Member>],
    ) -> Vec<Arc<Member>> {
        let mut out: Vec<Arc<Member>> = Vec::new();
        for mc in &self.spec.members {
            let ips: Vec<Option<IpAddr>> = match lookup(&mc.address) {
                Some(ips) if !ips.is_empty() => ips.into_iter().map(Some).collect(),
                _ => vec![None],
            };
            for ip in ips {
                let key = MemberKey {
                    host: mc.address.clone(),
                    ip,
                    http_port: mc.http_port,
                    https_port: mc.https_port,
                };
                if out.iter().any(|m| m.key() == key) {
                    continue;
                }
                let member = reuse
                    .iter()
                    .find(|m| m.key() == key && m.weight == mc.weight)
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(Member::new(
                            &self.name,
                            &key,
                            mc.weight,
                            mc.state,
                            self.spec.pool_max_idle,
                        ))
                    });
                out.push(member);
            }
        }
        out
    }

    /// Replaces the member list if the addresses changed; returns whether it did.
    pub fn refresh(&self, lookup: impl Fn(&str) -> Option<Vec<IpAddr>>) -> bool {
        let current = self.members();
        let next = self.expand(lookup, &current.members);
        let same = next.len() == current.members.len()
            && next
                .iter()
                .zip(&current.members)
                .all(|(a, b)| Arc::ptr_eq(a, b));
        if !same {
            self.members.store(Arc::new(MemberSet::new(next)));
        }
        !same
    }

    /// The configured host names (for the DNS task).
    pub fn configured_hosts(&self) -> impl Iterator<Item = &str> {
        self.spec.members.iter().map(|m| m.address.as_str())
    }

    /// Chooses the member for a new request, or None when no member may take one.
    pub fn pick(&self, set: &MemberSet, input: &PickInput<'_>) -> Option<usize> {
        if let (Some(_), Some(cookie)) = (&self.affinity, input.affinity) {
            if let Some(i) = set.members.iter().position(|m| {
                m.affinity_key == cookie && m.accepts_affinity() && m.health.is_up_for(input.path)
            }) {
                return Some(i);
            }
        }
        let members = &set.members;
        let path = input.path;
        let selectable = |i: usize| members[i].is_selectable_for(path);
        match &self.load_balancing {
            LoadBalancing::WeightedRoundRobin => set.schedule.next(selectable),
            LoadBalancing::LeastRequests => balance::least_requests(members, &set.schedule, path),
            LoadBalancing::LeastResponseTime => {
                balance::least_response_time(members, &set.schedule, path)
            }
            LoadBalancing::PowerOfTwoChoices => balance::power_of_two(members, &set.schedule, path),
            LoadBalancing::RequestHash(_) => match input.hash {
                Some(h) => balance::rendezvous(members, h, path),
                None => set.schedule.next(selectable),
            },
        }
    }

    /// Members to try in order: the choice, then every other selectable member once
    /// (fail-over when a connect fails).
    pub fn failover_order<'a>(
        &self,
        set: &'a MemberSet,
        first: usize,
        path: &'a str,
    ) -> impl Iterator<Item = usize> + 'a {
        let n = set.members.len();
        std::iter::once(first).chain(
            (1..n)
                .map(move |k| (first + k) % n)
                .filter(move |&i| set.members[i].is_selectable_for(path)),
        )
    }
}

/// What live traffic tells the farm about a member (ARR's live-traffic failure detection).
impl Farm {
    /// The member failed an exchange (refused, reset, timed out, garbage). Portico's own
    /// failures and clients' never get here.
    /// `tls`: the endpoint the exchange went through, whose failure counter the status page
    /// and `portico_member_failures` show.
    pub fn report_failure(&self, member: &Member, tls: bool) {
        member.endpoint(tls).stats.failures.add(1);
        if let Some(Transition::WentDown) = member
            .health
            .record_failure(&self.spec.live_traffic, self.spec.health.is_some())
        {
            tracing::warn!(farm = %self.spec.name, member = %member.label(), "member failing live traffic: taken out");
        }
    }

    /// The member answered with `status` after `elapsed`: a failure code counts as a failure,
    /// anything else may bring a probing member back.
    pub fn report_response(&self, member: &Member, tls: bool, status: u16, elapsed: Duration) {
        member.response_time.record(elapsed.as_micros() as u64);
        if self.is_failure_status(status) {
            self.report_failure(member, tls);
        } else if let Some(Transition::CameBack) = member.health.record_success() {
            tracing::info!(farm = %self.spec.name, member = %member.label(), "member answered again: back in");
        }
    }

    fn is_failure_status(&self, status: u16) -> bool {
        self.spec
            .live_traffic
            .failure_codes
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }

    /// The affinity cookie's name, when the farm has affinity.
    pub fn affinity_cookie(&self) -> Option<&str> {
        self.spec.affinity.as_ref().map(|a| a.cookie.as_str())
    }
}
