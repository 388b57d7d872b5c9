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
    /// Under the lock with the counts it bounds, so that a reload's new sizes
    /// ([`super::Pool::set_options`]) and each grant decision see one another in order.
    pub opts: PoolOptions,
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
    pub fn new(opts: PoolOptions) -> Self {
        Self {
            opts,
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

    fn has_room(&self) -> bool {
        let opts = &self.opts;
        (opts.max_size == 0 || self.total < opts.max_size) && self.connecting < opts.max_connecting.max(1)
    }

    /// More connections than maxPoolSize allows: a reload lowered it.
    pub fn over_size(&self) -> bool {
        self.opts.max_size != 0 && self.total > self.opts.max_size
    }

    /// Takes parked connections, oldest first, until the pool fits maxPoolSize again.
    /// The caller closes them outside the lock.
    pub fn take_excess(&mut self) -> Vec<UpstreamConn> {
        let mut excess = Vec::new();
        while self.over_size() && !self.idle.is_empty() {
            excess.push(self.idle.remove(0));
            self.total -= 1;
        }
        excess
    }

    /// A grant for the front of the queue: a parked connection first, else a slot.
    pub fn try_grant(&mut self) -> Option<Grant> {
        if let Some(conn) = self.idle.pop() {
            self.in_use += 1;
            return Some(Grant::Conn(conn));
        }
        if self.has_room() {
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
    pub fn take_perished(&mut self, now: Instant) -> Vec<UpstreamConn> {
        let generation = self.generation;
        let opts = self.opts;
        let dead = |c: &UpstreamConn| perished(c, generation, &opts, now);
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
    pub fn pop_perished(&mut self, now: Instant) -> Vec<UpstreamConn> {
        let mut dead = Vec::new();
        let (generation, opts) = (self.generation, self.opts);
        while let Some(conn) = self.idle.pop_if(|c| perished(c, generation, &opts, now)) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A reload changes `opts` under the lock: room and excess follow the new sizes.
    #[test]
    fn room_and_excess_follow_reloaded_sizes() {
        let opts = |max_size, max_connecting| PoolOptions {
            max_size,
            max_connecting,
            ..PoolOptions::default()
        };
        // (max_size, max_connecting, total, connecting) -> (a slot is granted, over size)
        let cases = [
            ((2, 2, 1, 0), (true, false)),
            ((2, 2, 2, 0), (false, false)),
            ((6, 2, 2, 0), (true, false)),
            ((6, 2, 3, 2), (false, false)),
            ((3, 2, 6, 0), (false, true)),
            ((0, 2, 500, 0), (true, false)),
        ];
        for ((max, connecting_max, total, connecting), want) in cases {
            let mut st = State::new(opts(max, connecting_max));
            st.total = total;
            st.connecting = connecting;
            let over = st.over_size();
            let granted = st.try_grant();
            assert_eq!(
                (granted.is_some(), over),
                want,
                "max {max} total {total} connecting {connecting}"
            );
            assert!(st.take_excess().is_empty(), "nothing parked, nothing to close");
        }
    }
}
