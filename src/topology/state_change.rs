//! Server error codes that signal a replica-set state change (SDAM "error handling").

/// NotWritablePrimary family: the member is no longer (or not) the primary.
pub const NOT_WRITABLE_PRIMARY: &[i32] = &[10107, 13435, 10058];
/// NodeIsRecovering family.
pub const NODE_IS_RECOVERING: &[i32] = &[11600, 11602, 13436, 189, 91];
/// Codes meaning the server is shutting down: its pool must be cleared.
pub const SHUTDOWN: &[i32] = &[11600, 91];

pub fn is_state_change(code: i32) -> bool {
    NOT_WRITABLE_PRIMARY.contains(&code) || NODE_IS_RECOVERING.contains(&code)
}

pub fn is_shutdown(code: i32) -> bool {
    SHUTDOWN.contains(&code)
}
