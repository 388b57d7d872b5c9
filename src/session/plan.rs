//! What one forwarded request needs after its frame's borrow ends: the routing decision
//! and the few facts that decide pins, labels and compression.

use crate::command::{Command, CommandName};
use crate::pins::{CursorKind, Pins};
use crate::retry::{self, Facts};
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
}

impl Plan {
    pub fn new(cmd: &Command<'_>, msg: &OpMsg<'_>, pins: &Pins) -> Self {
        let cursor_ids = match cmd.known {
            CommandName::GetMore => cmd.get_more_cursor.into_iter().collect(),
            CommandName::KillCursors => kill_cursors_ids(msg.body),
            _ => Vec::new(),
        };
        let txn_end = cmd.known.ends_transaction();
        let mut lookup = PinLookup::default();
        let (first_stage, last_stage) = pipeline_ends(cmd, msg);
        let writes_output = matches!(last_stage, Some("$out" | "$merge"));
        let mut cursor_kind = if first_stage == Some("$changeStream") {
            CursorKind::ChangeStream
        } else if cmd.await_data && cmd.known == CommandName::Find {
            CursorKind::TailableAwait
        } else {
            CursorKind::Plain
        };
        if let Some((address, kind)) = cursor_ids.first().and_then(|id| pins.cursor(*id)) {
            lookup.cursor = Some(address);
            if cmd.known == CommandName::GetMore {
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
                retryable_read: retry::is_retryable_read(cmd.known, writes_output),
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
        }
    }
}

/// The operators of an aggregate's first and last stages, read in one walk of the
/// pipeline (`None` for other commands). The first says whether it opens a change stream
/// (`$changeStream`); the last whether it writes its output (`$out`, `$merge`), which
/// makes it a write that is not retried as a read.
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
mod tests {
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
}
