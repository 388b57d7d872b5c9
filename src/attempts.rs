//! The attempt cap across the proxy's and the driver's retries. A retryable write is
//! identified by its lsid + txnNumber; the driver's own retry re-sends both. Without a
//! ledger, the proxy's retry and the driver's stack up to four server attempts. With it,
//! one retryable write reaches the servers at most [`MAX_WRITE_ATTEMPTS`] times in all
//! (against a mongod directly a driver makes at most two): the proxy retries only while
//! the total stays under the cap.
//!
//! Requests without that identity (reads, plain writes) make at most two attempts per
//! request in the proxy; a driver's read retry is a new request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Server attempts one retryable write may make, the driver's retry included.
pub const MAX_WRITE_ATTEMPTS: u32 = 3;
/// How long an operation is remembered: a driver retries at once, or within its
/// server-selection timeout.
const TTL: Duration = Duration::from_secs(120);
/// Bound on remembered operations (about 80 bytes each).
const MAX_ENTRIES: usize = 100_000;

/// A retryable write's identity: the lsid's bytes and its txnNumber.
type WriteId = (Vec<u8>, i64);

#[derive(Debug, Default)]
pub struct AttemptLedger {
    /// Attempts so far per write, and when the last one began.
    ops: Mutex<HashMap<WriteId, (u32, Instant)>>,
}

impl AttemptLedger {
    /// Records one server attempt of the write and returns the total so far.
    pub fn record(&self, lsid: &[u8], txn_number: i64, now: Instant) -> u32 {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        if ops.len() >= MAX_ENTRIES {
            ops.retain(|_, (_, at)| now.duration_since(*at) < TTL);
            if ops.len() >= MAX_ENTRIES {
                // Still full of live entries: forget them all rather than grow; the
                // cap then errs on the side of the per-request bound of two.
                ops.clear();
            }
        }
        let entry = ops.entry((lsid.to_vec(), txn_number)).or_insert((0, now));
        if now.duration_since(entry.1) >= TTL {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = now;
        entry.0
    }

    /// Whether another attempt stays within the cap.
    pub fn may_retry(total_so_far: u32) -> bool {
        total_so_far < MAX_WRITE_ATTEMPTS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drivers_retry_counts_toward_the_cap() {
        let l = AttemptLedger::default();
        let t = Instant::now();
        // The proxy's first attempt fails and it retries: 2 so far.
        assert!(AttemptLedger::may_retry(l.record(b"s", 1, t)));
        assert_eq!(l.record(b"s", 1, t), 2);
        // The driver retries (same lsid + txnNumber): its attempt is the last.
        let third = l.record(b"s", 1, t);
        assert_eq!(third, 3);
        assert!(!AttemptLedger::may_retry(third));
        // Another operation, or the same one much later, starts afresh.
        assert_eq!(l.record(b"s", 2, t), 1);
        assert_eq!(l.record(b"other", 1, t), 1);
        assert_eq!(l.record(b"s", 1, t + TTL), 1);
    }
}
