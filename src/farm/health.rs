//! Member health: active checks (URLs or TCP connects polled per interval) and passive
//! detection from live traffic (failures in a window take a member out until a check or a
//! probe brings it back).
//!
//! A farm may carry several checks, each for a path prefix (Exchange: one per virtual
//! directory). A failing check with a `path` takes the member out for requests under that
//! prefix only (`HealthState::is_up_for`); a failing check without one, or every check
//! failing, takes it out for everything (`HealthState::is_up`).

use crate::config::{HealthConfig, LiveTrafficConfig};
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Milliseconds since the process started: a cheap monotonic clock for atomics.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

const MAX_BACKOFF_MS: u64 = 5 * 60 * 1000;
/// Passive "down" with active checks configured: only a passing check ends it.
const UNTIL_CHECKED: u64 = u64::MAX;

/// The last active check, for the status page.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub(crate) ok: bool,
    pub(crate) detail: String,
    pub(crate) at: std::time::SystemTime,
}

/// One active check of one member: its own up/down with rise/fall counting.
pub struct CheckState {
    /// The check's name on the status page and in metrics (`check` label).
    pub label: String,
    /// The path prefix it guards; None: the whole member.
    pub path: Option<String>,
    up: AtomicBool,
    consecutive_ok: AtomicU32,
    consecutive_fail: AtomicU32,
    last: Mutex<Option<CheckResult>>,
}

impl CheckState {
    fn new(cfg: &HealthConfig) -> CheckState {
        CheckState {
            label: cfg.label.clone(),
            path: cfg.path.clone(),
            up: AtomicBool::new(true),
            consecutive_ok: AtomicU32::new(0),
            consecutive_fail: AtomicU32::new(0),
            last: Mutex::new(None),
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub(crate) fn last(&self) -> Option<CheckResult> {
        self.last.lock().ok().and_then(|g| g.clone())
    }

    /// True when `path` lies under this check's prefix (segment boundary, ASCII case ignored
    /// as IIS does: `/ews` guards `/EWS/Exchange.asmx`, not `/ewsx`).
    pub fn guards(&self, path: &str) -> bool {
        match &self.path {
            None => true,
            Some(prefix) => path_under(path, prefix),
        }
    }

    /// Counts one result; returns the check's own transition.
    fn record(&self, ok: bool, detail: String, cfg: &HealthConfig) -> Option<Transition> {
        if let Ok(mut g) = self.last.lock() {
            *g = Some(CheckResult {
                ok,
                detail,
                at: std::time::SystemTime::now(),
            });
        }
        let was = self.is_up();
        if ok {
            self.consecutive_fail.store(0, Ordering::Relaxed);
            let n = self.consecutive_ok.fetch_add(1, Ordering::Relaxed) + 1;
            if !was && n >= cfg.rise {
                self.up.store(true, Ordering::Relaxed);
            }
        } else {
            self.consecutive_ok.store(0, Ordering::Relaxed);
            let n = self.consecutive_fail.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= cfg.fall {
                self.up.store(false, Ordering::Relaxed);
            }
        }
        transition(was, self.is_up())
    }
}

/// `path` is `prefix` or below it; a trailing `/` on the prefix is ignored.
pub fn path_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true;
    }
    path.len() >= prefix.len()
        && path.is_char_boundary(prefix.len())
        && path[..prefix.len()].eq_ignore_ascii_case(prefix)
        && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/' | b'?'))
}

/// What one recorded check changed: the member as a whole, and the check itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckOutcome {
    pub(crate) member: Option<Transition>,
    pub(crate) check: Option<Transition>,
}

pub(crate) struct HealthState {
    /// The member-level verdict of the active checks: every path-less check up, and not
    /// every check down.
    active_up: AtomicBool,
    /// One state per configured check, in config order; swapped when a reload changes them.
    checks: ArcSwap<Vec<Arc<CheckState>>>,
    passive_down_until: AtomicU64,
    passive_backoff_ms: AtomicU64,
    window_start: AtomicU64,
    window_failures: AtomicU32,
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState {
            active_up: AtomicBool::new(true),
            checks: ArcSwap::from_pointee(Vec::new()),
            passive_down_until: AtomicU64::new(0),
            passive_backoff_ms: AtomicU64::new(0),
            window_start: AtomicU64::new(0),
            window_failures: AtomicU32::new(0),
        }
    }
}

/// What changed, so the caller can log it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The member was up and is now taken out.
    WentDown,
    /// The member was down and is back in.
    CameBack,
}

impl HealthState {
    /// Up for new requests: the active check passes and live traffic has not taken it out
    /// (or its back-off has passed, and the next request is the probe).
    pub fn is_up(&self) -> bool {
        if !self.active_up.load(Ordering::Relaxed) {
            return false;
        }
        let until = self.passive_down_until.load(Ordering::Relaxed);
        until == 0 || (until != UNTIL_CHECKED && now_ms() >= until)
    }

    pub(crate) fn active_up(&self) -> bool {
        self.active_up.load(Ordering::Relaxed)
    }

    pub(crate) fn passively_down(&self) -> bool {
        self.passive_down_until.load(Ordering::Relaxed) != 0
    }

    /// The most recent result of any check, for the one-line status.
    pub fn last_check(&self) -> Option<CheckResult> {
        self.checks
            .load()
            .iter()
            .filter_map(|c| c.last())
            .max_by_key(|r| r.at)
    }

    /// Up for a new request to `path`: up as a whole, and no failing check guards the path.
    pub fn is_up_for(&self, path: &str) -> bool {
        self.is_up()
            && self
                .checks
                .load()
                .iter()
                .all(|c| c.is_up() || !c.guards(path))
    }

    /// The per-check states, in config order (status page, metrics, API).
    pub fn checks(&self) -> Arc<Vec<Arc<CheckState>>> {
        self.checks.load_full()
    }

    /// Makes the per-check states match the farm's checks; a check kept across a reload
    /// (same label and path) keeps its state.
    pub fn configure(&self, cfgs: &[HealthConfig]) {
        let current = self.checks.load_full();
        let same = current.len() == cfgs.len()
            && current
                .iter()
                .zip(cfgs)
                .all(|(c, f)| c.label == f.label && c.path == f.path);
        if same {
            return;
        }
        let next: Vec<Arc<CheckState>> = cfgs
            .iter()
            .map(|f| {
                current
                    .iter()
                    .find(|c| c.label == f.label && c.path == f.path)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(CheckState::new(f)))
            })
            .collect();
        self.checks.store(Arc::new(next));
        self.recompute_active();
    }

    fn recompute_active(&self) {
        let checks = self.checks.load();
        let whole_ok = checks
            .iter()
            .filter(|c| c.path.is_none())
            .all(|c| c.is_up());
        let any_up = checks.is_empty() || checks.iter().any(|c| c.is_up());
        self.active_up.store(whole_ok && any_up, Ordering::Relaxed);
    }

    /// Records an active check of a farm with one check (see [`HealthState::record_check_at`]).
    #[cfg(test)]
    pub fn record_check(&self, ok: bool, detail: String, cfg: &HealthConfig) -> Option<Transition> {
        if self.checks.load().is_empty() {
            self.configure(std::slice::from_ref(cfg));
        }
        self.record_check_at(0, ok, detail, cfg).member
    }

    /// Records the result of check `index` (`cfg` is its config): `rise` passes bring it
    /// back, `fall` failures take it out; then the member-level verdict is recomputed. A
    /// passing check that leaves the member up also clears a passive "down".
    pub fn record_check_at(
        &self,
        index: usize,
        ok: bool,
        detail: String,
        cfg: &HealthConfig,
    ) -> CheckOutcome {
        let checks = self.checks.load_full();
        let Some(check) = checks.get(index) else {
            return CheckOutcome::default();
        };
        let was_up = self.is_up();
        let check_t = check.record(ok, detail, cfg);
        self.recompute_active();
        if ok && self.active_up.load(Ordering::Relaxed) {
            self.clear_passive();
        }
        CheckOutcome {
            member: transition(was_up, self.is_up()),
            check: check_t,
        }
    }

    /// A request to the member failed (connect error, timeout, failure status).
    pub fn record_failure(
        &self,
        cfg: &LiveTrafficConfig,
        has_active_checks: bool,
    ) -> Option<Transition> {
        let now = now_ms();
        let was_up = self.is_up();
        let until = self.passive_down_until.load(Ordering::Relaxed);
        let probing = until != 0 && until != UNTIL_CHECKED && now >= until;
        if probing {
            // The probe after the back-off failed: out again, for twice as long.
            let backoff = (self.passive_backoff_ms.load(Ordering::Relaxed) * 2).min(MAX_BACKOFF_MS);
            self.passive_backoff_ms.store(backoff, Ordering::Relaxed);
            self.passive_down_until
                .store(now + backoff, Ordering::Relaxed);
            return transition(was_up, self.is_up());
        }
        let window_ms = cfg.window.as_millis() as u64;
        let start = self.window_start.load(Ordering::Relaxed);
        if start == 0 || now.saturating_sub(start) > window_ms {
            self.window_start.store(now, Ordering::Relaxed);
            self.window_failures.store(0, Ordering::Relaxed);
        }
        let n = self.window_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= cfg.failures && until == 0 {
            let backoff = cfg.backoff.as_millis() as u64;
            self.passive_backoff_ms.store(backoff, Ordering::Relaxed);
            let down_until = if has_active_checks {
                UNTIL_CHECKED
            } else {
                now + backoff
            };
            self.passive_down_until.store(down_until, Ordering::Relaxed);
        }
        transition(was_up, self.is_up())
    }

    /// A request succeeded: a probing member is back; the failure window starts again.
    pub fn record_success(&self) -> Option<Transition> {
        if self.passive_down_until.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let was_up = self.is_up();
        if now_ms() >= self.passive_down_until.load(Ordering::Relaxed) {
            self.clear_passive();
        }
        transition(was_up, self.is_up())
    }

    fn clear_passive(&self) {
        self.passive_down_until.store(0, Ordering::Relaxed);
        self.passive_backoff_ms.store(0, Ordering::Relaxed);
        self.window_failures.store(0, Ordering::Relaxed);
        self.window_start.store(0, Ordering::Relaxed);
    }
}

fn transition(was: bool, now: bool) -> Option<Transition> {
    match (was, now) {
        (true, false) => Some(Transition::WentDown),
        (false, true) => Some(Transition::CameBack),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn health(fall: u32, rise: u32) -> HealthConfig {
        HealthConfig {
            label: "/".into(),
            path: None,
            port: None,
            tcp: false,
            url: "/".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            expect: vec![(200, 399)],
            body: None,
            host: None,
            fall,
            rise,
        }
    }

    #[test]
    fn flapping_checks_need_consecutive_results_to_change_state() {
        let h = HealthState::default();
        let cfg = health(3, 2);
        // fail, fail, ok, fail, fail: never three in a row, stays up.
        for ok in [false, false, true, false, false] {
            assert_eq!(h.record_check(ok, String::new(), &cfg), None);
        }
        assert!(h.is_up());
        assert_eq!(
            h.record_check(false, String::new(), &cfg),
            Some(Transition::WentDown)
        );
        // ok, fail, ok: no two passes in a row, stays down.
        for ok in [true, false, true] {
            assert_eq!(h.record_check(ok, String::new(), &cfg), None);
        }
        assert!(!h.is_up());
        assert_eq!(
            h.record_check(true, String::new(), &cfg),
            Some(Transition::CameBack)
        );
        assert!(h.last_check().unwrap().ok);
    }

    fn check(label: &str, path: Option<&str>) -> HealthConfig {
        HealthConfig {
            label: label.into(),
            path: path.map(String::from),
            ..health(1, 1)
        }
    }

    #[test]
    fn a_failing_path_check_takes_the_member_out_for_that_path_only() {
        let h = HealthState::default();
        let cfgs = [check("ews", Some("/ews")), check("owa", Some("/owa"))];
        h.configure(&cfgs);
        let out = h.record_check_at(0, false, "503".into(), &cfgs[0]);
        assert_eq!(out.check, Some(Transition::WentDown));
        assert_eq!(out.member, None, "one protocol down is not the member down");
        assert!(h.is_up());
        assert!(!h.is_up_for("/ews/Exchange.asmx"));
        assert!(!h.is_up_for("/EWS"));
        assert!(h.is_up_for("/ewsx"));
        assert!(h.is_up_for("/owa/"));
        // Every check down: the member is out.
        let out = h.record_check_at(1, false, "503".into(), &cfgs[1]);
        assert_eq!(out.member, Some(Transition::WentDown));
        assert!(!h.is_up_for("/owa/"));
        assert!(!h.is_up_for("/other"));
        let out = h.record_check_at(1, true, "200".into(), &cfgs[1]);
        assert_eq!(out.member, Some(Transition::CameBack));
        assert!(h.is_up_for("/owa/") && !h.is_up_for("/ews"));
    }

    #[test]
    fn a_failing_check_without_a_path_takes_the_whole_member_out() {
        let h = HealthState::default();
        let cfgs = [check("tcp:5061", None), check("ews", Some("/ews"))];
        h.configure(&cfgs);
        let out = h.record_check_at(0, false, "refused".into(), &cfgs[0]);
        assert_eq!(out.member, Some(Transition::WentDown));
        assert!(!h.is_up_for("/owa"));
        // A reload with the same checks keeps their state.
        h.configure(&cfgs);
        assert!(!h.is_up());
        // A reload without the failing check brings the member back.
        h.configure(&cfgs[1..]);
        assert!(h.is_up());
    }

    #[test]
    fn path_prefixes_match_whole_segments() {
        assert!(path_under("/owa", "/owa/"));
        assert!(path_under("/owa/auth/logon.aspx", "/OWA"));
        assert!(!path_under("/owanot", "/owa"));
        assert!(path_under("/anything", "/"));
    }

    #[test]
    fn live_traffic_failures_in_a_window_take_a_member_out_until_a_probe_succeeds() {
        let h = HealthState::default();
        let cfg = LiveTrafficConfig {
            failure_codes: vec![(500, 599)],
            failures: 3,
            window: Duration::from_secs(60),
            backoff: Duration::from_millis(50),
        };
        assert_eq!(h.record_failure(&cfg, false), None);
        assert_eq!(h.record_failure(&cfg, false), None);
        assert_eq!(h.record_failure(&cfg, false), Some(Transition::WentDown));
        assert!(!h.is_up());
        std::thread::sleep(Duration::from_millis(60));
        assert!(h.is_up(), "back-off over: the next request probes");
        // The probe fails: out again for longer.
        assert_eq!(h.record_failure(&cfg, false), Some(Transition::WentDown));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!h.is_up(), "second back-off is doubled");
        std::thread::sleep(Duration::from_millis(60));
        assert!(h.is_up());
        assert_eq!(h.record_success(), None);
        assert!(!h.passively_down());
    }

    #[test]
    fn with_active_checks_only_a_passing_check_ends_a_passive_down() {
        let h = HealthState::default();
        let lt = LiveTrafficConfig {
            failures: 1,
            backoff: Duration::from_millis(1),
            ..LiveTrafficConfig::default()
        };
        h.record_failure(&lt, true);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!h.is_up());
        assert_eq!(
            h.record_check(true, String::new(), &health(3, 2)),
            Some(Transition::CameBack)
        );
    }
}
