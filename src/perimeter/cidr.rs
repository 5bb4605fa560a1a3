//! Address range sets: many CIDR ranges, one lookup by binary search.
//!
//! Ranges are turned into sorted, merged, disjoint `[first, last]` intervals per address
//! family, so a lookup is `O(log n)` whatever the list holds (10,000 Microsoft 365 ranges
//! cost ~14 comparisons). IPv4-mapped IPv6 clients (`::ffff:10.0.0.5`) are looked up as IPv4.
//!
//! A set read from a file ([`CidrFile`]) is re-read when the file's modification time changes,
//! by one background thread polling every [`POLL_INTERVAL`]; a file that no longer parses keeps
//! the previous set and the error (file and line) is logged.

use crate::config::Cidr;
use arc_swap::ArcSwap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime};

/// How often watched range files are checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// A set of address ranges, both families.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CidrSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

/// A range file line that is not an address range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct CidrFileError {
    pub(crate) file: String,
    pub(crate) line: usize,
    pub(crate) message: String,
}

impl CidrSet {
    /// Builds the set from ranges (duplicates and overlaps are merged).
    pub fn new(ranges: impl IntoIterator<Item = Cidr>) -> CidrSet {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for c in ranges {
            match c.addr {
                IpAddr::V4(a) => {
                    let host_bits = 32 - u32::from(c.prefix);
                    let mask = u32::MAX.checked_shl(host_bits).unwrap_or(0);
                    let first = u32::from(a) & mask;
                    v4.push((first, first | !mask));
                }
                IpAddr::V6(a) => match a.to_ipv4_mapped().filter(|_| c.prefix >= 96) {
                    // `::ffff:10.0.0.0/104` is the IPv4 range 10.0.0.0/8.
                    Some(v4addr) => {
                        let prefix = c.prefix - 96;
                        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                        let first = u32::from(v4addr) & mask;
                        v4.push((first, first | !mask));
                    }
                    None => {
                        let host_bits = 128 - u32::from(c.prefix);
                        let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
                        let first = u128::from(a) & mask;
                        v6.push((first, first | !mask));
                    }
                },
            }
        }
        CidrSet {
            v4: merge(v4),
            v6: merge(v6),
        }
    }

    /// Parses ranges written as strings (`"10.0.0.0/8"`, `"::1"`); the error names the entry.
    pub fn parse_list<S: AsRef<str>>(items: &[S]) -> Result<CidrSet, (usize, String)> {
        let mut out = Vec::with_capacity(items.len());
        for (i, s) in items.iter().enumerate() {
            out.push(Cidr::parse(s.as_ref()).map_err(|e| (i, e))?);
        }
        Ok(CidrSet::new(out))
    }

    /// Parses a range file: one range per line; `#` starts a comment; blank lines are skipped.
    pub fn parse_text(text: &str) -> Result<CidrSet, (usize, String)> {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            out.push(Cidr::parse(line).map_err(|e| (i + 1, e))?);
        }
        Ok(CidrSet::new(out))
    }

    /// Reads and parses a range file.
    pub fn read_file(path: &Path) -> Result<CidrSet, CidrFileError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| CidrFileError {
            file: file.clone(),
            line: 0,
            message: format!("cannot read the range file: {e}"),
        })?;
        CidrSet::parse_text(&text).map_err(|(line, message)| CidrFileError {
            file,
            line,
            message,
        })
    }

    /// Whether `ip` is in one of the ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => find(&self.v4, u32::from(v4)),
                None => find(&self.v6, u128::from(a)),
            },
        }
    }

    /// Disjoint intervals held (after merging), for status and tests.
    pub fn intervals(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// No ranges at all: nothing is contained.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

fn merge<T: Ord + Copy + num_like::Succ>(mut v: Vec<(T, T)>) -> Vec<(T, T)> {
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for (first, last) in v {
        match out.last_mut() {
            // Overlapping or adjacent: extend.
            Some(prev) if prev.1 >= first || prev.1.succ() == Some(first) => {
                if last > prev.1 {
                    prev.1 = last;
                }
            }
            _ => out.push((first, last)),
        }
    }
    out.shrink_to_fit();
    out
}

fn find<T: Ord + Copy>(v: &[(T, T)], x: T) -> bool {
    // The last interval starting at or before x is the only candidate.
    let i = v.partition_point(|&(first, _)| first <= x);
    i > 0 && v[i - 1].1 >= x
}

mod num_like {
    pub trait Succ: Sized {
        fn succ(self) -> Option<Self>;
    }
    impl Succ for u32 {
        fn succ(self) -> Option<u32> {
            self.checked_add(1)
        }
    }
    impl Succ for u128 {
        fn succ(self) -> Option<u128> {
            self.checked_add(1)
        }
    }
}

/// A range set kept in a file and followed as the file changes.
#[derive(Debug)]
pub struct CidrFile {
    pub(crate) path: PathBuf,
    set: ArcSwap<CidrSet>,
    modified: Mutex<Option<SystemTime>>,
}

impl CidrFile {
    /// Reads the file now (an error here fails the config) and registers it with the watcher.
    pub fn open(path: PathBuf) -> Result<Arc<CidrFile>, CidrFileError> {
        let modified = mtime(&path);
        let set = CidrSet::read_file(&path)?;
        let f = Arc::new(CidrFile {
            path,
            set: ArcSwap::from_pointee(set),
            modified: Mutex::new(modified),
        });
        watch(&f);
        Ok(f)
    }

    /// The current ranges.
    pub fn load(&self) -> arc_swap::Guard<Arc<CidrSet>> {
        self.set.load()
    }

    /// Re-reads the file if its modification time changed. Returns whether the set changed.
    pub fn refresh(&self) -> bool {
        let now = mtime(&self.path);
        {
            let mut m = self.modified.lock().unwrap_or_else(|p| p.into_inner());
            if *m == now {
                return false;
            }
            *m = now;
        }
        match CidrSet::read_file(&self.path) {
            Ok(set) => {
                tracing::info!(file = %self.path.display(), ranges = set.intervals(), "address range file re-read");
                self.set.store(Arc::new(set));
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "address range file not re-read; the previous ranges stay in force");
                false
            }
        }
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Files being followed; a file whose config is gone (no strong reference) is dropped.
fn watched() -> &'static Mutex<Vec<Weak<CidrFile>>> {
    static WATCHED: OnceLock<Mutex<Vec<Weak<CidrFile>>>> = OnceLock::new();
    WATCHED.get_or_init(|| {
        // A plain thread: file reads block, and `portico validate` has no runtime.
        let _ = std::thread::Builder::new()
            .name("portico-cidr-files".into())
            .spawn(|| loop {
                std::thread::sleep(POLL_INTERVAL);
                let files: Vec<Arc<CidrFile>> = {
                    let mut w = watched().lock().unwrap_or_else(|p| p.into_inner());
                    w.retain(|f| f.strong_count() > 0);
                    w.iter().filter_map(Weak::upgrade).collect()
                };
                for f in files {
                    f.refresh();
                }
            });
        Mutex::new(Vec::new())
    })
}

fn watch(f: &Arc<CidrFile>) {
    watched()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Arc::downgrade(f));
}

/// Where a condition's ranges come from. Compared by identity (two conditions naming the same
/// file are still two sources).
#[derive(Debug, Clone)]
pub enum CidrSource {
    /// Ranges written in the config itself.
    Inline(Arc<CidrSet>),
    /// Ranges read from a file, re-read when it changes.
    File(Arc<CidrFile>),
}

impl PartialEq for CidrSource {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (CidrSource::Inline(a), CidrSource::Inline(b)) => a == b,
            (CidrSource::File(a), CidrSource::File(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}
impl Eq for CidrSource {}

impl CidrSource {
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match self {
            CidrSource::Inline(s) => s.contains(ip),
            CidrSource::File(f) => f.load().contains(ip),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lookups_cover_both_families_and_mapped_addresses() {
        let set =
            CidrSet::parse_list(&["10.0.0.0/8", "192.168.1.0/24", "fd00::/8", "::1"]).unwrap();
        assert!(set.contains(ip("10.255.0.1")));
        assert!(!set.contains(ip("11.0.0.0")));
        assert!(set.contains(ip("192.168.1.255")));
        assert!(!set.contains(ip("192.168.2.0")));
        assert!(set.contains(ip("fd12::5")));
        assert!(!set.contains(ip("fe80::1")));
        assert!(set.contains(ip("::1")));
        assert!(!set.contains(ip("127.0.0.1")));
        assert!(set.contains(ip("::ffff:10.1.2.3")));
        let all = CidrSet::parse_list(&["0.0.0.0/0", "::/0"]).unwrap();
        assert!(all.contains(ip("255.255.255.255")));
        assert!(all.contains(ip("ffff::1")));
        assert_eq!(all.intervals(), 2);
    }

    #[test]
    fn adjacent_and_overlapping_ranges_merge() {
        let set = CidrSet::parse_list(&["10.0.0.0/25", "10.0.0.128/25", "10.0.0.7", "10.0.1.0/24"])
            .unwrap();
        assert_eq!(set.intervals(), 1);
        assert!(set.contains(ip("10.0.1.200")));
        assert!(!set.contains(ip("10.0.2.0")));
    }

    #[test]
    fn file_text_allows_comments_and_names_the_bad_line() {
        let set = CidrSet::parse_text("# M365\n40.96.0.0/13 # EXO\n\n  2603:1006::/40\n").unwrap();
        assert!(set.contains(ip("40.97.1.1")));
        assert!(set.contains(ip("2603:1006::9")));
        let err = CidrSet::parse_text("10.0.0.0/8\nnot-a-range\n").unwrap_err();
        assert_eq!(err.0, 2);
    }

    /// A deterministic pseudo-random generator (xorshift), so the test is the same every run.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
    }

    #[test]
    fn lookups_agree_with_a_brute_force_scan() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut ranges = Vec::new();
        for _ in 0..2000 {
            let r = rng.next();
            // Clustered in 10.0.0.0/12 so ranges overlap and lookups hit edges.
            let a = 0x0A00_0000 | (r as u32 & 0x000F_FFFF);
            let prefix = 16 + (r >> 40) as u8 % 17;
            ranges.push(Cidr {
                addr: IpAddr::from(a.to_be_bytes()),
                prefix,
            });
            let hi = (u128::from(r) << 64) | u128::from(rng.next());
            let a6 = (0xfd00u128 << 112) | (hi >> 16 & ((1u128 << 100) - 1));
            let prefix6 = 20 + (r >> 48) as u8 % 109;
            ranges.push(Cidr {
                addr: IpAddr::from(a6.to_be_bytes()),
                prefix: prefix6,
            });
        }
        let set = CidrSet::new(ranges.iter().copied());
        let brute = |x: IpAddr| ranges.iter().any(|c| c.contains(x));
        let mut hits = 0;
        for _ in 0..20_000 {
            let r = rng.next();
            let v4 = IpAddr::from((0x0A00_0000 | (r as u32 & 0x001F_FFFF)).to_be_bytes());
            let a6 = (0xfd00u128 << 112) | (u128::from(rng.next()) << 36 & ((1u128 << 100) - 1));
            let v6 = IpAddr::from(a6.to_be_bytes());
            for x in [v4, v6] {
                let want = brute(x);
                assert_eq!(set.contains(x), want, "{x}");
                hits += usize::from(want);
            }
        }
        // Both outcomes were exercised.
        assert!(hits > 1000 && hits < 39_000, "hits {hits}");
    }

    #[test]
    fn a_changed_file_is_re_read_and_a_broken_one_keeps_the_old_set() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.txt");
        std::fs::write(&p, "10.0.0.0/8\n").unwrap();
        let f = CidrFile::open(p.clone()).unwrap();
        assert!(f.load().contains(ip("10.1.1.1")));
        std::fs::write(&p, "192.0.2.0/24\n").unwrap();
        // Force a different mtime even on coarse-grained file systems.
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(f.refresh());
        assert!(!f.load().contains(ip("10.1.1.1")));
        assert!(f.load().contains(ip("192.0.2.9")));
        std::fs::write(&p, "192.0.2.0/24\nbroken\n").unwrap();
        let later = later + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(!f.refresh());
        assert!(f.load().contains(ip("192.0.2.9")));
    }
}
