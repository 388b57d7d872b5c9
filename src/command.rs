//! Frames → commands: the few top-level fields of a command or reply document that
//! routing, pinning and retry decisions need. Nothing else is parsed; the bytes are
//! forwarded as they came.

pub mod policy;
mod reply;
mod table;
pub mod translate;

pub use reply::ReplyInfo;
pub use table::{CommandName, Cursor, CursorKind, Gate, Kind, Local, LongPoll, Route, Spec, TxnEnd};

use bson::{RawBsonRef, RawDocument};

/// What the proxy needs to know about one client command.
#[derive(Debug, Clone, Default)]
pub struct Command<'a> {
    /// The first key of the body.
    pub name: &'a str,
    pub known: CommandName,
    pub db: Option<&'a str>,
    /// The raw bytes of the `lsid` subdocument: a stable key for a logical session.
    pub lsid: Option<&'a [u8]>,
    pub txn_number: Option<i64>,
    pub start_transaction: bool,
    /// `autocommit: false`, which drivers send on every command of a transaction.
    pub in_transaction: bool,
    pub read_preference: Option<&'a RawDocument>,
    /// getMore's cursor id.
    pub get_more_cursor: Option<i64>,
    /// `writeConcern: {w: 0}`.
    pub unacknowledged: bool,
    /// Awaitable hello: topologyVersion and maxAwaitTimeMS.
    pub await_topology_version: Option<&'a RawDocument>,
    pub max_await_time_ms: Option<i64>,
    /// find's `awaitData: true` (with `tailable`): its getMores long-poll.
    pub await_data: bool,
    /// `maxTimeMS`, as the client sent it (drivers derive it from timeoutMS too).
    pub max_time_ms: Option<i64>,
}

impl<'a> Command<'a> {
    /// Reads the top-level fields of an OP_MSG body. Wrong types are treated as absent:
    /// the server will reject them itself with its own error.
    pub fn parse(body: &'a RawDocument) -> Self {
        let mut cmd = Command::default();
        // Elements are walked without converting their values; only the few keys below
        // are decoded (most of a command's fields are never looked at).
        for (i, el) in body.iter_elements().enumerate() {
            let Ok(el) = el else { break };
            let key = el.key().as_str();
            if i == 0 {
                cmd.name = key;
                cmd.known = CommandName::from_name(key);
                if cmd.known == CommandName::GetMore {
                    cmd.get_more_cursor = el.value().ok().and_then(as_i64);
                }
                continue;
            }
            let value = || el.value().ok();
            match key {
                "$db" => cmd.db = value().and_then(|v| v.as_str()),
                "lsid" => cmd.lsid = value().and_then(|v| v.as_document()).map(|d| d.as_bytes()),
                "txnNumber" => cmd.txn_number = value().and_then(as_i64),
                "startTransaction" => cmd.start_transaction = value().and_then(|v| v.as_bool()) == Some(true),
                "autocommit" => cmd.in_transaction = value().and_then(|v| v.as_bool()) == Some(false),
                "$readPreference" => cmd.read_preference = value().and_then(|v| v.as_document()),
                "writeConcern" => {
                    cmd.unacknowledged = value()
                        .and_then(|v| v.as_document())
                        .and_then(|wc| wc.get("w").ok().flatten())
                        .and_then(as_i64)
                        == Some(0)
                }
                "topologyVersion" => cmd.await_topology_version = value().and_then(|v| v.as_document()),
                "maxAwaitTimeMS" => cmd.max_await_time_ms = value().and_then(as_i64),
                "awaitData" => cmd.await_data = value().and_then(|v| v.as_bool()) == Some(true),
                "maxTimeMS" => cmd.max_time_ms = value().and_then(as_i64),
                _ => {}
            }
        }
        cmd
    }

    /// A retryable write in the retryable-writes sense: one of the spec's commands, with
    /// txnNumber, outside a transaction ([`Spec::retryable_write`]).
    pub fn is_retryable_write(&self) -> bool {
        self.known
            .spec()
            .retryable_write(self.txn_number, self.in_transaction)
    }
}

/// Numbers arrive as int32, int64 or double depending on the driver.
pub fn as_i64(v: RawBsonRef<'_>) -> Option<i64> {
    match v {
        RawBsonRef::Int32(n) => Some(i64::from(n)),
        RawBsonRef::Int64(n) => Some(n),
        #[allow(clippy::cast_possible_truncation)]
        RawBsonRef::Double(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
        _ => None,
    }
}

/// BSON truthiness as the server applies it to flags like `hello: 1` or `ok`.
pub fn truthy(v: RawBsonRef<'_>) -> bool {
    match v {
        RawBsonRef::Boolean(b) => b,
        RawBsonRef::Int32(n) => n != 0,
        RawBsonRef::Int64(n) => n != 0,
        RawBsonRef::Double(f) => f != 0.0,
        RawBsonRef::Null | RawBsonRef::Undefined => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    #[test]
    fn reads_routing_fields() {
        let d = rawdoc! {
            "insert": "c", "ordered": true, "$db": "app", "lsid": { "id": 1 },
            "txnNumber": 7_i64, "startTransaction": true, "autocommit": false,
            "writeConcern": { "w": 0 }, "maxTimeMS": 500,
        };
        let c = Command::parse(&d);
        assert_eq!(c.max_time_ms, Some(500));
        assert_eq!(c.name, "insert");
        assert_eq!(c.known, CommandName::Insert);
        assert_eq!(c.db, Some("app"));
        assert!(c.lsid.is_some());
        assert_eq!(c.txn_number, Some(7));
        assert!(c.start_transaction && c.in_transaction && c.unacknowledged);
        assert!(!c.is_retryable_write());
    }

    #[test]
    fn get_more_cursor_and_number_kinds() {
        let d = rawdoc! { "getMore": 123_i64, "collection": "c", "$db": "d" };
        assert_eq!(Command::parse(&d).get_more_cursor, Some(123));
        let d = rawdoc! { "insert": "c", "txnNumber": 3.0, "$db": "d" };
        assert!(Command::parse(&d).is_retryable_write());
        let d = rawdoc! { "insert": "c", "txnNumber": "x" };
        assert_eq!(Command::parse(&d).txn_number, None);
    }

    /// Only the retryable-writes spec's commands are deduplicated by txnNumber.
    #[test]
    fn retryable_writes_are_the_specs_list() {
        let cases = [
            (
                rawdoc! { "update": "c", "lsid": { "id": 1 }, "txnNumber": 1_i64 },
                true,
            ),
            (
                rawdoc! { "findAndModify": "c", "lsid": { "id": 1 }, "txnNumber": 1_i64 },
                true,
            ),
            (
                rawdoc! { "find": "c", "lsid": { "id": 1 }, "txnNumber": 1_i64 },
                false,
            ),
            (
                rawdoc! { "createIndexes": "c", "lsid": { "id": 1 }, "txnNumber": 1_i64 },
                false,
            ),
            (
                rawdoc! { "renameCollection": "c", "lsid": { "id": 1 }, "txnNumber": 1_i64 },
                false,
            ),
        ];
        for (d, want) in cases {
            assert_eq!(Command::parse(&d).is_retryable_write(), want, "{d:?}");
        }
    }

    #[test]
    fn truthiness() {
        let d = rawdoc! { "a": 1, "b": 0.0, "c": false, "d": "x", "e": bson::RawBson::Null };
        let got: Vec<bool> = d.iter().map(|e| truthy(e.unwrap().1)).collect();
        assert_eq!(got, [true, false, false, true, false]);
    }
}
