//! Failed-sign-in protection ("smart lockout" in front of NTLM and Basic pass-through).
//!
//! Every password attempt that reaches a member of a `lockout = true` farm ends as a failure
//! (the member answered 401 to credentials) or a success (2xx/3xx). Failures are counted per
//! account (the folded user name) and per client address over a sliding window. Once an
//! account has `threshold` failures in the window, further attempts for it are answered by
//! Portico and never reach Active Directory, until the oldest counted failure leaves the
//! window or an admin releases it. Two exceptions keep real users in: clients in `trusted`
//! ranges, and addresses the account signed in from successfully before (its "familiar
//! locations"). An address with `address_threshold` failures (any accounts, Kerberos
//! included) is held back likewise.
//!
//! Both tables are bounded: sharded maps with a cap, where a full shard drops entries with
//! nothing left in the window first, then the least recently touched eighth.

use super::cidr::CidrSet;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// Successful addresses remembered per account.
const FAMILIAR_PER_ACCOUNT: usize = 4;

/// How Portico answers an attempt it holds back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Answer {
    /// 429 Too Many Requests with Retry-After (the default; see docs/perimeter.md).
    #[default]
    TooManyRequests,
    /// 401 with a bare challenge of the scheme the client used.
    Unauthorized,
}

/// `[lockout]` as compiled.
#[derive(Debug, Clone)]
pub struct LockoutSettings {
    /// Failures per account within `window` that hold the account back.
    pub threshold: u32,
    /// How far back failures are counted, for accounts and addresses.
    pub window: Duration,
    /// Clients here are never held back.
    pub trusted: CidrSet,
    /// Failures per client address within `window` that hold the address back (0: off).
    pub address_threshold: u32,
    /// How long a successful sign-in makes its address familiar for the account.
    pub familiar_for: Duration,
    /// What a held-back attempt gets.
    pub answer: Answer,
    /// Most accounts (and, separately, addresses) remembered.
    pub max_entries: usize,
}

impl LockoutSettings {
    /// The most failures per instance that `instances` Portico instances, each counting
    /// alone, may let through and still stay below an AD lockout threshold:
    /// `floor((ad_threshold - 1) / instances)`.
    pub fn max_safe_threshold(ad_threshold: u32, instances: u32) -> u32 {
        (ad_threshold.saturating_sub(1) / instances.max(1)).max(1)
    }

    /// The threshold derived when the config gives `ad_threshold` (and `instances`) but no
    /// `threshold`: half of AD's budget, split between the instances. The other half is left
    /// for the users' own mistakes (a phone retrying an old password) that AD counts too.
    /// AD 10, one instance: 5; two instances: 2.
    pub fn derived_threshold(ad_threshold: u32, instances: u32) -> u32 {
        (ad_threshold / 2 / instances.max(1)).max(1)
    }
}

/// Why an attempt is held back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// The account has too many recent failures (the name as the lockout counts it).
    Account(String),
    /// The client address has too many recent failures across accounts.
    Address(IpAddr),
}

/// What `check` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let the attempt through to the member.
    Pass,
    /// Answer it from Portico without asking the member (and without AD counting a failure).
    Held {
        /// Which count held it back.
        why: Hold,
        /// How long until enough failures have left the window to let it through.
        retry_after: Duration,
    },
}

#[derive(Debug, Default)]
struct Failures {
    /// Newest last; at most the threshold in force when they were recorded.
    at: VecDeque<Instant>,
    held_attempts: u64,
    last: Option<Instant>,
}

impl Failures {
    fn push(&mut self, now: Instant, keep: usize) {
        self.at.push_back(now);
        while self.at.len() > keep.max(1) {
            self.at.pop_front();
        }
        self.last = Some(now);
    }

    fn in_window(&self, now: Instant, window: Duration) -> usize {
        self.at
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < window)
            .count()
    }

    /// Held when `threshold` failures are in the window; then: time until one leaves it.
    fn held(&self, now: Instant, window: Duration, threshold: u32) -> Option<Duration> {
        let t = threshold as usize;
        if t == 0 || self.in_window(now, window) < t {
            return None;
        }
        let oldest_counted = self.at[self.at.len() - t];
        Some((oldest_counted + window).saturating_duration_since(now))
    }
}

#[derive(Debug, Default)]
struct AccountEntry {
    failures: Failures,
    familiar: Vec<(IpAddr, Instant)>,
    touched: Option<Instant>,
}

#[derive(Debug, Default)]
struct AddressEntry {
    failures: Failures,
    touched: Option<Instant>,
}

trait Expiring {
    fn touched(&self) -> Option<Instant>;
    /// Nothing in it still matters.
    fn expired(&self, now: Instant, s: &LockoutSettings) -> bool;
}

impl Expiring for AccountEntry {
    fn touched(&self) -> Option<Instant> {
        self.touched
    }
    fn expired(&self, now: Instant, s: &LockoutSettings) -> bool {
        self.failures.in_window(now, s.window) == 0
            && self
                .familiar
                .iter()
                .all(|(_, t)| now.saturating_duration_since(*t) >= s.familiar_for)
    }
}

impl Expiring for AddressEntry {
    fn touched(&self) -> Option<Instant> {
        self.touched
    }
    fn expired(&self, now: Instant, s: &LockoutSettings) -> bool {
        self.failures.in_window(now, s.window) == 0
    }
}

/// A sharded, capped map.
struct Table<K, V> {
    shards: Vec<Mutex<HashMap<K, V>>>,
    hasher: std::hash::RandomState,
}

impl<K: Hash + Eq + Clone, V: Default + Expiring> Table<K, V> {
    fn new() -> Self {
        Table {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// `K` and its borrowed form hash alike (`String` / `str`), so either finds the shard.
    fn shard<Q: Hash + ?Sized>(&self, k: &Q) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
        let i = (self.hasher.hash_one(k) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Looks `k` up without building an owned key (the check on every attempt allocates nothing).
    fn read<Q, R>(&self, k: &Q, f: impl FnOnce(Option<&mut V>) -> R) -> R
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut s = self.shard(k);
        f(s.get_mut(k))
    }

    /// Runs `f` on the entry for `k`, creating it (making room if needed). Returns `f`'s
    /// result and how many live entries had to be dropped.
    fn upsert<R>(
        &self,
        k: &K,
        now: Instant,
        st: &LockoutSettings,
        f: impl FnOnce(&mut V) -> R,
    ) -> (R, u64) {
        let cap = st.max_entries.div_ceil(SHARDS).max(1);
        let mut s = self.shard(k);
        let mut evicted = 0;
        if !s.contains_key(k) && s.len() >= cap {
            s.retain(|_, v| !v.expired(now, st));
            if s.len() >= cap {
                let mut touched: Vec<Option<Instant>> = s.values().map(|v| v.touched()).collect();
                let n = (cap / 8).max(1).min(touched.len() - 1);
                let (_, cut, _) = touched.select_nth_unstable(n);
                let cut = *cut;
                let before = s.len();
                s.retain(|_, v| v.touched() > cut);
                evicted = (before - s.len()) as u64;
            }
        }
        let r = f(s.entry(k.clone()).or_default());
        (r, evicted)
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    fn each(&self, mut f: impl FnMut(&K, &V)) {
        for s in &self.shards {
            let s = s.lock().unwrap_or_else(|p| p.into_inner());
            for (k, v) in s.iter() {
                f(k, v);
            }
        }
    }

    fn remove(&self, k: &K) -> Option<V> {
        self.shard(k).remove(k)
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct LockoutStats {
    pub(crate) failures: AtomicU64,
    pub(crate) successes: AtomicU64,
    /// Attempts answered by Portico instead of the member.
    pub blocked: AtomicU64,
    pub(crate) releases: AtomicU64,
    /// Live entries dropped because a table was full.
    pub evicted: AtomicU64,
}

/// One account or address currently held back, for the status page and API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeldEntry {
    /// `account` or `address`.
    pub kind: &'static str,
    pub(crate) name: String,
    /// Failures inside the window now.
    pub failures: usize,
    /// Attempts Portico answered for it since it was first held.
    pub held_attempts: u64,
    /// Seconds until it is let through again (unless more failures come first).
    pub retry_after_secs: u64,
}

/// The counting tables. Lives as long as the process (a reload keeps what was counted).
pub struct Lockout {
    accounts: Table<String, AccountEntry>,
    addresses: Table<IpAddr, AddressEntry>,
    pub(crate) stats: LockoutStats,
}

impl Default for Lockout {
    fn default() -> Self {
        Lockout {
            accounts: Table::new(),
            addresses: Table::new(),
            stats: LockoutStats::default(),
        }
    }
}

impl Lockout {
    /// Whether an attempt for `account` (None: Kerberos, no readable name) from `client` may
    /// reach the member. A held verdict is counted as a block.
    pub fn check(&self, s: &LockoutSettings, client: IpAddr, account: Option<&str>) -> Verdict {
        self.check_at(s, client, account, Instant::now())
    }

    fn check_at(
        &self,
        s: &LockoutSettings,
        client: IpAddr,
        account: Option<&str>,
        now: Instant,
    ) -> Verdict {
        if s.trusted.contains(client) {
            return Verdict::Pass;
        }
        let mut familiar = false;
        if let Some(a) = account {
            let held = self.accounts.read(a, |e| {
                let e = e?;
                familiar = e.familiar.iter().any(|(ip, t)| {
                    *ip == client && now.saturating_duration_since(*t) < s.familiar_for
                });
                if familiar {
                    return None;
                }
                let wait = e.failures.held(now, s.window, s.threshold)?;
                e.failures.held_attempts += 1;
                Some(wait)
            });
            if let Some(retry_after) = held {
                self.stats.blocked.fetch_add(1, Ordering::Relaxed);
                return Verdict::Held {
                    why: Hold::Account(a.to_string()),
                    retry_after,
                };
            }
        }
        if s.address_threshold > 0 && !familiar {
            let held = self.addresses.read(&client, |e| {
                let e = e?;
                let wait = e.failures.held(now, s.window, s.address_threshold)?;
                e.failures.held_attempts += 1;
                Some(wait)
            });
            if let Some(retry_after) = held {
                self.stats.blocked.fetch_add(1, Ordering::Relaxed);
                return Verdict::Held {
                    why: Hold::Address(client),
                    retry_after,
                };
            }
        }
        Verdict::Pass
    }

    /// The member refused the credentials.
    pub fn record_failure(&self, s: &LockoutSettings, client: IpAddr, account: Option<&str>) {
        self.record_failure_at(s, client, account, Instant::now())
    }

    fn record_failure_at(
        &self,
        s: &LockoutSettings,
        client: IpAddr,
        account: Option<&str>,
        now: Instant,
    ) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        let mut evicted = 0;
        if let Some(a) = account {
            let (_, e) = self.accounts.upsert(&a.to_string(), now, s, |e| {
                e.failures.push(now, s.threshold as usize);
                e.touched = Some(now);
            });
            evicted += e;
        }
        if s.address_threshold > 0 {
            let (_, e) = self.addresses.upsert(&client, now, s, |e| {
                e.failures.push(now, s.address_threshold as usize);
                e.touched = Some(now);
            });
            evicted += e;
        }
        if evicted > 0 {
            self.stats.evicted.fetch_add(evicted, Ordering::Relaxed);
        }
    }

    /// The member accepted the credentials: as AD does, the account's failures are cleared;
    /// the address becomes familiar for the account.
    pub fn record_success(&self, s: &LockoutSettings, client: IpAddr, account: Option<&str>) {
        self.record_success_at(s, client, account, Instant::now())
    }

    fn record_success_at(
        &self,
        s: &LockoutSettings,
        client: IpAddr,
        account: Option<&str>,
        now: Instant,
    ) {
        self.stats.successes.fetch_add(1, Ordering::Relaxed);
        let Some(a) = account else { return };
        let (_, evicted) = self.accounts.upsert(&a.to_string(), now, s, |e| {
            e.failures = Failures::default();
            e.touched = Some(now);
            match e.familiar.iter_mut().find(|(ip, _)| *ip == client) {
                Some(f) => f.1 = now,
                None => {
                    if e.familiar.len() >= FAMILIAR_PER_ACCOUNT {
                        // Forget the address seen longest ago.
                        if let Some(i) = (0..e.familiar.len()).min_by_key(|&i| e.familiar[i].1) {
                            e.familiar.remove(i);
                        }
                    }
                    e.familiar.push((client, now));
                }
            }
        });
        if evicted > 0 {
            self.stats.evicted.fetch_add(evicted, Ordering::Relaxed);
        }
    }

    /// Lifts a hold at once: `name` is an account (any spelling) or a client address.
    /// Returns what was released, or `None` when nothing by that name was counted.
    pub fn release(&self, name: &str) -> Option<String> {
        let name = name.trim();
        let released = if let Ok(ip) = name.parse::<IpAddr>() {
            self.addresses.remove(&ip).map(|_| format!("address {ip}"))
        } else {
            let key = super::ntlm::fold_account("", name)?;
            // The familiar addresses stay: only the failures are forgiven.
            self.accounts
                .read(key.as_str(), |e| {
                    let e = e?;
                    e.failures = Failures::default();
                    Some(())
                })
                .map(|_| format!("account {key}"))
        };
        if released.is_some() {
            self.stats.releases.fetch_add(1, Ordering::Relaxed);
        }
        released
    }

    /// Accounts and addresses held back now.
    pub fn held(&self, s: &LockoutSettings) -> Vec<HeldEntry> {
        let now = Instant::now();
        let mut out = Vec::new();
        self.accounts.each(|k, e| {
            if let Some(wait) = e.failures.held(now, s.window, s.threshold) {
                out.push(HeldEntry {
                    kind: "account",
                    name: k.clone(),
                    failures: e.failures.in_window(now, s.window),
                    held_attempts: e.failures.held_attempts,
                    retry_after_secs: wait.as_secs_f64().ceil() as u64,
                });
            }
        });
        self.addresses.each(|k, e| {
            if let Some(wait) = e.failures.held(now, s.window, s.address_threshold) {
                out.push(HeldEntry {
                    kind: "address",
                    name: k.to_string(),
                    failures: e.failures.in_window(now, s.window),
                    held_attempts: e.failures.held_attempts,
                    retry_after_secs: wait.as_secs_f64().ceil() as u64,
                });
            }
        });
        out.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        out
    }

    /// Entries in the account and address tables.
    pub fn table_sizes(&self) -> (usize, usize) {
        (self.accounts.len(), self.addresses.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LockoutSettings {
        LockoutSettings {
            threshold: 3,
            window: Duration::from_secs(60),
            trusted: CidrSet::parse_list(&["10.0.0.0/8"]).unwrap(),
            address_threshold: 0,
            familiar_for: Duration::from_secs(86_400),
            answer: Answer::TooManyRequests,
            max_entries: 1000,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_account_is_held_at_the_threshold_until_the_window_passes() {
        let s = settings();
        let l = Lockout::default();
        let t0 = Instant::now();
        let bad = ip("203.0.113.9");
        for i in 0..3 {
            assert_eq!(l.check_at(&s, bad, Some("alice"), t0), Verdict::Pass, "{i}");
            l.record_failure_at(&s, bad, Some("alice"), t0 + Duration::from_secs(i));
        }
        let v = l.check_at(&s, bad, Some("alice"), t0 + Duration::from_secs(10));
        assert_eq!(
            v,
            Verdict::Held {
                why: Hold::Account("alice".into()),
                retry_after: Duration::from_secs(50)
            }
        );
        // Another account, and the trusted range, pass.
        assert_eq!(l.check_at(&s, bad, Some("bob"), t0), Verdict::Pass);
        assert_eq!(
            l.check_at(&s, ip("10.1.2.3"), Some("alice"), t0),
            Verdict::Pass
        );
        // The oldest failure leaves the window: one more attempt is allowed.
        assert_eq!(
            l.check_at(&s, bad, Some("alice"), t0 + Duration::from_secs(60)),
            Verdict::Pass
        );
        assert_eq!(l.stats.blocked.load(Ordering::Relaxed), 1);
        assert_eq!(l.held(&s).len(), 1);
    }

    #[test]
    fn a_familiar_address_signs_in_while_the_account_is_held_elsewhere() {
        let s = settings();
        let l = Lockout::default();
        let t0 = Instant::now();
        let home = ip("198.51.100.7");
        l.record_success_at(&s, home, Some("alice"), t0);
        for i in 0..5 {
            l.record_failure_at(
                &s,
                ip("203.0.113.9"),
                Some("alice"),
                t0 + Duration::from_secs(i),
            );
        }
        let later = t0 + Duration::from_secs(6);
        assert!(matches!(
            l.check_at(&s, ip("203.0.113.10"), Some("alice"), later),
            Verdict::Held { .. }
        ));
        assert_eq!(l.check_at(&s, home, Some("alice"), later), Verdict::Pass);
        // A success clears the failures.
        l.record_success_at(&s, home, Some("alice"), later);
        assert_eq!(
            l.check_at(&s, ip("203.0.113.10"), Some("alice"), later),
            Verdict::Pass
        );
    }

    #[test]
    fn addresses_count_kerberos_and_sprays_across_accounts() {
        let mut s = settings();
        s.address_threshold = 4;
        let l = Lockout::default();
        let t0 = Instant::now();
        let bot = ip("2001:db8::66");
        for (i, a) in [Some("a"), Some("b"), None, Some("c")]
            .into_iter()
            .enumerate()
        {
            l.record_failure_at(&s, bot, a, t0 + Duration::from_millis(i as u64));
        }
        let v = l.check_at(&s, bot, Some("zed"), t0 + Duration::from_secs(1));
        assert!(
            matches!(
                v,
                Verdict::Held {
                    why: Hold::Address(_),
                    ..
                }
            ),
            "{v:?}"
        );
        assert_eq!(
            l.check_at(&s, bot, None, t0 + Duration::from_secs(61)),
            Verdict::Pass
        );
    }

    #[test]
    fn release_lifts_a_hold_by_any_spelling_or_address() {
        let mut s = settings();
        s.address_threshold = 2;
        let l = Lockout::default();
        let bad = ip("203.0.113.9");
        for _ in 0..3 {
            l.record_failure(&s, bad, Some("alice"));
        }
        assert!(matches!(
            l.check(&s, bad, Some("alice")),
            Verdict::Held { .. }
        ));
        assert_eq!(
            l.release("CONTOSO\\Alice").as_deref(),
            Some("account alice")
        );
        // Still held by address.
        assert!(matches!(
            l.check(&s, bad, Some("alice")),
            Verdict::Held {
                why: Hold::Address(_),
                ..
            }
        ));
        assert_eq!(
            l.release("203.0.113.9").as_deref(),
            Some("address 203.0.113.9")
        );
        assert_eq!(l.check(&s, bad, Some("alice")), Verdict::Pass);
        assert_eq!(l.release("nobody-here"), None);
        assert_eq!(l.stats.releases.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn tables_stay_bounded_under_a_spray_of_made_up_accounts() {
        let mut s = settings();
        s.address_threshold = 10;
        s.max_entries = 1600;
        let l = Lockout::default();
        let t0 = Instant::now();
        for n in 0..50_000u32 {
            let a = format!("user{n}");
            let client = IpAddr::from((0xC633_0000u32 + n).to_be_bytes());
            l.record_failure_at(
                &s,
                client,
                Some(&a),
                t0 + Duration::from_micros(u64::from(n)),
            );
            let (acc, addr) = l.table_sizes();
            assert!(acc <= 1600 && addr <= 1600, "{acc} {addr}");
        }
        assert!(l.stats.evicted.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn thresholds_derived_from_ad_keep_every_instance_below_it() {
        assert_eq!(LockoutSettings::max_safe_threshold(10, 1), 9);
        assert_eq!(LockoutSettings::max_safe_threshold(10, 2), 4);
        assert_eq!(LockoutSettings::max_safe_threshold(10, 3), 3);
        assert_eq!(LockoutSettings::max_safe_threshold(3, 4), 1);
        assert_eq!(LockoutSettings::derived_threshold(10, 1), 5);
        assert_eq!(LockoutSettings::derived_threshold(10, 2), 2);
        for ad in 2..50 {
            for n in 1..5 {
                let t = LockoutSettings::derived_threshold(ad, n);
                assert!(
                    t <= LockoutSettings::max_safe_threshold(ad, n) || t == 1,
                    "{ad} {n}"
                );
            }
        }
    }
}
