//! The runtime side of topology: the SDAM state machine ([`crate::sdam`]) behind one lock,
//! one monitor task and one pool per member, and a snapshot published on a watch channel
//! that server selection and the admin endpoint read without locking.

mod failover;
mod monitor;
mod select;
mod snapshot;

pub use select::{SelectError, Selected};
pub use snapshot::{ServerInfo, ServerKind, Snapshot};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::address::ServerAddress;
use crate::config::Config;
use crate::handshake::{ProxyTopologyVersion, UpstreamLimits};
use crate::metrics::Metrics;
use crate::pins::Pins;
use crate::pool::Pool;
use crate::sdam::{
    AppError, AppErrorKind, CommandError, HandshakePhase, RttEstimator, SdamEvent, ServerDescription,
    TopologyDescription, TopologySettings, TopologyUpdate,
};

#[derive(Debug)]
struct Member {
    pool: Pool,
    /// Connections for long-polling getMores (`long_poll_pool_size`), cleared, readied
    /// and closed together with `pool`.
    long_poll: Option<Pool>,
    check_now: Arc<Notify>,
    cancel: CancellationToken,
}

impl Member {
    /// The main pool, then the long-poll pool where there is one.
    fn pools(&self) -> impl Iterator<Item = &Pool> {
        std::iter::once(&self.pool).chain(self.long_poll.as_ref())
    }

    /// Stops the monitor and closes both pools.
    fn stop(&self) {
        self.cancel.cancel();
        self.pools().for_each(Pool::close);
    }
}

/// SDAM state; every outcome is applied under this one lock, in order.
#[derive(Debug)]
struct Sdam {
    desc: TopologyDescription,
    rtt: HashMap<ServerAddress, RttEstimator>,
}

#[derive(Debug, Clone)]
pub struct Topology {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The configuration in force; a reload replaces it ([`crate::reload`]). Read it per
    /// use (selection timeouts, failover limits, new members' pool options).
    live: watch::Receiver<Arc<Config>>,
    metrics: Metrics,
    pins: Arc<Pins>,
    /// Monotonic origin for the SDAM state machine's clock.
    epoch: Instant,
    sdam: Mutex<Sdam>,
    members: Mutex<HashMap<ServerAddress, Member>>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    version: watch::Sender<ProxyTopologyVersion>,
    failover: failover::Failover,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

/// The long-poll pool's options: its own size, no minimum, the main pool's timeouts.
fn long_poll_options(config: &Config) -> crate::pool::PoolOptions {
    crate::pool::PoolOptions {
        max_size: config.long_poll_pool_size,
        min_size: 0,
        ..config.pool
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Topology {
    /// Starts monitors and pools for the configured seeds.
    pub fn start(
        live: watch::Receiver<Arc<Config>>,
        metrics: Metrics,
        pins: Arc<Pins>,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Result<Self, crate::sdam::SettingsError> {
        let config = live.borrow().clone();
        let mut settings = TopologySettings::new(config.seeds.clone());
        settings.replica_set = config.replica_set.clone();
        settings.direct_connection = config.direct_connection;
        settings.local_threshold = config.local_threshold;
        settings.heartbeat_frequency = config.heartbeat_frequency;
        let (desc, update) = TopologyDescription::new(settings.validate()?)?;
        let version = ProxyTopologyVersion {
            process_id: ObjectId::new(),
            counter: 0,
        };
        let inner = Arc::new(Inner {
            failover: failover::Failover::new(&metrics),
            live,
            metrics,
            pins,
            epoch: Instant::now(),
            snapshot: watch::Sender::new(Arc::new(Snapshot::new(desc.clone(), None))),
            sdam: Mutex::new(Sdam {
                desc,
                rtt: HashMap::new(),
            }),
            members: Mutex::default(),
            version: watch::Sender::new(version),
            tracker,
            cancel,
        });
        let t = Topology { inner };
        let mut sdam = lock(&t.inner.sdam);
        t.apply(&mut sdam, update);
        drop(sdam);
        Ok(t)
    }

    fn now(&self) -> Duration {
        self.inner.epoch.elapsed()
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
        lock(&self.inner.members).get(address).map(|m| m.pool.clone())
    }

    /// The pool for long-polling getMores on `address`: its own when configured.
    pub fn long_poll_pool(&self, address: &ServerAddress) -> Option<Pool> {
        let members = lock(&self.inner.members);
        let m = members.get(address)?;
        Some(m.long_poll.clone().unwrap_or_else(|| m.pool.clone()))
    }

    /// Every member's main pool.
    pub fn pools(&self) -> Vec<Pool> {
        lock(&self.inner.members)
            .values()
            .map(|m| m.pool.clone())
            .collect()
    }

    /// Both pools of a member.
    fn member_pools(&self, address: &ServerAddress) -> Vec<Pool> {
        lock(&self.inner.members)
            .get(address)
            .map(|m| m.pools().cloned().collect())
            .unwrap_or_default()
    }

    /// Asks the monitor of `address` (or of every member) to check now.
    pub fn request_check(&self, address: Option<&ServerAddress>) {
        for (a, m) in lock(&self.inner.members).iter() {
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

    /// Limits to advertise, waiting up to `timeout` for the first member to be known.
    pub async fn limits(&self, timeout: Duration) -> Option<UpstreamLimits> {
        let mut rx = self.subscribe();
        let found = match tokio::time::timeout(timeout, rx.wait_for(|s| s.limits.is_some())).await {
            Ok(Ok(s)) => s.limits.clone(),
            _ => None,
        };
        found
    }

    /// A monitor's successful check: the hello reply and one RTT sample.
    pub(crate) fn check_succeeded(
        &self,
        address: &ServerAddress,
        hello: &bson::Document,
        rtt: Option<Duration>,
    ) {
        let now = self.now();
        let mut sdam = lock(&self.inner.sdam);
        let est = sdam.rtt.entry(address.clone()).or_default();
        let average = match rtt {
            Some(sample) => est.add_sample(sample),
            None => est.average().unwrap_or_default(),
        };
        let sd = ServerDescription::from_hello(address.clone(), hello, average, now);
        let update = if sd.error.is_some() {
            let why = sd.error.clone().unwrap_or_default();
            sdam.rtt.remove(address);
            sdam.desc.handle_monitor_error(address, why, false)
        } else {
            sdam.desc.update(sd)
        };
        self.apply(&mut sdam, update);
    }

    /// An RTT sample from the separate RTT connection (streaming mode).
    pub(crate) fn rtt_sample(&self, address: &ServerAddress, sample: Duration) {
        let mut sdam = lock(&self.inner.sdam);
        let avg = sdam.rtt.entry(address.clone()).or_default().add_sample(sample);
        self.inner
            .metrics
            .member_rtt
            .with_label_values(&[address.to_string().as_str()])
            .set(avg.as_secs_f64());
    }

    pub(crate) fn check_failed(&self, address: &ServerAddress, error: String, timeout: bool) {
        self.inner
            .metrics
            .heartbeat_failures
            .with_label_values(&[address.to_string().as_str()])
            .inc();
        let mut sdam = lock(&self.inner.sdam);
        sdam.rtt.remove(address);
        let update = sdam.desc.handle_monitor_error(address, error, timeout);
        self.apply(&mut sdam, update);
    }

    /// An error reply or write concern error seen by the request path.
    pub fn on_reply_error(&self, address: &ServerAddress, generation: u32, reply: &bson::RawDocument) {
        let Ok(doc) = bson::Document::try_from(reply) else {
            return;
        };
        let Some(err) = CommandError::from_reply(&doc) else {
            return;
        };
        if let Some(code) = err
            .code
            .filter(|c| crate::sdam::classify_error(Some(*c), "").is_some())
        {
            // Drivers that see this error mark mongoplex Unknown and wait for its
            // awaitable hello to report a change: give them one at once.
            self.bump_version();
            let label = address.to_string();
            self.inner
                .metrics
                .state_change_errors
                .with_label_values(&[label.as_str(), code.to_string().as_str()])
                .inc();
            tracing::info!(member = %address, code, "state change error from upstream");
        }
        self.app_error(
            address,
            AppError {
                generation,
                phase: HandshakePhase::AfterHandshake,
                kind: AppErrorKind::Command(err),
            },
        );
    }

    /// A network error on a pooled connection (or while opening one).
    pub fn on_network_error(
        &self,
        address: &ServerAddress,
        generation: u32,
        before_handshake: bool,
        timeout: bool,
    ) {
        let phase = if before_handshake {
            HandshakePhase::BeforeHandshake
        } else {
            HandshakePhase::AfterHandshake
        };
        self.app_error(
            address,
            AppError {
                generation,
                phase,
                kind: AppErrorKind::Network { timeout },
            },
        );
    }

    fn app_error(&self, address: &ServerAddress, err: AppError) {
        let mut sdam = lock(&self.inner.sdam);
        let max_wire = sdam.desc.server(address).and_then(|s| s.max_wire_version);
        let action = sdam.desc.handle_application_error(address, &err, max_wire);
        if action.ignored_as_stale {
            return;
        }
        if action.mark_unknown {
            tracing::warn!(member = %address, error = ?err.kind, clear_pool = action.clear_pool, "member marked unknown after an application error");
        }
        self.apply(&mut sdam, action.update);
        drop(sdam);
        // A network error cancels the monitor's in-progress check (SDAM): the monitor
        // checks again at once (at most every 500 ms), so the member is usable as soon as
        // it answers instead of at the next heartbeat.
        if action.request_immediate_check || action.cancel_monitor_check {
            self.request_check(Some(address));
        }
    }

    /// Carries out what an SDAM update asks for, in the spec's order, then publishes.
    fn apply(&self, sdam: &mut Sdam, update: TopologyUpdate) {
        let i = &self.inner;
        for address in &update.removed {
            if let Some(m) = lock(&i.members).remove(address) {
                m.stop();
            }
            i.metrics
                .forget_member(&address.to_string(), ServerKind::ALL.iter().map(|k| k.as_str()));
            i.metrics
                .forget_member(&format!("{address}/long-poll"), std::iter::empty());
            let dropped = i.pins.drop_member(address);
            tracing::info!(member = %address, dropped_cursor_pins = dropped, "member removed from topology");
        }
        for clear in &update.pools_to_clear {
            for pool in self.member_pools(&clear.address) {
                let why = sdam.desc.server(&clear.address).and_then(|s| s.error.clone());
                pool.clear_to(
                    clear.new_generation,
                    why.as_deref().unwrap_or("server marked unknown"),
                    clear.interrupt_in_use,
                );
            }
        }
        for address in &update.pools_ready {
            for pool in self.member_pools(address) {
                pool.mark_ready();
            }
        }
        for address in &update.added {
            self.add_member(address.clone());
        }
        if !update.immediate_checks.is_empty() {
            for a in &update.immediate_checks {
                if let Some(m) = lock(&i.members).get(a) {
                    m.check_now.notify_one();
                }
            }
        }
        self.log_events(&update.events);
        let old = self.snapshot();
        let new = Snapshot::new(sdam.desc.clone(), old.limits.as_ref());
        self.record_states(&new);
        if let Some(change) = &update.primary_changed {
            if change.new.is_some() {
                i.metrics.primary_changes.inc();
            }
            tracing::info!(old = ?change.old.as_ref().map(ToString::to_string), new = ?change.new.as_ref().map(ToString::to_string), "primary changed");
        }
        i.failover.observe(new.primary.is_some());
        if (new.limits != old.limits && old.limits.is_some()) || update.primary_changed.is_some() {
            self.bump_version();
        }
        i.snapshot.send_replace(Arc::new(new));
    }

    /// Advances the proxy's own topologyVersion, releasing clients' awaitable hellos.
    fn bump_version(&self) {
        self.inner.version.send_modify(|v| v.counter += 1);
    }

    fn log_events(&self, events: &[SdamEvent]) {
        for e in events {
            if let SdamEvent::ServerDescriptionChanged {
                address,
                previous,
                new,
            } = e
            {
                if previous.server_type != new.server_type {
                    tracing::info!(member = %address, from = previous.server_type.as_str(), to = new.server_type.as_str(), error = ?new.error, "member state changed");
                }
            }
        }
    }

    fn record_states(&self, snap: &Snapshot) {
        let m = &self.inner.metrics;
        for s in &snap.servers {
            let label = s.address.to_string();
            for kind in ServerKind::ALL {
                m.member_state
                    .with_label_values(&[label.as_str(), kind.as_str()])
                    .set(i64::from(*kind == s.kind));
            }
            if let Some(rtt) = s.rtt {
                m.member_rtt
                    .with_label_values(&[label.as_str()])
                    .set(rtt.as_secs_f64());
            }
        }
    }

    /// The configured connect options with the shared upstream byte counters, for every
    /// connection this topology opens (pools and monitors).
    pub(crate) fn connect_options(&self) -> crate::upstream::ConnectOptions {
        let mut opts = self.config().connect.clone();
        opts.wire_metrics = Some(self.inner.metrics.upstream_wire.clone());
        opts
    }

    fn add_member(&self, address: ServerAddress) {
        let i = &self.inner;
        let config = self.config();
        let mut members = lock(&i.members);
        if members.contains_key(&address) {
            return;
        }
        let label = address.to_string();
        i.metrics
            .pool_max_size
            .with_label_values(&[label.as_str()])
            .set(i64::try_from(config.pool.max_size).unwrap_or(0));
        let pool = Pool::new(
            address.clone(),
            config.pool,
            self.connect_options(),
            i.metrics.pool(&label),
        );
        let cancel = i.cancel.child_token();
        pool.spawn_maintenance(&i.tracker, cancel.clone());
        let long_poll = (config.long_poll_pool_size > 0).then(|| {
            let options = long_poll_options(&config);
            // Its own series (member label "<host:port>/long-poll"), so that the main
            // pool's gauges keep meaning what they say.
            let label = format!("{label}/long-poll");
            i.metrics
                .pool_max_size
                .with_label_values(&[label.as_str()])
                .set(i64::try_from(options.max_size).unwrap_or(0));
            let p = Pool::new(
                address.clone(),
                options,
                self.connect_options(),
                i.metrics.pool(&label),
            );
            p.spawn_maintenance(&i.tracker, cancel.clone());
            p
        });
        let check_now = Arc::new(Notify::new());
        i.tracker.spawn(monitor::run(
            self.clone(),
            address.clone(),
            check_now.clone(),
            cancel.clone(),
        ));
        tracing::info!(member = %address, "monitoring member");
        members.insert(
            address,
            Member {
                pool,
                long_poll,
                check_now,
                cancel,
            },
        );
    }

    /// Whether SRV records may be rescanned now (Sharded or Unknown).
    pub fn srv_pollable(&self) -> bool {
        lock(&self.inner.sdam).desc.srv_pollable()
    }

    /// A rescan's usable records: decides what changes and applies it under the SDAM lock,
    /// so no heartbeat outcome interleaves. `None` when the topology is not pollable.
    pub fn apply_srv_records(
        &self,
        records: &[ServerAddress],
        max_hosts: usize,
    ) -> Option<crate::srv::RescanPlan> {
        let mut sdam = lock(&self.inner.sdam);
        if !sdam.desc.srv_pollable() {
            return None;
        }
        let current = sdam.desc.servers().map(|s| s.address.clone()).collect();
        let plan = crate::srv::plan_rescan(&current, records, max_hosts, &mut rand::rng());
        if !plan.is_empty() {
            let update = sdam.desc.apply_srv_rescan(&plan.add, &plan.remove);
            self.apply(&mut sdam, update);
        }
        Some(plan)
    }

    /// The configuration in force now.
    pub(crate) fn config(&self) -> Arc<Config> {
        self.inner.live.borrow().clone()
    }

    /// Applies a reloaded configuration's pool options to every member's pools (new
    /// members read [`Topology::config`] when they are added).
    pub fn reconfigure(&self) {
        let config = self.config();
        let i = &self.inner;
        for (address, m) in lock(&i.members).iter() {
            m.pool.set_options(config.pool);
            let label = address.to_string();
            i.metrics
                .pool_max_size
                .with_label_values(&[label.as_str()])
                .set(i64::try_from(config.pool.max_size).unwrap_or(0));
            if let Some(p) = &m.long_poll {
                p.set_options(long_poll_options(&config));
            }
        }
    }

    pub(crate) fn cancelled(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    /// Stops every monitor and closes every pool.
    pub fn shutdown(&self) {
        for m in lock(&self.inner.members).values() {
            m.stop();
        }
    }
}
