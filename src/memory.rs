//! One budget for the bytes the proxy buffers (`max_buffered_bytes`), so that no set of
//! clients can take the process down by sending large messages at once.
//!
//! - A client message larger than [`BUDGETED_ABOVE`] leases its announced length before
//!   its buffer grows past the first read. While the budget is spent it waits, and its
//!   socket is not read meanwhile (backpressure), for up to [`MAX_WAIT`]; then the
//!   message is read off and discarded, and the client gets an error document.
//! - A large reply is charged when it arrives and released once written. Replies never
//!   wait: a request holding its lease must be able to finish, and replies in flight
//!   are bounded by the pools (one per upstream connection). Their charge makes new
//!   requests wait instead.
//!
//! Small messages are not counted: they cost less than the counting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Messages up to this size are not counted: a client message this small is read in
/// its first allocation ([`crate::wire::GROWTH_STEP`]).
pub const BUDGETED_ABOVE: usize = crate::wire::GROWTH_STEP;
/// How long a large message waits for room before it is refused.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Inner {
    limit: usize,
    used: AtomicUsize,
    freed: Notify,
    gauge: prometheus::IntGauge,
}

/// The budget; cheap to clone.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

/// Bytes held against the budget until dropped.
#[derive(Debug)]
pub struct Lease {
    inner: Arc<Inner>,
    bytes: usize,
}

impl MemoryBudget {
    pub fn new(limit: usize, gauge: prometheus::IntGauge) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit,
                used: AtomicUsize::new(0),
                freed: Notify::new(),
                gauge,
            }),
        }
    }

    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` if they fit now. A message larger than the whole budget fits only
    /// when nothing else is held, so it is never refused forever.
    pub fn try_lease(&self, bytes: usize) -> Option<Lease> {
        let inner = &self.inner;
        inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let fits = used.checked_add(bytes).is_some_and(|t| t <= inner.limit) || used == 0;
                fits.then(|| used.saturating_add(bytes))
            })
            .ok()?;
        Some(self.leased(bytes))
    }

    /// Takes `bytes`, waiting up to `wait` for room. `None` when there was none.
    pub async fn lease(&self, bytes: usize, wait: Duration) -> Option<Lease> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the check, so a release between the two is not missed.
            let freed = self.inner.freed.notified();
            if let Some(l) = self.try_lease(bytes) {
                return Some(l);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return None;
            }
        }
    }

    /// Takes `bytes` whether or not they fit (replies: see the module docs).
    pub fn charge(&self, bytes: usize) -> Lease {
        self.inner.used.fetch_add(bytes, Ordering::AcqRel);
        self.leased(bytes)
    }

    fn leased(&self, bytes: usize) -> Lease {
        self.inner.gauge.add(i64::try_from(bytes).unwrap_or(i64::MAX));
        Lease {
            inner: self.inner.clone(),
            bytes,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.inner.used.fetch_sub(self.bytes, Ordering::AcqRel);
        self.inner
            .gauge
            .sub(i64::try_from(self.bytes).unwrap_or(i64::MAX));
        self.inner.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: usize) -> MemoryBudget {
        MemoryBudget::new(limit, prometheus::IntGauge::new("g", "g").unwrap())
    }

    #[test]
    fn leases_fit_within_the_limit_and_are_returned_on_drop() {
        let b = budget(100);
        let a = b.try_lease(60).unwrap();
        assert!(b.try_lease(50).is_none(), "60 + 50 > 100");
        let c = b.try_lease(40).unwrap();
        assert_eq!(b.used(), 100);
        drop(a);
        assert_eq!(b.used(), 40);
        let r = b.charge(500);
        assert_eq!(b.used(), 540, "a reply is charged past the limit");
        assert!(b.try_lease(1).is_none(), "and requests then wait");
        drop((c, r));
        assert_eq!(b.used(), 0);
        let big = b
            .try_lease(1000)
            .expect("a message larger than the budget fits alone");
        assert!(b.try_lease(1).is_none());
        drop(big);
        assert_eq!(b.inner.gauge.get(), 0);
    }

    #[tokio::test]
    async fn a_waiting_lease_gets_room_when_another_is_dropped_or_gives_up() {
        let b = budget(100);
        let held = b.try_lease(80).unwrap();
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.lease(50, Duration::from_secs(5)).await.map(|l| l.bytes) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert_eq!(waiter.await.unwrap(), Some(50));
        let _held = b.try_lease(90).unwrap();
        assert!(
            b.lease(50, Duration::from_millis(30)).await.is_none(),
            "no room within the wait"
        );
    }
}
