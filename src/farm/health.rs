//! Member health: active checks (a URL polled per interval) and passive detection from live
//! traffic (failures in a window take a member out until a check or a probe brings it back).

use crate::config::{HealthConfig, LiveTrafficConfig};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
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
    pub ok: bool,
    pub detail: String,
    pub at: std::time::SystemTime,
}

pub struct HealthState {
    active_up: AtomicBool,
    consecutive_ok: AtomicU32,
    consecutive_fail: AtomicU32,
    passive_down_until: AtomicU64,
    passive_backoff_ms: AtomicU64,
    window_start: AtomicU64,
    window_failures: AtomicU32,
    last_check: Mutex<Option<CheckResult>>,
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState {
            active_up: AtomicBool::new(true),
            consecutive_ok: AtomicU32::new(0),
            consecutive_fail: AtomicU32::new(0),
            passive_down_until: AtomicU64::new(0),
            passive_backoff_ms: AtomicU64::new(0),
            window_start: AtomicU64::new(0),
            window_failures: AtomicU32::new(0),
            last_check: Mutex::new(None),
        }
    }
}

/// What changed, so the caller can log it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    WentDown,
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

    pub fn active_up(&self) -> bool {
        self.active_up.load(Ordering::Relaxed)
    }

    pub fn passively_down(&self) -> bool {
        self.passive_down_until.load(Ordering::Relaxed) != 0
    }

    pub fn last_check(&self) -> Option<CheckResult> {
        self.last_check.lock().ok().and_then(|g| g.clone())
    }

    /// Records an active check; `rise` passes bring a down member back, `fall` failures take
    /// an up member out. A passing check also clears a passive "down".
    pub fn record_check(&self, ok: bool, detail: String, cfg: &HealthConfig) -> Option<Transition> {
        if let Ok(mut g) = self.last_check.lock() {
            *g = Some(CheckResult {
                ok,
                detail,
                at: std::time::SystemTime::now(),
            });
        }
        let was_up = self.is_up();
        if ok {
            self.consecutive_fail.store(0, Ordering::Relaxed);
            let n = self.consecutive_ok.fetch_add(1, Ordering::Relaxed) + 1;
            if !self.active_up.load(Ordering::Relaxed) && n >= cfg.rise {
                self.active_up.store(true, Ordering::Relaxed);
            }
            if self.active_up.load(Ordering::Relaxed) {
                self.clear_passive();
            }
        } else {
            self.consecutive_ok.store(0, Ordering::Relaxed);
            let n = self.consecutive_fail.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= cfg.fall {
                self.active_up.store(false, Ordering::Relaxed);
            }
        }
        transition(was_up, self.is_up())
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
