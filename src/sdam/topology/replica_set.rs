//! The TopologyType table for every type but Single and LoadBalanced, with the replica-set
//! subroutines of the SDAM spec (updateRSFromPrimary, updateRSWithoutPrimary,
//! updateRSWithPrimaryFromMember, checkIfHasPrimary) and stale-primary detection.

use std::cmp::Ordering;

use super::{TopologyDescription, TopologyType, TopologyUpdate};
use crate::address::ServerAddress;
use crate::sdam::description::{ServerDescription, ServerType};

/// From this wire version (MongoDB 6.0) electionId takes precedence over setVersion.
const ELECTION_ID_FIRST_WIRE_VERSION: i32 = 17;
/// Primaries older than this (MongoDB 4.2) close their sockets when they step down.
const KEEPS_SOCKETS_ON_STEPDOWN_WIRE_VERSION: i32 = 8;

const STALE_PRIMARY: &str = "primary marked stale due to electionId/setVersion mismatch";
const NEWER_PRIMARY: &str = "primary marked stale due to discovery of newer primary";

impl TopologyDescription {
    /// Stores `sd` and runs the TopologyType table for a non-Single topology.
    pub(super) fn apply_discovered(&mut self, sd: ServerDescription, update: &mut TopologyUpdate) {
        use ServerType as S;
        use TopologyType as T;
        self.servers.insert(sd.address.clone(), sd.clone());
        match (self.topology_type, sd.server_type) {
            (T::ReplicaSetWithPrimary, S::Unknown | S::PossiblePrimary | S::RsGhost) => {
                self.check_if_has_primary();
            }
            (_, S::Unknown | S::PossiblePrimary | S::LoadBalancer) => {}
            (T::Unknown, S::RsGhost) | (T::ReplicaSetNoPrimary, S::RsGhost) => {}
            (T::Unknown, S::Standalone) => self.update_unknown_with_standalone(&sd.address),
            (T::Unknown, S::Mongos) => self.topology_type = T::Sharded,
            (T::Sharded, S::Mongos) => {}
            (T::Sharded, _) => self.remove_server(&sd.address),
            (T::ReplicaSetNoPrimary | T::ReplicaSetWithPrimary, S::Standalone | S::Mongos) => {
                self.remove_server(&sd.address);
                if self.topology_type == T::ReplicaSetWithPrimary {
                    self.check_if_has_primary();
                }
            }
            (_, S::RsPrimary) => {
                self.topology_type = T::ReplicaSetWithPrimary;
                self.update_rs_from_primary(&sd, update);
            }
            (T::Unknown | T::ReplicaSetNoPrimary, _) => {
                self.topology_type = T::ReplicaSetNoPrimary;
                self.update_rs_without_primary(&sd);
            }
            (T::ReplicaSetWithPrimary, _) => self.update_rs_with_primary_from_member(&sd),
            (T::Single | T::LoadBalanced, _) => {}
        }
    }

    fn update_unknown_with_standalone(&mut self, address: &ServerAddress) {
        if self.settings.seeds.len() == 1 {
            self.topology_type = TopologyType::Single;
        } else {
            self.remove_server(address);
        }
    }

    /// Adopts the set name if none is known yet; false when `sd` belongs to another set.
    fn accept_set_name(&mut self, sd: &ServerDescription) -> bool {
        match &self.set_name {
            None => {
                self.set_name = sd.set_name.clone();
                true
            }
            Some(name) => sd.set_name.as_ref() == Some(name),
        }
    }

    fn add_members(&mut self, sd: &ServerDescription) {
        for member in sd.members() {
            self.add_server(member.clone());
        }
    }

    fn update_rs_without_primary(&mut self, sd: &ServerDescription) {
        if !self.accept_set_name(sd) {
            self.remove_server(&sd.address);
            return;
        }
        self.add_members(sd);
        // The spec's PossiblePrimary hint only orders single-threaded scans; skipped here.
        if sd.me.as_ref().is_some_and(|me| *me != sd.address) {
            self.remove_server(&sd.address);
        }
    }

    fn update_rs_with_primary_from_member(&mut self, sd: &ServerDescription) {
        let wrong_set = self.set_name != sd.set_name;
        let wrong_me = sd.me.as_ref().is_some_and(|me| *me != sd.address);
        if wrong_set || wrong_me {
            self.remove_server(&sd.address);
        }
        self.check_if_has_primary();
    }

    fn update_rs_from_primary(&mut self, sd: &ServerDescription, update: &mut TopologyUpdate) {
        if !self.accept_set_name(sd) {
            self.remove_server(&sd.address);
            self.check_if_has_primary();
            return;
        }
        if self.is_stale_primary(sd) {
            let unknown = ServerDescription::unknown(sd.address.clone(), Some(STALE_PRIMARY.into()));
            self.servers.insert(sd.address.clone(), unknown);
            self.check_if_has_primary();
            return;
        }
        self.invalidate_other_primaries(&sd.address, update);
        self.add_members(sd);
        let members: Vec<_> = sd.members().cloned().collect();
        let gone: Vec<_> = self
            .servers
            .keys()
            .filter(|a| !members.contains(a))
            .cloned()
            .collect();
        for address in &gone {
            self.remove_server(address);
        }
        self.check_if_has_primary();
    }

    /// Any other RSPrimary is now a former primary: Unknown, checked at once, and its pool
    /// cleared if it predates 4.2 (those close all sockets on stepdown).
    fn invalidate_other_primaries(&mut self, new_primary: &ServerAddress, update: &mut TopologyUpdate) {
        let old: Vec<_> = self
            .servers
            .values()
            .filter(|s| s.server_type == ServerType::RsPrimary && s.address != *new_primary)
            .map(|s| (s.address.clone(), s.max_wire_version))
            .collect();
        for (address, wire) in old {
            let unknown = ServerDescription::unknown(address.clone(), Some(NEWER_PRIMARY.into()));
            self.servers.insert(address.clone(), unknown);
            update.immediate_checks.push(address.clone());
            if wire.unwrap_or(0) < KEEPS_SOCKETS_ON_STEPDOWN_WIRE_VERSION {
                self.clear_pool(&address, false, update);
            }
        }
    }

    /// Compares (electionId, setVersion) with the largest seen, updating the maxima unless
    /// `sd` is stale. 6.0+ primaries order by electionId first; older ones by setVersion.
    fn is_stale_primary(&mut self, sd: &ServerDescription) -> bool {
        if sd.max_wire_version.unwrap_or(0) >= ELECTION_ID_FIRST_WIRE_VERSION {
            let order = sd
                .election_id
                .cmp(&self.max_election_id)
                .then_with(|| sd.set_version.cmp(&self.max_set_version));
            if order == Ordering::Less {
                return true;
            }
            self.max_election_id = sd.election_id;
            self.max_set_version = sd.set_version;
            return false;
        }
        if let (Some(sv), Some(eid)) = (sd.set_version, sd.election_id) {
            if let (Some(max_sv), Some(max_eid)) = (self.max_set_version, self.max_election_id) {
                if max_sv > sv || (max_sv == sv && max_eid > eid) {
                    return true;
                }
            }
            self.max_election_id = Some(eid);
        }
        if let Some(sv) = sd.set_version {
            if self.max_set_version.is_none_or(|max| sv > max) {
                self.max_set_version = Some(sv);
            }
        }
        false
    }

    fn check_if_has_primary(&mut self) {
        self.topology_type = if self.primary().is_some() {
            TopologyType::ReplicaSetWithPrimary
        } else {
            TopologyType::ReplicaSetNoPrimary
        };
    }
}
