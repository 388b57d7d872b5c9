//! After the server refuses the proxy's credential, a pool opens no connection for a
//! while, doubling from 1 s to 30 s: a wrong password costs the server one failed
//! login per pool per backoff, not one per client request. Checkouts meanwhile fail at
//! once with the server's refusal.

use std::time::{Duration, Instant};

const FIRST: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(30);

/// How long to hold off after `failures` refused logins in a row.
pub fn delay(failures: u32) -> Duration {
    FIRST
        .saturating_mul(1 << failures.saturating_sub(1).min(5))
        .min(MAX)
}

/// The pool's record of refused logins.
#[derive(Debug, Default)]
pub struct AuthBackoff {
    failures: u32,
    until: Option<Instant>,
    /// The server's refusal, as the error clients get meanwhile.
    pub message: String,
}

impl AuthBackoff {
    /// The refusal to answer with, while holding off at `now`.
    pub fn holding(&self, now: Instant) -> Option<&str> {
        self.until.filter(|&u| now < u).map(|_| self.message.as_str())
    }

    /// True once a login has been refused and none has succeeded since.
    pub fn failing(&self) -> bool {
        self.failures > 0
    }

    pub fn refused(&mut self, now: Instant, message: String) {
        self.failures = self.failures.saturating_add(1);
        self.until = Some(now + delay(self.failures));
        self.message = message;
    }

    pub fn succeeded(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_thirty() {
        let s = Duration::from_secs;
        let table = [
            (1, s(1)),
            (2, s(2)),
            (3, s(4)),
            (5, s(16)),
            (6, s(30)),
            (60, s(30)),
            (u32::MAX, s(30)),
        ];
        for (failures, want) in table {
            assert_eq!(delay(failures), want, "{failures}");
        }
        let now = Instant::now();
        let mut b = AuthBackoff::default();
        assert_eq!(b.holding(now), None);
        b.refused(now, "bad password".into());
        assert_eq!(b.holding(now + Duration::from_millis(900)), Some("bad password"));
        assert_eq!(b.holding(now + s(1)), None);
        assert!(b.failing());
        b.succeeded();
        assert!(!b.failing());
    }
}
