//! State shared by every client session: handles only, no globals.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::attempts::AttemptLedger;
use crate::config::Config;
use crate::failpoint::FailPoints;
use crate::fdlimit::{self, Capacity};
use crate::memory::MemoryBudget;
use crate::metrics::{Metrics, RequestMetrics};
use crate::pins::Pins;
use crate::throttle::Throttles;
use crate::topology::Topology;

#[derive(Debug)]
pub struct Context {
    /// The configuration as started. A reload never changes it, so read from it only
    /// settings that need a restart; read the others through [`Context::current`].
    pub config: Arc<Config>,
    /// The configuration in force: the start-up one, then each accepted reload's
    /// ([`crate::reload`]), whose settings that need a restart keep their start-up values.
    pub live: watch::Sender<Arc<Config>>,
    /// Cancelled on SIGTERM: `/ready` answers 503 from then on ([`crate::server::Proxy::drain`]).
    pub draining: CancellationToken,
    pub topology: Topology,
    pub metrics: Metrics,
    pub requests: RequestMetrics,
    pub pins: Arc<Pins>,
    /// Server attempts per retryable write, across the proxy's and the driver's retries.
    pub attempts: AttemptLedger,
    /// Present only with `enable_test_commands`.
    pub failpoints: Option<FailPoints>,
    next_connection_id: AtomicI64,
    /// Open client connections, checked against max_client_connections at accept.
    pub clients: AtomicUsize,
    /// Clients being refused at the limit ([`crate::session::refuse`]).
    pub refusing: AtomicUsize,
    /// How many clients may be open at once ([`crate::fdlimit`]).
    pub client_capacity: Capacity,
    /// Bytes of large messages held at once ([`crate::memory`]).
    pub memory: MemoryBudget,
    /// Log rate limits for events that repeat ([`crate::throttle`]).
    pub throttles: Throttles,
    /// This process's key for the made-up SCRAM challenges of unknown users
    /// ([`crate::auth::login`]): random per start, never shown.
    pub login_key: crate::auth::login::LoginKey,
}

impl Context {
    pub fn new(
        live: watch::Sender<Arc<Config>>,
        topology: Topology,
        metrics: Metrics,
        pins: Arc<Pins>,
    ) -> Self {
        let config = live.borrow().clone();
        let requests = RequestMetrics::new(&metrics);
        let failpoints = config.enable_test_commands.then(FailPoints::default);
        let memory = MemoryBudget::new(config.max_buffered_bytes, metrics.buffered_bytes.clone());
        let configured = config.max_client_connections;
        let client_capacity = fdlimit::current().map_or(Capacity::Configured(configured), |n| {
            fdlimit::capacity(configured, n.soft, fdlimit::reserve(&config))
        });
        Self {
            config,
            live,
            draining: CancellationToken::new(),
            topology,
            metrics,
            requests,
            pins,
            attempts: AttemptLedger::default(),
            failpoints,
            next_connection_id: AtomicI64::new(1),
            clients: AtomicUsize::new(0),
            refusing: AtomicUsize::new(0),
            client_capacity,
            memory,
            throttles: Throttles::default(),
            login_key: crate::auth::login::LoginKey::random(),
        }
    }

    /// The configuration in force now (cheap: a read lock and an `Arc` clone).
    pub fn current(&self) -> Arc<Config> {
        self.live.borrow().clone()
    }

    pub fn next_connection_id(&self) -> i64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }
}
