//! The topology state machine: [`TopologyDescription::update`] applies one server description
//! per the SDAM spec and reports, as a [`TopologyUpdate`], everything the caller must act on.
//!
//! Layout: this file holds the settings, the description and the update entry points;
//! `topology/replica_set.rs` the replica-set subroutines (updateRSFromPrimary and friends);
//! `topology/app_error.rs` application-error handling with pool generations;
//! `topology/events.rs` the diff that turns two descriptions into SDAM events.

mod app_error;
mod events;
mod replica_set;
mod srv;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bson::oid::ObjectId;

pub use self::events::{PoolClear, PrimaryChange, SdamEvent, TopologySnapshot, TopologyUpdate};
use super::description::{compare_topology_versions, ServerDescription, ServerType};
use crate::address::ServerAddress;

/// The spec's floor for heartbeatFrequencyMS (minHeartbeatFrequencyMS).
pub const MIN_HEARTBEAT_FREQUENCY: Duration = Duration::from_millis(500);
/// Default time between checks of one server.
pub const DEFAULT_HEARTBEAT_FREQUENCY: Duration = Duration::from_secs(10);
/// Default width of the latency window (localThresholdMS).
pub const DEFAULT_LOCAL_THRESHOLD: Duration = Duration::from_millis(15);

/// The SDAM topology types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopologyType {
    Unknown,
    Single,
    ReplicaSetNoPrimary,
    ReplicaSetWithPrimary,
    Sharded,
    LoadBalanced,
}

impl TopologyType {
    /// The spec's name for the type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "Unknown",
            Self::Single => "Single",
            Self::ReplicaSetNoPrimary => "ReplicaSetNoPrimary",
            Self::ReplicaSetWithPrimary => "ReplicaSetWithPrimary",
            Self::Sharded => "Sharded",
            Self::LoadBalanced => "LoadBalanced",
        }
    }

    pub fn is_replica_set(self) -> bool {
        matches!(self, Self::ReplicaSetNoPrimary | Self::ReplicaSetWithPrimary)
    }
}

impl fmt::Display for TopologyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no topology type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown topology type {0:?}")]
pub struct UnknownTopologyType(pub String);

impl FromStr for TopologyType {
    type Err = UnknownTopologyType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use TopologyType::*;
        [
            Unknown,
            Single,
            ReplicaSetNoPrimary,
            ReplicaSetWithPrimary,
            Sharded,
            LoadBalanced,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| UnknownTopologyType(s.to_owned()))
    }
}

/// What the proxy was configured with (the SDAM-relevant part of the upstream URI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologySettings {
    pub seeds: Vec<ServerAddress>,
    /// The `replicaSet` option: the required set name.
    pub replica_set: Option<String>,
    /// `directConnection=true`: talk to the single seed whatever it is.
    pub direct_connection: bool,
    pub load_balanced: bool,
    pub local_threshold: Duration,
    pub heartbeat_frequency: Duration,
}

impl TopologySettings {
    /// Settings with the spec defaults for everything but the seeds.
    pub fn new(seeds: Vec<ServerAddress>) -> Self {
        Self {
            seeds,
            replica_set: None,
            direct_connection: false,
            load_balanced: false,
            local_threshold: DEFAULT_LOCAL_THRESHOLD,
            heartbeat_frequency: DEFAULT_HEARTBEAT_FREQUENCY,
        }
    }

    /// Enforces the spec's allowed configuration combinations; removes duplicate seeds.
    pub fn validate(mut self) -> Result<Self, SettingsError> {
        let mut seen = std::collections::BTreeSet::new();
        self.seeds.retain(|s| seen.insert(s.clone()));
        if self.seeds.is_empty() {
            return Err(SettingsError::NoSeeds);
        }
        if self.direct_connection && self.seeds.len() > 1 {
            return Err(SettingsError::DirectWithManySeeds);
        }
        if self.load_balanced {
            if self.direct_connection {
                return Err(SettingsError::LoadBalancedConflict("directConnection=true"));
            }
            if self.replica_set.is_some() {
                return Err(SettingsError::LoadBalancedConflict("replicaSet"));
            }
            if self.seeds.len() > 1 {
                return Err(SettingsError::LoadBalancedConflict("multiple hosts"));
            }
        }
        if self.heartbeat_frequency < MIN_HEARTBEAT_FREQUENCY {
            return Err(SettingsError::HeartbeatTooShort(self.heartbeat_frequency));
        }
        Ok(self)
    }
}

/// A configuration the SDAM spec forbids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("no seed addresses")]
    NoSeeds,
    #[error("directConnection=true cannot be used with multiple seeds")]
    DirectWithManySeeds,
    #[error("loadBalanced=true cannot be used with {0}")]
    LoadBalancedConflict(&'static str),
    #[error("heartbeatFrequencyMS must be at least 500ms, got {0:?}")]
    HeartbeatTooShort(Duration),
}

/// Everything the proxy knows about the upstream deployment, plus one pool generation per
/// server (the topology decides when pools are cleared; the pools follow).
#[derive(Debug, Clone, PartialEq)]
pub struct TopologyDescription {
    settings: TopologySettings,
    topology_type: TopologyType,
    set_name: Option<String>,
    max_set_version: Option<i64>,
    max_election_id: Option<ObjectId>,
    servers: BTreeMap<ServerAddress, ServerDescription>,
    pool_generations: BTreeMap<ServerAddress, u32>,
    compatibility_error: Option<String>,
    logical_session_timeout_minutes: Option<u32>,
}

impl TopologyDescription {
    /// The initial description for validated `settings`, and the update that announces it
    /// (topology opening, one server opening per seed, and in load-balanced mode the
    /// LoadBalancer description, which is never monitored).
    pub fn new(settings: TopologySettings) -> Result<(Self, TopologyUpdate), SettingsError> {
        let settings = settings.validate()?;
        let empty = Self::empty(settings.clone(), TopologyType::Unknown);
        let mut td = empty.clone();
        td.topology_type = if settings.load_balanced {
            TopologyType::LoadBalanced
        } else if settings.direct_connection {
            TopologyType::Single
        } else if settings.replica_set.is_some() {
            TopologyType::ReplicaSetNoPrimary
        } else {
            TopologyType::Unknown
        };
        td.set_name = settings.replica_set.clone();
        for seed in &settings.seeds {
            td.add_server(seed.clone());
        }
        td.recompute();
        let mut update = TopologyUpdate::default();
        update.events.push(SdamEvent::TopologyOpening);
        events::diff(&empty, &td, &mut update);
        if settings.load_balanced {
            let before = td.clone();
            for address in settings.seeds.iter() {
                let lb = ServerDescription::load_balancer(address.clone());
                td.servers.insert(address.clone(), lb);
                update.pools_ready.push(address.clone());
            }
            td.recompute();
            events::diff(&before, &td, &mut update);
        }
        Ok((td, update))
    }

    /// A description holding exactly `servers`, without running SDAM on them: for tools and
    /// tests that need a fixed topology (the server-selection spec tests build theirs so).
    pub fn from_servers(
        settings: TopologySettings,
        topology_type: TopologyType,
        servers: impl IntoIterator<Item = ServerDescription>,
    ) -> Self {
        let mut td = Self::empty(settings, topology_type);
        td.set_name = td.settings.replica_set.clone();
        for sd in servers {
            td.pool_generations.insert(sd.address.clone(), 0);
            td.servers.insert(sd.address.clone(), sd);
        }
        td.recompute();
        td
    }

    fn empty(settings: TopologySettings, topology_type: TopologyType) -> Self {
        Self {
            settings,
            topology_type,
            set_name: None,
            max_set_version: None,
            max_election_id: None,
            servers: BTreeMap::new(),
            pool_generations: BTreeMap::new(),
            compatibility_error: None,
            logical_session_timeout_minutes: None,
        }
    }

    pub fn settings(&self) -> &TopologySettings {
        &self.settings
    }
    pub fn topology_type(&self) -> TopologyType {
        self.topology_type
    }
    pub fn set_name(&self) -> Option<&str> {
        self.set_name.as_deref()
    }
    pub fn max_set_version(&self) -> Option<i64> {
        self.max_set_version
    }
    pub fn max_election_id(&self) -> Option<ObjectId> {
        self.max_election_id
    }
    /// All servers, ordered by address.
    pub fn servers(&self) -> impl Iterator<Item = &ServerDescription> {
        self.servers.values()
    }
    pub fn server(&self, address: &ServerAddress) -> Option<&ServerDescription> {
        self.servers.get(address)
    }
    /// The RSPrimary, if one is known.
    pub fn primary(&self) -> Option<&ServerDescription> {
        self.servers
            .values()
            .find(|s| s.server_type == ServerType::RsPrimary)
    }
    /// False while any server's wire range misses the proxy's; selection fails meanwhile.
    pub fn compatible(&self) -> bool {
        self.compatibility_error.is_none()
    }
    pub fn compatibility_error(&self) -> Option<&str> {
        self.compatibility_error.as_deref()
    }
    /// The smallest session timeout among data-bearing servers (None if any lacks one).
    pub fn logical_session_timeout_minutes(&self) -> Option<u32> {
        self.logical_session_timeout_minutes
    }
    /// The current pool generation for `address`; errors from older generations are stale.
    pub fn pool_generation(&self, address: &ServerAddress) -> Option<u32> {
        self.pool_generations.get(address).copied()
    }

    /// Applies a successful check's description (from [`ServerDescription::from_hello`]).
    /// Outcomes for servers no longer in the topology, or older than the current
    /// topologyVersion, are ignored and give an empty update.
    pub fn update(&mut self, sd: ServerDescription) -> TopologyUpdate {
        let address = sd.address.clone();
        let before = self.clone();
        let mut update = TopologyUpdate::default();
        if !self.apply(sd, &mut update) {
            return update;
        }
        if let Some(sd) = self.servers.get(&address) {
            let single = self.topology_type == TopologyType::Single;
            if sd.server_type.is_data_bearing() || (single && sd.server_type.is_available()) {
                update.pools_ready.push(address);
            }
        }
        self.finish(&before, update)
    }

    /// A failed check (network error, or a hello that was not ok): the server becomes
    /// Unknown and its pool is cleared. `timeout` asks the pool to interrupt in-use
    /// connections too, as the monitoring spec requires for network timeouts.
    pub fn handle_monitor_error(
        &mut self,
        address: &ServerAddress,
        error: impl Into<String>,
        timeout: bool,
    ) -> TopologyUpdate {
        let before = self.clone();
        let mut update = TopologyUpdate::default();
        let sd = ServerDescription::unknown(address.clone(), Some(error.into()));
        if !self.apply(sd, &mut update) {
            return update;
        }
        self.clear_pool(address, timeout, &mut update);
        self.finish(&before, update)
    }

    /// Shutting down: removes every server and announces the topology closed.
    pub fn close(&mut self) -> TopologyUpdate {
        let before = self.clone();
        self.servers.clear();
        self.pool_generations.clear();
        self.topology_type = TopologyType::Unknown;
        let mut update = self.finish(&before, TopologyUpdate::default());
        update.events.push(SdamEvent::TopologyClosed);
        update
    }

    /// Replaces the server's description and runs the TopologyType table. Returns false
    /// when the outcome must be ignored.
    fn apply(&mut self, sd: ServerDescription, update: &mut TopologyUpdate) -> bool {
        let Some(current) = self.servers.get(&sd.address) else {
            return false;
        };
        let order =
            compare_topology_versions(current.topology_version.as_ref(), sd.topology_version.as_ref());
        if order == Ordering::Greater {
            return false;
        }
        match self.topology_type {
            TopologyType::LoadBalanced => return false,
            TopologyType::Single => self.apply_single(sd),
            _ => self.apply_discovered(sd, update),
        }
        true
    }

    fn apply_single(&mut self, mut sd: ServerDescription) {
        if let Some(required) = &self.settings.replica_set {
            if sd.server_type.is_available() && sd.set_name.as_ref() != Some(required) {
                let error = format!(
                    "replica set name mismatch: required {required:?}, server reported {:?}",
                    sd.set_name
                );
                sd = ServerDescription::unknown(sd.address, Some(error));
            }
        }
        self.servers.insert(sd.address.clone(), sd);
    }

    fn clear_pool(&mut self, address: &ServerAddress, interrupt: bool, update: &mut TopologyUpdate) {
        if let Some(generation) = self.pool_generations.get_mut(address) {
            *generation = generation.wrapping_add(1);
            update.pools_to_clear.push(PoolClear {
                address: address.clone(),
                new_generation: *generation,
                interrupt_in_use: interrupt,
            });
        }
    }

    fn add_server(&mut self, address: ServerAddress) {
        if !self.servers.contains_key(&address) {
            self.pool_generations.insert(address.clone(), 0);
            self.servers
                .insert(address.clone(), ServerDescription::unknown(address, None));
        }
    }

    fn remove_server(&mut self, address: &ServerAddress) {
        self.servers.remove(address);
        self.pool_generations.remove(address);
    }

    /// Recomputes derived fields, then diffs against `before` into events.
    fn finish(&mut self, before: &Self, mut update: TopologyUpdate) -> TopologyUpdate {
        self.recompute();
        events::diff(before, self, &mut update);
        let old = before.primary().map(|s| s.address.clone());
        let new = self.primary().map(|s| s.address.clone());
        if old != new {
            update.primary_changed = Some(PrimaryChange { old, new });
        }
        update
    }

    fn recompute(&mut self) {
        self.compatibility_error = self
            .servers
            .values()
            .find_map(ServerDescription::compatibility_error);
        let mut data_bearing = self
            .servers
            .values()
            .filter(|s| s.server_type.is_data_bearing())
            .map(|s| s.logical_session_timeout_minutes)
            .peekable();
        self.logical_session_timeout_minutes = if data_bearing.peek().is_none() {
            None
        } else {
            data_bearing.min().flatten()
        };
    }
}

#[cfg(test)]
mod tests;
