//! Worker per core: `portico run` serves traffic on N threads, each running its own
//! single-threaded runtime with its own share of every listener. A client connection, the
//! member connections it uses and all their tasks stay on the thread that accepted it, so no
//! task moves between cores and no worker has to wake another (the profile of the
//! work-stealing runtime put 11% of the CPU in task switches and 12% in cross-thread
//! wake-ups). Each worker keeps its own idle member connections (`upstream::pool`), as
//! nginx's and HAProxy's workers do.
//!
//! Everything else (admin listener, health checks, reloads, ACME, certificate watching) runs
//! on the control runtime that started the workers. Without workers (the library's `start`
//! as tests call it) listeners run on the caller's runtime and everything is one shard.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use tokio::runtime::Handle;

static WORKERS: OnceLock<Vec<Handle>> = OnceLock::new();

thread_local! {
    /// 1-based worker number of this thread; 0 on any other thread.
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// Starts `n` worker threads (at least one). Once per process: the layout is fixed from the
/// first listener on, since pools are sharded by it.
pub fn start(n: usize) -> std::io::Result<()> {
    if WORKERS.get().is_some() {
        return Err(std::io::Error::other("the workers are already started"));
    }
    let mut handles = Vec::with_capacity(n.max(1));
    for i in 1..=n.max(1) {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("portico-w{i}"))
            .spawn(move || {
                SHARD.with(|s| s.set(i));
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(rt.handle().clone()));
                // Drives the tasks listeners spawn here, for the life of the process.
                rt.block_on(heartbeat());
            })?;
        let handle = rx
            .recv()
            .map_err(|_| std::io::Error::other("a worker thread died while starting"))??;
        handles.push(handle);
    }
    WORKERS
        .set(handles)
        .map_err(|_| std::io::Error::other("the workers are already started"))
}

/// Wakes the worker once a second, for nothing. tokio's timer writes to the runtime's own
/// eventfd (a syscall, and one more wake-up) whenever a new timer is due before every timer
/// it knew at its last sleep, or when it knew none: that was hyper's header-read timer on a
/// third of all requests, since a keep-alive connection makes a new one per request. With
/// this timer always due within a second, the 30 s header timers never are.
async fn heartbeat() {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// The workers' runtimes; empty when `start` was not called.
pub fn handles() -> &'static [Handle] {
    WORKERS.get().map(Vec::as_slice).unwrap_or(&[])
}

/// Which shard of per-worker state (idle pools) this thread uses: its worker number, or 0
/// for any thread that is not a worker.
pub fn shard() -> usize {
    SHARD.with(Cell::get)
}

/// How many shards per-worker state needs: one per worker, plus one for other threads.
pub fn shards() -> usize {
    handles().len() + 1
}

/// One value per shard (per worker, plus one for other threads), each on its own cache line
/// so two workers never write the same one; a thread uses its own. Idle pools and counters
/// are built on it.
pub struct PerWorker<T> {
    cells: Box<[Padded<T>]>,
}

#[repr(align(64))]
struct Padded<T>(T);

impl<T> PerWorker<T> {
    /// A value per shard, each made by `make`.
    pub fn new(make: impl FnMut() -> T) -> Self {
        Self::with_shards(shards(), make)
    }

    fn with_shards(n: usize, mut make: impl FnMut() -> T) -> Self {
        PerWorker {
            cells: (0..n).map(|_| Padded(make())).collect(),
        }
    }

    /// This thread's value.
    pub fn local(&self) -> &T {
        &self.cells[shard().min(self.cells.len() - 1)].0
    }

    /// Every shard's value.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.cells.iter().map(|c| &c.0)
    }
}

/// A counter every worker adds to without sharing a cache line with the others, summed
/// when read. Totals the status page and `/metrics` read a few times a second are written
/// on every request by every core; one shared atomic made each of those writes a
/// cache-line transfer between cores.
pub struct Counter(PerWorker<AtomicU64>);

impl Default for Counter {
    fn default() -> Self {
        Counter(PerWorker::new(AtomicU64::default))
    }
}

impl Counter {
    /// Adds `n` in this thread's cell.
    pub fn add(&self, n: u64) {
        self.0.local().fetch_add(n, Ordering::Relaxed);
    }

    /// Takes `n` off (a gauge going down); cells wrap, their sum does not.
    pub fn sub(&self, n: u64) {
        self.0.local().fetch_sub(n, Ordering::Relaxed);
    }

    /// The total over every cell.
    pub fn get(&self) -> u64 {
        self.0
            .iter()
            .fold(0u64, |sum, c| sum.wrapping_add(c.load(Ordering::Relaxed)))
    }

    /// Back to zero (the status page's "reset counters").
    pub fn reset(&self) {
        for c in self.0.iter() {
            c.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gauge_raised_on_one_worker_and_lowered_on_another_sums_to_its_value() {
        let c = Counter(PerWorker::with_shards(3, AtomicU64::default));
        // Worker 1 opens three exchanges; worker 2 finishes two of them.
        c.0.cells[1].0.fetch_add(3, Ordering::Relaxed);
        c.0.cells[2].0.fetch_sub(2, Ordering::Relaxed);
        assert_eq!(c.get(), 1);
        c.add(10); // this thread is no worker: cell 0
        assert_eq!(c.get(), 11);
        c.sub(11);
        assert_eq!(c.get(), 0);
        c.add(7);
        c.reset();
        assert_eq!(c.get(), 0);
    }
}
