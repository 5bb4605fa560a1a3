//! Idle HTTP/1.1 connections of one endpoint (member + scheme).
//!
//! A connection comes back when its response body has been read to the end and both sides
//! allowed another request (`http1::client::ResponseBody::take_connection`): it is ready at
//! once, with no connection task to catch up. Checkout asks the connection, without
//! waiting, whether the member has closed it or sent anything since (`check_idle`), so a
//! request is never written to a connection known dead. Connections older than the idle
//! timeout, set shorter than the member's keep-alive, are dropped so Portico never sends on
//! one IIS is closing.
//!
//! One shard per worker thread (`crate::worker`): a worker reuses the connections its own
//! requests returned, and the shards never contend.

use super::MemberConn;
use crate::worker::PerWorker;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub(super) struct Pool {
    /// Most recently returned last (LIFO keeps few connections warm and lets the rest age).
    shards: PerWorker<Mutex<Vec<(MemberConn, Instant)>>>,
    /// Per shard.
    max_idle: usize,
}

impl Pool {
    pub(super) fn new(max_idle: usize) -> Self {
        Pool {
            shards: PerWorker::new(|| Mutex::new(Vec::new())),
            max_idle,
        }
    }

    /// This thread's shard.
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(MemberConn, Instant)>> {
        self.shards
            .local()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used connection that `check_idle` finds open and quiet, dropping
    /// those idle past `idle_timeout` and those the member closed. Its last exchange is over
    /// (it came back when its response body ended), so it can be sent on at once.
    pub(super) fn checkout(&self, idle_timeout: Duration) -> Option<MemberConn> {
        let now = Instant::now();
        let mut idle = self.idle();
        // The oldest are at the front: cut every expired one in one go.
        let expired = idle.partition_point(|(_, since)| now.duration_since(*since) >= idle_timeout);
        if expired > 0 {
            idle.drain(..expired);
        }
        while let Some((mut conn, _)) = idle.pop() {
            if conn.check_idle().is_ok() {
                return Some(conn);
            }
        }
        None
    }

    /// Returns a connection whose exchange has finished. Past `max_idle` the oldest goes:
    /// the bound is a memory cap, set well above any steady concurrency.
    pub(super) fn put(&self, conn: MemberConn) {
        if self.max_idle == 0 {
            return;
        }
        let mut idle = self.idle();
        if idle.len() >= self.max_idle {
            idle.remove(0);
        }
        idle.push((conn, Instant::now()));
    }

    /// Idle connections in all shards.
    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|v| v.len()).unwrap_or(0))
            .sum()
    }

    /// Drops the idle connections of every shard.
    pub(super) fn clear(&self) {
        for s in self.shards.iter() {
            s.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }
}
