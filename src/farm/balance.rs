//! Load-balancing algorithms. Lock-free: one atomic cursor per farm.

use super::Member;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Smooth weighted round robin (nginx's interleaving), precomputed once per config so the
/// per-request cost is one atomic increment.
pub struct Schedule {
    order: Vec<usize>,
    cursor: AtomicUsize,
}

const MAX_SCHEDULE: u64 = 4096;

impl Schedule {
    pub(crate) fn new(weights: &[u32]) -> Schedule {
        let g = weights
            .iter()
            .copied()
            .filter(|w| *w > 0)
            .fold(0u32, gcd)
            .max(1);
        let mut w: Vec<u64> = weights.iter().map(|x| u64::from(*x / g).max(1)).collect();
        let total: u64 = w.iter().sum();
        if total > MAX_SCHEDULE {
            // Scale down very uneven weights; proportions stay close, every member keeps a slot.
            for x in &mut w {
                *x = (*x * MAX_SCHEDULE / total).max(1);
            }
        }
        let total: i64 = w.iter().map(|x| *x as i64).sum();
        let mut current = vec![0i64; w.len()];
        let mut order = Vec::with_capacity(total as usize);
        for _ in 0..total {
            for (c, wi) in current.iter_mut().zip(&w) {
                *c += *wi as i64;
            }
            let (best, _) = current
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
                .unwrap_or((0, &0));
            current[best] -= total;
            order.push(best);
        }
        Schedule {
            order,
            cursor: AtomicUsize::new(0),
        }
    }

    /// Next member in weighted order for which `ok` holds.
    pub fn next(&self, ok: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.order.len();
        if len == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        (0..len)
            .map(|k| self.order[(start + k) % len])
            .find(|&i| ok(i))
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Fewest in-flight requests relative to weight; ties broken by the round-robin order.
pub fn least_requests(members: &[Arc<Member>], schedule: &Schedule, path: &str) -> Option<usize> {
    let start = schedule.next(|i| members[i].is_selectable_for(path))?;
    let n = members.len();
    let mut best = start;
    let mut best_load = load(&members[start]);
    for k in 1..n {
        let i = (start + k) % n;
        if !members[i].is_selectable_for(path) {
            continue;
        }
        let l = load(&members[i]);
        if l < best_load {
            best = i;
            best_load = l;
        }
    }
    Some(best)
}

/// Two members by weighted round robin, the less loaded one wins.
pub fn power_of_two(members: &[Arc<Member>], schedule: &Schedule, path: &str) -> Option<usize> {
    let a = schedule.next(|i| members[i].is_selectable_for(path))?;
    let b = schedule
        .next(|i| members[i].is_selectable_for(path) && i != a)
        .unwrap_or(a);
    Some(if load(&members[b]) < load(&members[a]) {
        b
    } else {
        a
    })
}

/// Lowest moving-average response time; members without a sample yet go first so they get one.
pub fn least_response_time(
    members: &[Arc<Member>],
    schedule: &Schedule,
    path: &str,
) -> Option<usize> {
    let start = schedule.next(|i| members[i].is_selectable_for(path))?;
    let n = members.len();
    let mut best = start;
    let mut best_rt = members[start].response_time.micros();
    for k in 1..n {
        let i = (start + k) % n;
        if !members[i].is_selectable_for(path) {
            continue;
        }
        let rt = members[i].response_time.micros();
        if rt < best_rt {
            best = i;
            best_rt = rt;
        }
    }
    Some(best)
}

/// Weighted rendezvous hashing: the same key picks the same member on every instance, and
/// only the keys of a member that goes away move.
pub fn rendezvous(members: &[Arc<Member>], key: u64, path: &str) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, m) in members.iter().enumerate() {
        if !m.is_selectable_for(path) {
            continue;
        }
        let h = mix(key ^ m.hash_seed);
        // Uniform in (0, 1]; score = -w / ln(u) (larger wins).
        let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let score = -f64::from(m.weight.max(1)) / u.ln().min(-f64::MIN_POSITIVE);
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

fn load(m: &Member) -> u64 {
    // Scaled so a weight-200 member with 2 requests counts as loaded as a weight-100 one with 1.
    m.in_flight() * 1_000_000 / u64::from(m.weight.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(s: &Schedule, n: usize, rounds: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for _ in 0..rounds {
            c[s.next(|_| true).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn weights_are_respected_and_interleaved() {
        let s = Schedule::new(&[100, 50]);
        assert_eq!(counts(&s, 2, 300), vec![200, 100]);
        // smooth: never three of the heavy one in a row for 2:1
        let s = Schedule::new(&[2, 1]);
        let seq: Vec<usize> = (0..6).map(|_| s.next(|_| true).unwrap()).collect();
        assert!(
            !seq.windows(3).any(|w| w.iter().all(|x| *x == 0)),
            "{seq:?}"
        );
    }

    #[test]
    fn unselectable_members_are_skipped() {
        let s = Schedule::new(&[1, 1, 1]);
        for _ in 0..10 {
            assert_ne!(s.next(|i| i != 1), Some(1));
        }
        assert_eq!(s.next(|_| false), None);
    }

    #[test]
    fn very_uneven_weights_still_give_every_member_a_slot() {
        let s = Schedule::new(&[u32::MAX, 1]);
        let c = counts(&s, 2, 10_000);
        assert!(c[1] > 0 && c[0] > c[1] * 100, "{c:?}");
    }
}
