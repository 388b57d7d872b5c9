//! Server error codes the proxy may have to name or classify as a server does: the
//! `codeName` a server puts beside `code`, and the server's own error categories that
//! decide which labels it attaches (mongod's `error_codes.yml`). Only codes that reach a
//! client through the proxy's own replies or its test fail points are listed; any other
//! code is named `Location<n>`, as a server names a code it has no name for.

use std::borrow::Cow;

/// The categories of `error_codes.yml` that the label rules read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// None of the categories below.
    Plain,
    /// `RetriableError`: the server labels a retryable write failing with it
    /// `RetryableWriteError`, and a statement in a transaction `TransientTransactionError`.
    Retriable,
    /// `SnapshotError`: transient inside a transaction.
    Snapshot,
    /// `NeedRetargettingError`: transient inside a transaction.
    NeedRetargetting,
}

use Category::{NeedRetargetting, Plain, Retriable, Snapshot};

/// `(code, codeName, category)`, sorted by code.
const CODES: &[(i32, &str, Category)] = &[
    (1, "InternalError", Plain),
    (2, "BadValue", Plain),
    (6, "HostUnreachable", Retriable),
    (7, "HostNotFound", Retriable),
    (8, "UnknownError", Plain),
    (11, "UserNotFound", Plain),
    (13, "Unauthorized", Plain),
    (17, "ProtocolError", Plain),
    (18, "AuthenticationFailed", Plain),
    (20, "IllegalOperation", Plain),
    (24, "LockTimeout", Plain),
    (26, "NamespaceNotFound", Plain),
    (43, "CursorNotFound", Plain),
    (48, "NamespaceExists", Plain),
    (50, "MaxTimeMSExpired", Plain),
    (51, "ManualInterventionRequired", Plain),
    (59, "CommandNotFound", Plain),
    (63, "OBSOLETE_StaleShardVersion", Plain),
    (64, "WriteConcernTimeout", Plain),
    (72, "InvalidOptions", Plain),
    (79, "UnknownReplWriteConcern", Plain),
    (89, "NetworkTimeout", Retriable),
    (91, "ShutdownInProgress", Retriable),
    (100, "UnsatisfiableWriteConcern", Plain),
    (112, "WriteConflict", Plain),
    (115, "CommandNotSupported", Plain),
    (121, "DocumentValidationFailure", Plain),
    (123, "NotAReplicaSet", Plain),
    (133, "FailedToSatisfyReadPreference", Plain),
    (134, "ReadConcernMajorityNotAvailableYet", Retriable),
    (150, "StaleEpoch", NeedRetargetting),
    (189, "PrimarySteppedDown", Retriable),
    (216, "ElectionInProgress", Plain),
    (234, "RetryChangeStream", Plain),
    (237, "CursorKilled", Plain),
    (239, "SnapshotTooOld", Snapshot),
    (246, "SnapshotUnavailable", Snapshot),
    (249, "StaleDbVersion", Plain),
    (250, "StaleChunkHistory", Snapshot),
    (251, "NoSuchTransaction", Plain),
    (256, "TransactionCommitted", Plain),
    (262, "ExceededTimeLimit", Retriable),
    (263, "OperationNotSupportedInTransaction", Plain),
    (267, "PreparedTransactionInProgress", Plain),
    (272, "MigrationConflict", Snapshot),
    (280, "ChangeStreamFatalError", Plain),
    (286, "ChangeStreamHistoryLost", Plain),
    (322, "APIVersionError", Plain),
    (323, "APIStrictError", Plain),
    (324, "APIDeprecationError", Plain),
    (334, "MechanismUnavailable", Plain),
    (343, "ShardCannotRefreshDueToLocksHeld", Plain),
    (352, "UnsupportedOpQueryCommand", Plain),
    (358, "InternalTransactionNotSupported", Retriable),
    (391, "ReauthenticationRequired", Plain),
    (402, "ResourceExhausted", Retriable),
    (406, "MigrationBlockingOperationCoordinatorCleaningUp", Retriable),
    (407, "PooledConnectionAcquisitionExceededTimeLimit", Retriable),
    (412, "UpdatesStillPending", Retriable),
    (453, "InterruptedDueToReshardingCriticalSection", Retriable),
    (462, "IngressRequestRateLimitExceeded", Retriable),
    (9001, "SocketException", Retriable),
    (10107, "NotWritablePrimary", Retriable),
    (11000, "DuplicateKey", Plain),
    (11600, "InterruptedAtShutdown", Retriable),
    (11601, "Interrupted", Plain),
    (11602, "InterruptedDueToReplStateChange", Retriable),
    (13388, "StaleConfig", NeedRetargetting),
    (13435, "NotPrimaryNoSecondaryOk", Retriable),
    (13436, "NotPrimaryOrSecondary", Retriable),
    (50915, "BackupCursorOpenConflictWithCheckpoint", Retriable),
    (91331, "RetriableRemoteCommandFailure", Retriable),
    (10045600, "InterruptedDueToFCVChange", Retriable),
];

fn entry(code: i32) -> Option<&'static (i32, &'static str, Category)> {
    CODES.binary_search_by_key(&code, |e| e.0).ok().map(|i| &CODES[i])
}

/// The `codeName` a server gives this code.
pub fn code_name(code: i32) -> Cow<'static, str> {
    match entry(code) {
        Some(e) => Cow::Borrowed(e.1),
        None => Cow::Owned(format!("Location{code}")),
    }
}

/// The code's category, as far as the label rules care.
pub fn category(code: i32) -> Category {
    entry(code).map_or(Plain, |e| e.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_unique_and_looked_up() {
        assert!(
            CODES.windows(2).all(|w| w[0].0 < w[1].0),
            "CODES must stay sorted"
        );
        for (code, name, cat) in [
            (11601, "Interrupted", Plain),
            (50, "MaxTimeMSExpired", Plain),
            (251, "NoSuchTransaction", Plain),
            (10107, "NotWritablePrimary", Retriable),
            (91, "ShutdownInProgress", Retriable),
            (246, "SnapshotUnavailable", Snapshot),
            (13388, "StaleConfig", NeedRetargetting),
            (1234, "Location1234", Plain),
            (40573, "Location40573", Plain),
        ] {
            assert_eq!(code_name(code), name, "{code}");
            assert_eq!(category(code), cat, "{code}");
        }
    }

    #[test]
    fn the_drivers_retryable_codes_are_retriable_on_the_server() {
        for code in crate::retry::RETRYABLE_WRITE_CODES {
            assert_eq!(category(*code), Retriable, "{code}");
        }
    }
}
