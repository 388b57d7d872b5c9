//! What the proxy knows about each command, in one table. A rule that depends on which
//! command it is reads the command's row here and keeps no list of its own: routing
//! ([`crate::router`]), retries and the labels of the proxy's own errors
//! ([`crate::retry`]), cursor and transaction pins and the long-poll pool
//! ([`crate::session`]). A name the table does not hold is [`CommandName::Other`]: routed
//! by its `$readPreference`, never sent again once it may have run, no cursor expected.
//!
//! A row says what the command is. A few fields of the command as sent refine it, and
//! those refinements live here too:
//! - an aggregate whose last stage is `$out` or `$merge` writes: it is not a retryable
//!   read ([`Spec::retryable_read`]);
//! - a retryable write is one only when sent with `txnNumber` outside a transaction
//!   ([`Spec::retryable_write`]);
//! - a find long-polls only with `awaitData`, an aggregate only when its first stage is
//!   `$changeStream` ([`Spec::opens`]); a getMore long-polls when its cursor does.
//!
//! The labels the proxy's own errors carry follow from the columns, as the specs have
//! them ([`crate::retry::proxy_error_labels`]):
//! - `TransientTransactionError` on every statement of a transaction but the one that
//!   ends it (transactions spec);
//! - `RetryableWriteError` on a retryable write sent as one, and on both
//!   [`Kind::EndTransaction`] commands (retryable-writes spec);
//! - `UnknownTransactionCommitResult` on commitTransaction after a network error;
//! - `ResumableChangeStreamError` on an aggregate that opens a change stream and on a
//!   getMore that continues one (change-streams spec).

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub route: Route,
    pub kind: Kind,
    pub cursor: Cursor,
    pub gate: Gate,
}

/// What a command needs of the client's identity when clients authenticate to the proxy
/// (`client_auth`), and whether it acts on more than the client's own data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Allowed before authentication, as mongod allows it: the handshake, the SASL
    /// commands, ping and buildInfo (and logout, which has nothing to undo).
    Open,
    /// Needs an authenticated client; every name the table does not hold.
    Authenticated,
    /// Acts on the whole server or on the identity the proxy logs in with upstream:
    /// refused by the policy for shared identities ([`crate::command::policy`]).
    Server,
    /// fsync: [`Gate::Server`] with `lock: true` only.
    ServerIfLock,
}

/// Where a command goes. Inside a transaction every statement after the first goes to
/// the member running it, and any statement goes to the primary, whatever its row says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Answered by the proxy itself; never forwarded.
    Local(Local),
    /// The primary, whatever `$readPreference` says: a mongos sends writes to primaries.
    Primary,
    /// By the client's `$readPreference`; the primary without one.
    ReadPreference,
    /// The member holding its cursor; by `$readPreference` when no pin names one (the
    /// server then answers CursorNotFound itself).
    Cursor,
    /// The member running its transaction; the primary when no pin names one, and the
    /// primary again on a retry (the transaction follows the primary).
    Transaction,
}

/// Commands the proxy answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// hello and isMaster: answered as a mongos.
    Hello,
    /// saslStart, saslContinue, authenticate: the proxy's own SCRAM server
    /// (`client_auth = "file"`), or an error naming the setting.
    Auth,
    /// logout: answered by the proxy; forwarded, it would log out a pooled connection's
    /// own upstream login.
    Logout,
}

/// Read or write, and whether a second attempt is safe once the command may have run.
/// (Before it runs, a rejection such as NotWritablePrimary makes any command safe to
/// send again; see [`crate::retry`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A read the retryable-reads spec retries once.
    RetryableRead,
    /// A read that is not retried: a getMore would skip a batch, and diagnostics are
    /// left to the client.
    Read,
    /// A write the server does not deduplicate, and every command the proxy does not
    /// know: never sent again once it may have run.
    Write,
    /// On the retryable-writes spec's list: the server deduplicates it by lsid +
    /// txnNumber when it is sent with `txnNumber` outside a transaction.
    RetryableWrite,
    /// Ends a transaction. The server deduplicates it, so it is retried as a retryable
    /// write is, and it ends the transaction's pin.
    EndTransaction(TxnEnd),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnEnd {
    Commit,
    Abort,
}

/// What a command does to cursors. Any reply with a live cursor id pins it to the member
/// that sent it, whatever the command; this column says which commands open long-polling
/// cursors and which act on a pinned one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    None,
    /// Opens a cursor; [`LongPoll`] says which instances long-poll.
    Opens(LongPoll),
    /// getMore: continues a pinned cursor, and long-polls when that cursor does. A
    /// command on a cursor is never retried.
    Continues,
    /// killCursors: kills pinned cursors. Never retried either.
    Kills,
}

/// Which instances of a cursor-opening command open a long-polling cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongPoll {
    Never,
    /// find with `tailable` and `awaitData`.
    AwaitData,
    /// aggregate whose first stage is `$changeStream`.
    ChangeStream,
}

/// The cursor one command opened, as its pin remembers it: long-polling cursors (a
/// getMore waits up to maxAwaitTimeMS) use their own connections, and a change stream's
/// errors must stay resumable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CursorKind {
    #[default]
    Plain,
    /// `tailable` + `awaitData`.
    TailableAwait,
    ChangeStream,
}

impl CursorKind {
    pub fn long_poll(self) -> bool {
        self != Self::Plain
    }
}

impl Spec {
    /// A read the retryable-reads spec retries, given the operator of the command's last
    /// pipeline stage: `$out` and `$merge` make an aggregate a write.
    pub fn retryable_read(&self, last_stage: Option<&str>) -> bool {
        self.kind == Kind::RetryableRead && !matches!(last_stage, Some("$out" | "$merge"))
    }

    /// A retryable write as sent: on the list, with `txnNumber`, outside a transaction.
    pub fn retryable_write(&self, txn_number: Option<i64>, in_transaction: bool) -> bool {
        self.kind == Kind::RetryableWrite && txn_number.is_some() && !in_transaction
    }

    /// commitTransaction and abortTransaction.
    pub fn ends_transaction(&self) -> bool {
        matches!(self.kind, Kind::EndTransaction(_))
    }

    /// getMore and killCursors: tied to the member holding the cursor, never retried.
    pub fn on_cursor(&self) -> bool {
        matches!(self.cursor, Cursor::Continues | Cursor::Kills)
    }

    /// Whether this instance acts on the whole server or the shared upstream identity
    /// ([`Gate::Server`]; fsync only with `lock: true`).
    pub fn acts_on_server(&self, lock: bool) -> bool {
        match self.gate {
            Gate::Server => true,
            Gate::ServerIfLock => lock,
            Gate::Open | Gate::Authenticated => false,
        }
    }

    /// The kind of cursor this instance opens, from find's `awaitData` and the operator
    /// of an aggregate's first stage.
    pub fn opens(&self, await_data: bool, first_stage: Option<&str>) -> CursorKind {
        match self.cursor {
            Cursor::Opens(LongPoll::AwaitData) if await_data => CursorKind::TailableAwait,
            Cursor::Opens(LongPoll::ChangeStream) if first_stage == Some("$changeStream") => {
                CursorKind::ChangeStream
            }
            _ => CursorKind::Plain,
        }
    }
}

/// The row of every name the table does not hold.
const OTHER: Spec = Spec {
    route: Route::ReadPreference,
    kind: Kind::Write,
    cursor: Cursor::None,
    gate: Gate::Authenticated,
};

macro_rules! command_table {
    ($($variant:ident => $name:literal, $route:expr, $kind:expr, $cursor:expr, $gate:expr;)*) => {
        /// A command name from the table; anything else is `Other`, which also keeps
        /// metric label cardinality bounded.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum CommandName {
            $($variant,)*
            #[default]
            Other,
        }

        impl CommandName {
            pub const ALL: &'static [CommandName] = &[$(CommandName::$variant,)* CommandName::Other];

            pub fn from_name(name: &str) -> Self {
                match name {
                    $($name => Self::$variant,)*
                    _ => Self::Other,
                }
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                    Self::Other => "other",
                }
            }

            /// This command's row.
            pub const fn spec(self) -> Spec {
                match self {
                    $(Self::$variant => Spec { route: $route, kind: $kind, cursor: $cursor, gate: $gate },)*
                    Self::Other => OTHER,
                }
            }
        }
    };
}

use Cursor as C;
use Gate as G;
use Kind as K;
use LongPoll as L;
use Route as R;
const HELLO: Route = R::Local(Local::Hello);
const AUTH: Route = R::Local(Local::Auth);
const LOGOUT: Route = R::Local(Local::Logout);
const OPEN: Gate = G::Open;
const AUTHED: Gate = G::Authenticated;
const SERVER: Gate = G::Server;
const COMMIT: Kind = K::EndTransaction(TxnEnd::Commit);
const ABORT: Kind = K::EndTransaction(TxnEnd::Abort);

command_table! {
    // variant           name                 route              kind               cursor  gate
    Hello             => "hello",             HELLO,             K::Read,           C::None, OPEN;
    IsMaster          => "isMaster",          HELLO,             K::Read,           C::None, OPEN;
    IsMasterLower     => "ismaster",          HELLO,             K::Read,           C::None, OPEN;
    Ping              => "ping",              R::ReadPreference, K::Read,           C::None, OPEN;
    Find              => "find",              R::ReadPreference, K::RetryableRead,  C::Opens(L::AwaitData), AUTHED;
    GetMore           => "getMore",           R::Cursor,         K::Read,           C::Continues, AUTHED;
    KillCursors       => "killCursors",       R::Cursor,         K::Read,           C::Kills, AUTHED;
    Aggregate         => "aggregate",         R::ReadPreference, K::RetryableRead,  C::Opens(L::ChangeStream), AUTHED;
    Count             => "count",             R::ReadPreference, K::RetryableRead,  C::None, AUTHED;
    Distinct          => "distinct",          R::ReadPreference, K::RetryableRead,  C::None, AUTHED;
    Insert            => "insert",            R::Primary,        K::RetryableWrite, C::None, AUTHED;
    Update            => "update",            R::Primary,        K::RetryableWrite, C::None, AUTHED;
    Delete            => "delete",            R::Primary,        K::RetryableWrite, C::None, AUTHED;
    FindAndModify     => "findAndModify",     R::Primary,        K::RetryableWrite, C::None, AUTHED;
    BulkWrite         => "bulkWrite",         R::Primary,        K::RetryableWrite, C::None, AUTHED;
    CommitTransaction => "commitTransaction", R::Transaction,    COMMIT,            C::None, AUTHED;
    AbortTransaction  => "abortTransaction",  R::Transaction,    ABORT,             C::None, AUTHED;
    EndSessions       => "endSessions",       R::ReadPreference, K::Write,          C::None, AUTHED;
    ListCollections   => "listCollections",   R::ReadPreference, K::RetryableRead,  C::Opens(L::Never), AUTHED;
    ListIndexes       => "listIndexes",       R::ReadPreference, K::RetryableRead,  C::Opens(L::Never), AUTHED;
    ListDatabases     => "listDatabases",     R::ReadPreference, K::RetryableRead,  C::None, AUTHED;
    CreateIndexes     => "createIndexes",     R::Primary,        K::Write,          C::None, AUTHED;
    DropIndexes       => "dropIndexes",       R::Primary,        K::Write,          C::None, AUTHED;
    Create            => "create",            R::Primary,        K::Write,          C::None, AUTHED;
    Drop              => "drop",              R::Primary,        K::Write,          C::None, AUTHED;
    DropDatabase      => "dropDatabase",      R::Primary,        K::Write,          C::None, AUTHED;
    BuildInfo         => "buildInfo",         R::ReadPreference, K::Read,           C::None, OPEN;
    ServerStatus      => "serverStatus",      R::ReadPreference, K::Read,           C::None, AUTHED;
    SaslStart         => "saslStart",         AUTH,              K::Read,           C::None, OPEN;
    SaslContinue      => "saslContinue",      AUTH,              K::Read,           C::None, OPEN;
    Authenticate      => "authenticate",      AUTH,              K::Read,           C::None, OPEN;
    Explain           => "explain",           R::ReadPreference, K::Read,           C::None, AUTHED;
    Logout            => "logout",            LOGOUT,            K::Read,           C::None, OPEN;
    ConnectionStatus  => "connectionStatus",  R::ReadPreference, K::Read,           C::None, AUTHED;
    // Acting on the whole server or on the identity the proxy logs in with upstream.
    Shutdown          => "shutdown",          R::Primary,        K::Write,          C::None, SERVER;
    Fsync             => "fsync",             R::Primary,        K::Write,          C::None, G::ServerIfLock;
    ReplSetStepDown   => "replSetStepDown",   R::Primary,        K::Write,          C::None, SERVER;
    ReplSetReconfig   => "replSetReconfig",   R::Primary,        K::Write,          C::None, SERVER;
    SetParameter      => "setParameter",      R::Primary,        K::Write,          C::None, SERVER;
    KillAllSessions   => "killAllSessions",   R::Primary,        K::Write,          C::None, SERVER;
    KillAllSessionsByPattern => "killAllSessionsByPattern", R::Primary, K::Write,   C::None, SERVER;
    CreateUser        => "createUser",        R::Primary,        K::Write,          C::None, SERVER;
    UpdateUser        => "updateUser",        R::Primary,        K::Write,          C::None, SERVER;
    DropUser          => "dropUser",          R::Primary,        K::Write,          C::None, SERVER;
    DropAllUsersFromDatabase => "dropAllUsersFromDatabase", R::Primary, K::Write,   C::None, SERVER;
    GrantRolesToUser  => "grantRolesToUser",  R::Primary,        K::Write,          C::None, SERVER;
    RevokeRolesFromUser => "revokeRolesFromUser", R::Primary,    K::Write,          C::None, SERVER;
    CreateRole        => "createRole",        R::Primary,        K::Write,          C::None, SERVER;
    UpdateRole        => "updateRole",        R::Primary,        K::Write,          C::None, SERVER;
    DropRole          => "dropRole",          R::Primary,        K::Write,          C::None, SERVER;
    DropAllRolesFromDatabase => "dropAllRolesFromDatabase", R::Primary, K::Write,   C::None, SERVER;
    GrantRolesToRole  => "grantRolesToRole",  R::Primary,        K::Write,          C::None, SERVER;
    RevokeRolesFromRole => "revokeRolesFromRole", R::Primary,    K::Write,          C::None, SERVER;
    GrantPrivilegesToRole => "grantPrivilegesToRole", R::Primary, K::Write,         C::None, SERVER;
    RevokePrivilegesFromRole => "revokePrivilegesFromRole", R::Primary, K::Write,   C::None, SERVER;
}

impl CommandName {
    /// hello in any of its spellings: answered by the proxy itself.
    pub fn is_hello(self) -> bool {
        self.spec().route == Route::Local(Local::Hello)
    }

    /// commitTransaction and abortTransaction.
    pub fn ends_transaction(self) -> bool {
        self.spec().ends_transaction()
    }

    /// Commands whose messages must never be compressed. Of the compression spec's list,
    /// the table holds hello, isMaster, saslStart, saslContinue and authenticate, all
    /// answered locally.
    pub fn never_compressed(self) -> bool {
        matches!(self.spec().route, Route::Local(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CommandName as N;

    #[test]
    fn names_round_trip() {
        for name in N::ALL {
            if *name != N::Other {
                assert_eq!(N::from_name(name.as_str()), *name);
            }
        }
        assert_eq!(N::from_name("mapReduce"), N::Other);
        assert_eq!(N::Other.spec(), OTHER);
    }

    /// The specs' lists, checked against the rows.
    #[test]
    fn spec_lists() {
        let retryable_reads = [
            N::Find,
            N::Aggregate,
            N::Count,
            N::Distinct,
            N::ListCollections,
            N::ListIndexes,
            N::ListDatabases,
        ];
        let retryable_writes = [N::Insert, N::Update, N::Delete, N::FindAndModify, N::BulkWrite];
        let never_compressed = [
            N::Hello,
            N::IsMaster,
            N::SaslStart,
            N::SaslContinue,
            N::Authenticate,
        ];
        for name in N::ALL {
            let spec = name.spec();
            assert_eq!(
                spec.kind == K::RetryableRead,
                retryable_reads.contains(name),
                "{name:?}"
            );
            assert_eq!(
                spec.kind == K::RetryableWrite,
                retryable_writes.contains(name),
                "{name:?}"
            );
            assert_eq!(
                spec.ends_transaction(),
                matches!(name, N::CommitTransaction | N::AbortTransaction)
            );
            assert_eq!(spec.on_cursor(), matches!(name, N::GetMore | N::KillCursors));
        }
        for name in never_compressed {
            assert!(name.never_compressed(), "{name:?}");
        }
        assert!(N::IsMasterLower.is_hello() && !N::Ping.is_hello());
    }

    #[test]
    fn refinements() {
        let find = N::Find.spec();
        let aggregate = N::Aggregate.spec();
        let insert = N::Insert.spec();
        let read_cases = [
            (aggregate, None, true),
            (aggregate, Some("$match"), true),
            (aggregate, Some("$out"), false),
            (aggregate, Some("$merge"), false),
            (find, None, true),
            (N::GetMore.spec(), None, false),
            (insert, None, false),
        ];
        for (spec, last, want) in read_cases {
            assert_eq!(spec.retryable_read(last), want, "{spec:?} {last:?}");
        }
        let write_cases = [
            (insert, Some(1), false, true),
            (insert, Some(1), true, false),
            (insert, None, false, false),
            (N::CreateIndexes.spec(), Some(1), false, false),
            (find, Some(1), false, false),
            (N::CommitTransaction.spec(), Some(1), false, false),
        ];
        for (spec, txn, in_txn, want) in write_cases {
            assert_eq!(
                spec.retryable_write(txn, in_txn),
                want,
                "{spec:?} {txn:?} {in_txn}"
            );
        }
        let cursor_cases = [
            (find, true, None, CursorKind::TailableAwait),
            (find, false, None, CursorKind::Plain),
            (aggregate, false, Some("$changeStream"), CursorKind::ChangeStream),
            (aggregate, true, Some("$match"), CursorKind::Plain),
            (N::ListCollections.spec(), true, None, CursorKind::Plain),
            (N::GetMore.spec(), true, None, CursorKind::Plain),
        ];
        for (spec, await_data, first, want) in cursor_cases {
            assert_eq!(spec.opens(await_data, first), want, "{spec:?}");
        }
    }
}
