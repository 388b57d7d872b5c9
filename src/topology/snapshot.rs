//! An immutable view of the topology, published on every change: the SDAM description
//! plus what the proxy derives from it (the primary, the limits to advertise, and a
//! per-member summary for /status and metrics).

use std::time::Duration;

use crate::address::ServerAddress;
use crate::handshake::UpstreamLimits;
use crate::sdam::{ServerDescription, ServerType, TopologyDescription};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    Unknown,
    Standalone,
    Mongos,
    RsPrimary,
    RsSecondary,
    RsArbiter,
    RsOther,
    RsGhost,
    LoadBalancer,
}

impl ServerKind {
    pub const ALL: &'static [ServerKind] = &[
        Self::Unknown,
        Self::Standalone,
        Self::Mongos,
        Self::RsPrimary,
        Self::RsSecondary,
        Self::RsArbiter,
        Self::RsOther,
        Self::RsGhost,
        Self::LoadBalancer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Standalone => "standalone",
            Self::Mongos => "mongos",
            Self::RsPrimary => "primary",
            Self::RsSecondary => "secondary",
            Self::RsArbiter => "arbiter",
            Self::RsOther => "other",
            Self::RsGhost => "ghost",
            Self::LoadBalancer => "load_balancer",
        }
    }

    pub fn from_type(t: ServerType) -> Self {
        match t {
            ServerType::Unknown | ServerType::PossiblePrimary => Self::Unknown,
            ServerType::Standalone => Self::Standalone,
            ServerType::Mongos => Self::Mongos,
            ServerType::RsPrimary => Self::RsPrimary,
            ServerType::RsSecondary => Self::RsSecondary,
            ServerType::RsArbiter => Self::RsArbiter,
            ServerType::RsOther => Self::RsOther,
            ServerType::RsGhost => Self::RsGhost,
            ServerType::LoadBalancer => Self::LoadBalancer,
        }
    }

    /// Accepts writes.
    pub fn is_writable(self) -> bool {
        matches!(
            self,
            Self::RsPrimary | Self::Standalone | Self::Mongos | Self::LoadBalancer
        )
    }
}

/// A member as /status and metrics show it.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub address: ServerAddress,
    pub kind: ServerKind,
    pub rtt: Option<Duration>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub desc: TopologyDescription,
    pub servers: Vec<ServerInfo>,
    pub primary: Option<ServerAddress>,
    pub limits: Option<UpstreamLimits>,
}

fn limits_of(sd: &ServerDescription, lstm: Option<u32>) -> Option<UpstreamLimits> {
    Some(UpstreamLimits {
        min_wire_version: sd.min_wire_version?,
        max_wire_version: sd.max_wire_version?,
        max_bson_object_size: i64::from(sd.max_bson_object_size),
        max_message_size_bytes: i64::from(sd.max_message_size_bytes),
        max_write_batch_size: i64::from(sd.max_write_batch_size),
        logical_session_timeout_minutes: lstm.map(i64::from),
    })
}

impl Snapshot {
    /// Derives the view from a description. `previous_limits` keeps advertising the last
    /// known limits while no member is known (clients mid-failover keep working).
    pub fn new(desc: TopologyDescription, previous_limits: Option<&UpstreamLimits>) -> Self {
        let servers: Vec<ServerInfo> = desc
            .servers()
            .map(|sd| ServerInfo {
                address: sd.address.clone(),
                kind: ServerKind::from_type(sd.server_type),
                rtt: sd.round_trip_time,
                error: sd.error.clone(),
            })
            .collect();
        let primary = servers
            .iter()
            .find(|s| s.kind.is_writable())
            .map(|s| s.address.clone());
        let lstm = desc.logical_session_timeout_minutes();
        let limits = desc
            .servers()
            .filter(|sd| ServerKind::from_type(sd.server_type).is_writable())
            .chain(desc.servers().filter(|sd| sd.server_type.is_data_bearing()))
            .find_map(|sd| limits_of(sd, lstm))
            .or_else(|| previous_limits.cloned());
        Self {
            desc,
            servers,
            primary,
            limits,
        }
    }

    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .servers
            .iter()
            .map(|s| match &s.error {
                Some(e) => format!("{} {} ({e})", s.address, s.kind.as_str()),
                None => format!("{} {}", s.address, s.kind.as_str()),
            })
            .collect();
        if parts.is_empty() {
            return format!("{} with no members", self.desc.topology_type().as_str());
        }
        format!("{}: {}", self.desc.topology_type().as_str(), parts.join(", "))
    }
}
