//! Idle HTTP/1.1 connections to one member endpoint (member + scheme).
//!
//! A connection goes back only once its response body is fully read (hyper says
//! "ready"); it is dropped when idle longer than `idle_timeout` — set shorter than the
//! member's keep-alive so Portico never sends on a connection IIS is closing.

use super::Sender;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub struct Pool {
    idle: Mutex<Vec<(Sender, Instant)>>,
    max_idle: usize,
    idle_timeout: Duration,
    created: AtomicU64,
    reused: AtomicU64,
}

/// Figures for the status page.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolStats {
    pub idle: usize,
    pub created: u64,
    pub reused: u64,
}

impl Pool {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Pool {
            idle: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout,
            created: AtomicU64::new(0),
            reused: AtomicU64::new(0),
        }
    }

    /// The most recently used live connection, if any (LIFO keeps few connections warm).
    pub fn checkout(&self) -> Option<Sender> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((sender, since)) = idle.pop() {
            if now.duration_since(since) < self.idle_timeout
                && sender.is_ready()
                && !sender.is_closed()
            {
                self.reused.fetch_add(1, Ordering::Relaxed);
                return Some(sender);
            }
        }
        None
    }

    pub fn note_created(&self) {
        self.created.fetch_add(1, Ordering::Relaxed);
    }

    /// Returns a connection whose exchange has finished (its response body was read to the
    /// end). No task is spawned: the caller waits for `ready()` when it takes it out again.
    pub fn put(&self, sender: Sender) {
        if self.max_idle == 0 || sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= self.max_idle {
            idle.remove(0);
        }
        idle.push((sender, Instant::now()));
    }

    pub fn stats(&self) -> PoolStats {
        let idle = self.idle.lock().map(|v| v.len()).unwrap_or(0);
        PoolStats {
            idle,
            created: self.created.load(Ordering::Relaxed),
            reused: self.reused.load(Ordering::Relaxed),
        }
    }

    /// Drops every idle connection (member drained or removed).
    pub fn clear(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}
