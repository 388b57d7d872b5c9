//! Role rules: which commands a member may run given its role, and the errors mongod sends
//! when it may not. Pure functions of the parsed command, so tests can check them from
//! tables without sockets.

use bson::{doc, Document};
use mongoplex::command::{Command, CommandName};

pub const NOT_WRITABLE_PRIMARY: i32 = 10107;
pub const NOT_PRIMARY_NO_SECONDARY_OK: i32 = 13435;
pub const INTERRUPTED_DUE_TO_REPL_STATE_CHANGE: i32 = 11602;
pub const CURSOR_NOT_FOUND: i32 = 43;

pub const RETRYABLE_WRITE_ERROR: &str = "RetryableWriteError";
pub const TRANSIENT_TRANSACTION_ERROR: &str = "TransientTransactionError";

/// How mongod treats a command with respect to replica-set state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Needs a writable primary (writes, and every command inside a transaction).
    Write,
    /// Runs on a secondary only when the client opted in with a non-primary read preference.
    Read,
    /// Runs anywhere (ping, getMore, killCursors, endSessions, test commands, ...).
    Anywhere,
}

/// Commands outside [`CommandName`]'s list that also need a primary.
const OTHER_WRITES: &[&str] = &[
    "dropIndexes",
    "dropDatabase",
    "renameCollection",
    "collMod",
    "convertToCapped",
];

/// Commands outside [`CommandName`]'s list that are reads.
const OTHER_READS: &[&str] = &["dbStats", "collStats", "mapReduce"];

pub fn kind(cmd: &Command<'_>) -> Kind {
    use CommandName as N;
    if cmd.in_transaction {
        return Kind::Write;
    }
    match cmd.known {
        N::Insert
        | N::Update
        | N::Delete
        | N::FindAndModify
        | N::BulkWrite
        | N::Create
        | N::Drop
        | N::DropDatabase
        | N::DropIndexes
        | N::CreateIndexes
        | N::CommitTransaction
        | N::AbortTransaction => Kind::Write,
        N::Find
        | N::Aggregate
        | N::Count
        | N::Distinct
        | N::ListCollections
        | N::ListIndexes
        | N::ListDatabases
        | N::Explain => Kind::Read,
        _ if OTHER_WRITES.contains(&cmd.name) => Kind::Write,
        _ if OTHER_READS.contains(&cmd.name) => Kind::Read,
        _ => Kind::Anywhere,
    }
}

/// The client allowed a secondary: `$readPreference` with any mode but `primary`.
pub fn secondary_ok(cmd: &Command<'_>) -> bool {
    cmd.read_preference
        .and_then(|rp| rp.get_str("mode").ok())
        .is_some_and(|mode| mode != "primary")
}

/// A role-rule error, as mongod words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleError {
    pub code: i32,
    pub code_name: &'static str,
    pub errmsg: String,
    pub labels: Vec<&'static str>,
}

impl RoleError {
    fn new(cmd: &Command<'_>, code: i32, code_name: &'static str, errmsg: &str) -> Self {
        Self {
            code,
            code_name,
            errmsg: errmsg.to_owned(),
            labels: labels(cmd, code),
        }
    }

    /// The reply body; `topology_version` is the member's current one, as mongod 4.4+
    /// attaches to state-change errors so SDAM can tell a stale error from a new one.
    pub fn to_document(&self, topology_version: Option<Document>) -> Document {
        let mut d = doc! {
            "ok": 0.0,
            "errmsg": self.errmsg.as_str(),
            "code": self.code,
            "codeName": self.code_name,
        };
        if !self.labels.is_empty() {
            d.insert("errorLabels", self.labels.clone());
        }
        if let Some(tv) = topology_version {
            d.insert("topologyVersion", tv);
        }
        d
    }
}

/// The labels mongod adds to a state-change error: commitTransaction/abortTransaction and
/// retryable writes (txnNumber outside a transaction) may be retried on the new primary;
/// any other command inside a transaction makes the whole transaction retryable.
pub fn labels(cmd: &Command<'_>, code: i32) -> Vec<&'static str> {
    if code != NOT_WRITABLE_PRIMARY && code != INTERRUPTED_DUE_TO_REPL_STATE_CHANGE {
        return Vec::new();
    }
    let commit_or_abort = matches!(
        cmd.known,
        CommandName::CommitTransaction | CommandName::AbortTransaction
    );
    if commit_or_abort || cmd.is_retryable_write() {
        vec![RETRYABLE_WRITE_ERROR]
    } else if cmd.in_transaction {
        vec![TRANSIENT_TRANSACTION_ERROR]
    } else {
        Vec::new()
    }
}

/// What a member does with a (non-hello) command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Forward it. `as_primary`: it was admitted only because the member is primary, so a
    /// step-down while it runs interrupts it.
    Forward {
        as_primary: bool,
    },
    Reject(RoleError),
}

/// The role rules, checked before forwarding. `primary` is what the member believes.
pub fn admit(cmd: &Command<'_>, primary: bool) -> Admission {
    match (kind(cmd), primary) {
        (Kind::Anywhere, _) => Admission::Forward { as_primary: false },
        (Kind::Write, true) => Admission::Forward { as_primary: true },
        (Kind::Read, true) => Admission::Forward {
            as_primary: !secondary_ok(cmd),
        },
        (Kind::Write, false) => Admission::Reject(RoleError::new(
            cmd,
            NOT_WRITABLE_PRIMARY,
            "NotWritablePrimary",
            "not primary",
        )),
        (Kind::Read, false) if secondary_ok(cmd) => Admission::Forward { as_primary: false },
        (Kind::Read, false) => Admission::Reject(RoleError::new(
            cmd,
            NOT_PRIMARY_NO_SECONDARY_OK,
            "NotPrimaryNoSecondaryOk",
            "not primary and secondaryOk=false",
        )),
    }
}

/// The error for a command that was running when its member stepped down.
pub fn interrupted(cmd: &Command<'_>) -> RoleError {
    RoleError::new(
        cmd,
        INTERRUPTED_DUE_TO_REPL_STATE_CHANGE,
        "InterruptedDueToReplStateChange",
        "operation was interrupted because a node stepped down",
    )
}

/// A getMore for a cursor this member does not hold: cursors live on the member that opened
/// them, and die with its process. `here` says whether this member holds the cursor (or
/// the harness never saw it opened).
pub fn cursor_check(cmd: &Command<'_>, here: bool) -> Option<RoleError> {
    let id = cmd.get_more_cursor?;
    (!here).then(|| RoleError {
        code: CURSOR_NOT_FOUND,
        code_name: "CursorNotFound",
        errmsg: format!("cursor id {id} not found"),
        labels: Vec::new(),
    })
}
