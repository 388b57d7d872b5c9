//! Application errors as SDAM sees them, and the classification of server error replies into
//! "not writable primary" / "node is recovering" state-change errors.
//!
//! The rules live in `topology/app_error.rs`; this module only names and classifies.

use bson::{Bson, Document};

use super::description::TopologyVersion;
use super::hello::{int_value, topology_version_from};

/// "node is recovering" codes: InterruptedAtShutdown, InterruptedDueToReplStateChange,
/// NotPrimaryOrSecondary, PrimarySteppedDown, ShutdownInProgress.
const RECOVERING_CODES: [i32; 5] = [11600, 11602, 13436, 189, 91];
/// "not writable primary" codes: NotWritablePrimary, NotPrimaryNoSecondaryOk, LegacyNotPrimary.
const NOT_WRITABLE_PRIMARY_CODES: [i32; 3] = [10107, 13435, 10058];
/// The "node is shutting down" subset of the recovering codes.
const SHUTDOWN_CODES: [i32; 2] = [11600, 91];

/// A server reply saying the proxy is wrong about the server's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateChangeError {
    /// The server is not (or no longer) a writable primary.
    NotWritablePrimary,
    /// The server is recovering (stepping down, starting up, ...).
    NodeIsRecovering,
    /// The server is shutting down: a recovering error that also invalidates its sockets.
    ShuttingDown,
}

impl StateChangeError {
    /// Shutdown errors clear the pool whatever the server version.
    pub fn is_shutdown(self) -> bool {
        self == Self::ShuttingDown
    }

    pub fn is_recovering(self) -> bool {
        matches!(self, Self::NodeIsRecovering | Self::ShuttingDown)
    }
}

/// Classifies an error reply (or write concern error) by its code, falling back to the
/// legacy message substrings only when the reply carries no code at all.
pub fn classify_error(code: Option<i32>, errmsg: &str) -> Option<StateChangeError> {
    match code {
        Some(code) if SHUTDOWN_CODES.contains(&code) => Some(StateChangeError::ShuttingDown),
        Some(code) if RECOVERING_CODES.contains(&code) => Some(StateChangeError::NodeIsRecovering),
        Some(code) if NOT_WRITABLE_PRIMARY_CODES.contains(&code) => {
            Some(StateChangeError::NotWritablePrimary)
        }
        Some(_) => None,
        None if errmsg.contains("node is recovering") || errmsg.contains("not master or secondary") => {
            Some(StateChangeError::NodeIsRecovering)
        }
        None if errmsg.contains("not master") => Some(StateChangeError::NotWritablePrimary),
        None => None,
    }
}

/// When, relative to the connection handshake, an application error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakePhase {
    /// While establishing a connection: TCP/TLS connect, hello, or authentication.
    BeforeHandshake,
    /// On an established connection, after check-out.
    AfterHandshake,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum AppErrorKind {
    /// A network error; `timeout` for a network timeout.
    Network { timeout: bool },
    /// DNS resolution failed while connecting. Never a sign of server overload, so unlike
    /// other connection-establishment network errors it marks the server Unknown.
    Resolve,
    /// Authentication failed during connection establishment.
    Auth,
    /// An error reply (`ok: 0`) or a write concern error from the server.
    Command(CommandError),
}

/// The SDAM-relevant part of a server error reply.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandError {
    pub code: Option<i32>,
    pub errmsg: String,
    pub topology_version: Option<TopologyVersion>,
}

impl CommandError {
    /// Extracts the error SDAM must look at from a command reply: the top-level error of an
    /// `ok: 0` reply, else the `writeConcernError`. `writeErrors` are never inspected (spec),
    /// and a reply without either gives `None`.
    pub fn from_reply(reply: &Document) -> Option<Self> {
        let ok = reply.get("ok").and_then(|ok| match ok {
            Bson::Boolean(b) => Some(*b),
            Bson::Double(d) => Some(*d != 0.0),
            other => int_value(other).map(|i| i != 0),
        });
        let source = if ok == Some(false) {
            reply
        } else {
            match reply.get("writeConcernError") {
                Some(Bson::Document(wce)) => wce,
                _ => return None,
            }
        };
        Some(Self {
            code: source
                .get("code")
                .and_then(int_value)
                .and_then(|c| i32::try_from(c).ok()),
            errmsg: match source.get("errmsg") {
                Some(Bson::String(s)) => s.clone(),
                _ => String::new(),
            },
            // A write concern error's topologyVersion sits at the top of the reply.
            topology_version: source
                .get("topologyVersion")
                .or_else(|| reply.get("topologyVersion"))
                .and_then(topology_version_from),
        })
    }

    pub fn state_change(&self) -> Option<StateChangeError> {
        classify_error(self.code, &self.errmsg)
    }
}

/// An error from an application operation (a proxied client request or a pool connect).
#[derive(Debug, Clone, PartialEq)]
pub struct AppError {
    /// The generation of the connection it happened on; for errors while connecting, the
    /// pool's generation when the attempt started.
    pub generation: u32,
    pub phase: HandshakePhase,
    pub kind: AppErrorKind,
}

/// What the topology decided about an application error.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorAction {
    /// The error was from an old pool generation, or older than the server's current
    /// topologyVersion, and changed nothing.
    pub ignored_as_stale: bool,
    /// The server was marked Unknown.
    pub mark_unknown: bool,
    /// The pool must be cleared (its new generation is in `update.pools_to_clear`).
    pub clear_pool: bool,
    /// Ask the server's monitor to check it now.
    pub request_immediate_check: bool,
    /// Cancel the monitor's in-progress check (network errors).
    pub cancel_monitor_check: bool,
    /// The resulting topology changes and events.
    pub update: super::TopologyUpdate,
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    #[test]
    fn classification_by_code_then_message() {
        use StateChangeError::*;
        let cases: [(Option<i32>, &str, Option<StateChangeError>); 16] = [
            (Some(10107), "", Some(NotWritablePrimary)),
            (Some(13435), "", Some(NotWritablePrimary)),
            (Some(10058), "", Some(NotWritablePrimary)),
            (Some(11600), "", Some(ShuttingDown)),
            (Some(91), "", Some(ShuttingDown)),
            (Some(11602), "", Some(NodeIsRecovering)),
            (Some(13436), "", Some(NodeIsRecovering)),
            (Some(189), "", Some(NodeIsRecovering)),
            (Some(1), "not master", None),
            (Some(1), "node is recovering", None),
            (None, "not master", Some(NotWritablePrimary)),
            (None, "xx not master or secondary", Some(NodeIsRecovering)),
            (None, "node is recovering now", Some(NodeIsRecovering)),
            (None, "not primary", None),
            (None, "", None),
            (Some(0), "not master", None),
        ];
        for (code, msg, want) in cases {
            assert_eq!(classify_error(code, msg), want, "{code:?} {msg:?}");
        }
        assert!(ShuttingDown.is_shutdown() && ShuttingDown.is_recovering());
        assert!(!NotWritablePrimary.is_recovering());
    }

    #[test]
    fn command_error_from_reply() {
        let oid = bson::oid::ObjectId::from_bytes([2; 12]);
        let tv = doc! {"processId": oid, "counter": 3_i64};
        let cases = [
            (doc! {"ok": 1}, None),
            (
                doc! {"ok": 1, "writeErrors": [{"code": 10107, "errmsg": "x"}]},
                None,
            ),
            (
                doc! {"ok": 0, "code": 10107, "errmsg": "np"},
                Some((Some(10107), "np", false)),
            ),
            (
                doc! {"ok": 0.0, "errmsg": "not master"},
                Some((None, "not master", false)),
            ),
            (
                doc! {"ok": 0, "code": 91, "errmsg": "s", "topologyVersion": tv.clone()},
                Some((Some(91), "s", true)),
            ),
            (
                doc! {"ok": 1, "writeConcernError": {"code": 11602, "errmsg": "w"},
                "topologyVersion": tv},
                Some((Some(11602), "w", true)),
            ),
            (doc! {"ok": 0, "code": "bad"}, Some((None, "", false))),
        ];
        for (reply, want) in cases {
            let got = CommandError::from_reply(&reply);
            let got = got
                .as_ref()
                .map(|e| (e.code, e.errmsg.as_str(), e.topology_version.is_some()));
            assert_eq!(got, want, "{reply}");
        }
    }
}
