//! `/metrics`: OpenMetrics text (Prometheus reads it) built with `prometheus-client`.
//!
//! The numbers live in the members' atomics (`farm::MemberStats`), so each scrape builds a
//! fresh registry from them: nothing is counted twice and a member that left with a reload
//! simply disappears. Member series carry `farm` and `member` (the API id) labels.

use super::api::{member_ids, state_name, unix};
use crate::config::MemberState;
use crate::instance::Control;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Families of per-member series, registered once per scrape.
#[derive(Default)]
struct MemberFamilies {
    requests: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    bytes_in: Family<Labels, Counter>,
    bytes_out: Family<Labels, Counter>,
    in_flight: Family<Labels, Gauge>,
    response_time: Family<Labels, FloatGauge>,
    up: Family<Labels, Gauge>,
    state: Family<Labels, Gauge>,
    weight: Family<Labels, Gauge>,
    pinned: Family<Labels, Gauge>,
    pool_idle: Family<Labels, Gauge>,
    opened: Family<Labels, Counter>,
    reused: Family<Labels, Counter>,
    check_up: Family<Labels, Gauge>,
}

impl MemberFamilies {
    fn register(&self, r: &mut Registry) {
        r.register(
            "portico_member_requests",
            "Requests sent to the member",
            self.requests.clone(),
        );
        r.register(
            "portico_member_failures",
            "Requests to the member that failed (connect error, timeout, failure status)",
            self.failures.clone(),
        );
        r.register(
            "portico_member_request_bytes",
            "Request body bytes forwarded to the member",
            self.bytes_in.clone(),
        );
        r.register(
            "portico_member_response_bytes",
            "Response body bytes from the member passed on to clients",
            self.bytes_out.clone(),
        );
        r.register(
            "portico_member_in_flight_requests",
            "Requests the member is serving now",
            self.in_flight.clone(),
        );
        r.register(
            "portico_member_response_time_seconds",
            "Moving average of the member's time to response headers",
            self.response_time.clone(),
        );
        r.register(
            "portico_member_check_up",
            "1 while this health check of the member passes (label check: its name, e.g. the path prefix it guards)",
            self.check_up.clone(),
        );
        r.register(
            "portico_member_up",
            "1 when health checks and live traffic let the member take requests",
            self.up.clone(),
        );
        r.register(
            "portico_member_state",
            "Administrative state: 1 for the member's current state label",
            self.state.clone(),
        );
        r.register(
            "portico_member_weight",
            "Configured weight",
            self.weight.clone(),
        );
        r.register(
            "portico_member_pinned_connections",
            "Client connections holding a private NTLM/Negotiate connection to the member",
            self.pinned.clone(),
        );
        r.register(
            "portico_member_pool_idle_connections",
            "Idle pooled connections to the member",
            self.pool_idle.clone(),
        );
        r.register(
            "portico_member_connections_opened",
            "New connections Portico opened to the member",
            self.opened.clone(),
        );
        r.register(
            "portico_member_connections_reused",
            "Requests sent on a pooled connection to the member",
            self.reused.clone(),
        );
    }
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The whole exposition, ending in `# EOF`.
pub fn render(control: &Control) -> String {
    let snap = control.proxy.current.load_full();
    let mut registry = Registry::default();
    let fam = MemberFamilies::default();
    for farm in &snap.farms {
        let set = farm.members();
        for (m, id) in set.members.iter().zip(member_ids(&set.members)) {
            let labels: Labels = vec![("farm".into(), farm.name.clone()), ("member".into(), id)];
            fam.requests
                .get_or_create(&labels)
                .inc_by(m.total(|s| &s.requests));
            fam.failures
                .get_or_create(&labels)
                .inc_by(m.total(|s| &s.failures));
            fam.bytes_in
                .get_or_create(&labels)
                .inc_by(m.total(|s| &s.bytes_in));
            fam.bytes_out
                .get_or_create(&labels)
                .inc_by(m.total(|s| &s.bytes_out));
            fam.in_flight
                .get_or_create(&labels)
                .set(gauge_value(m.in_flight()));
            fam.response_time
                .get_or_create(&labels)
                .set(m.response_time.micros() as f64 / 1e6);
            fam.up
                .get_or_create(&labels)
                .set(i64::from(m.health.is_up()));
            for c in m.health.checks().iter() {
                let mut l = labels.clone();
                l.push(("check".into(), c.label.clone()));
                fam.check_up.get_or_create(&l).set(i64::from(c.is_up()));
            }
            for st in [
                MemberState::Available,
                MemberState::Draining,
                MemberState::Unavailable,
            ] {
                let mut l = labels.clone();
                l.push(("state".into(), state_name(st).into()));
                fam.state.get_or_create(&l).set(i64::from(m.state() == st));
            }
            fam.weight.get_or_create(&labels).set(i64::from(m.weight));
            fam.pinned
                .get_or_create(&labels)
                .set(gauge_value(m.pinned()));
            for tls in [false, true] {
                let e = m.endpoint(tls);
                let mut l = labels.clone();
                l.push(("scheme".into(), if tls { "https" } else { "http" }.into()));
                fam.pool_idle
                    .get_or_create(&l)
                    .set(gauge_value(e.idle() as u64));
                fam.opened.get_or_create(&l).inc_by(e.stats.created.get());
                fam.reused.get_or_create(&l).inc_by(e.stats.reused.get());
            }
        }
    }
    fam.register(&mut registry);

    let expiry: Family<Labels, FloatGauge> = Family::default();
    for l in &snap.config.listeners {
        let Some(tls) = &l.tls else { continue };
        for c in tls.certificates() {
            let labels: Labels = vec![
                ("listener".into(), l.name.clone()),
                ("file".into(), c.cert_path.display().to_string()),
                ("names".into(), c.names.join(",")),
            ];
            expiry.get_or_create(&labels).set(unix(c.not_after));
        }
    }
    registry.register(
        "portico_certificate_not_after_timestamp_seconds",
        "When a listener certificate expires (Unix time)",
        expiry,
    );
    registry.register(
        "portico_certificate_expiry_seconds",
        "Seconds until a served certificate expires (negative once expired), per certificate and name",
        certificate_expiry(&snap.config),
    );

    let start: FloatGauge = Gauge::default();
    start.set(unix(control.started_at));
    registry.register(
        "portico_process_start_time_seconds",
        "When the process started (Unix time)",
        start,
    );
    let loaded: FloatGauge = Gauge::default();
    loaded.set(unix(snap.loaded_at));
    registry.register(
        "portico_config_loaded_timestamp_seconds",
        "When the running config was read (Unix time)",
        loaded,
    );
    registry.register(
        "portico_config",
        "The running config: digest is the SHA-256 of its file (compare instances with it)",
        prometheus_client::metrics::info::Info::new(vec![(
            "digest".to_string(),
            snap.config.digest.clone(),
        )]),
    );
    let ready: Gauge = Gauge::default();
    ready.set(i64::from(control.is_ready()));
    registry.register(
        "portico_ready",
        "1 while serving, 0 once a graceful shutdown began",
        ready,
    );
    if let Some(r) = control.last_reload() {
        let ok: Gauge = Gauge::default();
        ok.set(i64::from(r.ok));
        registry.register(
            "portico_last_reload_success",
            "1 when the last reload was accepted, 0 when it was rejected",
            ok,
        );
        let at: FloatGauge = Gauge::default();
        at.set(unix(r.at));
        registry.register(
            "portico_last_reload_timestamp_seconds",
            "When the last reload was tried (Unix time)",
            at,
        );
    }

    perimeter(control, &mut registry);

    let mut out = String::new();
    if encode(&mut out, &registry).is_err() {
        tracing::error!("cannot encode metrics");
    }
    out
}

/// Rate limits and failed-sign-in protection.
fn perimeter(control: &Control, registry: &mut Registry) {
    let snap = control.proxy.current.load_full();
    let p = &control.proxy.perimeter;
    let counter = |v: u64| {
        let c: Counter = Counter::default();
        c.inc_by(v);
        c
    };
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    registry.register(
        "portico_rate_limited_requests",
        "Requests answered 429 by a rule's rate limit",
        counter(load(&p.rate_limited_requests)),
    );
    registry.register(
        "portico_rate_limited_connections",
        "Connections closed at accept by a listener's max_connection_rate",
        counter(load(&p.rate_limited_connections)),
    );
    let entries: Family<Labels, Gauge> = Family::default();
    let capacity: Family<Labels, Gauge> = Family::default();
    let evicted: Family<Labels, Counter> = Family::default();
    let table = |kind: &str, name: &str, len: usize, cap: usize, ev: u64| {
        let labels: Labels = vec![("table".into(), kind.into()), ("name".into(), name.into())];
        entries.get_or_create(&labels).set(gauge_value(len as u64));
        capacity.get_or_create(&labels).set(gauge_value(cap as u64));
        evicted.get_or_create(&labels).inc_by(ev);
    };
    for (rule, l) in snap.config.rules.rate_limits() {
        table("rate_limit", rule, l.len(), l.capacity(), load(&l.evicted));
    }
    for (listener, l) in p.connection_limiters() {
        table(
            "connection_rate",
            &listener,
            l.len(),
            l.capacity(),
            load(&l.evicted),
        );
    }
    if let Some(s) = &snap.config.lockout {
        let l = &p.lockout;
        let (accounts, addresses) = l.table_sizes();
        let ev = load(&l.stats.evicted);
        table("lockout_accounts", "lockout", accounts, s.max_entries, ev);
        table("lockout_addresses", "lockout", addresses, s.max_entries, 0);
        registry.register(
            "portico_lockout_failures",
            "Failed sign-ins counted (a member answered 401 to credentials)",
            counter(load(&l.stats.failures)),
        );
        registry.register(
            "portico_lockout_successes",
            "Successful sign-ins seen on protected farms",
            counter(load(&l.stats.successes)),
        );
        registry.register(
            "portico_lockout_blocks",
            "Sign-in attempts Portico answered itself because the account or address was held back",
            counter(load(&l.stats.blocked)),
        );
        registry.register(
            "portico_lockout_releases",
            "Holds lifted through the admin API",
            counter(load(&l.stats.releases)),
        );
        let held: Gauge = Gauge::default();
        held.set(gauge_value(l.held(s).len() as u64));
        registry.register(
            "portico_lockout_held",
            "Accounts and addresses held back now",
            held,
        );
    }
    registry.register(
        "portico_perimeter_table_entries",
        "Entries in a bounded perimeter table (rate limit, connection rate, lockout)",
        entries,
    );
    registry.register(
        "portico_perimeter_table_capacity",
        "Most entries the table holds",
        capacity,
    );
    registry.register(
        "portico_perimeter_table_evictions",
        "Live entries dropped because the table was full",
        evicted,
    );
}

/// Seconds to expiry for each served certificate (each slot once, however many listeners
/// serve it) and each of its names: what an alert on "renewal did not happen" watches.
fn certificate_expiry(config: &crate::config::Config) -> Family<Labels, FloatGauge> {
    let family: Family<Labels, FloatGauge> = Family::default();
    let now = SystemTime::now();
    for slot in crate::tls::served_slots(config) {
        let c = slot.current();
        let secs = match c.not_after.duration_since(now) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        for name in &c.names {
            let labels: Labels = vec![
                ("certificate".into(), slot.source.describe()),
                ("name".into(), name.clone()),
            ];
            family.get_or_create(&labels).set(secs);
        }
    }
    family
}
