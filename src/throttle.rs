//! Rate limits for log lines of events that repeat: a hostile client flood, an upstream
//! outage met by every request, a monitor failing every 500 ms. One line per interval
//! goes through and says how many were held back since the last; metrics still count
//! every event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One kind of event's limiter.
#[derive(Debug)]
pub struct Throttle {
    epoch: Instant,
    interval_ms: u64,
    /// Milliseconds after `epoch` before which events are held back.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    pub fn new(interval: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(held_back)` when this event should be logged, with the number held back
    /// since the last one logged; `None` when it is held back.
    pub fn admit(&self) -> Option<u64> {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.admit_at(now)
    }

    fn admit_at(&self, now_ms: u64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Acquire);
        let due = now_ms >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms.saturating_add(self.interval_ms),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok();
        if due {
            Some(self.suppressed.swap(0, Ordering::AcqRel))
        } else {
            self.suppressed.fetch_add(1, Ordering::AcqRel);
            None
        }
    }
}

/// The limiters of the events a session or the accept loop logs.
#[derive(Debug)]
pub struct Throttles {
    /// A client closed or answered for a bad message.
    pub client_protocol: Throttle,
    /// A request failed on its upstream connection.
    pub upstream_request: Throttle,
    /// accept() failed (out of descriptors, say).
    pub accept: Throttle,
}

impl Default for Throttles {
    fn default() -> Self {
        let every = Duration::from_secs(1);
        Self {
            client_protocol: Throttle::new(every),
            upstream_request: Throttle::new(every),
            accept: Throttle::new(every),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let t = Throttle::new(Duration::from_millis(1000));
        let cases = [
            (0, Some(0)),
            (10, None),
            (500, None),
            (999, None),
            (1000, Some(3)),
            (1001, None),
            (5000, Some(1)),
            (5000, None),
            (6000, Some(1)),
        ];
        for (now, want) in cases {
            assert_eq!(t.admit_at(now), want, "at {now} ms");
        }
    }
}
