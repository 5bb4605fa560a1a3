//! `/metrics`: OpenMetrics text (Prometheus reads it) built with `prometheus-client`.
//!
//! The numbers live in the members' atomics (`farm::MemberStats`), so each scrape builds a
//! fresh registry from them: nothing is counted twice and a member that left with a reload
//! simply disappears. Member series carry `farm` and `member` (the API id) labels.

use super::api::{member_ids, state_name, unix};
use crate::config::MemberState;
use crate::server::Control;
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
            let s = &m.stats;
            let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
            fam.requests
                .get_or_create(&labels)
                .inc_by(load(&s.requests));
            fam.failures
                .get_or_create(&labels)
                .inc_by(load(&s.failures));
            fam.bytes_in
                .get_or_create(&labels)
                .inc_by(load(&s.bytes_in));
            fam.bytes_out
                .get_or_create(&labels)
                .inc_by(load(&s.bytes_out));
            fam.in_flight
                .get_or_create(&labels)
                .set(gauge_value(load(&s.in_flight)));
            fam.response_time
                .get_or_create(&labels)
                .set(load(&s.response_time_us) as f64 / 1e6);
            fam.up
                .get_or_create(&labels)
                .set(i64::from(m.health.is_up()));
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
                .set(gauge_value(load(&s.pinned)));
            for (scheme, pool) in [("http", &m.pool_http), ("https", &m.pool_https)] {
                let mut l = labels.clone();
                l.push(("scheme".into(), scheme.into()));
                fam.pool_idle
                    .get_or_create(&l)
                    .set(gauge_value(pool.stats().idle as u64));
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

    let mut out = String::new();
    if encode(&mut out, &registry).is_err() {
        tracing::error!("cannot encode metrics");
    }
    out
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
