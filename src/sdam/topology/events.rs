//! What one topology change means for the caller: the [`TopologyUpdate`] with its SDAM
//! monitoring events, computed by diffing the description before and after the change.
//!
//! Event order follows the SDAM monitoring spec tests: changed servers, closed servers, the
//! topology change, then opened servers.

use super::TopologyDescription;
use super::TopologyType;
use crate::address::ServerAddress;
use crate::sdam::description::ServerDescription;

/// The SDAM monitoring events (the heartbeat events belong to the monitor, not here).
#[derive(Debug, Clone, PartialEq)]
pub enum SdamEvent {
    TopologyOpening,
    TopologyDescriptionChanged {
        previous: Box<TopologySnapshot>,
        new: Box<TopologySnapshot>,
    },
    ServerOpening {
        address: ServerAddress,
    },
    ServerDescriptionChanged {
        address: ServerAddress,
        previous: Box<ServerDescription>,
        new: Box<ServerDescription>,
    },
    ServerClosed {
        address: ServerAddress,
    },
    TopologyClosed,
}

/// The public face of a topology description inside an event.
#[derive(Debug, Clone, PartialEq)]
pub struct TopologySnapshot {
    pub topology_type: TopologyType,
    pub set_name: Option<String>,
    /// Ordered by address.
    pub servers: Vec<ServerDescription>,
}

impl TopologySnapshot {
    fn of(td: &TopologyDescription) -> Self {
        Self {
            topology_type: td.topology_type,
            set_name: td.set_name.clone(),
            servers: td.servers.values().cloned().collect(),
        }
    }
}

/// The primary before and after an update, when they differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryChange {
    pub old: Option<ServerAddress>,
    pub new: Option<ServerAddress>,
}

/// A pool the caller must clear, bumping it to `new_generation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolClear {
    pub address: ServerAddress,
    pub new_generation: u32,
    /// Also interrupt checked-out connections (a monitor's network timeout).
    pub interrupt_in_use: bool,
}

/// Everything an update asks the caller to do, in the order it should be done: stop what
/// was removed, clear and ready pools, start what was added, request checks, publish events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopologyUpdate {
    /// New servers: start a monitor and create a pool for each.
    pub added: Vec<ServerAddress>,
    /// Servers gone from the topology: stop their monitors and close their pools.
    pub removed: Vec<ServerAddress>,
    pub primary_changed: Option<PrimaryChange>,
    pub pools_to_clear: Vec<PoolClear>,
    /// Pools to mark ready (CMAP) after a successful check.
    pub pools_ready: Vec<ServerAddress>,
    /// Servers whose monitor should check now rather than wait for the next heartbeat.
    pub immediate_checks: Vec<ServerAddress>,
    pub events: Vec<SdamEvent>,
}

impl TopologyUpdate {
    /// True when nothing changed and nothing needs doing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Appends a later update to this one (for callers batching several changes).
    pub fn merge(&mut self, other: TopologyUpdate) {
        self.added.extend(other.added);
        self.removed.extend(other.removed);
        if let Some(change) = other.primary_changed {
            self.primary_changed = Some(match self.primary_changed.take() {
                Some(first) => PrimaryChange {
                    old: first.old,
                    new: change.new,
                },
                None => change,
            });
        }
        self.pools_to_clear.extend(other.pools_to_clear);
        self.pools_ready.extend(other.pools_ready);
        self.immediate_checks.extend(other.immediate_checks);
        self.events.extend(other.events);
    }
}

/// Records in `update` the servers added/removed and the events between two descriptions.
pub(super) fn diff(before: &TopologyDescription, after: &TopologyDescription, update: &mut TopologyUpdate) {
    let mut servers_changed = false;
    for (address, new) in &after.servers {
        if let Some(old) = before.servers.get(address) {
            if !old.sdam_eq(new) {
                servers_changed = true;
                update.events.push(SdamEvent::ServerDescriptionChanged {
                    address: address.clone(),
                    previous: Box::new(old.clone()),
                    new: Box::new(new.clone()),
                });
            }
        }
    }
    let removed: Vec<_> = before
        .servers
        .keys()
        .filter(|a| !after.servers.contains_key(*a))
        .cloned()
        .collect();
    let added: Vec<_> = after
        .servers
        .keys()
        .filter(|a| !before.servers.contains_key(*a))
        .cloned()
        .collect();
    for address in &removed {
        update.events.push(SdamEvent::ServerClosed {
            address: address.clone(),
        });
    }
    let topology_changed = servers_changed
        || !removed.is_empty()
        || !added.is_empty()
        || before.topology_type != after.topology_type
        || before.set_name != after.set_name
        || before.max_set_version != after.max_set_version
        || before.max_election_id != after.max_election_id
        || before.compatibility_error != after.compatibility_error
        || before.logical_session_timeout_minutes != after.logical_session_timeout_minutes;
    if topology_changed {
        update.events.push(SdamEvent::TopologyDescriptionChanged {
            previous: Box::new(TopologySnapshot::of(before)),
            new: Box::new(TopologySnapshot::of(after)),
        });
    }
    for address in &added {
        update.events.push(SdamEvent::ServerOpening {
            address: address.clone(),
        });
    }
    update.removed.extend(removed);
    update.added.extend(added);
}
