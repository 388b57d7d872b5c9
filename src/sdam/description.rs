//! One server as SDAM sees it: its type and what its last hello reply said.
//!
//! Built from a hello reply by [`ServerDescription::from_hello`] (see `hello.rs`), or as a
//! placeholder by [`ServerDescription::unknown`]. Fields are public plain data: a description is
//! a value that the topology replaces wholesale, never edits in place.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bson::oid::ObjectId;

use crate::address::ServerAddress;

/// The oldest wire version the proxy speaks upstream (MongoDB 4.2).
pub const CLIENT_MIN_WIRE_VERSION: i32 = 8;
/// The newest wire version the proxy claims to understand.
pub const CLIENT_MAX_WIRE_VERSION: i32 = 29;

/// Used when a hello reply omits `maxMessageSizeBytes`.
pub const DEFAULT_MAX_MESSAGE_SIZE_BYTES: u32 = 48_000_000;
/// Used when a hello reply omits `maxBsonObjectSize`.
pub const DEFAULT_MAX_BSON_OBJECT_SIZE: u32 = 16 * 1024 * 1024;
/// Used when a hello reply omits `maxWriteBatchSize`.
pub const DEFAULT_MAX_WRITE_BATCH_SIZE: u32 = 100_000;

/// The SDAM server types.
///
/// `PossiblePrimary` exists so that spec files parse, but the topology never produces it: for
/// multi-threaded clients the spec makes it a synonym of `Unknown`, and producing it would emit
/// server-changed events the monitoring spec tests do not expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerType {
    Unknown,
    Standalone,
    Mongos,
    PossiblePrimary,
    RsPrimary,
    RsSecondary,
    RsArbiter,
    RsOther,
    RsGhost,
    LoadBalancer,
}

impl ServerType {
    /// The spec's name for the type, as used in events and test files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "Unknown",
            Self::Standalone => "Standalone",
            Self::Mongos => "Mongos",
            Self::PossiblePrimary => "PossiblePrimary",
            Self::RsPrimary => "RSPrimary",
            Self::RsSecondary => "RSSecondary",
            Self::RsArbiter => "RSArbiter",
            Self::RsOther => "RSOther",
            Self::RsGhost => "RSGhost",
            Self::LoadBalancer => "LoadBalancer",
        }
    }

    /// Servers that can answer application reads or writes.
    pub fn is_data_bearing(self) -> bool {
        matches!(
            self,
            Self::Standalone | Self::Mongos | Self::RsPrimary | Self::RsSecondary | Self::LoadBalancer
        )
    }

    /// Believed reachable (server selection's "available").
    pub fn is_available(self) -> bool {
        !matches!(self, Self::Unknown | Self::PossiblePrimary)
    }

    /// A replica-set member reporting its set name (primary, secondary, arbiter or other).
    pub fn is_rs_member(self) -> bool {
        matches!(
            self,
            Self::RsPrimary | Self::RsSecondary | Self::RsArbiter | Self::RsOther
        )
    }
}

impl fmt::Display for ServerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no server type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown server type {0:?}")]
pub struct UnknownServerType(pub String);

impl FromStr for ServerType {
    type Err = UnknownServerType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const ALL: [ServerType; 10] = [
            ServerType::Unknown,
            ServerType::Standalone,
            ServerType::Mongos,
            ServerType::PossiblePrimary,
            ServerType::RsPrimary,
            ServerType::RsSecondary,
            ServerType::RsArbiter,
            ServerType::RsOther,
            ServerType::RsGhost,
            ServerType::LoadBalancer,
        ];
        ALL.into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownServerType(s.to_owned()))
    }
}

/// The `topologyVersion` a 4.4+ server attaches to hello replies and state-change errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TopologyVersion {
    pub process_id: ObjectId,
    pub counter: i64,
}

/// Orders two topologyVersions per the SDAM spec. `Less` means `new` must be treated as more
/// recent than `current`: that is also the answer whenever either is missing or the process
/// ids differ (a restarted server starts counting again).
pub fn compare_topology_versions(
    current: Option<&TopologyVersion>,
    new: Option<&TopologyVersion>,
) -> Ordering {
    match (current, new) {
        (Some(cur), Some(new)) if cur.process_id == new.process_id => cur.counter.cmp(&new.counter),
        _ => Ordering::Less,
    }
}

/// The client's view of one server, from its most recent hello outcome.
///
/// Times are monotonic [`Duration`]s since an epoch the caller fixes once (for example
/// `epoch.elapsed()` for an `Instant` taken at startup); nothing here reads a clock.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerDescription {
    /// The address the proxy connects to (not the server's own `me`).
    pub address: ServerAddress,
    pub server_type: ServerType,
    /// Why the server is Unknown, when it is Unknown because something failed.
    pub error: Option<String>,
    /// The average round trip time, as computed by the monitor's [`super::RttEstimator`].
    /// `None` while Unknown.
    pub round_trip_time: Option<Duration>,
    /// When the hello outcome was recorded; `None` means "infinitely long ago".
    pub last_update_time: Option<Duration>,
    /// `lastWrite.lastWriteDate`, in milliseconds since the Unix epoch.
    pub last_write_date: Option<i64>,
    /// `None` until a hello was parsed (spec default 0 once a reply lacks the field).
    pub min_wire_version: Option<i32>,
    pub max_wire_version: Option<i32>,
    pub me: Option<ServerAddress>,
    pub hosts: BTreeSet<ServerAddress>,
    pub passives: BTreeSet<ServerAddress>,
    pub arbiters: BTreeSet<ServerAddress>,
    pub tags: BTreeMap<String, String>,
    pub set_name: Option<String>,
    pub set_version: Option<i64>,
    pub election_id: Option<ObjectId>,
    /// This server's opinion of who the primary is.
    pub primary: Option<ServerAddress>,
    pub logical_session_timeout_minutes: Option<u32>,
    pub topology_version: Option<TopologyVersion>,
    pub max_message_size_bytes: u32,
    pub max_bson_object_size: u32,
    pub max_write_batch_size: u32,
    /// Compressors the server agreed to (`compression` in the hello reply).
    pub compression: Vec<String>,
    /// Set by servers behind a load balancer.
    pub service_id: Option<ObjectId>,
}

impl ServerDescription {
    /// A default description of type Unknown, optionally recording why.
    pub fn unknown(address: ServerAddress, error: Option<String>) -> Self {
        Self {
            address,
            server_type: ServerType::Unknown,
            error,
            round_trip_time: None,
            last_update_time: None,
            last_write_date: None,
            min_wire_version: None,
            max_wire_version: None,
            me: None,
            hosts: BTreeSet::new(),
            passives: BTreeSet::new(),
            arbiters: BTreeSet::new(),
            tags: BTreeMap::new(),
            set_name: None,
            set_version: None,
            election_id: None,
            primary: None,
            logical_session_timeout_minutes: None,
            topology_version: None,
            max_message_size_bytes: DEFAULT_MAX_MESSAGE_SIZE_BYTES,
            max_bson_object_size: DEFAULT_MAX_BSON_OBJECT_SIZE,
            max_write_batch_size: DEFAULT_MAX_WRITE_BATCH_SIZE,
            compression: Vec::new(),
            service_id: None,
        }
    }

    /// The description a load-balanced topology holds for its one server: no hello is ever
    /// run against it by the monitor.
    pub fn load_balancer(address: ServerAddress) -> Self {
        Self {
            server_type: ServerType::LoadBalancer,
            ..Self::unknown(address, None)
        }
    }

    /// Every member this server reports: hosts, passives and arbiters.
    pub fn members(&self) -> impl Iterator<Item = &ServerAddress> {
        self.hosts
            .iter()
            .chain(self.passives.iter())
            .chain(self.arbiters.iter())
    }

    /// Server Description Equality from the SDAM spec: compares only the fields that decide
    /// whether a change is worth an event (not RTT, update time or lastWriteDate).
    pub fn sdam_eq(&self, other: &Self) -> bool {
        self.address == other.address
            && self.server_type == other.server_type
            && self.error == other.error
            && self.min_wire_version == other.min_wire_version
            && self.max_wire_version == other.max_wire_version
            && self.me == other.me
            && self.hosts == other.hosts
            && self.passives == other.passives
            && self.arbiters == other.arbiters
            && self.tags == other.tags
            && self.set_name == other.set_name
            && self.set_version == other.set_version
            && self.election_id == other.election_id
            && self.primary == other.primary
            && self.logical_session_timeout_minutes == other.logical_session_timeout_minutes
            && self.topology_version == other.topology_version
    }

    /// The wire-compatibility error for this server, if its range misses the proxy's.
    pub(crate) fn compatibility_error(&self) -> Option<String> {
        if !self.server_type.is_available() {
            return None;
        }
        if let Some(min) = self.min_wire_version {
            if min > CLIENT_MAX_WIRE_VERSION {
                return Some(format!(
                    "Server at {} requires wire version {min}, but this version of mongoplex \
                     only supports up to {CLIENT_MAX_WIRE_VERSION}.",
                    self.address
                ));
            }
        }
        if let Some(max) = self.max_wire_version {
            if max < CLIENT_MIN_WIRE_VERSION {
                return Some(format!(
                    "Server at {} reports wire version {max}, but this version of mongoplex \
                     requires at least {CLIENT_MIN_WIRE_VERSION} (MongoDB 4.2).",
                    self.address
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tv(pid: u8, counter: i64) -> TopologyVersion {
        let mut bytes = [0u8; 12];
        bytes[11] = pid;
        TopologyVersion {
            process_id: ObjectId::from_bytes(bytes),
            counter,
        }
    }

    #[test]
    fn topology_version_ordering() {
        let cases = [
            (None, None, Ordering::Less),
            (Some(tv(1, 1)), None, Ordering::Less),
            (None, Some(tv(1, 1)), Ordering::Less),
            (Some(tv(1, 1)), Some(tv(2, 0)), Ordering::Less),
            (Some(tv(1, 1)), Some(tv(1, 2)), Ordering::Less),
            (Some(tv(1, 2)), Some(tv(1, 2)), Ordering::Equal),
            (Some(tv(1, 3)), Some(tv(1, 2)), Ordering::Greater),
        ];
        for (cur, new, want) in cases {
            assert_eq!(
                compare_topology_versions(cur.as_ref(), new.as_ref()),
                want,
                "{cur:?} vs {new:?}"
            );
        }
    }

    #[test]
    fn server_type_names_round_trip() {
        for name in [
            "Unknown",
            "Standalone",
            "Mongos",
            "PossiblePrimary",
            "RSPrimary",
            "RSSecondary",
            "RSArbiter",
            "RSOther",
            "RSGhost",
            "LoadBalancer",
        ] {
            assert_eq!(name.parse::<ServerType>().unwrap().as_str(), name);
        }
        assert!("rsprimary".parse::<ServerType>().is_err());
    }

    #[test]
    fn sdam_eq_ignores_timing() {
        let a = ServerDescription::unknown(ServerAddress::new("a", 1), None);
        let mut b = a.clone();
        b.round_trip_time = Some(Duration::from_millis(3));
        b.last_update_time = Some(Duration::from_secs(9));
        b.last_write_date = Some(7);
        assert!(a.sdam_eq(&b));
        b.error = Some("x".into());
        assert!(!a.sdam_eq(&b));
    }

    #[test]
    fn compatibility_errors() {
        let addr = ServerAddress::new("a", 1);
        let mut sd = ServerDescription::unknown(addr, None);
        sd.min_wire_version = Some(0);
        sd.max_wire_version = Some(0);
        assert!(
            sd.compatibility_error().is_none(),
            "Unknown is never incompatible"
        );
        sd.server_type = ServerType::Standalone;
        assert!(sd.compatibility_error().unwrap().contains("requires at least"));
        sd.min_wire_version = Some(CLIENT_MAX_WIRE_VERSION + 1);
        sd.max_wire_version = Some(CLIENT_MAX_WIRE_VERSION + 2);
        assert!(sd.compatibility_error().unwrap().contains("only supports up to"));
        sd.min_wire_version = Some(0);
        sd.max_wire_version = Some(21);
        assert!(sd.compatibility_error().is_none());
        let lb = ServerDescription::load_balancer(ServerAddress::new("lb", 1));
        assert!(lb.compatibility_error().is_none());
    }
}
