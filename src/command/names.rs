//! The bounded set of command names the proxy treats specially or reports in metrics.

macro_rules! command_names {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// A command name from a fixed list; anything else is `Other`, which keeps metric
        /// label cardinality bounded.
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
        }
    };
}

command_names! {
    Hello => "hello",
    IsMaster => "isMaster",
    IsMasterLower => "ismaster",
    Ping => "ping",
    Find => "find",
    GetMore => "getMore",
    KillCursors => "killCursors",
    Aggregate => "aggregate",
    Count => "count",
    Distinct => "distinct",
    Insert => "insert",
    Update => "update",
    Delete => "delete",
    FindAndModify => "findAndModify",
    BulkWrite => "bulkWrite",
    CommitTransaction => "commitTransaction",
    AbortTransaction => "abortTransaction",
    EndSessions => "endSessions",
    ListCollections => "listCollections",
    ListIndexes => "listIndexes",
    ListDatabases => "listDatabases",
    CreateIndexes => "createIndexes",
    DropIndexes => "dropIndexes",
    Create => "create",
    Drop => "drop",
    DropDatabase => "dropDatabase",
    BuildInfo => "buildInfo",
    ServerStatus => "serverStatus",
    SaslStart => "saslStart",
    SaslContinue => "saslContinue",
    Authenticate => "authenticate",
    Explain => "explain",
}

impl CommandName {
    /// hello in any of its spellings: answered by the proxy itself.
    pub fn is_hello(self) -> bool {
        matches!(self, Self::Hello | Self::IsMaster | Self::IsMasterLower)
    }

    /// commitTransaction and abortTransaction.
    pub fn ends_transaction(self) -> bool {
        matches!(self, Self::CommitTransaction | Self::AbortTransaction)
    }

    /// Commands whose messages must never be compressed (the compression spec's list).
    pub fn never_compressed(self) -> bool {
        self.is_hello() || matches!(self, Self::SaslStart | Self::SaslContinue | Self::Authenticate)
    }
}
