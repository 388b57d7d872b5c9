//! A client's `maxTimeMS` as the limit on the proxy's own work for that request, as a
//! mongos applies it: waiting for a primary (failover buffering), server selection,
//! pool checkout, connecting, and retrying all end when it runs out, and the client
//! gets `MaxTimeMSExpired` (50, "operation exceeded time limit"). Drivers send
//! `maxTimeMS` for CSOT (timeoutMS) too, so this is how their timeout reaches the proxy.
//!
//! The server is told what is left: a request forwarded after the proxy waited carries
//! `maxTimeMS` reduced by the time already spent, so the server's limit ends with the
//! client's. The exchange itself is bounded at the deadline plus [`SERVER_GRACE`], which
//! leaves the server the time to answer MaxTimeMSExpired itself (the connection then
//! stays usable) and still bounds a stalled server.
//!
//! Pure: every function takes the clock reading it needs.

use std::time::{Duration, Instant};

use crate::command::CommandName;
use crate::errors::{ErrorCode, ProxyError};

/// How long after the deadline the proxy still waits for the server's own answer.
pub const SERVER_GRACE: Duration = Duration::from_millis(250);

/// Below this much time spent in the proxy the request goes as it came: rewriting the
/// field (and the checksum) would change nothing the server can measure.
const REWRITE_AFTER: Duration = Duration::from_millis(1);

/// The time limit of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    max_time_ms: u64,
    started: Instant,
    deadline: Instant,
}

/// What to send upstream at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Send {
    /// The request's bytes as they came.
    AsIs,
    /// With `maxTimeMS` replaced by what is left.
    MaxTimeMs(i64),
    /// Nothing: no time is left; the client gets MaxTimeMSExpired.
    Expired,
}

impl Budget {
    /// The budget of a request that arrived at `started`: a positive `maxTimeMS` on any
    /// command but getMore, whose maxTimeMS is how long an awaitData cursor waits for
    /// new documents (an empty batch when it passes), not a limit on the operation.
    pub fn of(name: CommandName, max_time_ms: Option<i64>, started: Instant) -> Option<Self> {
        if name == CommandName::GetMore {
            return None;
        }
        let max_time_ms = u64::try_from(max_time_ms?).ok().filter(|ms| *ms > 0)?;
        let deadline = started.checked_add(Duration::from_millis(max_time_ms))?;
        Some(Self {
            max_time_ms,
            started,
            deadline,
        })
    }

    /// When the proxy's own waiting must end.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The bound on writing the request and reading its reply.
    pub fn exchange_deadline(&self) -> Instant {
        self.deadline.checked_add(SERVER_GRACE).unwrap_or(self.deadline)
    }

    pub fn expired(&self, now: Instant) -> bool {
        now >= self.deadline
    }

    /// What to send at `now`.
    pub fn send(&self, now: Instant) -> Send {
        let left = self.deadline.saturating_duration_since(now);
        let left_ms = i64::try_from(left.as_millis()).unwrap_or(i64::MAX);
        if left_ms < 1 {
            return Send::Expired;
        }
        if now.saturating_duration_since(self.started) < REWRITE_AFTER {
            return Send::AsIs;
        }
        Send::MaxTimeMs(left_ms)
    }

    /// The error a mongos gives when the limit runs out, saying what the proxy was doing.
    pub fn error(&self, now: Instant, what: &str) -> ProxyError {
        let spent = now.saturating_duration_since(self.started).as_millis();
        ProxyError::new(
            ErrorCode::MaxTimeMSExpired,
            format!(
                "operation exceeded time limit (maxTimeMS {}; {spent} ms spent in mongoplex): {what}",
                self.max_time_ms
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn which_requests_have_a_budget() {
        let t = Instant::now();
        let cases = [
            (CommandName::Find, Some(500), true),
            (CommandName::Insert, Some(1), true),
            (CommandName::CommitTransaction, Some(500), true),
            (CommandName::Other, Some(500), true),
            (CommandName::Find, Some(0), false),
            (CommandName::Find, Some(-5), false),
            (CommandName::Find, None, false),
            (CommandName::GetMore, Some(500), false),
            (CommandName::Find, Some(i64::MAX), true),
        ];
        for (name, ms, want) in cases {
            assert_eq!(
                Budget::of(name, ms, t).is_some(),
                want,
                "{name:?} maxTimeMS {ms:?}"
            );
        }
        let b = Budget::of(CommandName::Find, Some(500), t).unwrap();
        assert_eq!(b.deadline(), t + 500 * MS);
        assert_eq!(b.exchange_deadline(), t + 500 * MS + SERVER_GRACE);
    }

    #[test]
    fn what_is_sent_as_time_passes() {
        let t = Instant::now();
        let b = Budget::of(CommandName::Insert, Some(500), t).unwrap();
        let cases = [
            (Duration::ZERO, Send::AsIs),
            (Duration::from_micros(900), Send::AsIs),
            (MS, Send::MaxTimeMs(499)),
            (Duration::from_micros(200_400), Send::MaxTimeMs(299)),
            (499 * MS, Send::MaxTimeMs(1)),
            (Duration::from_micros(499_500), Send::Expired),
            (500 * MS, Send::Expired),
            (900 * MS, Send::Expired),
        ];
        for (spent, want) in cases {
            assert_eq!(b.send(t + spent), want, "after {spent:?}");
            assert_eq!(b.expired(t + spent), spent >= 500 * MS, "after {spent:?}");
        }
    }

    #[test]
    fn the_error_is_max_time_ms_expired() {
        let t = Instant::now();
        let b = Budget::of(CommandName::Insert, Some(500), t).unwrap();
        let e = b.error(t + 503 * MS, "no primary");
        assert_eq!(e.code, ErrorCode::MaxTimeMSExpired);
        assert!(e.labels.is_empty());
        let d = e.to_document();
        assert_eq!(d.get_i32("code").unwrap(), 50);
        assert_eq!(d.get_str("codeName").unwrap(), "MaxTimeMSExpired");
        let msg = d.get_str("errmsg").unwrap();
        assert!(
            msg.contains("operation exceeded time limit")
                && msg.contains("maxTimeMS 500")
                && msg.contains("503 ms")
                && msg.ends_with("no primary"),
            "{msg}"
        );
    }
}
