//! Retry decisions: pure functions, tested from tables. A failed request is re-routed
//! and sent again — once — only where a second attempt cannot apply a write twice:
//!
//! - nothing was sent (the connection could not be opened, the pool was cleared);
//! - the reply is a rejection before execution (`ok: 0` with a NotWritablePrimary-family
//!   code, or the `NoWritesPerformed` label);
//! - retryable reads, by code;
//! - retryable writes sent with `txnNumber` outside a transaction, and
//!   commitTransaction / abortTransaction (the server deduplicates them). On servers
//!   that label their errors (wire version 9+) these are retried only when the reply
//!   carries `RetryableWriteError`, exactly as a driver decides.
//!
//! Which commands are which, and that a command on a cursor (getMore, killCursors) is
//! never retried, is read from the command table ([`crate::command::Spec`]).
//!
//! A reply that proves the command ran (`ok: 1` with a `writeConcernError`, or any other
//! error) is final for every other write: sending it again could apply it twice.
//! Everything else passes through unchanged, labels included.
//!
//! Never retried by the proxy: a request that timed out on its connection
//! (socketTimeoutMS), which may still be running on a slow server, so a second copy
//! would only add load and the same wait again (the driver sees NetworkTimeout and
//! retries by its own rules and time limit); and a request whose client's maxTimeMS is
//! used up.

use crate::command::{CommandName, Cursor, Kind, Spec, TxnEnd};
use crate::errors::{RESUMABLE_CHANGE_STREAM_ERROR, RETRYABLE_WRITE_ERROR, TRANSIENT_TRANSACTION_ERROR};
use crate::sdam::{classify_error, StateChangeError};

pub const UNKNOWN_TRANSACTION_COMMIT_RESULT: &str = "UnknownTransactionCommitResult";

/// From this wire version (MongoDB 4.4) servers label retryable write errors themselves.
pub const LABELS_RETRYABLE_WRITES_WIRE_VERSION: i32 = 9;

/// Codes a 4.4+ server labels RetryableWriteError on a retryable write (the
/// retryable-writes spec's list; `RETRYABLE_CODES` adds the read-only 134).
pub const RETRYABLE_WRITE_CODES: &[i32] = &[6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436];

/// Codes the retryable-reads and retryable-writes specs treat as retryable.
const RETRYABLE_CODES: &[i32] = &[
    6, 7, 89, 91, 134, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
];

/// What matters about a request for retry decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    pub name: CommandName,
    /// A read the retryable-reads spec allows to retry ([`Spec::retryable_read`]).
    pub retryable_read: bool,
    /// A write the server deduplicates: sent with txnNumber outside a transaction.
    pub retryable_write: bool,
    /// `autocommit: false`: a statement of a multi-document transaction.
    pub in_transaction: bool,
    pub more_to_come: bool,
    /// The command opens (aggregate with `$changeStream`) or continues a change stream.
    pub change_stream: bool,
}

impl Facts {
    fn spec(&self) -> Spec {
        self.name.spec()
    }

    fn txn_end(&self) -> bool {
        self.spec().ends_transaction()
    }

    fn idempotent(&self) -> bool {
        self.retryable_read || self.retryable_write || self.txn_end()
    }

    /// A write the server deduplicates by lsid + txnNumber.
    fn deduplicated_write(&self) -> bool {
        self.retryable_write || self.txn_end()
    }
}

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The request never left the proxy. `retryable` is false where retrying would only
    /// repeat the wait (a wait-queue timeout).
    NotSent { retryable: bool },
    /// Sent; the connection failed before a reply: the outcome is unknown.
    Network,
    /// Sent, or partly sent; no reply within socketTimeoutMS (or the write did not
    /// finish): the outcome is unknown and the server may still be running it.
    Timeout,
    /// The client's maxTimeMS ran out in the proxy, before the request was sent or
    /// (`sent`) while waiting for the server, which was told the same limit.
    Expired { sent: bool },
    /// The server replied with an error.
    Reply(ReplyFailure),
}

/// What an error reply says, as far as retry decisions go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplyFailure {
    /// The top-level code (`ok: 0`), or the writeConcernError's code (`ok: 1`).
    pub code: Option<i32>,
    /// `ok: 1` with a `writeConcernError`: the command ran.
    pub write_concern: bool,
    pub no_writes_performed: bool,
    pub retryable_write_label: bool,
    /// The connection's server labels retryable write errors (wire version 9+).
    pub server_labels: bool,
}

/// Why a request was retried; the label of `mongoplex_retries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NotSent,
    Network,
    NotWritablePrimary,
    NoWritesPerformed,
    StateChange,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotSent => "not_sent",
            Self::Network => "network_error",
            Self::NotWritablePrimary => "not_writable_primary",
            Self::NoWritesPerformed => "no_writes_performed",
            Self::StateChange => "state_change",
        }
    }
}

/// Retries of requests that never reached a server (a connection that could not be
/// made, a pool cleared under the checkout), beyond the one retry of a sent request.
pub const MAX_UNSENT_RETRIES: u32 = 3;

/// Whether a retry after `failure` uses up the request's one retry. A request that never
/// reached a server did not run, so resending it is safe whatever it is; it may be
/// resent up to [`MAX_UNSENT_RETRIES`] times before the one retry is spent (an outage
/// clears a member's pool on every failed check, and a checkout can meet several).
pub fn spends_retry(failure: Failure, unsent_retries: u32) -> bool {
    !matches!(failure, Failure::NotSent { .. }) || unsent_retries >= MAX_UNSENT_RETRIES
}

/// Whether to retry after `failure` on attempt `attempt` (0 = the first).
pub fn decide(f: &Facts, failure: Failure, attempt: u32) -> Option<Reason> {
    if attempt >= 1 || f.more_to_come || f.spec().on_cursor() {
        return None;
    }
    if f.in_transaction && !f.txn_end() {
        // The driver retries the whole transaction on TransientTransactionError.
        return None;
    }
    match failure {
        Failure::NotSent { retryable } => retryable.then_some(Reason::NotSent),
        Failure::Network => f.idempotent().then_some(Reason::Network),
        Failure::Timeout | Failure::Expired { .. } => None,
        Failure::Reply(r) => decide_reply(f, &r),
    }
}

fn decide_reply(f: &Facts, r: &ReplyFailure) -> Option<Reason> {
    if !r.write_concern {
        // Rejections before execution: nothing ran, whatever the command.
        if r.code
            .is_some_and(|c| classify_error(Some(c), "") == Some(StateChangeError::NotWritablePrimary))
        {
            return Some(Reason::NotWritablePrimary);
        }
        if r.no_writes_performed {
            return Some(Reason::NoWritesPerformed);
        }
    }
    if f.deduplicated_write() {
        let retryable = if r.server_labels {
            r.retryable_write_label
        } else {
            r.code.is_some_and(|c| RETRYABLE_CODES.contains(&c))
        };
        return retryable.then_some(Reason::StateChange);
    }
    // The command ran (a write concern error) or may have: final for any other write.
    let retryable_read = f.retryable_read && !r.write_concern;
    (retryable_read && r.code.is_some_and(|c| RETRYABLE_CODES.contains(&c))).then_some(Reason::StateChange)
}

/// Labels for an error the proxy itself reports after `failure`.
pub fn proxy_error_labels(f: &Facts, failure: Failure) -> Vec<&'static str> {
    if let Failure::Expired { .. } = failure {
        // MaxTimeMSExpired, as a mongos reports it: not a retryable code and not a
        // transient transaction error, so no label (the time is up; a retry would be
        // cut short as well).
        return Vec::new();
    }
    if f.in_transaction && !f.txn_end() {
        return vec![TRANSIENT_TRANSACTION_ERROR];
    }
    let spec = f.spec();
    let mut labels = Vec::new();
    if f.change_stream && matches!(spec.cursor, Cursor::Opens(_) | Cursor::Continues) {
        // Every error the proxy makes (routing codes: 6, 89, 262 ...) is resumable; a
        // mongos labels them so the driver resumes instead of ending the stream.
        labels.push(RESUMABLE_CHANGE_STREAM_ERROR);
    }
    if f.deduplicated_write() {
        labels.push(RETRYABLE_WRITE_ERROR);
    }
    if spec.kind == Kind::EndTransaction(TxnEnd::Commit)
        && matches!(failure, Failure::Network | Failure::Timeout)
    {
        labels.push(UNKNOWN_TRANSACTION_COMMIT_RESULT);
    }
    labels
}

/// A server error reply (`ok: 0`) inside a transaction that reports an election must
/// reach the driver with TransientTransactionError, so it retries the whole transaction.
/// Never a writeConcernError: the transactions spec forbids the label there.
pub fn needs_transient_label(f: &Facts, r: &ReplyFailure) -> bool {
    f.in_transaction
        && !f.txn_end()
        && !r.write_concern
        && r.code.is_some_and(|c| classify_error(Some(c), "").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsent_requests_are_resent_a_few_times_before_the_retry_is_spent() {
        let unsent = Failure::NotSent { retryable: true };
        assert!(!spends_retry(unsent, 0));
        assert!(!spends_retry(unsent, MAX_UNSENT_RETRIES - 1));
        assert!(spends_retry(unsent, MAX_UNSENT_RETRIES));
        for sent in [
            Failure::Network,
            Failure::Timeout,
            Failure::Expired { sent: true },
        ] {
            assert!(spends_retry(sent, 0), "{sent:?}");
        }
    }
    use CommandName as C;

    fn facts(name: C) -> Facts {
        Facts {
            name,
            retryable_read: name.spec().retryable_read(None),
            ..Facts::default()
        }
    }

    /// An error reply from a server that does not label its errors (wire version < 9).
    fn reply(code: i32) -> Failure {
        Failure::Reply(ReplyFailure {
            code: Some(code),
            ..ReplyFailure::default()
        })
    }

    /// An error reply from a server that labels its errors, with or without the label.
    fn labelled(code: i32, retryable_write_label: bool) -> Failure {
        Failure::Reply(ReplyFailure {
            code: Some(code),
            retryable_write_label,
            server_labels: true,
            ..ReplyFailure::default()
        })
    }

    /// `ok: 1` with a writeConcernError: the write ran.
    fn wce(code: i32, retryable_write_label: bool) -> Failure {
        Failure::Reply(ReplyFailure {
            code: Some(code),
            write_concern: true,
            retryable_write_label,
            server_labels: true,
            ..ReplyFailure::default()
        })
    }

    const STATE_CHANGE_CODES: [i32; 8] = [10107, 13435, 10058, 11600, 91, 11602, 13436, 189];

    /// A write that ran is never sent again unless the server deduplicates it.
    #[test]
    fn write_concern_errors_are_final_for_plain_writes() {
        for name in [C::Insert, C::Update, C::Delete, C::FindAndModify, C::Other] {
            for code in STATE_CHANGE_CODES {
                for label in [false, true] {
                    let plain = facts(name);
                    assert_eq!(
                        decide(&plain, wce(code, label), 0),
                        None,
                        "{name:?} wce {code} label {label}"
                    );
                    let old_server = Failure::Reply(ReplyFailure {
                        code: Some(code),
                        write_concern: true,
                        ..ReplyFailure::default()
                    });
                    assert_eq!(decide(&plain, old_server, 0), None, "{name:?} wce {code} pre-4.4");
                    let in_txn = Facts {
                        in_transaction: true,
                        ..plain
                    };
                    assert_eq!(decide(&in_txn, wce(code, label), 0), None);
                    let r = ReplyFailure {
                        code: Some(code),
                        write_concern: true,
                        ..ReplyFailure::default()
                    };
                    assert!(
                        !needs_transient_label(&in_txn, &r),
                        "no TransientTransactionError on a wce"
                    );
                }
            }
        }
    }

    #[test]
    fn decision_table() {
        let read = facts(C::Find);
        let plain_insert = facts(C::Insert);
        let retryable_insert = Facts {
            retryable_write: true,
            ..facts(C::Insert)
        };
        let in_txn = Facts {
            in_transaction: true,
            ..facts(C::Insert)
        };
        let commit = Facts {
            in_transaction: true,
            ..facts(C::CommitTransaction)
        };
        let get_more = facts(C::GetMore);
        let w0 = Facts {
            more_to_come: true,
            ..retryable_insert
        };
        let nwp = Failure::Reply(ReplyFailure {
            no_writes_performed: true,
            ..ReplyFailure::default()
        });
        let cases: Vec<(&str, Facts, Failure, u32, Option<Reason>)> = vec![
            ("read, network", read, Failure::Network, 0, Some(Reason::Network)),
            ("read, second attempt", read, Failure::Network, 1, None),
            ("read, 11602", read, reply(11602), 0, Some(Reason::StateChange)),
            (
                "read, 13435",
                read,
                reply(13435),
                0,
                Some(Reason::NotWritablePrimary),
            ),
            ("read, duplicate key", read, reply(11000), 0, None),
            ("plain insert, network", plain_insert, Failure::Network, 0, None),
            ("plain insert, 11602", plain_insert, reply(11602), 0, None),
            (
                "plain insert, 10107 proves nothing ran",
                plain_insert,
                reply(10107),
                0,
                Some(Reason::NotWritablePrimary),
            ),
            (
                "plain insert, NoWritesPerformed",
                plain_insert,
                nwp,
                0,
                Some(Reason::NoWritesPerformed),
            ),
            (
                "plain insert, not sent",
                plain_insert,
                Failure::NotSent { retryable: true },
                0,
                Some(Reason::NotSent),
            ),
            (
                "wait-queue timeout",
                plain_insert,
                Failure::NotSent { retryable: false },
                0,
                None,
            ),
            (
                "retryable insert, network",
                retryable_insert,
                Failure::Network,
                0,
                Some(Reason::Network),
            ),
            (
                "retryable insert, 91",
                retryable_insert,
                reply(91),
                0,
                Some(Reason::StateChange),
            ),
            ("txn statement, 10107", in_txn, reply(10107), 0, None),
            ("txn statement, network", in_txn, Failure::Network, 0, None),
            (
                "commit, network",
                commit,
                Failure::Network,
                0,
                Some(Reason::Network),
            ),
            (
                "commit, 10107",
                commit,
                reply(10107),
                0,
                Some(Reason::NotWritablePrimary),
            ),
            ("getMore, network", get_more, Failure::Network, 0, None),
            ("read, socket timeout", read, Failure::Timeout, 0, None),
            (
                "retryable insert, socket timeout",
                retryable_insert,
                Failure::Timeout,
                0,
                None,
            ),
            ("commit, socket timeout", commit, Failure::Timeout, 0, None),
            (
                "read, maxTimeMS used up",
                read,
                Failure::Expired { sent: false },
                0,
                None,
            ),
            (
                "commit, maxTimeMS used up",
                commit,
                Failure::Expired { sent: true },
                0,
                None,
            ),
            ("getMore, 10107", get_more, reply(10107), 0, None),
            ("w:0, not sent", w0, Failure::NotSent { retryable: true }, 0, None),
            (
                "retryable insert, labelled 11602",
                retryable_insert,
                labelled(11602, true),
                0,
                Some(Reason::StateChange),
            ),
            (
                "retryable insert, 11602 the 4.4+ server left unlabelled",
                retryable_insert,
                labelled(11602, false),
                0,
                None,
            ),
            (
                "retryable insert, labelled wce (deduplicated)",
                retryable_insert,
                wce(91, true),
                0,
                Some(Reason::StateChange),
            ),
            (
                "retryable insert, unlabelled wce",
                retryable_insert,
                wce(91, false),
                0,
                None,
            ),
            (
                "plain insert, unlabelled 10107 still proves nothing ran",
                plain_insert,
                labelled(10107, false),
                0,
                Some(Reason::NotWritablePrimary),
            ),
            (
                "plain insert, labelled 11602 may have run",
                plain_insert,
                labelled(11602, true),
                0,
                None,
            ),
            (
                "commit, unlabelled 91 from a 4.4+ server",
                commit,
                labelled(91, false),
                0,
                None,
            ),
            (
                "commit, labelled 91",
                commit,
                labelled(91, true),
                0,
                Some(Reason::StateChange),
            ),
            (
                "read, unlabelled 11602 from a 4.4+ server",
                read,
                labelled(11602, false),
                0,
                Some(Reason::StateChange),
            ),
        ];
        for (what, f, failure, attempt, want) in cases {
            assert_eq!(decide(&f, failure, attempt), want, "{what}");
        }
    }

    #[test]
    fn labels_table() {
        let retryable_insert = Facts {
            retryable_write: true,
            ..facts(C::Insert)
        };
        let in_txn = Facts {
            in_transaction: true,
            ..facts(C::Insert)
        };
        let commit = Facts {
            in_transaction: true,
            ..facts(C::CommitTransaction)
        };
        assert_eq!(
            proxy_error_labels(&retryable_insert, Failure::Network),
            [RETRYABLE_WRITE_ERROR]
        );
        assert!(proxy_error_labels(&facts(C::Insert), Failure::Network).is_empty());
        assert!(proxy_error_labels(&facts(C::Find), Failure::Network).is_empty());
        assert_eq!(
            proxy_error_labels(&in_txn, Failure::Network),
            [TRANSIENT_TRANSACTION_ERROR]
        );
        assert_eq!(
            proxy_error_labels(&commit, Failure::Network),
            [RETRYABLE_WRITE_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT]
        );
        assert_eq!(
            proxy_error_labels(&commit, Failure::NotSent { retryable: true }),
            [RETRYABLE_WRITE_ERROR]
        );
        let top = |code| ReplyFailure {
            code: Some(code),
            ..ReplyFailure::default()
        };
        assert!(needs_transient_label(&in_txn, &top(10107)));
        assert!(!needs_transient_label(&in_txn, &top(11000)));
        assert!(!needs_transient_label(&commit, &top(10107)));
        assert!(!needs_transient_label(&retryable_insert, &top(10107)));
        let stream_get_more = Facts {
            change_stream: true,
            ..facts(C::GetMore)
        };
        for failure in [Failure::Network, Failure::NotSent { retryable: false }] {
            assert_eq!(
                proxy_error_labels(&stream_get_more, failure),
                [RESUMABLE_CHANGE_STREAM_ERROR]
            );
        }
        assert!(proxy_error_labels(&facts(C::GetMore), Failure::Network).is_empty());
        // A timeout leaves the outcome unknown, as a dropped connection does.
        assert_eq!(
            proxy_error_labels(&retryable_insert, Failure::Timeout),
            [RETRYABLE_WRITE_ERROR]
        );
        assert_eq!(
            proxy_error_labels(&commit, Failure::Timeout),
            [RETRYABLE_WRITE_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT]
        );
        // MaxTimeMSExpired carries no label, whatever the command.
        for f in [retryable_insert, in_txn, commit, stream_get_more, facts(C::Find)] {
            for sent in [false, true] {
                assert!(
                    proxy_error_labels(&f, Failure::Expired { sent }).is_empty(),
                    "{f:?} sent {sent}"
                );
            }
        }
    }
}
