//! `configureFailPoint` with `failCommand`, at the proxy, as a mongos has it. Off unless
//! `enable_test_commands` is set (mongod's and mongos's `--enable-test-commands`); off,
//! `configureFailPoint` is forwarded to the server like any command. Drivers' own test
//! suites set fail points on the mongos they talk to, so with this on they test
//! mongoplex exactly as they test a mongos.
//!
//! Supported data: `failCommands`, `errorCode`, `errorLabels`, `closeConnection`,
//! `blockConnection` + `blockTimeMS`, `writeConcernError`, `appName`; modes `alwaysOn`,
//! `off`, `{times: n}` and `{skip: n}`.

mod labels;

use std::sync::Mutex;
use std::time::Duration;

use bson::{Bson, Document, RawBsonRef, RawDocument};

use crate::command::as_i64;
use crate::errors::codes::code_name;
pub use labels::{server_labels, LabelInputs};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Off,
    AlwaysOn,
    Times(i64),
    Skip(i64),
}

#[derive(Debug, Clone, PartialEq)]
struct Armed {
    mode: Mode,
    commands: Vec<String>,
    app_name: Option<String>,
    error_code: Option<i32>,
    error_labels: Option<Vec<String>>,
    close_connection: bool,
    block: Option<Duration>,
    /// The writeConcernError to attach, and its code (read once, here).
    write_concern_error: Option<(Document, Option<i32>)>,
}

/// What a fired fail point does to one command, in this order: block, then close, or
/// answer with an error, or run the command and attach a writeConcernError.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fire {
    pub block: Option<Duration>,
    pub close_connection: bool,
    /// The complete error reply.
    pub error: Option<Document>,
    pub write_concern_error: Option<InjectedWriteConcernError>,
}

/// A writeConcernError to attach to the command's reply, and the labels that go with it.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectedWriteConcernError {
    pub error: Document,
    /// `error`'s code, which the labels depend on.
    pub code: Option<i32>,
    pub labels: Labels,
}

/// The labels of a fired fail point's reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    /// The fail point's own `errorLabels`: exactly these, even none.
    Given(Vec<String>),
    /// What the server computes for the command.
    Computed(LabelInputs),
}

impl Labels {
    /// The labels for a reply with top-level error `code` (absent on `ok: 1`) and a
    /// writeConcernError with code `wce`.
    pub fn for_reply(&self, code: Option<i32>, wce: Option<i32>) -> Vec<String> {
        match self {
            Labels::Given(l) => l.clone(),
            Labels::Computed(cmd) => server_labels(*cmd, code, wce)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// What the command that meets the fail point is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    pub name: &'a str,
    pub app_name: Option<&'a str>,
    pub labels: LabelInputs,
}

#[derive(Debug, Default)]
pub struct FailPoints {
    armed: Mutex<Option<Armed>>,
}

impl FailPoints {
    /// Applies a `configureFailPoint: "failCommand"` command. Returns an error message
    /// for a malformed one (the reply is then `ok: 0`, code 2 BadValue).
    pub fn configure(&self, body: &RawDocument) -> Result<(), String> {
        let mode = match field(body, "mode") {
            Some(RawBsonRef::String("alwaysOn")) => Mode::AlwaysOn,
            Some(RawBsonRef::String("off")) => Mode::Off,
            Some(RawBsonRef::Document(m)) => {
                let n = |k: &str| field(m, k).and_then(as_i64);
                match (n("times"), n("skip")) {
                    (Some(t), _) => Mode::Times(t),
                    (_, Some(s)) => Mode::Skip(s),
                    _ => return Err(format!("unsupported fail point mode {m:?}")),
                }
            }
            other => return Err(format!("unsupported fail point mode {other:?}")),
        };
        let mut guard = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        if mode == Mode::Off {
            *guard = None;
            return Ok(());
        }
        let empty = bson::rawdoc! {};
        let data = body.get_document("data").unwrap_or(&empty);
        let strings = |k: &str| -> Option<Vec<String>> {
            data.get_array(k).ok().map(|a| {
                a.into_iter()
                    .filter_map(|v| v.ok()?.as_str().map(str::to_owned))
                    .collect()
            })
        };
        let code = field(data, "errorCode").and_then(as_i64);
        let block = data.get_bool("blockConnection").unwrap_or(false).then(|| {
            let ms = field(data, "blockTimeMS").and_then(as_i64).unwrap_or(0);
            Duration::from_millis(u64::try_from(ms).unwrap_or(0))
        });
        let write_concern_error = match data.get_document("writeConcernError") {
            Ok(wce) => {
                let code = field(wce, "code")
                    .and_then(as_i64)
                    .and_then(|c| i32::try_from(c).ok());
                Some((Document::try_from(wce).map_err(|e| e.to_string())?, code))
            }
            Err(_) => None,
        };
        *guard = Some(Armed {
            mode,
            commands: strings("failCommands").unwrap_or_default(),
            app_name: data.get_str("appName").ok().map(str::to_owned),
            error_code: code.and_then(|c| i32::try_from(c).ok()),
            error_labels: strings("errorLabels"),
            close_connection: data.get_bool("closeConnection").unwrap_or(false),
            block,
            write_concern_error,
        });
        Ok(())
    }

    /// Whether the fail point fires for this command, and what it does. Counts down
    /// `times` and `skip`.
    pub fn fire(&self, t: &Target<'_>) -> Option<Fire> {
        let mut guard = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        let armed = guard.as_mut()?;
        if !armed.commands.iter().any(|c| c == t.name) {
            return None;
        }
        if armed.app_name.is_some() && armed.app_name.as_deref() != t.app_name {
            return None;
        }
        match &mut armed.mode {
            Mode::Off => return None,
            Mode::AlwaysOn => {}
            Mode::Skip(n) if *n > 0 => {
                *n -= 1;
                return None;
            }
            Mode::Skip(_) => {}
            Mode::Times(n) if *n <= 0 => return None,
            Mode::Times(n) => *n -= 1,
        }
        let labels = match &armed.error_labels {
            Some(given) => Labels::Given(given.clone()),
            None => Labels::Computed(t.labels),
        };
        let fire = Fire {
            block: armed.block,
            close_connection: armed.close_connection,
            error: armed.error_code.map(|code| error_reply(code, &labels)),
            write_concern_error: armed
                .write_concern_error
                .clone()
                .map(|(error, code)| InjectedWriteConcernError { error, code, labels }),
        };
        if matches!(armed.mode, Mode::Times(0)) {
            *guard = None;
        }
        Some(fire)
    }
}

/// A field's value; a malformed element reads as absent.
fn field<'a>(doc: &'a RawDocument, key: &str) -> Option<RawBsonRef<'a>> {
    doc.get(key).ok().flatten()
}

/// The error a server gives for a fired `errorCode`, labels as given or computed.
fn error_reply(code: i32, labels: &Labels) -> Document {
    let mut doc = bson::doc! {
        "ok": 0.0,
        "errmsg": "Failing command via 'failCommand' failpoint",
        "code": code,
        "codeName": code_name(code).into_owned(),
    };
    let labels = labels.for_reply(Some(code), None);
    if !labels.is_empty() {
        doc.insert(
            "errorLabels",
            labels.into_iter().map(Bson::from).collect::<Vec<_>>(),
        );
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    fn insert<'a>() -> Target<'a> {
        Target {
            name: "insert",
            app_name: Some("app"),
            labels: LabelInputs {
                retryable_write: true,
                ..LabelInputs::default()
            },
        }
    }

    #[test]
    fn times_skip_off_and_matching() {
        let fp = FailPoints::default();
        fp.configure(
            &rawdoc! { "configureFailPoint": "failCommand", "mode": { "times": 2 },
            "data": { "failCommands": ["insert"], "errorCode": 10107 } },
        )
        .unwrap();
        assert!(fp
            .fire(&Target {
                name: "find",
                ..insert()
            })
            .is_none());
        let f = fp.fire(&insert()).unwrap();
        let e = f.error.unwrap();
        assert_eq!(e.get_i32("code").unwrap(), 10107);
        assert_eq!(e.get_str("codeName").unwrap(), "NotWritablePrimary");
        assert_eq!(
            e.get_array("errorLabels").unwrap(),
            &vec![Bson::from("RetryableWriteError")]
        );
        assert!(fp.fire(&insert()).is_some());
        assert!(fp.fire(&insert()).is_none(), "times: 2 is spent");

        fp.configure(
            &rawdoc! { "configureFailPoint": "failCommand", "mode": { "skip": 1 },
            "data": { "failCommands": ["insert"], "closeConnection": true, "appName": "app" } },
        )
        .unwrap();
        assert!(fp.fire(&insert()).is_none(), "skipped once");
        assert!(fp.fire(&insert()).unwrap().close_connection);
        assert!(fp
            .fire(&Target {
                app_name: Some("other"),
                ..insert()
            })
            .is_none());
        fp.configure(&rawdoc! { "configureFailPoint": "failCommand", "mode": "off" })
            .unwrap();
        assert!(fp.fire(&insert()).is_none());
    }

    #[test]
    fn labels_block_and_write_concern_error() {
        let fp = FailPoints::default();
        fp.configure(
            &rawdoc! { "configureFailPoint": "failCommand", "mode": "alwaysOn",
            "data": { "failCommands": ["insert"], "errorCode": 91, "errorLabels": [],
                      "blockConnection": true, "blockTimeMS": 50 } },
        )
        .unwrap();
        let f = fp.fire(&insert()).unwrap();
        assert_eq!(f.block, Some(Duration::from_millis(50)));
        assert!(
            f.error.unwrap().get("errorLabels").is_none(),
            "explicit empty labels win"
        );
        fp.configure(&rawdoc! { "configureFailPoint": "failCommand", "mode": "alwaysOn",
            "data": { "failCommands": ["commitTransaction"], "writeConcernError": { "code": 91, "errmsg": "x" } } })
            .unwrap();
        let commit = Target {
            name: "commitTransaction",
            labels: LabelInputs {
                txn_end: true,
                in_transaction: true,
                ..LabelInputs::default()
            },
            ..Target::default()
        };
        let f = fp.fire(&commit).unwrap();
        assert!(f.error.is_none());
        let wce = f.write_concern_error.unwrap();
        assert_eq!(wce.error.get_i32("code").unwrap(), 91);
        assert_eq!(wce.code, Some(91));
        assert_eq!(wce.labels.for_reply(None, Some(91)), ["RetryableWriteError"]);
        fp.configure(
            &rawdoc! { "configureFailPoint": "failCommand", "mode": "alwaysOn",
            "data": { "failCommands": ["commitTransaction"], "errorLabels": [],
                      "writeConcernError": { "code": 91, "errmsg": "x" } } },
        )
        .unwrap();
        let wce = fp.fire(&commit).unwrap().write_concern_error.unwrap();
        assert!(
            wce.labels.for_reply(None, Some(91)).is_empty(),
            "explicit empty labels win for a writeConcernError too"
        );
        let bad = fp.configure(&rawdoc! { "configureFailPoint": "failCommand", "mode": "sometimes" });
        assert!(bad.is_err());
    }
}
