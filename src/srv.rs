//! `mongodb+srv://` upstreams: the Initial DNS Seedlist Discovery and the Polling SRV
//! Records for mongos Discovery specs.
//!
//! At start-up [`dns::discover`] looks up `_{srvServiceName}._tcp.{name}` (SRV) and
//! `{name}` (TXT); a failure there stops start-up. [`crate::config::Config::validate_with`]
//! then builds the configuration as if the string had listed those hosts and the TXT
//! options. While the topology is Sharded or Unknown, [`poll::run`] looks the SRV records
//! up again and the topology adds and removes members ([`crate::topology::Topology`]).
//!
//! The decisions are pure and live here, tested from tables: which returned host names
//! may be used ([`verify_host`]), which of them seed the topology ([`choose_seeds`]), what
//! a rescan changes ([`plan_rescan`]) and when the next one is due ([`rescan_interval`]).

pub mod dns;
pub mod poll;

use std::collections::BTreeSet;
use std::time::Duration;

use rand::seq::SliceRandom;

use crate::address::ServerAddress;

/// The spec's floor for rescanSRVIntervalMS.
pub const MIN_RESCAN_INTERVAL: Duration = Duration::from_secs(60);

/// What a `mongodb+srv` upstream asks for, from the URI and the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvSpec {
    /// The host name of the URI, lowercased.
    pub hostname: String,
    /// `srvServiceName`, default "mongodb".
    pub service_name: String,
    /// `srvMaxHosts`; 0 means no limit.
    pub max_hosts: usize,
    /// The floor of the rescan interval: [`MIN_RESCAN_INTERVAL`] unless the
    /// `srv_min_rescan_interval_ms` setting lowers it (tests do).
    pub min_rescan_interval: Duration,
}

impl SrvSpec {
    /// The name to query for SRV records.
    pub fn srv_name(&self) -> String {
        format!("_{}._tcp.{}", self.service_name, self.hostname)
    }
}

/// One SRV answer, made usable: the target lowercased without its final dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub address: ServerAddress,
    pub ttl: Duration,
}

/// Why a returned host may not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "SRV record for {srv_host} names {host}, which is not in its domain {domain} (it must end in .{domain})"
)]
pub struct ForeignHost {
    pub srv_host: String,
    pub host: String,
    pub domain: String,
}

/// A DNS name compared as the specs do: case-insensitively, without a final dot.
pub fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The `{domainname}` of an SRV host name: all but the first label when it has three or
/// more, else the whole name.
pub fn parent_domain(srv_host: &str) -> String {
    let name = normalize(srv_host);
    match name.split_once('.') {
        Some((_, rest)) if rest.contains('.') => rest.to_owned(),
        _ => name,
    }
}

/// The seedlist spec's check of one returned host: it must end in `.{domainname}`, so a
/// name with fewer than three labels needs one more label than the SRV host (and the host
/// itself is refused). Without this, whoever controls the SRV answer could send the
/// proxy's credential to any host.
pub fn verify_host(srv_host: &str, host: &str) -> Result<(), ForeignHost> {
    let domain = parent_domain(srv_host);
    let host = normalize(host);
    let inside = host
        .strip_suffix(domain.as_str())
        .is_some_and(|head| head.len() > 1 && head.ends_with('.'));
    if inside {
        Ok(())
    } else {
        Err(ForeignHost {
            srv_host: normalize(srv_host),
            host,
            domain,
        })
    }
}

/// Initial seeds: all hosts when `max_hosts` is 0 or not fewer than the hosts, else that
/// many chosen at random (Fisher-Yates, as the spec recommends). Duplicates count once.
pub fn choose_seeds(
    hosts: &[ServerAddress],
    max_hosts: usize,
    rng: &mut impl rand::Rng,
) -> Vec<ServerAddress> {
    let mut unique: Vec<ServerAddress> = Vec::with_capacity(hosts.len());
    for h in hosts {
        if !unique.contains(h) {
            unique.push(h.clone());
        }
    }
    if max_hosts == 0 || max_hosts >= unique.len() {
        return unique;
    }
    unique.shuffle(rng);
    unique.truncate(max_hosts);
    unique
}

/// What a rescan changes in the topology.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RescanPlan {
    pub add: Vec<ServerAddress>,
    pub remove: Vec<ServerAddress>,
}

impl RescanPlan {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// The polling spec's update: hosts gone from the records leave, hosts still there stay
/// untouched, and new hosts join, all of them when `max_hosts` is 0 or not fewer than
/// the records, else chosen at random until the topology has `max_hosts`. No verified
/// record at all changes nothing (the caller keeps the old list).
pub fn plan_rescan(
    current: &BTreeSet<ServerAddress>,
    records: &[ServerAddress],
    max_hosts: usize,
    rng: &mut impl rand::Rng,
) -> RescanPlan {
    if records.is_empty() {
        return RescanPlan::default();
    }
    let wanted: BTreeSet<&ServerAddress> = records.iter().collect();
    let remove: Vec<ServerAddress> = current.iter().filter(|a| !wanted.contains(a)).cloned().collect();
    let kept = current.len() - remove.len();
    let mut new: Vec<ServerAddress> = wanted
        .into_iter()
        .filter(|a| !current.contains(*a))
        .cloned()
        .collect();
    if max_hosts != 0 && max_hosts < records.len() {
        new.shuffle(rng);
        new.truncate(max_hosts.saturating_sub(kept));
    }
    RescanPlan { add: new, remove }
}

/// When the next rescan is due: the lowest TTL of the last answer, but not under
/// `floor`; after a failed lookup (or no usable record), `heartbeat` (polling spec).
pub fn rescan_interval(min_ttl: Option<Duration>, floor: Duration, heartbeat: Duration) -> Duration {
    match min_ttl {
        Some(ttl) => ttl.max(floor),
        None => heartbeat,
    }
}

#[cfg(test)]
mod tests;
