//! The error labels a 4.4+ server computes for a failed command (mongod's and mongos's
//! `ErrorLabelBuilder`), so that a fail point fired at the proxy carries what the same
//! fail point on a mongos would. Pure; tested from a table.
//!
//! - `TransientTransactionError`: a statement or a commit/abort inside a transaction
//!   whose top-level error is transient. A writeConcernError alone never is.
//! - `RetryableWriteError`: a retryable write, or a commit/abort, whose top-level or
//!   writeConcernError code is in the server's RetriableError category, unless the error
//!   is already transient.

use crate::errors::codes::{category, Category};
use crate::errors::{RETRYABLE_WRITE_ERROR, TRANSIENT_TRANSACTION_ERROR};

/// What the label rules need to know about the command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelInputs {
    /// A retryable write: txnNumber outside a transaction.
    pub retryable_write: bool,
    /// `commitTransaction` or `abortTransaction`.
    pub txn_end: bool,
    /// Inside a transaction (`autocommit: false`), commit and abort included.
    pub in_transaction: bool,
}

/// The labels for a reply with top-level error `code` (absent on `ok: 1`) and a
/// writeConcernError with code `wce` (absent without one).
pub fn server_labels(cmd: LabelInputs, code: Option<i32>, wce: Option<i32>) -> Vec<&'static str> {
    let transient = cmd.in_transaction && code.is_some_and(|c| is_transient(c, wce.is_some(), cmd.txn_end));
    let retriable = |c: Option<i32>| c.is_some_and(|c| category(c) == Category::Retriable);
    if transient {
        vec![TRANSIENT_TRANSACTION_ERROR]
    } else if (cmd.retryable_write || cmd.txn_end) && (retriable(code) || retriable(wce)) {
        vec![RETRYABLE_WRITE_ERROR]
    } else {
        Vec::new()
    }
}

/// Whether a transaction may be re-run from the start after this error (mongod's
/// `isTransientTransactionError`).
fn is_transient(code: i32, has_write_concern_error: bool, commit_or_abort: bool) -> bool {
    const WRITE_CONFLICT: i32 = 112;
    const LOCK_TIMEOUT: i32 = 24;
    const PREPARED_TRANSACTION_IN_PROGRESS: i32 = 267;
    const SHARD_CANNOT_REFRESH_DUE_TO_LOCKS_HELD: i32 = 343;
    const STALE_DB_VERSION: i32 = 249;
    const NO_SUCH_TRANSACTION: i32 = 251;
    let always = matches!(
        code,
        WRITE_CONFLICT
            | LOCK_TIMEOUT
            | PREPARED_TRANSACTION_IN_PROGRESS
            | SHARD_CANNOT_REFRESH_DUE_TO_LOCKS_HELD
            | STALE_DB_VERSION
    ) || matches!(category(code), Category::Snapshot | Category::NeedRetargetting);
    if commit_or_abort {
        // The transaction may have committed with its write concern unsatisfied: only
        // NoSuchTransaction without one proves nothing was kept.
        always || (code == NO_SUCH_TRANSACTION && !has_write_concern_error)
    } else {
        always || category(code) == Category::Retriable || code == NO_SUCH_TRANSACTION
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: &str = RETRYABLE_WRITE_ERROR;
    const TT: &str = TRANSIENT_TRANSACTION_ERROR;

    #[test]
    fn labels_as_the_server_computes_them() {
        let plain = LabelInputs::default();
        let retryable = LabelInputs {
            retryable_write: true,
            ..plain
        };
        let statement = LabelInputs {
            in_transaction: true,
            ..plain
        };
        let commit = LabelInputs {
            in_transaction: true,
            txn_end: true,
            ..plain
        };
        type Case = (LabelInputs, Option<i32>, Option<i32>, &'static [&'static str]);
        let cases: &[Case] = &[
            // Outside a transaction only retryable writes are labelled, by either code.
            (plain, Some(10107), None, &[]),
            (plain, None, Some(91), &[]),
            (retryable, Some(10107), None, &[RW]),
            (retryable, Some(134), None, &[RW]),
            (retryable, None, Some(91), &[RW]),
            (retryable, None, Some(64), &[]),
            (retryable, Some(11000), None, &[]),
            (retryable, Some(11601), None, &[]),
            // A statement in a transaction: transient, never retryable.
            (statement, Some(10107), None, &[TT]),
            (statement, Some(112), None, &[TT]),
            (statement, Some(251), None, &[TT]),
            (statement, Some(246), None, &[TT]),
            (statement, Some(13388), None, &[TT]),
            (statement, Some(11601), None, &[]),
            (statement, None, Some(91), &[]),
            // Commit and abort: retryable by either code, transient only when safe.
            (commit, Some(10107), None, &[RW]),
            (commit, None, Some(91), &[RW]),
            (commit, None, Some(64), &[]),
            (commit, Some(251), None, &[TT]),
            (commit, Some(251), Some(91), &[RW]),
            (commit, Some(251), Some(64), &[]),
            (commit, Some(112), None, &[TT]),
            (commit, Some(24), Some(91), &[TT]),
            (commit, Some(50), None, &[]),
            (commit, Some(8), None, &[]),
        ];
        for (cmd, code, wce, want) in cases {
            assert_eq!(
                &server_labels(*cmd, *code, *wce),
                want,
                "{cmd:?} code {code:?} wce {wce:?}"
            );
        }
    }
}
