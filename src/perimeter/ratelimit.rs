//! Per-client-address rate limits (GCRA: the generic cell rate algorithm, a token bucket
//! kept as one timestamp per client).
//!
//! A client's entry is its "theoretical arrival time" (TAT). A request is allowed when the
//! TAT, advanced by one emission interval, is at most `burst` intervals ahead of now. An entry
//! whose TAT is in the past carries no information (the bucket is full), so it can be dropped
//! at no cost: that is how the table stays bounded. The table is split into shards (one mutex
//! each, held for a few instructions, never across an await); each shard holds at most
//! `capacity / SHARDS` clients. A full shard first drops expired entries, then, under a flood
//! of live ones, the entries nearest to expiry (those clients get a fresh bucket: a flood from
//! many addresses costs precision, never memory).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

/// Default number of client addresses one limiter remembers.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// `requests` per `per`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    /// Requests allowed per `per`.
    pub requests: u32,
    /// The period `requests` are counted over.
    pub per: Duration,
    /// How many requests may come at once before the rate applies (bucket size).
    pub burst: u32,
}

impl RateSpec {
    /// Time between two requests at the steady rate, in nanoseconds (at least 1).
    fn interval_ns(&self) -> u64 {
        (self.per.as_nanos() / u128::from(self.requests.max(1))).clamp(1, u128::from(u64::MAX))
            as u64
    }
}

/// A refused request: when the client may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub(crate) retry_after: Duration,
}

impl Limited {
    /// Whole seconds for `Retry-After` (rounded up, at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        let ns = self.retry_after.as_nanos();
        (ns.div_ceil(1_000_000_000) as u64).max(1)
    }
}

struct Shard {
    tat: HashMap<IpAddr, u64, std::hash::RandomState>,
}

/// One rule's (or one listener's) limiter: a bounded table of client addresses.
pub struct RateLimiter {
    pub(crate) spec: RateSpec,
    interval_ns: u64,
    tolerance_ns: u64,
    shard_cap: usize,
    shards: Vec<Mutex<Shard>>,
    hasher: std::hash::RandomState,
    epoch: Instant,
    /// Requests refused (for `/metrics`).
    pub limited: AtomicU64,
    /// Live entries dropped because a shard was full of them.
    pub evicted: AtomicU64,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("spec", &self.spec)
            .finish()
    }
}

/// Limiters are compared by identity (a rules `Outcome` carries a reference to one).
impl PartialEq for RateLimiter {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}
impl Eq for RateLimiter {}

impl RateLimiter {
    /// A limiter for `spec` that remembers about `capacity` client addresses; when full it drops the entries nearest to expiry.
    pub fn new(spec: RateSpec, capacity: usize) -> RateLimiter {
        let interval_ns = spec.interval_ns();
        RateLimiter {
            spec,
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(u64::from(spec.burst.max(1))),
            shard_cap: capacity.div_ceil(SHARDS).max(1),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        tat: HashMap::default(),
                    })
                })
                .collect(),
            hasher: std::hash::RandomState::new(),
            epoch: Instant::now(),
            limited: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    /// Most clients the table holds.
    pub fn capacity(&self) -> usize {
        self.shard_cap * SHARDS
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Counts one request from `client`; `Err` says it is over the limit.
    pub fn check(&self, client: IpAddr) -> Result<(), Limited> {
        self.check_at(client, self.now_ns())
    }

    fn check_at(&self, client: IpAddr, now: u64) -> Result<(), Limited> {
        let shard = &self.shards[self.shard_of(&client)];
        let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
        let tat = s.tat.get(&client).copied().unwrap_or(0).max(now);
        let next = tat + self.interval_ns;
        if next - now > self.tolerance_ns {
            drop(s);
            self.limited.fetch_add(1, Ordering::Relaxed);
            return Err(Limited {
                retry_after: Duration::from_nanos(next - now - self.tolerance_ns),
            });
        }
        if s.tat.len() >= self.shard_cap && !s.tat.contains_key(&client) {
            let evicted = make_room(&mut s.tat, now, self.shard_cap);
            if evicted > 0 {
                self.evicted.fetch_add(evicted, Ordering::Relaxed);
            }
        }
        s.tat.insert(client, next);
        Ok(())
    }

    fn shard_of<K: Hash>(&self, k: &K) -> usize {
        (self.hasher.hash_one(k) as usize) % SHARDS
    }

    /// Clients remembered now (for `/metrics`).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).tat.len())
            .sum()
    }

    /// No client address remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Frees at least one place in a full shard: expired entries go first (free), then the eighth
/// of entries nearest to expiry (amortised: the next `cap / 8` inserts need no sweep).
/// Returns how many live entries were dropped.
fn make_room(map: &mut HashMap<IpAddr, u64>, now: u64, cap: usize) -> u64 {
    map.retain(|_, tat| *tat > now);
    if map.len() < cap {
        return 0;
    }
    let mut tats: Vec<u64> = map.values().copied().collect();
    let k = (cap / 8).max(1).min(tats.len() - 1);
    let (_, cut, _) = tats.select_nth_unstable(k);
    let cut = *cut;
    let before = map.len();
    map.retain(|_, tat| *tat > cut);
    (before - map.len()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn burst_then_steady_rate_then_refusal_with_retry_after() {
        let l = RateLimiter::new(
            RateSpec {
                requests: 10,
                per: Duration::from_secs(1),
                burst: 3,
            },
            100,
        );
        let a = ip(1);
        let t = 1_000 * MS;
        for _ in 0..3 {
            assert!(l.check_at(a, t).is_ok());
        }
        let refused = l.check_at(a, t).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        assert_eq!(refused.retry_after_secs(), 1);
        // Another client is unaffected.
        assert!(l.check_at(ip(2), t).is_ok());
        // One interval later, one more request.
        assert!(l.check_at(a, t + 100 * MS).is_ok());
        assert!(l.check_at(a, t + 100 * MS).is_err());
        assert_eq!(l.limited.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_flood_of_addresses_never_grows_the_table_past_its_capacity() {
        let l = RateLimiter::new(
            RateSpec {
                requests: 1,
                per: Duration::from_secs(60),
                burst: 1,
            },
            1_000,
        );
        let t = 5_000 * MS;
        for n in 0..100_000u32 {
            assert!(l.check_at(ip(0x0B00_0000 + n), t + u64::from(n)).is_ok());
            assert!(l.len() <= l.capacity());
        }
        assert!(l.len() > l.capacity() / 2);
        assert!(l.evicted.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn expired_entries_are_dropped_before_live_ones() {
        let l = RateLimiter::new(
            RateSpec {
                requests: 1000,
                per: Duration::from_secs(1),
                burst: 1,
            },
            SHARDS * 4,
        );
        for n in 0..1000u32 {
            let _ = l.check_at(ip(n), 1_000 * MS);
        }
        // All those entries expired one millisecond later: nothing live was evicted.
        let before = l.evicted.load(Ordering::Relaxed);
        for n in 0..1000u32 {
            let _ = l.check_at(ip(50_000 + n), 1_000_000 * MS + u64::from(n) * 10 * MS);
        }
        assert_eq!(l.evicted.load(Ordering::Relaxed), before);
    }
}
