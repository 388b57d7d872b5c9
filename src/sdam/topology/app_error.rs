//! Application errors (SDAM "Error handling"): stale-error detection by pool generation and
//! topologyVersion, then marking servers Unknown and clearing pools per the error's class.
//!
//! Network errors and timeouts while *establishing* a connection change nothing: under the
//! current CMAP/SDAM rules (DRIVERS-3218, connection-rate-limiter backpressure) they carry the
//! SystemOverloadedError label and must neither mark the server Unknown nor clear its pool;
//! the monitor notices a server that is really down. DNS failures are the stated exception.

use std::cmp::Ordering;

use super::{TopologyDescription, TopologyType, TopologyUpdate};
use crate::address::ServerAddress;
use crate::sdam::description::{compare_topology_versions, ServerDescription};
use crate::sdam::errors::{AppError, AppErrorKind, CommandError, ErrorAction, HandshakePhase};

/// From this wire version (MongoDB 4.2) state-change errors keep the pool.
const KEEPS_POOL_ON_STATE_CHANGE_WIRE_VERSION: i32 = 8;

impl TopologyDescription {
    /// Applies an application error seen on a connection to `address`.
    ///
    /// `max_wire_version` is that connection's (from its handshake); `None` is treated as a
    /// pre-4.2 server. Apply `action.update` like any other update, and clear the pool when
    /// `action.clear_pool` says so, before the next check-out.
    pub fn handle_application_error(
        &mut self,
        address: &ServerAddress,
        error: &AppError,
        max_wire_version: Option<i32>,
    ) -> ErrorAction {
        let stale = ErrorAction {
            ignored_as_stale: true,
            ..ErrorAction::default()
        };
        if self.pool_generations.get(address) != Some(&error.generation) {
            return stale;
        }
        let load_balanced = self.topology_type == TopologyType::LoadBalanced;
        match (&error.kind, error.phase) {
            (AppErrorKind::Command(cmd), _) => self.state_change(address, cmd, max_wire_version),
            (AppErrorKind::Network { .. }, HandshakePhase::BeforeHandshake) => ErrorAction::default(),
            (AppErrorKind::Network { timeout: true }, HandshakePhase::AfterHandshake) => {
                ErrorAction::default()
            }
            (AppErrorKind::Network { timeout: false }, HandshakePhase::AfterHandshake) => {
                let msg = "network error on an established connection";
                self.unknown_and_clear(address, msg, !load_balanced, true)
            }
            (AppErrorKind::Resolve, _) if load_balanced => ErrorAction::default(),
            (AppErrorKind::Resolve, _) => {
                self.unknown_and_clear(address, "DNS resolution failed", true, true)
            }
            (AppErrorKind::Auth, _) => {
                self.unknown_and_clear(address, "authentication failed", !load_balanced, false)
            }
        }
    }

    /// "not writable primary" / "node is recovering" handling.
    fn state_change(
        &mut self,
        address: &ServerAddress,
        cmd: &CommandError,
        max_wire_version: Option<i32>,
    ) -> ErrorAction {
        let Some(kind) = cmd.state_change() else {
            return ErrorAction::default();
        };
        let current = self
            .servers
            .get(address)
            .and_then(|s| s.topology_version.as_ref());
        if compare_topology_versions(current, cmd.topology_version.as_ref()) != Ordering::Less {
            return ErrorAction {
                ignored_as_stale: true,
                ..ErrorAction::default()
            };
        }
        let before = self.clone();
        let mut update = TopologyUpdate::default();
        let mut action = ErrorAction {
            request_immediate_check: true,
            ..ErrorAction::default()
        };
        if self.topology_type != TopologyType::LoadBalanced {
            let msg = format!("{kind:?}: {} (code {:?})", cmd.errmsg, cmd.code);
            let mut sd = ServerDescription::unknown(address.clone(), Some(msg));
            sd.topology_version = cmd.topology_version;
            action.mark_unknown = self.apply(sd, &mut update);
        }
        let old_server = max_wire_version.unwrap_or(0) < KEEPS_POOL_ON_STATE_CHANGE_WIRE_VERSION;
        if kind.is_shutdown() || old_server {
            self.clear_pool(address, false, &mut update);
            action.clear_pool = true;
        }
        update.immediate_checks.push(address.clone());
        action.update = self.finish(&before, update);
        action
    }

    fn unknown_and_clear(
        &mut self,
        address: &ServerAddress,
        msg: &str,
        mark_unknown: bool,
        cancel_check: bool,
    ) -> ErrorAction {
        let before = self.clone();
        let mut update = TopologyUpdate::default();
        let mut action = ErrorAction {
            clear_pool: true,
            cancel_monitor_check: cancel_check,
            ..ErrorAction::default()
        };
        if mark_unknown {
            let sd = ServerDescription::unknown(address.clone(), Some(msg.to_owned()));
            action.mark_unknown = self.apply(sd, &mut update);
        }
        self.clear_pool(address, false, &mut update);
        action.update = self.finish(&before, update);
        action
    }
}
