//! The runtime side of topology: one monitor task and one pool per member, a snapshot
//! of what is known published on a watch channel, and server selection that waits up
//! to serverSelectionTimeoutMS for a suitable member.

mod monitor;
mod snapshot;
pub mod state_change;

pub use snapshot::{ServerInfo, ServerKind, Snapshot};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::address::ServerAddress;
use crate::config::Config;
use crate::handshake::{ProxyTopologyVersion, UpstreamLimits};
use crate::metrics::Metrics;
use crate::pool::Pool;
use crate::router::Criteria;

/// Why no server could be selected.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SelectError {
    #[error("no suitable server for {criteria} within {waited_ms} ms (serverSelectionTimeoutMS); topology: {summary}")]
    Timeout {
        criteria: String,
        waited_ms: u128,
        summary: String,
    },
    #[error("invalid read preference: {0}")]
    InvalidReadPreference(String),
    #[error("mongoplex is shutting down")]
    ShuttingDown,
}

#[derive(Debug)]
struct Member {
    pool: Pool,
    check_now: Arc<Notify>,
    cancel: CancellationToken,
}

#[derive(Debug, Clone)]
pub struct Topology {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Arc<Config>,
    metrics: Metrics,
    members: Mutex<HashMap<ServerAddress, Member>>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    version: watch::Sender<ProxyTopologyVersion>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

/// A selected member and its pool.
#[derive(Debug, Clone)]
pub struct Selected {
    pub address: ServerAddress,
    pub pool: Pool,
}

impl Topology {
    /// Starts monitors and pools for the configured seeds.
    pub fn start(
        config: Arc<Config>,
        metrics: Metrics,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        let version = ProxyTopologyVersion {
            process_id: ObjectId::new(),
            counter: 0,
        };
        let seeds = config.seeds.clone();
        let snapshot = Snapshot::new(&seeds);
        let inner = Arc::new(Inner {
            config,
            metrics,
            members: Mutex::default(),
            snapshot: watch::Sender::new(Arc::new(snapshot)),
            version: watch::Sender::new(version),
            tracker,
            cancel,
        });
        let t = Topology { inner };
        for s in seeds {
            t.add_member(s);
        }
        t
    }

    fn add_member(&self, address: ServerAddress) {
        let i = &self.inner;
        let mut members = i.members.lock().unwrap_or_else(|p| p.into_inner());
        if members.contains_key(&address) {
            return;
        }
        let label = address.to_string();
        let pool_metrics = i.metrics.pool(&label);
        i.metrics
            .pool_max_size
            .with_label_values(&[label.as_str()])
            .set(i64::try_from(i.config.pool.max_size).unwrap_or(0));
        let pool = Pool::new(
            address.clone(),
            i.config.pool.clone(),
            i.config.connect.clone(),
            pool_metrics,
        );
        let cancel = i.cancel.child_token();
        pool.spawn_maintenance(&i.tracker, cancel.clone());
        let check_now = Arc::new(Notify::new());
        i.tracker.spawn(monitor::run(
            self.clone(),
            address.clone(),
            check_now.clone(),
            cancel.clone(),
        ));
        members.insert(
            address,
            Member {
                pool,
                check_now,
                cancel,
            },
        );
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshot.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.inner.snapshot.subscribe()
    }

    pub fn version(&self) -> watch::Receiver<ProxyTopologyVersion> {
        self.inner.version.subscribe()
    }

    pub fn pool(&self, address: &ServerAddress) -> Option<Pool> {
        let members = self.inner.members.lock().unwrap_or_else(|p| p.into_inner());
        members.get(address).map(|m| m.pool.clone())
    }

    pub fn pools(&self) -> Vec<Pool> {
        let members = self.inner.members.lock().unwrap_or_else(|p| p.into_inner());
        members.values().map(|m| m.pool.clone()).collect()
    }

    /// Asks the monitor of `address` (or of every member) to check now.
    pub fn request_check(&self, address: Option<&ServerAddress>) {
        let members = self.inner.members.lock().unwrap_or_else(|p| p.into_inner());
        for (a, m) in members.iter() {
            if address.is_none_or(|x| x == a) {
                self.inner
                    .metrics
                    .immediate_checks
                    .with_label_values(&[a.to_string().as_str()])
                    .inc();
                m.check_now.notify_one();
            }
        }
    }

    /// Limits to advertise, waiting up to `timeout` for the first server to be known.
    pub async fn limits(&self, timeout: Duration) -> Option<UpstreamLimits> {
        let mut rx = self.subscribe();
        let found = match tokio::time::timeout(timeout, rx.wait_for(|s| s.limits.is_some())).await {
            Ok(Ok(s)) => s.limits.clone(),
            _ => None,
        };
        found
    }

    /// Picks a member for `criteria`, waiting for topology changes up to
    /// serverSelectionTimeoutMS.
    pub async fn select(&self, criteria: &Criteria) -> Result<Selected, SelectError> {
        let started = Instant::now();
        let deadline = started + self.inner.config.server_selection_timeout;
        let mut rx = self.subscribe();
        let mut requested = false;
        loop {
            let snap = rx.borrow_and_update().clone();
            if let Some(address) = snap.select(criteria, self.inner.config.local_threshold)? {
                if let Some(pool) = self.pool(&address) {
                    return Ok(Selected { address, pool });
                }
            }
            if !requested {
                self.request_check(None);
                requested = true;
            }
            tokio::select! {
                _ = self.inner.cancel.cancelled() => return Err(SelectError::ShuttingDown),
                r = tokio::time::timeout_at(deadline.into(), rx.changed()) => {
                    if r.is_err() || r.is_ok_and(|c| c.is_err()) {
                        let snap = self.snapshot();
                        return Err(SelectError::Timeout {
                            criteria: criteria_name(criteria),
                            waited_ms: started.elapsed().as_millis(),
                            summary: snap.summary(),
                        });
                    }
                }
            }
        }
    }

    /// Records a monitor's result and publishes the new snapshot.
    pub(crate) fn update(&self, info: ServerInfo) {
        let i = &self.inner;
        let address = info.address.clone();
        if let Some(pool) = self.pool(&address) {
            if info.kind == ServerKind::Unknown {
                pool.clear(info.error.as_deref().unwrap_or("server marked unknown"), true);
            } else {
                pool.mark_ready();
            }
        }
        let label = address.to_string();
        for kind in ServerKind::ALL {
            i.metrics
                .member_state
                .with_label_values(&[label.as_str(), kind.as_str()])
                .set(i64::from(*kind == info.kind));
        }
        if let Some(rtt) = info.rtt {
            i.metrics
                .member_rtt
                .with_label_values(&[label.as_str()])
                .set(rtt.as_secs_f64());
        }
        let old = self.snapshot();
        let new = old.with_server(info);
        if new.primary != old.primary && new.primary.is_some() {
            i.metrics.primary_changes.inc();
            tracing::info!(old = ?old.primary, new = ?new.primary, "primary changed");
        }
        if new.limits != old.limits && new.limits.is_some() {
            i.version.send_modify(|v| v.counter += 1);
        }
        i.snapshot.send_replace(Arc::new(new));
    }

    /// A state-change error in a reply (NotWritablePrimary, NodeIsRecovering): the
    /// member is re-checked at once; shutdown codes also clear its pool.
    pub fn on_reply_error(
        &self,
        address: &ServerAddress,
        generation: u32,
        info: &crate::command::ReplyInfo<'_>,
    ) {
        let codes = [info.code, info.write_concern_code];
        let Some(code) = codes
            .into_iter()
            .flatten()
            .find(|c| state_change::is_state_change(*c))
        else {
            return;
        };
        let label = address.to_string();
        self.inner
            .metrics
            .state_change_errors
            .with_label_values(&[label.as_str(), code.to_string().as_str()])
            .inc();
        tracing::info!(member = %address, code, "state change error from upstream");
        let Some(pool) = self.pool(address) else { return };
        if pool.generation() != generation {
            return; // stale: the pool was cleared since this connection was made
        }
        if state_change::is_shutdown(code) {
            pool.clear(&format!("server reported shutdown (code {code})"), false);
        }
        self.mark_unknown(address, format!("state change error {code}"));
        self.request_check(Some(address));
    }

    /// A network error on a pooled connection: the member is marked Unknown and its
    /// pool cleared, unless it was a timeout or the connection was already stale.
    pub fn on_network_error(
        &self,
        address: &ServerAddress,
        generation: u32,
        e: &crate::upstream::UpstreamError,
    ) {
        let Some(pool) = self.pool(address) else { return };
        if pool.generation() != generation || e.is_timeout() {
            return;
        }
        tracing::warn!(member = %address, error = %e, "network error on upstream connection");
        self.update(ServerInfo::unknown(address.clone(), Some(e.to_string())));
        self.request_check(Some(address));
    }

    fn mark_unknown(&self, address: &ServerAddress, why: String) {
        let old = self.snapshot();
        let new = old.with_server(ServerInfo::unknown(address.clone(), Some(why)));
        self.inner.snapshot.send_replace(Arc::new(new));
    }

    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Stops every monitor and closes every pool.
    pub fn shutdown(&self) {
        let members = self.inner.members.lock().unwrap_or_else(|p| p.into_inner());
        for m in members.values() {
            m.cancel.cancel();
            m.pool.close();
        }
    }
}

fn criteria_name(c: &Criteria) -> String {
    match c {
        Criteria::Primary => "primary".into(),
        Criteria::Read(rp) => format!("read preference {:?}", rp.get_str("mode").unwrap_or("?")),
    }
}
