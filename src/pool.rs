//! A CMAP-style connection pool for one upstream server.
//!
//! A [`Pool`] is a cheap handle. Checked-out connections come back on `Drop` of
//! [`PooledConn`]. Clearing bumps a generation number: idle connections of an older
//! generation are closed at once, in-use ones when they come back. Waiters queue FIFO and
//! are handed a connection (or the right to open one) directly, so nobody overtakes them.

mod backoff;
mod maintenance;
mod options;
mod state;

pub use options::{CheckoutError, PoolOptions};
pub use state::PoolSnapshot;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::address::ServerAddress;
use crate::metrics::PoolMetrics;
use crate::upstream::{ConnectOptions, UpstreamConn, UpstreamError};
use state::{Grant, State};

#[derive(Debug, Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    address: ServerAddress,
    connect: ConnectOptions,
    /// All pool bookkeeping; held only for short, non-async sections.
    state: Mutex<State>,
    next_id: AtomicU64,
    metrics: PoolMetrics,
    /// Cancelled when a clear must interrupt checked-out connections (SDAM: a monitor
    /// timed out); replaced by a fresh token each time.
    interrupt: Mutex<CancellationToken>,
    /// In an outage every checkout fails to connect: one line per second.
    connect_log: crate::throttle::Throttle,
    /// Logins the server refused ([`backoff`]).
    auth: Mutex<backoff::AuthBackoff>,
}

impl Pool {
    /// Creates a pool in the paused state; call [`Pool::mark_ready`] once the server is
    /// known to be usable (the CMAP "ready" transition).
    pub fn new(
        address: ServerAddress,
        opts: PoolOptions,
        connect: ConnectOptions,
        metrics: PoolMetrics,
    ) -> Self {
        let inner = Inner {
            address,
            connect,
            state: Mutex::new(State::new(opts)),
            next_id: AtomicU64::new(1),
            metrics,
            interrupt: Mutex::new(CancellationToken::new()),
            connect_log: crate::throttle::Throttle::new(std::time::Duration::from_secs(1)),
            auth: Mutex::new(backoff::AuthBackoff::default()),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    pub fn address(&self) -> &ServerAddress {
        &self.inner.address
    }

    /// The options in force (a reload may have changed them since [`Pool::new`]).
    pub fn options(&self) -> PoolOptions {
        self.inner.lock().opts
    }

    /// New sizes and timeouts from a reload, for checkouts from now on. Checked-out
    /// connections are never interrupted: if maxPoolSize went down, parked connections
    /// above it close now and returning ones close until the pool fits (reason
    /// `resized`); if it went up, waiters are granted the new room at once.
    pub fn set_options(&self, opts: PoolOptions) {
        let excess = {
            let mut st = self.inner.lock();
            if st.opts == opts {
                return;
            }
            st.opts = opts;
            let excess = st.take_excess();
            self.inner.grant_waiters(&mut st);
            excess
        };
        tracing::info!(address = %self.inner.address, max_pool_size = opts.max_size, min_pool_size = opts.min_size, max_connecting = opts.max_connecting, closing = excess.len(), "pool options reloaded");
        self.inner.close_all(excess, "resized");
    }

    /// The server's last refusal of the proxy's credential, while no login has
    /// succeeded since (for `/ready`).
    pub fn auth_failure(&self) -> Option<String> {
        let b = self.inner.auth_lock();
        b.failing().then(|| b.message.clone())
    }

    pub fn generation(&self) -> u32 {
        self.inner.lock().generation
    }

    pub fn snapshot(&self) -> PoolSnapshot {
        self.inner.lock().snapshot()
    }

    /// Checks out a connection, waiting in FIFO order up to waitQueueTimeoutMS.
    pub async fn check_out(&self) -> Result<PooledConn, CheckoutError> {
        self.check_out_by(None).await
    }

    /// [`Pool::check_out`], with the wait and the opening of a new connection also ending
    /// at `budget` (the end of the request's maxTimeMS), as CSOT bounds checkout.
    pub async fn check_out_by(&self, budget: Option<Instant>) -> Result<PooledConn, CheckoutError> {
        let started = Instant::now();
        let result = self.check_out_inner(started, budget).await;
        let m = &self.inner.metrics;
        m.checkout_wait.observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            m.checkout_failed(e.reason());
        }
        result
    }

    async fn check_out_inner(
        &self,
        started: Instant,
        budget: Option<Instant>,
    ) -> Result<PooledConn, CheckoutError> {
        // Fixed on the first pass, under the lock that already guards waitQueueTimeoutMS
        // (a reload may change it): the end of the wait, and whether it is the budget's.
        let mut bound: Option<(Instant, bool)> = None;
        // The first pass reuses the caller's clock reading; later passes (after a wait or
        // a dead parked connection) read it again.
        let mut now = started;
        loop {
            let (grant, discard, (deadline, budget_ends)) = {
                let mut st = self.inner.lock();
                self.inner.usable(&st)?;
                let bound = *bound.get_or_insert_with(|| {
                    let queue = started + st.opts.wait_queue_timeout;
                    let deadline = budget.map_or(queue, |b| b.min(queue));
                    (deadline, deadline != queue)
                });
                let discard = st.pop_perished(now);
                let grant = st.try_grant();
                self.inner.publish(&st);
                (grant, discard, bound)
            };
            self.inner.close_all(discard, "stale");
            let grant = match grant {
                Some(g) => g,
                None => self.wait(deadline, started, budget_ends).await?,
            };
            if let Some(conn) = self.inner.take_grant(grant, budget).await? {
                let interrupt = self
                    .inner
                    .interrupt
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                return Ok(PooledConn {
                    conn: Some(conn),
                    pool: self.inner.clone(),
                    interrupt,
                });
            }
            now = Instant::now();
        }
    }

    /// Waits for a grant until `deadline`, which is the caller's budget when `budget_ends`.
    async fn wait(
        &self,
        deadline: Instant,
        started: Instant,
        budget_ends: bool,
    ) -> Result<Grant, CheckoutError> {
        let (tx, mut rx) = oneshot::channel();
        {
            let mut st = self.inner.lock();
            self.inner.usable(&st)?;
            st.waiters.push_back(tx);
            self.inner.metrics.waiters.set(gauge(st.waiters.len()));
            // A connection may have been returned between our first look and now.
            self.inner.grant_waiters(&mut st);
        }
        let result = tokio::time::timeout_at(deadline.into(), &mut rx).await;
        match result {
            Ok(Ok(grant)) => Ok(grant),
            Ok(Err(_)) => Err(self.inner.cleared_error()),
            Err(_) => {
                // Close first so a concurrent grant either lands (and we use it) or
                // bounces back to the granter.
                rx.close();
                if let Ok(grant) = rx.try_recv() {
                    return Ok(grant);
                }
                let mut st = self.inner.lock();
                st.waiters.retain(|w| !w.is_closed());
                self.inner.metrics.waiters.set(gauge(st.waiters.len()));
                if budget_ends {
                    return Err(CheckoutError::Expired {
                        address: self.inner.address.clone(),
                        doing: "waiting for a connection to",
                    });
                }
                let o = st.opts;
                Err(CheckoutError::Timeout {
                    address: self.inner.address.clone(),
                    waited_ms: started.elapsed().as_millis(),
                    max_size: o.max_size,
                    timeout_ms: o.wait_queue_timeout.as_millis(),
                })
            }
        }
    }

    /// Clears the pool to `generation` (SDAM's count leads; the pool follows): idle
    /// connections close now, in-use ones when they come back, and the pool pauses —
    /// waiters and new checkouts fail fast — until [`Pool::mark_ready`].
    pub fn clear_to(&self, generation: u32, reason: &str, interrupt_in_use: bool) {
        if interrupt_in_use {
            let mut token = self.inner.interrupt.lock().unwrap_or_else(|p| p.into_inner());
            token.cancel();
            *token = CancellationToken::new();
        }
        let (idle, waiters) = {
            let mut st = self.inner.lock();
            st.generation = generation;
            let idle: Vec<_> = st.idle.drain(..).collect();
            st.total -= idle.len();
            st.ready = false;
            st.clear_reason = Some(reason.to_string());
            let waiters = std::mem::take(&mut st.waiters);
            self.inner.publish(&st);
            (idle, waiters)
        };
        drop(waiters);
        self.inner.metrics.clears.inc();
        tracing::warn!(address = %self.inner.address, reason, generation, "connection pool cleared");
        self.inner.close_all(idle, "stale");
    }

    pub fn mark_ready(&self) {
        let mut st = self.inner.lock();
        if !st.ready {
            st.ready = true;
            st.clear_reason = None;
            tracing::debug!(address = %self.inner.address, "connection pool ready");
        }
    }

    /// Closes the pool: idle connections now, in-use ones as they return.
    pub fn close(&self) {
        let (idle, waiters) = {
            let mut st = self.inner.lock();
            st.closed = true;
            let idle: Vec<_> = st.idle.drain(..).collect();
            st.total -= idle.len();
            self.inner.publish(&st);
            (idle, std::mem::take(&mut st.waiters))
        };
        drop(waiters);
        self.inner.close_all(idle, "pool_closed");
    }

    pub fn record_roundtrip(&self, seconds: f64) {
        self.inner.metrics.roundtrip.observe(seconds);
    }

    /// Runs background maintenance (idle eviction, minPoolSize) until cancelled.
    pub fn spawn_maintenance(
        &self,
        tracker: &tokio_util::task::TaskTracker,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        tracker.spawn(maintenance::run(self.clone(), cancel));
    }
}

impl Inner {
    fn auth_lock(&self) -> MutexGuard<'_, backoff::AuthBackoff> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock would be a bug; keep serving with the data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn usable(&self, st: &State) -> Result<(), CheckoutError> {
        if st.closed {
            return Err(CheckoutError::Closed {
                address: self.address.clone(),
            });
        }
        if !st.ready {
            return Err(self.cleared_error_locked(st));
        }
        Ok(())
    }

    fn cleared_error(&self) -> CheckoutError {
        let st = self.lock();
        if st.closed {
            return CheckoutError::Closed {
                address: self.address.clone(),
            };
        }
        self.cleared_error_locked(&st)
    }

    fn cleared_error_locked(&self, st: &State) -> CheckoutError {
        CheckoutError::Cleared {
            address: self.address.clone(),
            reason: st
                .clear_reason
                .clone()
                .unwrap_or_else(|| "server not yet known to be available".into()),
        }
    }

    /// Turns a grant into a connection: checks a parked one, or opens a new one (given up
    /// at `budget`). `Ok(None)` means the parked connection was dead and the caller
    /// should try again.
    async fn take_grant(
        &self,
        grant: Grant,
        budget: Option<Instant>,
    ) -> Result<Option<UpstreamConn>, CheckoutError> {
        match grant {
            Grant::Conn(conn) => {
                if conn.looks_alive() {
                    return Ok(Some(conn));
                }
                let mut st = self.lock();
                st.in_use -= 1;
                st.total -= 1;
                self.grant_waiters(&mut st);
                drop(st);
                self.close_all(vec![conn], "error");
                Ok(None)
            }
            Grant::Connect => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let generation = self.lock().generation;
                let guard = ConnectSlot {
                    inner: self,
                    armed: true,
                };
                let held = self.auth_lock().holding(Instant::now()).map(str::to_owned);
                if let Some(why) = held {
                    guard.finish(false);
                    return Err(CheckoutError::AuthRefused {
                        address: self.address.clone(),
                        why,
                    });
                }
                self.metrics.connecting.inc();
                let establish = UpstreamConn::establish(&self.address, id, generation, &self.connect);
                let result = match budget {
                    Some(at) => tokio::time::timeout_at(at.into(), establish).await,
                    None => Ok(establish.await),
                };
                guard.finish(matches!(result, Ok(Ok(_))));
                match result {
                    Ok(Ok(conn)) => {
                        self.metrics.created.inc();
                        if self.connect.credential.is_some() {
                            self.auth_lock().succeeded();
                        }
                        Ok(Some(conn))
                    }
                    Err(_) => Err(CheckoutError::Expired {
                        address: self.address.clone(),
                        doing: "opening a connection to",
                    }),
                    Ok(Err(e)) => {
                        if matches!(e, UpstreamError::Auth { .. }) {
                            self.auth_lock().refused(Instant::now(), e.to_string());
                        }
                        if let Some(held_back) = self.connect_log.admit() {
                            tracing::warn!(address = %self.address, error = %e, held_back, "failed to open upstream connection");
                        }
                        Err(CheckoutError::Connect(e))
                    }
                }
            }
        }
    }

    /// Hands idle connections or connect permits to waiters, front first.
    fn grant_waiters(&self, st: &mut State) {
        while let Some(tx) = st.waiters.pop_front() {
            if tx.is_closed() {
                continue;
            }
            let Some(grant) = st.try_grant() else {
                st.waiters.push_front(tx);
                break;
            };
            if let Err(grant) = tx.send(grant) {
                st.undo_grant(grant);
            }
        }
        self.metrics.waiters.set(gauge(st.waiters.len()));
        self.publish(st);
    }

    fn check_in(&self, mut conn: UpstreamConn) {
        let now = Instant::now();
        let mut st = self.lock();
        st.in_use -= 1;
        let reason = if st.closed {
            Some("pool_closed")
        } else if !conn.reusable() {
            Some("error")
        } else if conn.generation != st.generation {
            Some("stale")
        } else if st
            .opts
            .max_lifetime
            .is_some_and(|l| now.duration_since(conn.created) >= l)
        {
            Some("lifetime")
        } else if st.over_size() {
            Some("resized")
        } else {
            None
        };
        if let Some(reason) = reason {
            st.total -= 1;
            self.grant_waiters(&mut st);
            drop(st);
            self.close_all(vec![conn], reason);
            return;
        }
        conn.last_used = now;
        st.idle.push(conn);
        self.grant_waiters(&mut st);
    }

    fn close_all(&self, conns: Vec<UpstreamConn>, reason: &str) {
        if conns.is_empty() {
            return;
        }
        self.metrics.closed(reason, conns.len());
        tracing::debug!(address = %self.address, reason, count = conns.len(), "closing upstream connections");
        drop(conns);
    }

    fn publish(&self, st: &State) {
        let m = &self.metrics;
        m.idle.set(gauge(st.idle.len()));
        m.in_use.set(gauge(st.in_use));
    }
}

/// A reserved connect slot. Settles the bookkeeping exactly once, including when the
/// connecting future is dropped half-way (client gone, shutdown).
struct ConnectSlot<'a> {
    inner: &'a Inner,
    armed: bool,
}

impl ConnectSlot<'_> {
    fn finish(mut self, opened: bool) {
        self.armed = false;
        self.settle(opened);
    }

    fn settle(&self, opened: bool) {
        self.inner.metrics.connecting.dec();
        let mut st = self.inner.lock();
        st.connecting -= 1;
        if opened {
            st.in_use += 1;
        } else {
            st.total -= 1;
        }
        self.inner.grant_waiters(&mut st);
    }
}

impl Drop for ConnectSlot<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.settle(false);
        }
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A checked-out connection; returns itself to the pool on drop.
#[derive(Debug)]
pub struct PooledConn {
    conn: Option<UpstreamConn>,
    pool: Arc<Inner>,
    /// Fires if the pool is cleared with interruption while this connection is out.
    pub interrupt: CancellationToken,
}

impl std::ops::Deref for PooledConn {
    type Target = UpstreamConn;
    fn deref(&self) -> &UpstreamConn {
        self.conn.as_ref().expect("present until drop")
    }
}

impl std::ops::DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut UpstreamConn {
        self.conn.as_mut().expect("present until drop")
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.check_in(conn);
        }
    }
}
