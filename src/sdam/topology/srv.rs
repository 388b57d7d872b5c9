//! Rescans of a `mongodb+srv` upstream's SRV records (Polling SRV Records for mongos
//! Discovery spec), which change the host list from outside SDAM's own rules.

use super::{TopologyDescription, TopologyType, TopologyUpdate};
use crate::address::ServerAddress;

impl TopologyDescription {
    /// Whether SRV records may be rescanned: only while the topology is Sharded or
    /// Unknown, never for a replica set, a single server or a load balancer.
    pub fn srv_pollable(&self) -> bool {
        matches!(self.topology_type, TopologyType::Sharded | TopologyType::Unknown)
    }

    /// Removes `remove` and adds `add` as Unknown servers, leaving every other server
    /// untouched (the spec forbids removing and re-adding them). Outside a pollable
    /// topology it changes nothing.
    pub fn apply_srv_rescan(&mut self, add: &[ServerAddress], remove: &[ServerAddress]) -> TopologyUpdate {
        if !self.srv_pollable() {
            return TopologyUpdate::default();
        }
        let before = self.clone();
        for address in remove {
            self.remove_server(address);
        }
        for address in add {
            self.add_server(address.clone());
        }
        self.finish(&before, TopologyUpdate::default())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::TopologySettings;
    use super::*;
    use crate::sdam::ServerDescription;

    fn a(s: &str) -> ServerAddress {
        ServerAddress::parse(s).unwrap()
    }

    fn mongos(address: &str) -> ServerDescription {
        let hello = bson::doc! {
            "isWritablePrimary": true, "msg": "isdbgrid", "maxWireVersion": 21, "minWireVersion": 0, "ok": 1,
        };
        ServerDescription::from_hello(a(address), &hello, Duration::from_millis(1), Duration::ZERO)
    }

    #[test]
    fn a_rescan_changes_a_sharded_topology_but_not_a_replica_set() {
        let settings = TopologySettings::new(vec![a("m1:1"), a("m2:2")]);
        let (mut td, _) = TopologyDescription::new(settings).unwrap();
        td.update(mongos("m1:1"));
        assert_eq!(td.topology_type(), TopologyType::Sharded);
        let gen_m1 = td.pool_generation(&a("m1:1"));
        let update = td.apply_srv_rescan(&[a("m3:3")], &[a("m2:2")]);
        assert_eq!(update.added, [a("m3:3")]);
        assert_eq!(update.removed, [a("m2:2")]);
        let hosts: Vec<_> = td.servers().map(|s| s.address.to_string()).collect();
        assert_eq!(hosts, ["m1:1", "m3:3"]);
        assert_eq!(
            td.server(&a("m1:1")).unwrap().server_type.as_str(),
            "Mongos",
            "kept untouched"
        );
        assert_eq!(td.pool_generation(&a("m1:1")), gen_m1);

        let mut rs = TopologySettings::new(vec![a("r1:1")]);
        rs.replica_set = Some("rs".into());
        let (mut td, _) = TopologyDescription::new(rs).unwrap();
        assert!(!td.srv_pollable());
        let update = td.apply_srv_rescan(&[a("r2:2")], &[a("r1:1")]);
        assert!(update.added.is_empty() && update.removed.is_empty());
        assert_eq!(td.servers().count(), 1);
    }
}
