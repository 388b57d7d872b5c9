//! Pool bookkeeping, guarded by the pool's mutex. Pure data plus small helpers.

use std::collections::VecDeque;
use std::time::Instant;

use tokio::sync::oneshot;

use super::PoolOptions;
use crate::upstream::UpstreamConn;

/// What a waiter is handed: a parked connection, or a reserved slot to open one in.
/// Moved once per hand-off; boxing would cost an allocation per checkout.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(super) enum Grant {
    Conn(UpstreamConn),
    Connect,
}

#[derive(Debug)]
pub(super) struct State {
    /// Parked connections, most recently used last (reused first: it is warmest).
    pub idle: Vec<UpstreamConn>,
    /// Idle + in use + connecting; bounded by maxPoolSize.
    pub total: usize,
    pub in_use: usize,
    pub connecting: usize,
    pub generation: u32,
    pub waiters: VecDeque<oneshot::Sender<Grant>>,
    /// CMAP "ready": false while paused after a clear, and before the first success.
    pub ready: bool,
    pub closed: bool,
    pub clear_reason: Option<String>,
}

/// A point-in-time view for /status and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PoolSnapshot {
    pub total: usize,
    pub idle: usize,
    pub in_use: usize,
    pub connecting: usize,
    pub waiters: usize,
    pub generation: u32,
    pub ready: bool,
}

impl State {
    pub fn new() -> Self {
        Self {
            idle: Vec::new(),
            total: 0,
            in_use: 0,
            connecting: 0,
            generation: 0,
            waiters: VecDeque::new(),
            ready: false,
            closed: false,
            clear_reason: None,
        }
    }

    fn has_room(&self, opts: &PoolOptions) -> bool {
        (opts.max_size == 0 || self.total < opts.max_size) && self.connecting < opts.max_connecting.max(1)
    }

    /// A grant for the front of the queue: a parked connection first, else a slot.
    pub fn try_grant(&mut self, opts: &PoolOptions) -> Option<Grant> {
        if let Some(conn) = self.idle.pop() {
            self.in_use += 1;
            return Some(Grant::Conn(conn));
        }
        if self.has_room(opts) {
            self.total += 1;
            self.connecting += 1;
            return Some(Grant::Connect);
        }
        None
    }

    /// Puts back a grant whose waiter had gone.
    pub fn undo_grant(&mut self, grant: Grant) {
        match grant {
            Grant::Conn(conn) => {
                self.in_use -= 1;
                self.idle.push(conn);
            }
            Grant::Connect => {
                self.total -= 1;
                self.connecting -= 1;
            }
        }
    }

    /// Removes parked connections that are too old, idle too long, of an old
    /// generation, or visibly dead. The caller closes them outside the lock.
    pub fn take_perished(&mut self, opts: &PoolOptions, now: Instant) -> Vec<UpstreamConn> {
        let generation = self.generation;
        let dead = |c: &UpstreamConn| perished(c, generation, opts, now);
        if !self.idle.iter().any(dead) {
            return Vec::new();
        }
        let (dead, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.idle).into_iter().partition(dead);
        self.idle = keep;
        self.total -= dead.len();
        dead
    }

    /// Pops perished connections off the top of the idle stack, the end a checkout takes
    /// from, so the connection it is granted is fresh. Only the top is examined (O(1) in
    /// the common case); older parked connections are left to maintenance.
    pub fn pop_perished(&mut self, opts: &PoolOptions, now: Instant) -> Vec<UpstreamConn> {
        let mut dead = Vec::new();
        while let Some(conn) = self.idle.pop_if(|c| perished(c, self.generation, opts, now)) {
            dead.push(conn);
        }
        self.total -= dead.len();
        dead
    }

    pub fn snapshot(&self) -> PoolSnapshot {
        PoolSnapshot {
            total: self.total,
            idle: self.idle.len(),
            in_use: self.in_use,
            connecting: self.connecting,
            waiters: self.waiters.iter().filter(|w| !w.is_closed()).count(),
            generation: self.generation,
            ready: self.ready,
        }
    }
}

/// CMAP's "perished": of an older generation, idle longer than maxIdleTimeMS, or older
/// than the configured lifetime.
fn perished(c: &UpstreamConn, generation: u32, opts: &PoolOptions, now: Instant) -> bool {
    c.generation != generation
        || opts
            .max_idle_time
            .is_some_and(|t| now.duration_since(c.last_used) >= t)
        || opts
            .max_lifetime
            .is_some_and(|t| now.duration_since(c.created) >= t)
}
