//! Server discovery and monitoring (SDAM) and server selection for the upstream deployment,
//! as pure state machines: no I/O, no tasks, no clocks. Time comes in as a monotonic
//! [`std::time::Duration`] since an epoch the caller fixes once (e.g. `epoch.elapsed()`).
//!
//! # How the proxy drives it
//!
//! One [`TopologyDescription`] per upstream, behind the lock that serialises updates (the spec
//! wants one outcome processed at a time, and pool clears synchronised with it):
//!
//! 1. [`TopologyDescription::new`] from the settings. Act on the returned [`TopologyUpdate`]:
//!    start a monitor and create a pool for every `added` address.
//! 2. Each monitor check: on success feed the RTT to the server's [`RttEstimator`], build
//!    [`ServerDescription::from_hello`] with the average and `now`, and call
//!    [`TopologyDescription::update`] if the result is not Unknown. On failure (network error,
//!    `ok: 0`, or an Unknown from `from_hello`) reset the estimator and call
//!    [`TopologyDescription::handle_monitor_error`].
//! 3. Each application error (connect failure, network error, error reply or write concern
//!    error seen by the request path, see [`CommandError::from_reply`] and [`classify_error`]):
//!    call [`TopologyDescription::handle_application_error`] with the connection's generation
//!    and wire version, then act on the [`ErrorAction`] and its `update`.
//! 4. Every update: stop monitors and close pools of `removed`, clear `pools_to_clear` (the
//!    topology's pool generation leads, the pool follows), mark `pools_ready` ready, start
//!    `added`, wake monitors in `immediate_checks`, publish `events`, and wake requests waiting
//!    in server selection.
//! 5. Each request: [`select`] (or [`select_with_deprioritized`] on a retry) gives the servers
//!    in the latency window; [`choose_in_window`] picks one by in-flight operation counts. An
//!    empty list means: request immediate checks, wait for a topology change or the timeout.
//!
//! Layout: `description.rs` (server types and descriptions), `hello.rs` (parsing replies),
//! `topology.rs` + `topology/` (the state machine, replica-set rules, application errors,
//! events), `errors.rs` (error classification), `read_pref.rs`, `selection.rs`, `rtt.rs`.

mod description;
mod errors;
mod hello;
mod read_pref;
mod rtt;
mod selection;
mod topology;

pub use self::description::{
    compare_topology_versions, ServerDescription, ServerType, TopologyVersion, UnknownServerType,
    CLIENT_MAX_WIRE_VERSION, CLIENT_MIN_WIRE_VERSION, DEFAULT_MAX_BSON_OBJECT_SIZE,
    DEFAULT_MAX_MESSAGE_SIZE_BYTES, DEFAULT_MAX_WRITE_BATCH_SIZE,
};
pub use self::errors::{
    classify_error, AppError, AppErrorKind, CommandError, ErrorAction, HandshakePhase, StateChangeError,
};
pub use self::read_pref::{
    ReadMode, ReadPrefError, ReadPreference, TagSet, IDLE_WRITE_PERIOD, SMALLEST_MAX_STALENESS,
};
pub use self::rtt::RttEstimator;
pub use self::selection::{
    choose_in_window, in_latency_window, select, select_with_deprioritized, suitable_servers,
    SelectionCriteria, SelectionError,
};
pub use self::topology::{
    PoolClear, PrimaryChange, SdamEvent, SettingsError, TopologyDescription, TopologySettings,
    TopologySnapshot, TopologyType, TopologyUpdate, UnknownTopologyType, DEFAULT_HEARTBEAT_FREQUENCY,
    DEFAULT_LOCAL_THRESHOLD, MIN_HEARTBEAT_FREQUENCY,
};

#[cfg(test)]
mod proptests;
