//! The rescan task (polling spec): one per `mongodb+srv` upstream, apart from the
//! monitors so that a slow DNS server delays no heartbeat. It sleeps rescanSRVIntervalMS
//! from the end of the previous lookup, asks again, and hands the usable records to the
//! topology, which decides under its lock what changes ([`super::plan_rescan`]).

use std::time::Duration;

use prometheus::IntCounterVec;
use tokio_util::sync::CancellationToken;

use super::dns::{self, LookupError, Resolver};
use super::{rescan_interval, SrvSpec};
use crate::topology::Topology;

/// The `result` label values of `mongoplex_srv_lookups_total`.
pub const RESULTS: &[&str] = &["ok", "no_records", "failed"];

pub struct Poller {
    pub topology: Topology,
    pub resolver: Resolver,
    pub spec: SrvSpec,
    /// The lowest TTL of the initial lookup: the first rescan waits for it.
    pub first_ttl: Duration,
    pub heartbeat: Duration,
    pub lookups: IntCounterVec,
}

impl Poller {
    /// Runs until `cancel`, or until the topology turns out not to be sharded: a replica
    /// set is never rescanned, and its type never goes back.
    pub async fn run(self, cancel: CancellationToken) {
        let mut wait = rescan_interval(
            Some(self.first_ttl),
            self.spec.min_rescan_interval,
            self.heartbeat,
        );
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            if !self.topology.srv_pollable() {
                tracing::info!(srv = %self.spec.srv_name(), "the upstream is not sharded: SRV records are not polled");
                return;
            }
            let result = tokio::select! {
                () = cancel.cancelled() => return,
                r = dns::srv_lenient(&self.resolver, &self.spec) => r,
            };
            let label = match &result {
                Ok(_) => "ok",
                Err(LookupError::NoRecords { .. }) => "no_records",
                Err(_) => "failed",
            };
            self.lookups.with_label_values(&[label]).inc();
            wait = match result {
                Ok((hosts, min_ttl)) => {
                    if let Some(plan) = self.topology.apply_srv_records(&hosts, self.spec.max_hosts) {
                        if !plan.is_empty() {
                            let show = |list: &[crate::address::ServerAddress]| {
                                list.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
                            };
                            tracing::info!(
                                srv = %self.spec.srv_name(),
                                added = %show(&plan.add),
                                removed = %show(&plan.remove),
                                records = %show(&hosts),
                                "SRV records changed: members updated"
                            );
                        }
                    }
                    rescan_interval(Some(min_ttl), self.spec.min_rescan_interval, self.heartbeat)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "SRV rescan found no usable record: keeping the current members");
                    rescan_interval(None, self.spec.min_rescan_interval, self.heartbeat)
                }
            };
        }
    }
}
