//! The JSON API: `/api/status` (what the status page shows) and the actions (POST).
//!
//! A member is named in URLs by its `id`: the configured host (`fe01.contoso.local`), or
//! `host@ip` when the host stands for one of several addresses (`pool01.contoso.local@10.0.1.12`,
//! DNS load balancing / `[resolve]` with several addresses). A plain host is also accepted
//! when it names exactly one member of the farm.

use crate::config::{LoadBalancing, MemberState};
use crate::farm::{Farm, Member};
use crate::instance::Control;
use http::StatusCode;
use serde::Serialize;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// `/api/status`.
#[derive(Serialize)]
pub struct Status {
    pub version: &'static str,
    pub pid: u32,
    pub ready: bool,
    /// Unix seconds.
    pub started_at: f64,
    pub config: ConfigStatus,
    pub last_reload: Option<ReloadInfo>,
    pub farms: Vec<FarmStatus>,
    pub certificates: Vec<CertificateStatus>,
    pub perimeter: PerimeterStatus,
}

/// Rate limits and failed-sign-in protection.
#[derive(Serialize)]
pub struct PerimeterStatus {
    /// None when no farm has `lockout = true`.
    pub lockout: Option<LockoutStatus>,
    pub rate_limited_requests: u64,
    pub rate_limited_connections: u64,
    /// Client addresses each rule's rate limiter remembers now.
    pub rate_limit_tables: Vec<TableSize>,
}

#[derive(Serialize)]
pub struct LockoutStatus {
    pub threshold: u32,
    pub address_threshold: u32,
    pub window_secs: u64,
    /// Accounts and addresses held back now, with their counts.
    pub held: Vec<crate::perimeter::lockout::HeldEntry>,
    pub failures: u64,
    pub successes: u64,
    pub blocked: u64,
    pub releases: u64,
    pub accounts_tracked: usize,
    pub addresses_tracked: usize,
}

#[derive(Serialize)]
pub struct TableSize {
    pub name: String,
    pub entries: usize,
    pub capacity: usize,
}

#[derive(Serialize)]
pub struct ConfigStatus {
    pub file: Option<String>,
    /// When the running config was read (start or last successful reload), Unix seconds.
    pub loaded_at: f64,
    /// SHA-256 of the running config file's bytes (`sha256sum` prints the same): equal on two
    /// instances exactly when they run the same file.
    pub digest: String,
}

#[derive(Serialize)]
pub struct ReloadInfo {
    pub at: f64,
    pub ok: bool,
    pub message: String,
}

#[derive(Serialize)]
pub struct FarmStatus {
    pub name: String,
    pub load_balancing: &'static str,
    pub health_check: Option<String>,
    pub affinity_cookie: Option<String>,
    pub members: Vec<MemberStatus>,
}

#[derive(Serialize)]
pub struct MemberStatus {
    /// What the API takes in `/api/farms/{farm}/members/{id}/state`.
    pub id: String,
    pub host: String,
    pub ip: Option<String>,
    pub weight: u32,
    pub http_port: u16,
    pub https_port: u16,
    /// `available`, `draining` or `unavailable` (set by the config or an admin).
    pub state: &'static str,
    pub health: HealthStatus,
    pub in_flight: u64,
    pub requests: u64,
    pub failures: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub pinned: u64,
    /// Moving average of the time to response headers.
    pub response_time_ms: f64,
    pub pool_idle: usize,
}

#[derive(Serialize)]
pub struct HealthStatus {
    /// May take requests as far as health goes (active checks and live traffic agree).
    pub up: bool,
    pub active_up: bool,
    pub passively_down: bool,
    pub last_check: Option<CheckInfo>,
    /// Each active check of the member (one per path prefix on an Exchange farm).
    pub checks: Vec<MemberCheck>,
}

/// One health check of one member.
#[derive(Serialize)]
pub struct MemberCheck {
    pub name: String,
    /// The path prefix it guards; null: the whole member.
    pub path: Option<String>,
    pub up: bool,
    pub last: Option<CheckInfo>,
}

#[derive(Serialize)]
pub struct CheckInfo {
    pub ok: bool,
    pub detail: String,
    pub at: f64,
}

#[derive(Serialize)]
pub struct CertificateStatus {
    pub listener: String,
    pub file: String,
    pub names: Vec<String>,
    pub not_after: f64,
    pub days_to_expiry: i64,
    /// Where it comes from: the file, or `acme:NAME`.
    pub source: String,
    /// What looks after it now: `watching file`, `valid`, `placeholder`, `renewing`, ...
    pub renewal: String,
    /// When the next renewal attempt is due (Unix time), for ACME certificates.
    pub next_attempt: Option<f64>,
    /// The last refused replacement or failed renewal.
    pub last_error: Option<String>,
    /// OCSP stapling state, when the issuer offers OCSP.
    pub ocsp: Option<String>,
}

/// The answer to every action.
#[derive(Serialize)]
pub struct Outcome {
    pub ok: bool,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
}

impl Outcome {
    pub fn ok(message: String) -> Outcome {
        Outcome {
            ok: true,
            message,
            config_file: None,
        }
    }

    pub fn err(message: String) -> Outcome {
        Outcome {
            ok: false,
            message,
            config_file: None,
        }
    }
}

pub fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub fn state_name(s: MemberState) -> &'static str {
    match s {
        MemberState::Available => "available",
        MemberState::Draining => "draining",
        MemberState::Unavailable => "unavailable",
    }
}

fn balancing_name(lb: &LoadBalancing) -> &'static str {
    match lb {
        LoadBalancing::WeightedRoundRobin => "weighted-round-robin",
        LoadBalancing::LeastRequests => "least-requests",
        LoadBalancing::LeastResponseTime => "least-response-time",
        LoadBalancing::PowerOfTwoChoices => "power-of-two",
        LoadBalancing::RequestHash(_) => "request-hash",
    }
}

/// The members' names in the API, in order: the configured host (`fe01.contoso.local`);
/// `host@ip` for a host that stands for several members (DNS load balancing); and
/// `host@ip:https_port` should the same host and address still appear twice.
pub fn member_ids(members: &[Arc<Member>]) -> Vec<String> {
    let count = |ids: &[String], id: &str| ids.iter().filter(|i| *i == id).count();
    let hosts: Vec<String> = members.iter().map(|m| m.host.clone()).collect();
    let with_ip: Vec<String> = members
        .iter()
        .zip(&hosts)
        .map(|(m, h)| {
            if count(&hosts, h) < 2 {
                return h.clone();
            }
            match m.ip {
                Some(ip) => format!("{h}@{ip}"),
                None => format!("{h}@unresolved"),
            }
        })
        .collect();
    members
        .iter()
        .zip(&with_ip)
        .map(|(m, id)| {
            if count(&with_ip, id) < 2 {
                id.clone()
            } else {
                format!("{id}:{}", m.https_port)
            }
        })
        .collect()
}

/// Everything the status page shows, from the running snapshot.
pub fn status(control: &Control) -> Status {
    let snap = control.proxy.current.load_full();
    let now = SystemTime::now();
    let farms = snap.farms.iter().map(|f| farm_status(f)).collect();
    let certificates = snap
        .config
        .listeners
        .iter()
        .filter_map(|l| l.tls.as_ref().map(|t| (l, t)))
        .flat_map(|(l, t)| {
            t.slots().iter().map(move |slot| {
                let c = slot.current();
                let st = slot.status();
                CertificateStatus {
                    listener: l.name.clone(),
                    file: c.cert_path.display().to_string(),
                    names: c.names.clone(),
                    not_after: unix(c.not_after),
                    days_to_expiry: c.days_to_expiry(now),
                    source: slot.source.describe(),
                    renewal: st.renewal_state,
                    next_attempt: st.next_attempt.map(unix),
                    last_error: st.last_error.map(|(_, e)| e),
                    ocsp: st.ocsp_state,
                }
            })
        })
        .collect();
    Status {
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        ready: control.is_ready(),
        started_at: unix(control.started_at),
        config: ConfigStatus {
            file: control
                .config_path
                .as_ref()
                .map(|p| p.display().to_string()),
            loaded_at: unix(snap.loaded_at),
            digest: snap.config.digest.clone(),
        },
        last_reload: control.last_reload().map(|r| ReloadInfo {
            at: unix(r.at),
            ok: r.ok,
            message: r.message,
        }),
        farms,
        certificates,
        perimeter: perimeter_status(control),
    }
}

/// The perimeter part of `/api/status`.
pub fn perimeter_status(control: &Control) -> PerimeterStatus {
    let snap = control.proxy.current.load_full();
    let p = &control.proxy.perimeter;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let lockout = snap.config.lockout.as_ref().map(|s| {
        let l = &p.lockout;
        let (accounts, addresses) = l.table_sizes();
        LockoutStatus {
            threshold: s.threshold,
            address_threshold: s.address_threshold,
            window_secs: s.window.as_secs(),
            held: l.held(s),
            failures: load(&l.stats.failures),
            successes: load(&l.stats.successes),
            blocked: load(&l.stats.blocked),
            releases: load(&l.stats.releases),
            accounts_tracked: accounts,
            addresses_tracked: addresses,
        }
    });
    PerimeterStatus {
        lockout,
        rate_limited_requests: load(&p.rate_limited_requests),
        rate_limited_connections: load(&p.rate_limited_connections),
        rate_limit_tables: snap
            .config
            .rules
            .rate_limits()
            .map(|(name, l)| TableSize {
                name: name.to_string(),
                entries: l.len(),
                capacity: l.capacity(),
            })
            .collect(),
    }
}

fn farm_status(f: &Farm) -> FarmStatus {
    FarmStatus {
        name: f.name.clone(),
        load_balancing: balancing_name(&f.load_balancing),
        health_check: f.health.as_ref().map(|h| h.url.clone()),
        affinity_cookie: f.affinity.as_ref().map(|a| a.cookie.clone()),
        members: {
            let set = f.members();
            let ids = member_ids(&set.members);
            set.members
                .iter()
                .zip(ids)
                .map(|(m, id)| member_status(m, id))
                .collect()
        },
    }
}

fn member_status(m: &Member, id: String) -> MemberStatus {
    MemberStatus {
        id,
        host: m.host.clone(),
        ip: m.ip.map(|ip| ip.to_string()),
        weight: m.weight,
        http_port: m.http_port,
        https_port: m.https_port,
        state: state_name(m.state()),
        health: HealthStatus {
            up: m.health.is_up(),
            active_up: m.health.active_up(),
            passively_down: m.health.passively_down(),
            last_check: m.health.last_check().map(|c| CheckInfo {
                ok: c.ok,
                detail: c.detail,
                at: unix(c.at),
            }),
            checks: m
                .health
                .checks()
                .iter()
                .map(|c| MemberCheck {
                    name: c.label.clone(),
                    path: c.path.clone(),
                    up: c.is_up(),
                    last: c.last().map(|r| CheckInfo {
                        ok: r.ok,
                        detail: r.detail,
                        at: unix(r.at),
                    }),
                })
                .collect(),
        },
        in_flight: m.in_flight(),
        requests: m.total(|s| &s.requests),
        failures: m.total(|s| &s.failures),
        bytes_in: m.total(|s| &s.bytes_in),
        bytes_out: m.total(|s| &s.bytes_out),
        pinned: m.pinned(),
        response_time_ms: m.response_time.micros() as f64 / 1000.0,
        pool_idle: m.idle_connections(),
    }
}

/// Runs a POST under `/api/` (already authorized).
pub async fn action(control: &Control, path: &str, body: &[u8]) -> (StatusCode, Outcome) {
    let segments: Vec<String> = path
        .trim_start_matches("/api/")
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["reset"] => {
            let snap = control.proxy.current.load_full();
            let mut n = 0;
            for f in &snap.farms {
                for m in &f.members().members {
                    m.reset_counters();
                    n += 1;
                }
            }
            tracing::info!(members = n, "admin: counters reset");
            (
                StatusCode::OK,
                Outcome::ok(format!("counters of {n} member(s) reset")),
            )
        }
        ["reload"] => {
            let file = control
                .config_path
                .as_ref()
                .map(|p| p.display().to_string());
            let (status, mut outcome) = match control.reload().await {
                Ok(()) => (StatusCode::OK, Outcome::ok("reloaded".into())),
                Err(e) if file.is_none() => (StatusCode::CONFLICT, Outcome::err(e)),
                Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, Outcome::err(e)),
            };
            outcome.config_file = file;
            (status, outcome)
        }
        ["farms", farm, "members", member, "state"] => set_state(control, farm, member, body),
        ["lockout", "release"] => release(control, body),
        _ => (
            StatusCode::NOT_FOUND,
            Outcome::err(format!("no action at {path}")),
        ),
    }
}

/// Lifts a failed-sign-in hold at once: the body names an account (any spelling) or an address.
fn release(control: &Control, body: &[u8]) -> (StatusCode, Outcome) {
    let name = String::from_utf8_lossy(body).trim().to_string();
    if name.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Outcome::err("name the account (CONTOSO\\alice, alice@contoso.com, alice) or the client address to release in the body".into()),
        );
    }
    match control.proxy.perimeter.lockout.release(&name) {
        Some(what) => {
            tracing::info!(released = %what, "admin: failed-sign-in hold released");
            (StatusCode::OK, Outcome::ok(format!("{what} released")))
        }
        None => (
            StatusCode::NOT_FOUND,
            Outcome::err(format!("no failures are counted for {name:?}")),
        ),
    }
}

fn set_state(control: &Control, farm: &str, member: &str, body: &[u8]) -> (StatusCode, Outcome) {
    let wanted = String::from_utf8_lossy(body).trim().to_ascii_lowercase();
    let state = match wanted.as_str() {
        "available" => MemberState::Available,
        "draining" | "drain" => MemberState::Draining,
        "unavailable" => MemberState::Unavailable,
        other => {
            return (
                StatusCode::BAD_REQUEST,
                Outcome::err(format!(
                    "{other:?} is not a state (expected available, draining or unavailable)"
                )),
            )
        }
    };
    let snap = control.proxy.current.load_full();
    let Some(f) = snap.farms.iter().find(|f| f.name == farm) else {
        return (
            StatusCode::NOT_FOUND,
            Outcome::err(format!("no farm named {farm:?}")),
        );
    };
    let set = f.members();
    let (m, id) = match find_member(&set.members, member) {
        Ok(found) => found,
        Err(e) => return (StatusCode::NOT_FOUND, Outcome::err(e)),
    };
    m.set_state(state);
    tracing::info!(farm = %f.name, member = %id, state = state_name(state), "admin: member state set");
    (
        StatusCode::OK,
        Outcome::ok(format!(
            "{} in farm {} is now {}",
            id,
            f.name,
            state_name(state)
        )),
    )
}

/// The member whose id is `name`, or the only member whose host is `name`.
fn find_member<'a>(
    members: &'a [Arc<Member>],
    name: &str,
) -> Result<(&'a Arc<Member>, String), String> {
    let ids = member_ids(members);
    if let Some(i) = ids.iter().position(|id| id == name) {
        return Ok((&members[i], ids[i].clone()));
    }
    let by_host: Vec<usize> = (0..members.len())
        .filter(|&i| members[i].host.eq_ignore_ascii_case(name))
        .collect();
    match by_host.as_slice() {
        [i] => Ok((&members[*i], ids[*i].clone())),
        [] => Err(format!("no member {name:?} (members: {})", ids.join(", "))),
        many => Err(format!(
            "{name:?} names {} members; use one of: {}",
            many.len(),
            many.iter()
                .map(|&i| ids[i].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}
