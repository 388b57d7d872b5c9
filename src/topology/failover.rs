//! Failover bookkeeping, as Vitess buffers: while no primary is known, primary-bound
//! requests wait (each up to a window, all within a maximum failover duration, at most
//! a maximum number at once) and drain to the new primary as soon as it is seen.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};

use crate::metrics::Metrics;

/// Why a buffered (or would-be buffered) request was failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evict {
    Window,
    BufferFull,
    MaxDuration,
    /// The request's own maxTimeMS ran out first.
    MaxTime,
}

impl Evict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Window => "window",
            Self::BufferFull => "buffer_full",
            Self::MaxDuration => "max_duration",
            Self::MaxTime => "max_time",
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// When the current stretch without a primary began.
    no_primary_since: Option<Instant>,
    /// A primary has been seen at least once (start-up is not a failover).
    had_primary: bool,
    /// Buffering has begun in the current stretch.
    started: bool,
}

#[derive(Debug)]
pub(super) struct Failover {
    state: Mutex<State>,
    buffered: Arc<AtomicUsize>,
    starts: IntCounter,
    buffered_total: IntCounter,
    drained: IntCounter,
    evicted: IntCounterVec,
    size: IntGauge,
    duration: Histogram,
    /// Every buffered request fails at once when a window ends: one line per second.
    evict_log: crate::throttle::Throttle,
}

/// A place in the buffer; gives it back on drop.
#[derive(Debug)]
pub(super) struct Ticket {
    pub deadline: Instant,
    buffered: Arc<AtomicUsize>,
    size: IntGauge,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let n = self.buffered.fetch_sub(1, Ordering::Relaxed) - 1;
        self.size.set(i64::try_from(n).unwrap_or(0));
    }
}

impl Failover {
    pub fn new(m: &Metrics) -> Self {
        Self {
            state: Mutex::default(),
            buffered: Arc::default(),
            starts: m.buffer_starts.clone(),
            buffered_total: m.buffered.clone(),
            drained: m.buffer_drained.clone(),
            evicted: m.buffer_evicted.clone(),
            size: m.buffer_size.clone(),
            duration: m.failover_duration.clone(),
            evict_log: crate::throttle::Throttle::new(std::time::Duration::from_secs(1)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called on every topology change.
    pub fn observe(&self, has_primary: bool) {
        let mut st = self.lock();
        match (has_primary, st.no_primary_since) {
            (true, Some(since)) => {
                if st.had_primary {
                    let d = since.elapsed();
                    self.duration.observe(d.as_secs_f64());
                    tracing::info!(
                        duration_ms = d.as_millis(),
                        buffered = self.buffered.load(Ordering::Relaxed),
                        "failover over: primary available, draining buffered requests"
                    );
                }
                st.no_primary_since = None;
                st.had_primary = true;
                st.started = false;
            }
            (true, None) => st.had_primary = true,
            (false, None) => {
                st.no_primary_since = Some(Instant::now());
                if st.had_primary {
                    tracing::warn!("no primary known: buffering primary-bound requests");
                }
            }
            (false, Some(_)) => {}
        }
    }

    /// Admits a request to the buffer, or says why not.
    pub fn admit(
        &self,
        window: Duration,
        max_duration: Duration,
        max_buffered: usize,
    ) -> Result<Ticket, Evict> {
        let mut st = self.lock();
        let now = Instant::now();
        let since = *st.no_primary_since.get_or_insert(now);
        let end = since + max_duration;
        if now >= end {
            return Err(self.evict(Evict::MaxDuration));
        }
        if self.buffered.load(Ordering::Relaxed) >= max_buffered {
            return Err(self.evict(Evict::BufferFull));
        }
        if !st.started {
            st.started = true;
            self.starts.inc();
        }
        let n = self.buffered.fetch_add(1, Ordering::Relaxed) + 1;
        self.size.set(i64::try_from(n).unwrap_or(i64::MAX));
        self.buffered_total.inc();
        Ok(Ticket {
            deadline: (now + window).min(end),
            buffered: self.buffered.clone(),
            size: self.size.clone(),
        })
    }

    pub fn evict(&self, why: Evict) -> Evict {
        self.evicted.with_label_values(&[why.as_str()]).inc();
        if let Some(held_back) = self.evict_log.admit() {
            tracing::warn!(
                reason = why.as_str(),
                held_back,
                "failing a buffered request: no primary"
            );
        }
        why
    }

    pub fn drained(&self) {
        self.drained.inc();
    }

    /// Whether the deadline that ended a wait was the failover's overall limit.
    pub fn past_max_duration(&self, max_duration: Duration) -> bool {
        self.lock()
            .no_primary_since
            .is_some_and(|s| s.elapsed() >= max_duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failover() -> Failover {
        Failover::new(&Metrics::new(&prometheus::Registry::new(), 1))
    }

    #[test]
    fn admits_up_to_the_limits() {
        let f = failover();
        f.observe(true);
        f.observe(false);
        let a = f
            .admit(Duration::from_secs(10), Duration::from_secs(30), 2)
            .unwrap();
        let _b = f
            .admit(Duration::from_secs(10), Duration::from_secs(30), 2)
            .unwrap();
        assert_eq!(
            f.admit(Duration::from_secs(10), Duration::from_secs(30), 2)
                .unwrap_err(),
            Evict::BufferFull
        );
        drop(a);
        assert!(f
            .admit(Duration::from_secs(10), Duration::from_secs(30), 2)
            .is_ok());
        assert_eq!(f.starts.get(), 1);
        assert_eq!(
            f.admit(Duration::from_secs(10), Duration::ZERO, 9).unwrap_err(),
            Evict::MaxDuration
        );
    }

    #[test]
    fn deadline_is_the_earlier_of_window_and_failover_end() {
        let f = failover();
        f.observe(false);
        let t = f
            .admit(Duration::from_secs(10), Duration::from_secs(1), 9)
            .unwrap();
        assert!(t.deadline <= Instant::now() + Duration::from_secs(1));
        f.observe(true);
        assert_eq!(f.duration.get_sample_count(), 0, "start-up is not a failover");
        f.observe(false);
        f.observe(true);
        assert_eq!(f.duration.get_sample_count(), 1);
    }
}
