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
        let mut cursor_kind = if opens_change_stream(cmd, msg) {
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
                retryable_read: retry::is_retryable_read(cmd.known, writes_output(cmd, msg)),
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

/// Whether an aggregate opens a change stream (`$changeStream` as its first stage).
fn opens_change_stream(cmd: &Command<'_>, msg: &OpMsg<'_>) -> bool {
    if cmd.known != CommandName::Aggregate {
        return false;
    }
    let Ok(pipeline) = msg.body.get_array("pipeline") else {
        return false;
    };
    let first = pipeline.into_iter().next().and_then(|s| s.ok());
    first
        .and_then(|s| s.as_document())
        .and_then(|d| d.iter().next())
        .and_then(|e| e.ok())
        .is_some_and(|(k, _)| k.as_str() == "$changeStream")
}

/// Whether an aggregate writes its output ($out or $merge as the last stage): such an
/// aggregate is a write and is not retried as a read.
fn writes_output(cmd: &Command<'_>, msg: &OpMsg<'_>) -> bool {
    if cmd.known != CommandName::Aggregate {
        return false;
    }
    let Ok(pipeline) = msg.body.get_array("pipeline") else {
        return false;
    };
    let last = pipeline.into_iter().filter_map(|s| s.ok()).last();
    last.and_then(|s| s.as_document())
        .and_then(|d| d.iter().next())
        .and_then(|e| e.ok())
        .is_some_and(|(k, _)| matches!(k.as_str(), "$out" | "$merge"))
}
