//! Retry decisions: pure functions, tested from tables. A failed request is re-routed
//! and sent again — once — only where a second attempt cannot apply a write twice:
//!
//! - nothing was sent (the connection could not be opened, the pool was cleared);
//! - the reply proves nothing ran (NotWritablePrimary family, `NoWritesPerformed`);
//! - retryable reads (the retryable-reads spec's commands; never getMore);
//! - writes with `txnNumber` outside a transaction (the server deduplicates them);
//! - commitTransaction and abortTransaction.
//!
//! Everything else passes through unchanged, labels included.

use crate::command::CommandName;
use crate::errors::{RETRYABLE_WRITE_ERROR, TRANSIENT_TRANSACTION_ERROR};
use crate::sdam::{classify_error, StateChangeError};

pub const UNKNOWN_TRANSACTION_COMMIT_RESULT: &str = "UnknownTransactionCommitResult";

/// Codes the retryable-reads and retryable-writes specs treat as retryable.
const RETRYABLE_CODES: &[i32] = &[
    6, 7, 89, 91, 134, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
];

/// What matters about a request for retry decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    pub name: CommandName,
    /// A read the retryable-reads spec allows to retry (e.g. aggregate without $out).
    pub retryable_read: bool,
    /// txnNumber outside a transaction.
    pub retryable_write: bool,
    /// `autocommit: false`: a statement of a multi-document transaction.
    pub in_transaction: bool,
    pub more_to_come: bool,
}

impl Facts {
    fn txn_end(&self) -> bool {
        matches!(
            self.name,
            CommandName::CommitTransaction | CommandName::AbortTransaction
        )
    }

    fn idempotent(&self) -> bool {
        self.retryable_read || self.retryable_write || self.txn_end()
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
    /// The server replied with an error.
    Reply {
        code: Option<i32>,
        no_writes_performed: bool,
    },
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

/// Whether to retry after `failure` on attempt `attempt` (0 = the first).
pub fn decide(f: &Facts, failure: Failure, attempt: u32) -> Option<Reason> {
    if attempt >= 1 || f.more_to_come || matches!(f.name, CommandName::GetMore | CommandName::KillCursors) {
        return None;
    }
    if f.in_transaction && !f.txn_end() {
        // The driver retries the whole transaction on TransientTransactionError.
        return None;
    }
    match failure {
        Failure::NotSent { retryable } => retryable.then_some(Reason::NotSent),
        Failure::Network => f.idempotent().then_some(Reason::Network),
        Failure::Reply { code: Some(c), .. }
            if classify_error(Some(c), "") == Some(StateChangeError::NotWritablePrimary) =>
        {
            Some(Reason::NotWritablePrimary)
        }
        Failure::Reply {
            no_writes_performed: true,
            ..
        } => Some(Reason::NoWritesPerformed),
        Failure::Reply { code: Some(c), .. } if RETRYABLE_CODES.contains(&c) => {
            f.idempotent().then_some(Reason::StateChange)
        }
        Failure::Reply { .. } => None,
    }
}

/// Labels for an error the proxy itself reports after `failure`.
pub fn proxy_error_labels(f: &Facts, failure: Failure) -> Vec<&'static str> {
    if f.in_transaction && !f.txn_end() {
        return vec![TRANSIENT_TRANSACTION_ERROR];
    }
    let mut labels = Vec::new();
    if f.retryable_write || f.txn_end() {
        labels.push(RETRYABLE_WRITE_ERROR);
    }
    if f.name == CommandName::CommitTransaction && failure == Failure::Network {
        labels.push(UNKNOWN_TRANSACTION_COMMIT_RESULT);
    }
    labels
}

/// A server error reply inside a transaction that reports an election must reach the
/// driver with TransientTransactionError, so it retries the whole transaction.
pub fn needs_transient_label(f: &Facts, code: Option<i32>) -> bool {
    f.in_transaction && !f.txn_end() && code.is_some_and(|c| classify_error(Some(c), "").is_some())
}

/// Reads the retryable-reads spec allows to retry.
pub fn is_retryable_read(name: CommandName, writes_output: bool) -> bool {
    match name {
        CommandName::Find
        | CommandName::Count
        | CommandName::Distinct
        | CommandName::ListCollections
        | CommandName::ListIndexes
        | CommandName::ListDatabases => true,
        CommandName::Aggregate => !writes_output,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CommandName as C;

    fn facts(name: C) -> Facts {
        Facts {
            name,
            retryable_read: is_retryable_read(name, false),
            ..Facts::default()
        }
    }

    fn reply(code: i32) -> Failure {
        Failure::Reply {
            code: Some(code),
            no_writes_performed: false,
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
        let nwp = Failure::Reply {
            code: None,
            no_writes_performed: true,
        };
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
            ("getMore, 10107", get_more, reply(10107), 0, None),
            ("w:0, not sent", w0, Failure::NotSent { retryable: true }, 0, None),
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
        assert!(needs_transient_label(&in_txn, Some(10107)));
        assert!(!needs_transient_label(&in_txn, Some(11000)));
        assert!(!needs_transient_label(&commit, Some(10107)));
        assert!(!needs_transient_label(&retryable_insert, Some(10107)));
    }

    #[test]
    fn retryable_reads() {
        assert!(is_retryable_read(C::Aggregate, false));
        assert!(!is_retryable_read(C::Aggregate, true));
        assert!(!is_retryable_read(C::GetMore, false));
        assert!(!is_retryable_read(C::Insert, false));
    }
}
