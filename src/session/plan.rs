//! What one forwarded request needs after its frame's borrow ends: the routing decision
//! and the few facts that decide pins, labels and compression; and the pin decisions
//! themselves, pure, from the command's row of the table.

use bson::RawDocument;

use crate::address::ServerAddress;
use crate::command::{as_i64, Command, CommandName, Cursor, CursorKind, Kind, ReplyInfo, TxnEnd};
use crate::pins::Pins;
use crate::retry::{Facts, Failure};
use crate::router::{kill_cursors_ids, route, PinLookup, Target};
use crate::wire::OpMsg;

#[derive(Debug)]
pub(super) struct Plan {
    pub name: CommandName,
    pub target: Target,
    pub flags: u32,
    pub more_to_come: bool,
    pub exhaust_allowed: bool,
    pub facts: Facts,
    pub start_transaction: bool,
    /// Only kept for commands that create or end a transaction pin.
    pub lsid: Option<Vec<u8>>,
    pub cursor_ids: Vec<i64>,
    pub compressible: bool,
    /// The cursor this command opens (find, aggregate) or continues (getMore).
    pub cursor_kind: CursorKind,
    /// lsid + txnNumber of a retryable write, for the attempt cap.
    pub write_id: Option<(Vec<u8>, i64)>,
    /// lsid + txnNumber of a statement inside a transaction, for the implicit abort.
    pub txn_id: Option<(Vec<u8>, i64)>,
    /// The client's `maxTimeMS`: see [`crate::budget`].
    pub max_time_ms: Option<i64>,
}

impl Plan {
    pub fn new(cmd: &Command<'_>, msg: &OpMsg<'_>, pins: &Pins) -> Self {
        let spec = cmd.known.spec();
        let cursor_ids = match spec.cursor {
            Cursor::Continues => cmd.get_more_cursor.into_iter().collect(),
            Cursor::Kills => kill_cursors_ids(msg.body),
            _ => Vec::new(),
        };
        let txn_end = spec.ends_transaction();
        let mut lookup = PinLookup::default();
        let (first_stage, last_stage) = pipeline_ends(cmd, msg);
        // The cursor this command opens, or for a getMore the one it continues.
        let mut cursor_kind = spec.opens(cmd.await_data, first_stage);
        if let Some((address, kind)) = cursor_ids.first().and_then(|id| pins.cursor(*id)) {
            lookup.cursor = Some(address);
            if spec.cursor == Cursor::Continues {
                cursor_kind = kind;
            }
        }
        let lsid = cmd.lsid.filter(|_| cmd.in_transaction || txn_end);
        if let Some(lsid) = lsid {
            lookup.transaction = pins.transaction(lsid);
        }
        Plan {
            name: cmd.known,
            target: route(cmd, &lookup),
            flags: msg.flags,
            more_to_come: msg.more_to_come(),
            exhaust_allowed: msg.exhaust_allowed(),
            facts: Facts {
                name: cmd.known,
                retryable_read: spec.retryable_read(last_stage),
                retryable_write: cmd.is_retryable_write(),
                in_transaction: cmd.in_transaction,
                more_to_come: msg.more_to_come(),
                change_stream: cursor_kind == CursorKind::ChangeStream,
            },
            cursor_kind,
            start_transaction: cmd.start_transaction,
            lsid: lsid
                .filter(|_| cmd.start_transaction || txn_end)
                .map(<[u8]>::to_vec),
            cursor_ids,
            compressible: !cmd.known.never_compressed(),
            write_id: cmd
                .lsid
                .zip(cmd.txn_number)
                .filter(|_| cmd.is_retryable_write())
                .map(|(lsid, n)| (lsid.to_vec(), n)),
            txn_id: cmd
                .lsid
                .zip(cmd.txn_number)
                .filter(|_| cmd.in_transaction && !txn_end)
                .map(|(lsid, n)| (lsid.to_vec(), n)),
            max_time_ms: cmd.max_time_ms,
        }
    }
}

/// How one reply changes the pin tables.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct PinChanges<'a> {
    /// Cursors the server reports gone.
    pub unpin_cursors: Vec<i64>,
    /// A live cursor in the reply, pinned (again) to the member that sent it.
    pub pin_cursor: Option<(i64, CursorKind)>,
    /// The session whose transaction pin begins or ends.
    pub transaction: Option<(TxnPin, &'a [u8])>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxnPin {
    Pin,
    Unpin,
}

impl Plan {
    /// The pins a reply from the member makes or ends.
    pub fn pin_changes(&self, info: &ReplyInfo<'_>, reply: &RawDocument) -> PinChanges<'_> {
        let spec = self.name.spec();
        let unpin_cursors = match spec.cursor {
            // Only the cursors the server reports gone; cursorsAlive stay pinned.
            Cursor::Kills if info.ok => killed_cursors(reply),
            Cursor::Continues if info.ok && info.cursor_id == Some(0) => self.cursor_ids.clone(),
            _ => Vec::new(),
        };
        let pin_cursor = info
            .cursor_id
            .filter(|id| *id != 0 && info.ok)
            .map(|id| (id, self.cursor_kind));
        let transaction = self.lsid.as_deref().and_then(|lsid| {
            let change = if self.start_transaction {
                // A transaction exists only once its first statement succeeded.
                info.ok.then_some(TxnPin::Pin)
            } else {
                // A failed commit is retried where the transaction ran; an abort ends
                // it whatever its outcome.
                let abort = spec.kind == Kind::EndTransaction(TxnEnd::Abort);
                (info.ok || abort).then_some(TxnPin::Unpin)
            };
            change.map(|c| (c, lsid))
        });
        PinChanges {
            unpin_cursors,
            pin_cursor,
            transaction,
        }
    }

    /// The cursor pins a failed attempt ends. A getMore the server failed has killed its
    /// cursor, and one whose member cannot be reached has lost it. One the proxy itself
    /// gave up on before sending (a wait-queue timeout, no member selectable) leaves the
    /// cursor open on the server, so its pin stays for the next getMore or killCursors.
    /// A failed killCursors ends its pins all the same: the client is done with those
    /// cursors and never names them again (drivers do not retry killCursors), so the pin
    /// could only wait out its TTL; the server times the cursor out itself.
    pub fn cursors_lost(&self, failure: Failure) -> &[i64] {
        let proxy_gave_up = failure == Failure::NotSent { retryable: false };
        match self.name.spec().cursor {
            Cursor::Continues if !proxy_gave_up => &self.cursor_ids,
            Cursor::Kills => &self.cursor_ids,
            _ => &[],
        }
    }

    /// A getMore on a long-polling cursor may wait maxAwaitTimeMS for its batch, so it
    /// runs on the member's long-poll pool; the command that opened the cursor does not
    /// wait.
    pub fn long_polls(&self) -> bool {
        self.cursor_kind.long_poll() && self.name.spec().cursor == Cursor::Continues
    }
}

impl PinChanges<'_> {
    pub fn apply(self, pins: &Pins, address: &ServerAddress) {
        pins.unpin_cursors(&self.unpin_cursors);
        if let Some((id, kind)) = self.pin_cursor {
            pins.pin_cursor(id, address, kind);
        }
        match self.transaction {
            Some((TxnPin::Pin, lsid)) => pins.pin_transaction(lsid, address),
            Some((TxnPin::Unpin, lsid)) => pins.unpin_transaction(lsid),
            None => {}
        }
    }
}

/// The ids a killCursors reply reports as no longer open on the server.
fn killed_cursors(reply: &RawDocument) -> Vec<i64> {
    ["cursorsKilled", "cursorsNotFound"]
        .iter()
        .filter_map(|k| reply.get_array(k).ok())
        .flat_map(|a| a.into_iter().filter_map(|v| v.ok().and_then(as_i64)))
        .collect()
}

/// The operators of an aggregate's first and last stages, read in one walk of the
/// pipeline (`None` for other commands), for the table's refinements: the first says
/// whether it opens a change stream, the last whether it writes its output.
fn pipeline_ends<'a>(cmd: &Command<'_>, msg: &OpMsg<'a>) -> (Option<&'a str>, Option<&'a str>) {
    if cmd.known != CommandName::Aggregate {
        return (None, None);
    }
    let Ok(pipeline) = msg.body.get_array("pipeline") else {
        return (None, None);
    };
    let operator = |stage: bson::RawBsonRef<'a>| {
        let (key, _) = stage.as_document()?.iter().next()?.ok()?;
        Some(key.as_str())
    };
    let mut stages = pipeline.into_iter().filter_map(|s| s.ok());
    let first = stages.next();
    let last = stages.last().or(first);
    (first.and_then(operator), last.and_then(operator))
}

#[cfg(test)]
pub(in crate::session) mod tests {
    use super::*;
    use crate::wire::build_msg;
    use bson::rawdoc;

    #[test]
    fn pipeline_ends_name_the_first_and_last_stages() {
        let cases = [
            (
                rawdoc! { "aggregate": "c", "pipeline": [{ "$changeStream": {} }, { "$match": {} }] },
                (Some("$changeStream"), Some("$match")),
            ),
            (
                rawdoc! { "aggregate": "c", "pipeline": [{ "$match": {} }, { "$out": "x" }] },
                (Some("$match"), Some("$out")),
            ),
            (
                rawdoc! { "aggregate": "c", "pipeline": [{ "$merge": "x" }] },
                (Some("$merge"), Some("$merge")),
            ),
            (rawdoc! { "aggregate": "c", "pipeline": [] }, (None, None)),
            (
                rawdoc! { "find": "c", "pipeline": [{ "$out": "x" }] },
                (None, None),
            ),
        ];
        for (body, want) in cases {
            let frame = build_msg(1, 0, 0, body.as_bytes());
            let msg = OpMsg::parse(&frame).unwrap();
            let cmd = Command::parse(msg.body);
            assert_eq!(pipeline_ends(&cmd, &msg), want, "{body:?}");
        }
    }

    pub(in crate::session) fn pins() -> Pins {
        let gauge = |n| prometheus::IntGauge::new(n, n).unwrap();
        let pins = Pins::new(gauge("c"), gauge("t"));
        pins.pin_cursor(5, &ServerAddress::new("s", 1), CursorKind::ChangeStream);
        pins.pin_cursor(6, &ServerAddress::new("s", 1), CursorKind::Plain);
        pins
    }

    pub(in crate::session) fn plan(body: &RawDocument, pins: &Pins) -> Plan {
        let frame = build_msg(1, 0, 0, body.as_bytes());
        let msg = OpMsg::parse(&frame).unwrap();
        Plan::new(&Command::parse(msg.body), &msg, pins)
    }

    #[test]
    fn pin_changes_table() {
        let lsid = rawdoc! { "id": 1 };
        let l = lsid.as_bytes();
        let batch = |id: i64| rawdoc! { "ok": 1, "cursor": { "id": id, "firstBatch": [] } };
        let ok = rawdoc! { "ok": 1 };
        let failed = rawdoc! { "ok": 0, "code": 91 };
        let killed = rawdoc! { "ok": 1, "cursorsKilled": [5_i64], "cursorsNotFound": [7_i64], "cursorsAlive": [6_i64] };
        let none = PinChanges::default;
        let pin = |id, kind| PinChanges {
            pin_cursor: Some((id, kind)),
            ..PinChanges::default()
        };
        let unpin = |ids: Vec<i64>| PinChanges {
            unpin_cursors: ids,
            ..PinChanges::default()
        };
        let txn = |change| PinChanges {
            transaction: Some((change, l)),
            ..PinChanges::default()
        };
        let cases = [
            (
                "find opens",
                rawdoc! { "find": "c" },
                batch(9),
                pin(9, CursorKind::Plain),
            ),
            ("find exhausted", rawdoc! { "find": "c" }, batch(0), none()),
            (
                "tailable find",
                rawdoc! { "find": "c", "tailable": true, "awaitData": true },
                batch(9),
                pin(9, CursorKind::TailableAwait),
            ),
            (
                "change stream",
                rawdoc! { "aggregate": 1, "pipeline": [{ "$changeStream": {} }] },
                batch(9),
                pin(9, CursorKind::ChangeStream),
            ),
            (
                "getMore keeps its cursor's kind",
                rawdoc! { "getMore": 5_i64, "collection": "c" },
                batch(5),
                pin(5, CursorKind::ChangeStream),
            ),
            (
                "getMore exhausts",
                rawdoc! { "getMore": 5_i64, "collection": "c" },
                batch(0),
                unpin(vec![5]),
            ),
            (
                "getMore fails",
                rawdoc! { "getMore": 5_i64, "collection": "c" },
                failed.clone(),
                none(),
            ),
            (
                "killCursors: killed and not found, not alive",
                rawdoc! { "killCursors": "c", "cursors": [5_i64, 6_i64, 7_i64] },
                killed.clone(),
                unpin(vec![5, 7]),
            ),
            (
                "killCursors fails",
                rawdoc! { "killCursors": "c", "cursors": [5_i64] },
                failed.clone(),
                none(),
            ),
            (
                "first statement",
                rawdoc! { "insert": "c", "lsid": lsid.clone(), "txnNumber": 1_i64, "autocommit": false, "startTransaction": true },
                ok.clone(),
                txn(TxnPin::Pin),
            ),
            (
                "first statement fails",
                rawdoc! { "insert": "c", "lsid": lsid.clone(), "txnNumber": 1_i64, "autocommit": false, "startTransaction": true },
                failed.clone(),
                none(),
            ),
            (
                "later statement",
                rawdoc! { "insert": "c", "lsid": lsid.clone(), "txnNumber": 1_i64, "autocommit": false },
                ok.clone(),
                none(),
            ),
            (
                "commit",
                rawdoc! { "commitTransaction": 1, "lsid": lsid.clone(), "txnNumber": 1_i64, "autocommit": false },
                ok.clone(),
                txn(TxnPin::Unpin),
            ),
            (
                "commit fails: retried where it ran",
                rawdoc! { "commitTransaction": 1, "lsid": lsid.clone(), "txnNumber": 1_i64, "autocommit": false },
                failed.clone(),
                none(),
            ),
            (
                "abort fails: ended anyway",
                rawdoc! { "abortTransaction": 1, "lsid": lsid.clone(), "txnNumber": 1_i64, "autocommit": false },
                failed.clone(),
                txn(TxnPin::Unpin),
            ),
            (
                "retryable write",
                rawdoc! { "insert": "c", "lsid": lsid.clone(), "txnNumber": 1_i64 },
                ok.clone(),
                none(),
            ),
        ];
        let pins = pins();
        for (what, body, reply, want) in cases {
            let plan = plan(&body, &pins);
            let info = ReplyInfo::parse(&reply);
            assert_eq!(plan.pin_changes(&info, &reply), want, "{what}");
        }
    }

    #[test]
    fn lost_cursors_and_long_polls() {
        let pins = pins();
        let stream_get_more = plan(&rawdoc! { "getMore": 5_i64, "collection": "c" }, &pins);
        let plain_get_more = plan(&rawdoc! { "getMore": 6_i64, "collection": "c" }, &pins);
        let stream = plan(
            &rawdoc! { "aggregate": 1, "pipeline": [{ "$changeStream": {} }] },
            &pins,
        );
        let kill = plan(&rawdoc! { "killCursors": "c", "cursors": [5_i64] }, &pins);
        let cases: [(&str, &Plan, Failure, &[i64]); 6] = [
            ("getMore, network", &stream_get_more, Failure::Network, &[5]),
            (
                "getMore, pool cleared",
                &stream_get_more,
                Failure::NotSent { retryable: true },
                &[5],
            ),
            (
                "getMore the proxy gave up on",
                &stream_get_more,
                Failure::NotSent { retryable: false },
                &[],
            ),
            ("killCursors, network", &kill, Failure::Network, &[5]),
            (
                "killCursors the proxy gave up on",
                &kill,
                Failure::NotSent { retryable: false },
                &[5],
            ),
            ("change stream opening, network", &stream, Failure::Network, &[]),
        ];
        for (what, plan, failure, want) in cases {
            assert_eq!(plan.cursors_lost(failure), want, "{what}");
        }
        assert!(stream_get_more.long_polls());
        assert!(!plain_get_more.long_polls());
        assert!(
            !stream.long_polls(),
            "the aggregate that opens a stream does not wait"
        );
        assert!(!kill.long_polls());
    }
}
