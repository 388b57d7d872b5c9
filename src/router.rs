//! Commands → targets: which member a command must go to. Pure decisions, tested from
//! tables; each command's route is its row of the command table ([`Route`]), and the pin
//! state they consult lives in [`crate::pins`].

use bson::{RawDocument, RawDocumentBuf};

use crate::address::ServerAddress;
use crate::command::{as_i64, Command, Route};

/// Where a command goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A specific member: the one holding the cursor or the transaction.
    Pinned(ServerAddress, PinKind),
    /// Whatever server selection picks.
    Select(Criteria),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinKind {
    Cursor,
    Transaction,
}

/// Selection criteria for a command that is not pinned.
#[derive(Debug, Clone, PartialEq)]
pub enum Criteria {
    /// Writes, and reads without a non-primary read preference.
    Primary,
    /// A read with the client's `$readPreference` (mode other than primary).
    Read(RawDocumentBuf),
}

/// What the pin tables know about this command.
#[derive(Debug, Clone, Default)]
pub struct PinLookup {
    pub cursor: Option<ServerAddress>,
    pub transaction: Option<ServerAddress>,
}

/// The first cursor id of a killCursors command.
pub fn kill_cursors_ids(body: &RawDocument) -> Vec<i64> {
    body.get_array("cursors")
        .map(|a| a.into_iter().filter_map(|v| v.ok().and_then(as_i64)).collect())
        .unwrap_or_default()
}

pub fn route(cmd: &Command<'_>, pins: &PinLookup) -> Target {
    let route = cmd.known.spec().route;
    if route == Route::Cursor {
        if let Some(addr) = &pins.cursor {
            return Target::Pinned(addr.clone(), PinKind::Cursor);
        }
    }
    // Every command of a transaction after the first goes where the transaction began.
    if (cmd.in_transaction && !cmd.start_transaction) || route == Route::Transaction {
        if let Some(addr) = &pins.transaction {
            return Target::Pinned(addr.clone(), PinKind::Transaction);
        }
    }
    if cmd.in_transaction {
        // Transactions run on the primary.
        return Target::Select(Criteria::Primary);
    }
    match (route, cmd.read_preference) {
        (Route::ReadPreference | Route::Cursor, Some(rp))
            if rp.get_str("mode").is_ok_and(|m| m != "primary") =>
        {
            Target::Select(Criteria::Read(rp.to_owned()))
        }
        _ => Target::Select(Criteria::Primary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    fn a(h: &str) -> ServerAddress {
        ServerAddress::new(h, 1)
    }

    #[test]
    fn routing_table() {
        let secondary = rawdoc! { "find": "c", "$readPreference": { "mode": "secondary" } };
        let primary_rp = rawdoc! { "find": "c", "$readPreference": { "mode": "primary" } };
        let get_more = rawdoc! { "getMore": 5_i64, "collection": "c" };
        let in_txn = rawdoc! { "insert": "c", "lsid": { "id": 1 }, "txnNumber": 1_i64, "autocommit": false };
        let start_txn = rawdoc! { "insert": "c", "lsid": { "id": 1 }, "txnNumber": 1_i64, "autocommit": false, "startTransaction": true };
        let commit =
            rawdoc! { "commitTransaction": 1, "lsid": { "id": 1 }, "txnNumber": 1_i64, "autocommit": false };
        let txn_rp = rawdoc! { "find": "c", "autocommit": false, "startTransaction": true, "$readPreference": { "mode": "secondary" } };
        let insert_rp = rawdoc! { "insert": "c", "$readPreference": { "mode": "secondary" } };
        let ddl_rp = rawdoc! { "createIndexes": "c", "$readPreference": { "mode": "nearest" } };
        let commit_rp = rawdoc! { "commitTransaction": 1, "$readPreference": { "mode": "secondary" } };
        let out_rp = rawdoc! { "aggregate": "c", "pipeline": [{ "$out": "x" }], "$readPreference": { "mode": "secondary" } };
        let end_sessions = rawdoc! { "endSessions": [], "$readPreference": { "mode": "primaryPreferred" } };
        let no_pins = PinLookup::default();
        let cursor_pin = PinLookup {
            cursor: Some(a("s2")),
            transaction: None,
        };
        let txn_pin = PinLookup {
            cursor: None,
            transaction: Some(a("p")),
        };
        let both = PinLookup {
            cursor: Some(a("s2")),
            transaction: Some(a("p")),
        };
        let cases: Vec<(&RawDocument, &PinLookup, Target)> = vec![
            (
                &secondary,
                &no_pins,
                Target::Select(Criteria::Read(rawdoc! { "mode": "secondary" })),
            ),
            (&primary_rp, &no_pins, Target::Select(Criteria::Primary)),
            (&get_more, &cursor_pin, Target::Pinned(a("s2"), PinKind::Cursor)),
            (&get_more, &no_pins, Target::Select(Criteria::Primary)),
            (&in_txn, &txn_pin, Target::Pinned(a("p"), PinKind::Transaction)),
            (&in_txn, &no_pins, Target::Select(Criteria::Primary)),
            (&start_txn, &txn_pin, Target::Select(Criteria::Primary)),
            (&commit, &txn_pin, Target::Pinned(a("p"), PinKind::Transaction)),
            (&txn_rp, &no_pins, Target::Select(Criteria::Primary)),
            (&get_more, &both, Target::Pinned(a("s2"), PinKind::Cursor)),
            // Writes go to the primary whatever $readPreference says, as a mongos sends them.
            (&insert_rp, &no_pins, Target::Select(Criteria::Primary)),
            (&ddl_rp, &no_pins, Target::Select(Criteria::Primary)),
            (&commit_rp, &no_pins, Target::Select(Criteria::Primary)),
            // An aggregate that writes may run on a secondary (5.0+); endSessions is sent
            // primaryPreferred (sessions spec).
            (
                &out_rp,
                &no_pins,
                Target::Select(Criteria::Read(rawdoc! { "mode": "secondary" })),
            ),
            (
                &end_sessions,
                &no_pins,
                Target::Select(Criteria::Read(rawdoc! { "mode": "primaryPreferred" })),
            ),
        ];
        for (i, (doc, pins, want)) in cases.into_iter().enumerate() {
            assert_eq!(route(&Command::parse(doc), pins), want, "case {i}");
        }
    }

    #[test]
    fn kill_cursors_ids_reads_numbers() {
        let d = rawdoc! { "killCursors": "c", "cursors": [1_i64, 2_i32] };
        assert_eq!(kill_cursors_ids(&d), vec![1, 2]);
    }
}
