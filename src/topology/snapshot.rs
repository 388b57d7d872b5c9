//! An immutable view of what the monitors know, swapped atomically on every change.

use std::time::Duration;

use bson::{RawDocument, RawDocumentBuf};

use crate::address::ServerAddress;
use crate::command::truthy;
use crate::handshake::UpstreamLimits;
use crate::router::Criteria;

use super::SelectError;

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
        }
    }

    /// Accepts writes.
    pub fn is_writable(self) -> bool {
        matches!(self, Self::RsPrimary | Self::Standalone | Self::Mongos)
    }
}

#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub address: ServerAddress,
    pub kind: ServerKind,
    pub rtt: Option<Duration>,
    pub limits: Option<UpstreamLimits>,
    pub error: Option<String>,
    pub hello: Option<RawDocumentBuf>,
}

impl ServerInfo {
    pub fn unknown(address: ServerAddress, error: Option<String>) -> Self {
        Self {
            address,
            kind: ServerKind::Unknown,
            rtt: None,
            limits: None,
            error,
            hello: None,
        }
    }

    pub fn from_hello(address: ServerAddress, hello: &RawDocument, rtt: Duration) -> Self {
        let flag = |k: &str| hello.get(k).ok().flatten().is_some_and(truthy);
        let kind = if !flag("ok") {
            ServerKind::Unknown
        } else if flag("isreplicaset") {
            ServerKind::RsGhost
        } else if hello.get_str("msg").ok() == Some("isdbgrid") {
            ServerKind::Mongos
        } else if hello.get_str("setName").is_ok() {
            if flag("isWritablePrimary") || flag("ismaster") {
                ServerKind::RsPrimary
            } else if flag("secondary") {
                ServerKind::RsSecondary
            } else if flag("arbiterOnly") {
                ServerKind::RsArbiter
            } else {
                ServerKind::RsOther
            }
        } else {
            ServerKind::Standalone
        };
        Self {
            address,
            kind,
            rtt: Some(rtt),
            limits: Some(UpstreamLimits::from_hello(hello)),
            error: None,
            hello: Some(hello.to_owned()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub servers: Vec<ServerInfo>,
    pub primary: Option<ServerAddress>,
    pub limits: Option<UpstreamLimits>,
}

impl Snapshot {
    pub fn new(seeds: &[ServerAddress]) -> Self {
        let servers = seeds
            .iter()
            .map(|s| ServerInfo::unknown(s.clone(), None))
            .collect();
        Self {
            servers,
            primary: None,
            limits: None,
        }
    }

    pub fn with_server(&self, info: ServerInfo) -> Self {
        let mut servers = self.servers.clone();
        match servers.iter_mut().find(|s| s.address == info.address) {
            Some(slot) => *slot = info,
            None => servers.push(info),
        }
        let primary = servers
            .iter()
            .find(|s| s.kind.is_writable())
            .map(|s| s.address.clone());
        // Advertise the primary's limits; before one is known, any known member's.
        let limits = servers
            .iter()
            .find(|s| s.kind.is_writable())
            .or_else(|| servers.iter().find(|s| s.limits.is_some()))
            .and_then(|s| s.limits.clone())
            .or_else(|| self.limits.clone());
        Self {
            servers,
            primary,
            limits,
        }
    }

    /// Picks a member for `criteria`, or `None` if none is suitable right now.
    pub fn select(
        &self,
        criteria: &Criteria,
        local_threshold: Duration,
    ) -> Result<Option<ServerAddress>, SelectError> {
        let writable = || self.servers.iter().filter(|s| s.kind.is_writable());
        let secondaries = || self.servers.iter().filter(|s| s.kind == ServerKind::RsSecondary);
        let candidates: Vec<&ServerInfo> = match criteria {
            Criteria::Primary => writable().collect(),
            Criteria::Read(rp) => match rp.get_str("mode").unwrap_or("primary") {
                "primary" => writable().collect(),
                "primaryPreferred" => {
                    let p: Vec<_> = writable().collect();
                    if p.is_empty() {
                        secondaries().collect()
                    } else {
                        p
                    }
                }
                "secondary" => secondaries().collect(),
                "secondaryPreferred" => {
                    let s: Vec<_> = secondaries().collect();
                    if s.is_empty() {
                        writable().collect()
                    } else {
                        s
                    }
                }
                "nearest" => writable().chain(secondaries()).collect(),
                other => {
                    return Err(SelectError::InvalidReadPreference(format!(
                        "unknown mode {other:?}"
                    )))
                }
            },
        };
        let best = candidates.iter().filter_map(|s| s.rtt).min().unwrap_or_default();
        let window: Vec<_> = candidates
            .into_iter()
            .filter(|s| s.rtt.unwrap_or_default() <= best + local_threshold)
            .collect();
        if window.is_empty() {
            return Ok(None);
        }
        let pick = rand::random_range(0..window.len());
        Ok(Some(window[pick].address.clone()))
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
        parts.join(", ")
    }
}
