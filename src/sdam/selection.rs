//! Server selection: which servers suit an operation, which of those are in the latency
//! window, and which one to use ("power of two choices" on in-flight operation counts).
//!
//! Pure functions of a [`TopologyDescription`]; when nothing is suitable the caller requests
//! immediate checks and waits for the next topology change, as the spec's selection loop says.

use std::time::Duration;

use rand::Rng;

use super::description::{ServerDescription, ServerType};
use super::read_pref::{ReadMode, ReadPrefError, ReadPreference, TagSet};
use super::topology::{TopologyDescription, TopologyType};
use crate::address::ServerAddress;

/// What the operation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectionCriteria {
    Write,
    Read(ReadPreference),
}

/// Why selection cannot succeed however long the caller waits for the current topology.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("upstream wire version is incompatible: {0}")]
    Incompatible(String),
    #[error(transparent)]
    ReadPreference(#[from] ReadPrefError),
}

/// The suitable servers within the latency window (empty: none right now).
pub fn select<'a>(
    topology: &'a TopologyDescription,
    criteria: &SelectionCriteria,
) -> Result<Vec<&'a ServerDescription>, SelectionError> {
    select_with_deprioritized(topology, criteria, &[])
}

/// [`select`], avoiding `deprioritized` servers (those a retried operation already failed
/// on) unless nothing else is suitable.
pub fn select_with_deprioritized<'a>(
    topology: &'a TopologyDescription,
    criteria: &SelectionCriteria,
    deprioritized: &[ServerAddress],
) -> Result<Vec<&'a ServerDescription>, SelectionError> {
    let suitable = suitable_servers(topology, criteria, deprioritized)?;
    Ok(in_latency_window(suitable, topology.settings().local_threshold))
}

/// The suitable servers before the latency window is applied.
pub fn suitable_servers<'a>(
    topology: &'a TopologyDescription,
    criteria: &SelectionCriteria,
    deprioritized: &[ServerAddress],
) -> Result<Vec<&'a ServerDescription>, SelectionError> {
    if let Some(error) = topology.compatibility_error() {
        return Err(SelectionError::Incompatible(error.to_owned()));
    }
    if let SelectionCriteria::Read(rp) = criteria {
        if topology.topology_type().is_replica_set() {
            rp.validate_max_staleness(topology.settings().heartbeat_frequency)?;
        }
    }
    let preferred = suitable_among(topology, criteria, |s| !deprioritized.contains(&s.address));
    if !preferred.is_empty() || deprioritized.is_empty() {
        return Ok(preferred);
    }
    Ok(suitable_among(topology, criteria, |_| true))
}

/// Keeps the servers whose average RTT is within `threshold` of the fastest.
pub fn in_latency_window(suitable: Vec<&ServerDescription>, threshold: Duration) -> Vec<&ServerDescription> {
    let rtt = |s: &ServerDescription| s.round_trip_time.unwrap_or(Duration::ZERO);
    let Some(fastest) = suitable.iter().map(|s| rtt(s)).min() else {
        return suitable;
    };
    let limit = fastest.saturating_add(threshold);
    suitable.into_iter().filter(|s| rtt(s) <= limit).collect()
}

/// Picks one in-window server: two distinct random candidates, the one with fewer
/// operations in flight wins (ties go to the first drawn). `operation_count` is the caller's
/// per-server count of operations in progress.
pub fn choose_in_window<'a, R: Rng + ?Sized>(
    in_window: &[&'a ServerDescription],
    operation_count: impl Fn(&ServerAddress) -> u64,
    rng: &mut R,
) -> Option<&'a ServerDescription> {
    match in_window.len() {
        0 => None,
        1 => in_window.first().copied(),
        n => {
            let first = rng.random_range(0..n);
            let mut second = rng.random_range(0..n - 1);
            if second >= first {
                second += 1;
            }
            let (a, b) = (in_window[first], in_window[second]);
            if operation_count(&b.address) < operation_count(&a.address) {
                Some(b)
            } else {
                Some(a)
            }
        }
    }
}

fn suitable_among<'a>(
    topology: &'a TopologyDescription,
    criteria: &SelectionCriteria,
    allowed: impl Fn(&ServerDescription) -> bool,
) -> Vec<&'a ServerDescription> {
    let candidates = topology.servers().filter(|s| allowed(s));
    let of_type = |t: ServerType| -> Vec<&'a ServerDescription> {
        topology
            .servers()
            .filter(|s| allowed(s) && s.server_type == t)
            .collect()
    };
    match topology.topology_type() {
        TopologyType::Unknown => Vec::new(),
        TopologyType::Single | TopologyType::LoadBalanced => {
            candidates.filter(|s| s.server_type.is_available()).collect()
        }
        TopologyType::Sharded => of_type(ServerType::Mongos),
        TopologyType::ReplicaSetNoPrimary | TopologyType::ReplicaSetWithPrimary => match criteria {
            SelectionCriteria::Write => of_type(ServerType::RsPrimary),
            SelectionCriteria::Read(rp) => {
                let primary = of_type(ServerType::RsPrimary);
                let secondaries = || eligible(topology, rp, of_type(ServerType::RsSecondary));
                match rp.mode {
                    ReadMode::Primary => primary,
                    ReadMode::PrimaryPreferred if !primary.is_empty() => primary,
                    ReadMode::PrimaryPreferred | ReadMode::Secondary => secondaries(),
                    ReadMode::SecondaryPreferred => {
                        let s = secondaries();
                        if s.is_empty() {
                            primary
                        } else {
                            s
                        }
                    }
                    ReadMode::Nearest => {
                        let mut both = primary;
                        both.extend(of_type(ServerType::RsSecondary));
                        eligible(topology, rp, both)
                    }
                }
            }
        },
    }
}

/// Candidates passing maxStalenessSeconds, then the first tag set that matches any.
fn eligible<'a>(
    topology: &TopologyDescription,
    rp: &ReadPreference,
    candidates: Vec<&'a ServerDescription>,
) -> Vec<&'a ServerDescription> {
    let fresh: Vec<_> = match rp.max_staleness {
        Some(max) if !max.is_zero() => {
            let max_ms = millis(max);
            candidates
                .into_iter()
                .filter(|s| staleness_ms(topology, s) <= max_ms)
                .collect()
        }
        _ => candidates,
    };
    if rp.tag_sets.is_empty() {
        return fresh;
    }
    for tag_set in &rp.tag_sets {
        let matching: Vec<_> = fresh.iter().copied().filter(|s| tags_match(tag_set, s)).collect();
        if !matching.is_empty() {
            return matching;
        }
    }
    Vec::new()
}

fn tags_match(wanted: &TagSet, server: &ServerDescription) -> bool {
    wanted.iter().all(|(k, v)| server.tags.get(k) == Some(v))
}

fn millis(d: Duration) -> i128 {
    i128::try_from(d.as_millis()).unwrap_or(i128::MAX)
}

/// The spec's worst-case replication lag estimate; zero for non-secondaries. Against the
/// primary when there is one, else against the freshest secondary.
fn staleness_ms(topology: &TopologyDescription, s: &ServerDescription) -> i128 {
    if s.server_type != ServerType::RsSecondary {
        return 0;
    }
    let heartbeat = millis(topology.settings().heartbeat_frequency);
    let update_ms = |sd: &ServerDescription| sd.last_update_time.map_or(0, millis);
    let write_ms = |sd: &ServerDescription| i128::from(sd.last_write_date.unwrap_or(0));
    if topology.topology_type() == TopologyType::ReplicaSetWithPrimary {
        if let Some(p) = topology.primary() {
            return (update_ms(s) - write_ms(s)) - (update_ms(p) - write_ms(p)) + heartbeat;
        }
    }
    let freshest = topology
        .servers()
        .filter(|sd| sd.server_type == ServerType::RsSecondary)
        .map(write_ms)
        .max()
        .unwrap_or(0);
    freshest - write_ms(s) + heartbeat
}

#[cfg(test)]
mod tests;
