//! Prometheus metrics: one struct of handles, registered once into a registry that is
//! passed in. Hot paths hold pre-resolved children (e.g. [`PoolMetrics`]) so recording
//! is an atomic add, not a label lookup.

pub mod apps;
mod requests;
mod upstream;

pub use apps::AppLabels;
pub use requests::{Outcome, RequestMetrics};
pub use upstream::{Direction, UpstreamWire};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Latency buckets from 50 µs to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
];

/// Failovers last from a fraction of a second to minutes.
const FAILOVER_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// Fixed label values created up front, so `increase()` sees the first event too.
const CHECKOUT_FAILURE_REASONS: &[&str] = &[
    "timeout",
    "max_time",
    "pool_cleared",
    "pool_closed",
    "connection_error",
    "auth_refused",
];
const BUFFER_EVICT_REASONS: &[&str] = &["window", "buffer_full", "max_duration", "max_time"];
const RETRY_REASONS: &[&str] = &[
    "not_sent",
    "network_error",
    "not_writable_primary",
    "no_writes_performed",
    "state_change",
];
const REJECT_REASONS: &[&str] = &["limit", "accept_error"];

macro_rules! reg {
    ($registry:expr, $metric:expr) => {{
        let m = $metric.expect("metric definitions are static and valid");
        $registry
            .register(Box::new(m.clone()))
            .expect("each metric is registered once");
        m
    }};
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    reg!(r, IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    reg!(r, IntGaugeVec::new(Opts::new(name, help), labels))
}

fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    reg!(
        r,
        HistogramVec::new(
            HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
            labels
        )
    )
}

#[derive(Debug, Clone)]
pub struct Metrics {
    pub apps: AppLabels,
    pub drivers: AppLabels,
    // Clients.
    pub client_connections: IntGaugeVec,
    /// max_client_connections, so alerts can compare `client_connections` against it.
    /// Set by [`Metrics::publish_limits`].
    pub client_connections_limit: IntGauge,
    pub client_opened: IntCounter,
    pub client_closed: IntCounterVec,
    pub client_handshakes: IntCounterVec,
    pub client_rejected: IntCounterVec,
    pub client_protocol_errors: IntCounterVec,
    pub client_bytes_in: IntCounter,
    pub client_bytes_out: IntCounter,
    pub buffered_bytes: IntGauge,
    pub buffer_budget_refusals: IntCounter,
    // Pools.
    pub pool_connections: IntGaugeVec,
    pub pool_waiters: IntGaugeVec,
    pub pool_max_size: IntGaugeVec,
    pub pool_checkout_wait: HistogramVec,
    pub pool_checkout_failures: IntCounterVec,
    pub pool_created: IntCounterVec,
    pub pool_closed: IntCounterVec,
    pub pool_clears: IntCounterVec,
    // Requests.
    pub requests: IntCounterVec,
    pub requests_by_app: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_roundtrip: HistogramVec,
    /// Bytes and compressed messages on upstream sockets, given to every connection.
    pub upstream_wire: UpstreamWire,
    pub server_errors: IntCounterVec,
    // Topology.
    pub member_state: IntGaugeVec,
    pub member_rtt: prometheus::GaugeVec,
    pub primary_changes: IntCounter,
    pub state_change_errors: IntCounterVec,
    pub immediate_checks: IntCounterVec,
    pub heartbeat_failures: IntCounterVec,
    /// SRV rescans of a `mongodb+srv` upstream, by result ([`crate::srv::poll::RESULTS`]).
    pub srv_lookups: IntCounterVec,
    /// Live reloads (SIGHUP, `POST /reload`), by result ([`crate::reload::RESULTS`]).
    pub config_reloads: IntCounterVec,
    // Failover.
    pub retries: IntCounterVec,
    pub implicit_aborts: IntCounterVec,
    pub buffer_starts: IntCounter,
    pub buffered: IntCounter,
    pub buffer_drained: IntCounter,
    pub buffer_evicted: IntCounterVec,
    pub buffer_size: IntGauge,
    pub failover_duration: Histogram,
    // Pins.
    pub pinned_cursors: IntGauge,
    pub pinned_transactions: IntGauge,
}

impl Metrics {
    /// Registers every metric into `r`. `max_apps` bounds the app-name label.
    pub fn new(r: &Registry, max_apps: usize) -> Self {
        let build = gauge_vec(
            r,
            "mongoplex_build_info",
            "Build information; the value is always 1.",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let app = &["app", "driver"];
        let m = Self {
            apps: AppLabels::new(max_apps),
            drivers: AppLabels::new(32),
            client_connections: gauge_vec(
                r,
                "mongoplex_client_connections",
                "Client connections currently open.",
                app,
            ),
            client_connections_limit: reg!(
                r,
                IntGauge::new(
                    "mongoplex_client_connections_limit",
                    "Client connections the proxy admits: max_client_connections, or fewer when the file-descriptor limit less its reserve is lower. Connections beyond it are refused."
                )
            ),
            client_opened: reg!(
                r,
                IntCounter::new(
                    "mongoplex_client_connections_opened_total",
                    "Client connections accepted."
                )
            ),
            client_closed: counter_vec(
                r,
                "mongoplex_client_connections_closed_total",
                "Client connections closed, by reason.",
                &["app", "driver", "reason"],
            ),
            client_handshakes: counter_vec(
                r,
                "mongoplex_client_handshakes_total",
                "hello/isMaster handshakes answered, by client app and driver.",
                app,
            ),
            client_rejected: counter_vec(
                r,
                "mongoplex_client_connections_rejected_total",
                "Client connections refused, by reason.",
                &["reason"],
            ),
            client_protocol_errors: counter_vec(
                r,
                "mongoplex_client_protocol_errors_total",
                "Malformed or unsupported client messages, by kind.",
                &["kind"],
            ),
            client_bytes_in: reg!(
                r,
                IntCounter::new(
                    "mongoplex_client_received_bytes_total",
                    "Bytes received from clients."
                )
            ),
            client_bytes_out: reg!(
                r,
                IntCounter::new("mongoplex_client_sent_bytes_total", "Bytes sent to clients.")
            ),
            buffered_bytes: reg!(
                r,
                IntGauge::new(
                    "mongoplex_buffered_bytes",
                    "Bytes of large client messages and replies held against max_buffered_bytes."
                )
            ),
            buffer_budget_refusals: reg!(
                r,
                IntCounter::new(
                    "mongoplex_buffer_budget_refusals_total",
                    "Client messages refused because max_buffered_bytes stayed spent for 5 s."
                )
            ),
            pool_connections: gauge_vec(
                r,
                "mongoplex_pool_connections",
                "Upstream connections by state (idle, in_use, connecting).",
                &["member", "state"],
            ),
            pool_waiters: gauge_vec(
                r,
                "mongoplex_pool_waiters",
                "Requests waiting for an upstream connection.",
                &["member"],
            ),
            pool_max_size: gauge_vec(
                r,
                "mongoplex_pool_max_size",
                "Configured maxPoolSize (0 = unlimited).",
                &["member"],
            ),
            pool_checkout_wait: histogram_vec(
                r,
                "mongoplex_pool_checkout_wait_seconds",
                "Time to check out an upstream connection.",
                &["member"],
            ),
            pool_checkout_failures: counter_vec(
                r,
                "mongoplex_pool_checkout_failures_total",
                "Failed checkouts, by reason.",
                &["member", "reason"],
            ),
            pool_created: counter_vec(
                r,
                "mongoplex_pool_connections_created_total",
                "Upstream connections opened.",
                &["member"],
            ),
            pool_closed: counter_vec(
                r,
                "mongoplex_pool_connections_closed_total",
                "Upstream connections closed, by CMAP reason.",
                &["member", "reason"],
            ),
            pool_clears: counter_vec(
                r,
                "mongoplex_pool_clears_total",
                "Pool clears (generation bumps).",
                &["member"],
            ),
            requests: counter_vec(
                r,
                "mongoplex_requests_total",
                "Client commands, by command and outcome.",
                &["command", "outcome"],
            ),
            requests_by_app: counter_vec(
                r,
                "mongoplex_app_requests_total",
                "Client commands, by client app.",
                &["app"],
            ),
            request_duration: histogram_vec(
                r,
                "mongoplex_request_duration_seconds",
                "Time from a command's arrival to its reply being written.",
                &["command"],
            ),
            upstream_roundtrip: histogram_vec(
                r,
                "mongoplex_upstream_roundtrip_seconds",
                "Upstream round-trip time per request.",
                &["member"],
            ),
            upstream_wire: UpstreamWire::new(r),
            server_errors: counter_vec(
                r,
                "mongoplex_server_errors_total",
                "Error replies from upstream servers, by code.",
                &["code"],
            ),
            member_state: gauge_vec(
                r,
                "mongoplex_member_state",
                "1 for the member's current SDAM server type.",
                &["member", "state"],
            ),
            member_rtt: reg!(
                r,
                prometheus::GaugeVec::new(
                    Opts::new(
                        "mongoplex_member_rtt_seconds",
                        "Moving-average heartbeat round-trip time."
                    ),
                    &["member"]
                )
            ),
            primary_changes: reg!(
                r,
                IntCounter::new(
                    "mongoplex_primary_changes_total",
                    "Times the known primary changed."
                )
            ),
            state_change_errors: counter_vec(
                r,
                "mongoplex_state_change_errors_total",
                "NotWritablePrimary/NodeIsRecovering errors seen, by code.",
                &["member", "code"],
            ),
            immediate_checks: counter_vec(
                r,
                "mongoplex_immediate_checks_total",
                "Immediate server checks requested.",
                &["member"],
            ),
            heartbeat_failures: counter_vec(
                r,
                "mongoplex_heartbeat_failures_total",
                "Failed monitor heartbeats.",
                &["member"],
            ),
            srv_lookups: counter_vec(
                r,
                "mongoplex_srv_lookups_total",
                "SRV rescans of a mongodb+srv upstream, by result.",
                &["result"],
            ),
            config_reloads: counter_vec(
                r,
                "mongoplex_config_reloads_total",
                "Configuration reloads (SIGHUP, POST /reload), by result.",
                &["result"],
            ),
            retries: counter_vec(
                r,
                "mongoplex_retries_total",
                "Requests re-routed and retried, by reason.",
                &["reason"],
            ),
            implicit_aborts: counter_vec(
                r,
                "mongoplex_transaction_implicit_aborts_total",
                "Transactions the proxy aborted because it failed one of their statements itself, as a mongos does, by result (aborted, no_such_transaction, failed).",
                &["result"],
            ),
            buffer_starts: reg!(
                r,
                IntCounter::new(
                    "mongoplex_failover_buffer_starts_total",
                    "Times buffering began because no primary was known."
                )
            ),
            buffered: reg!(
                r,
                IntCounter::new(
                    "mongoplex_failover_buffered_total",
                    "Requests held while no primary was known."
                )
            ),
            buffer_drained: reg!(
                r,
                IntCounter::new(
                    "mongoplex_failover_drained_total",
                    "Buffered requests released to a new primary."
                )
            ),
            buffer_evicted: counter_vec(
                r,
                "mongoplex_failover_evicted_total",
                "Buffered requests failed, by reason (window, buffer_full, max_duration, max_time).",
                &["reason"],
            ),
            buffer_size: reg!(
                r,
                IntGauge::new("mongoplex_failover_buffer_size", "Requests currently buffered.")
            ),
            failover_duration: reg!(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "mongoplex_failover_duration_seconds",
                        "Time without a primary, per failover."
                    )
                    .buckets(FAILOVER_BUCKETS.to_vec())
                )
            ),
            pinned_cursors: reg!(
                r,
                IntGauge::new("mongoplex_pinned_cursors", "Open cursors pinned to a member.")
            ),
            pinned_transactions: reg!(
                r,
                IntGauge::new(
                    "mongoplex_pinned_transactions",
                    "Transactions pinned to a member."
                )
            ),
        };
        for reason in RETRY_REASONS {
            m.retries.with_label_values(&[*reason]);
        }
        for reason in BUFFER_EVICT_REASONS {
            m.buffer_evicted.with_label_values(&[*reason]);
        }
        for reason in REJECT_REASONS {
            m.client_rejected.with_label_values(&[*reason]);
        }
        for result in crate::reload::RESULTS {
            m.config_reloads.with_label_values(&[*result]);
        }
        m
    }

    /// Publishes the configured limits that dashboards and alerts divide by. Called once
    /// the config is known (the admin endpoint does it when it starts serving).
    pub fn publish_limits(&self, client_capacity: usize) {
        self.client_connections_limit
            .set(i64::try_from(client_capacity).unwrap_or(i64::MAX));
    }

    /// Removes the gauges of a member that left the topology, so that its last state
    /// (say `member_state{state="unknown"} 1`) is not exported, and alerted on, forever.
    /// `states` are every `member_state` label value (`ServerKind::ALL`). Its counters
    /// stay: they only stop growing.
    pub fn forget_member<'a>(&self, member: &str, states: impl IntoIterator<Item = &'a str>) {
        // Errors only say a series was never created; there is nothing to remove then.
        for state in states {
            let _ = self.member_state.remove_label_values(&[member, state]);
        }
        for state in ["idle", "in_use", "connecting"] {
            let _ = self.pool_connections.remove_label_values(&[member, state]);
        }
        for gauge in [&self.pool_waiters, &self.pool_max_size] {
            let _ = gauge.remove_label_values(&[member]);
        }
        let _ = self.member_rtt.remove_label_values(&[member]);
    }

    /// Handles for one pool, resolved once.
    pub fn pool(&self, member: &str) -> PoolMetrics {
        for reason in CHECKOUT_FAILURE_REASONS {
            self.pool_checkout_failures.with_label_values(&[member, *reason]);
        }
        PoolMetrics {
            member: member.to_string(),
            idle: self.pool_connections.with_label_values(&[member, "idle"]),
            in_use: self.pool_connections.with_label_values(&[member, "in_use"]),
            connecting: self.pool_connections.with_label_values(&[member, "connecting"]),
            waiters: self.pool_waiters.with_label_values(&[member]),
            checkout_wait: self.pool_checkout_wait.with_label_values(&[member]),
            created: self.pool_created.with_label_values(&[member]),
            clears: self.pool_clears.with_label_values(&[member]),
            roundtrip: self.upstream_roundtrip.with_label_values(&[member]),
            failures: self.pool_checkout_failures.clone(),
            closed: self.pool_closed.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PoolMetrics {
    member: String,
    pub idle: IntGauge,
    pub in_use: IntGauge,
    pub connecting: IntGauge,
    pub waiters: IntGauge,
    pub checkout_wait: Histogram,
    pub created: IntCounter,
    pub clears: IntCounter,
    pub roundtrip: Histogram,
    failures: IntCounterVec,
    closed: IntCounterVec,
}

impl PoolMetrics {
    pub fn checkout_failed(&self, reason: &str) {
        self.failures
            .with_label_values(&[self.member.as_str(), reason])
            .inc();
    }

    pub fn closed(&self, reason: &str, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.closed
            .with_label_values(&[self.member.as_str(), reason])
            .inc_by(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series_of(r: &Registry, member: &str) -> Vec<String> {
        r.gather()
            .iter()
            .filter(|f| {
                f.get_metric()
                    .iter()
                    .any(|m| m.get_label().iter().any(|l| l.value() == member))
            })
            .map(|f| f.name().to_string())
            .collect()
    }

    #[test]
    fn a_forgotten_member_leaves_no_gauges() {
        let r = Registry::new();
        let m = Metrics::new(&r, 4);
        let pool = m.pool("gone:27017");
        pool.in_use.set(2);
        m.pool_max_size.with_label_values(&["gone:27017"]).set(4);
        m.member_state
            .with_label_values(&["gone:27017", "unknown"])
            .set(1);
        m.member_rtt.with_label_values(&["gone:27017"]).set(0.001);
        m.member_state
            .with_label_values(&["kept:27017", "primary"])
            .set(1);
        m.heartbeat_failures.with_label_values(&["gone:27017"]).inc();

        m.forget_member("gone:27017", ["unknown", "primary"]);
        let left = series_of(&r, "gone:27017");
        for gauge in [
            "mongoplex_member_state",
            "mongoplex_member_rtt_seconds",
            "mongoplex_pool_connections",
            "mongoplex_pool_waiters",
            "mongoplex_pool_max_size",
        ] {
            assert!(
                !left.iter().any(|n| n == gauge),
                "{gauge} still has the member: {left:?}"
            );
        }
        assert!(
            left.iter().any(|n| n == "mongoplex_heartbeat_failures_total"),
            "{left:?}"
        );
        assert_eq!(series_of(&r, "kept:27017"), ["mongoplex_member_state"]);
    }
}
