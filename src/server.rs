//! Listeners and lifecycle: accept clients (TCP and optionally a unix socket), enforce
//! the client-connection limit, and shut down in order: stop accepting, let sessions
//! finish their in-flight request within the deadline, then close pools and monitors.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::context::Context;
use crate::metrics::Metrics;
use crate::pins::Pins;
use crate::reload::{Reloader, Source};
use crate::session::refuse::RefusalSlot;
use crate::session::{self, ClientStream};
use crate::topology::Topology;

/// A running proxy.
pub struct Proxy {
    pub client_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub ctx: Arc<Context>,
    pub registry: Registry,
    /// Present when started with a [`crate::reload::Source`] (the binary is).
    pub reloader: Option<Arc<Reloader>>,
    accept_cancel: CancellationToken,
    session_cancel: CancellationToken,
    background_cancel: CancellationToken,
    sessions: TaskTracker,
    background: TaskTracker,
}

/// Decrements the open-client count when a session task ends, however it ends.
struct ClientSlot(Arc<Context>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Proxy {
    /// Binds the listeners and starts monitors, pools and the admin endpoint; with no
    /// reload source (`POST /reload` answers that it cannot reload).
    pub async fn start(config: Arc<Config>) -> std::io::Result<Self> {
        Self::start_with(config, None).await
    }

    /// [`Proxy::start`], able to reload from `source` (SIGHUP, `POST /reload`).
    pub async fn start_with(config: Arc<Config>, source: Option<Source>) -> std::io::Result<Self> {
        let live = watch::Sender::new(config.clone());
        let registry = Registry::new();
        let metrics = Metrics::new(&registry, config.max_app_labels);
        let background = TaskTracker::new();
        let background_cancel = CancellationToken::new();
        let pins = Arc::new(Pins::new(
            metrics.pinned_cursors.clone(),
            metrics.pinned_transactions.clone(),
        ));
        let topology = Topology::start(
            live.subscribe(),
            metrics.clone(),
            pins.clone(),
            background.clone(),
            background_cancel.clone(),
        )
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        if let (Some(spec), Some(resolver)) = (&config.srv, &config.dns) {
            for result in crate::srv::poll::RESULTS {
                metrics.srv_lookups.with_label_values(&[*result]);
            }
            let poller = crate::srv::poll::Poller {
                topology: topology.clone(),
                resolver: resolver.clone(),
                spec: spec.clone(),
                first_ttl: config.srv_initial_ttl.unwrap_or(crate::srv::MIN_RESCAN_INTERVAL),
                heartbeat: config.heartbeat_frequency,
                lookups: metrics.srv_lookups.clone(),
            };
            background.spawn(poller.run(background_cancel.clone()));
        }
        let ctx = Arc::new(Context::new(live, topology, metrics, pins));
        let reloader = source.map(|s| Arc::new(Reloader::new(s, ctx.clone())));
        if let crate::fdlimit::Capacity::Descriptors { clients, soft } = ctx.client_capacity {
            tracing::warn!(
                max_client_connections = config.max_client_connections,
                clients,
                nofile_soft = soft,
                reserve = crate::fdlimit::reserve(&config),
                "the file-descriptor limit allows fewer clients than max_client_connections; raise the hard limit (ulimit -Hn) to admit more"
            );
        }
        let accept_cancel = CancellationToken::new();
        let session_cancel = CancellationToken::new();
        let sessions = TaskTracker::new();

        let tcp = bind_client_listener(config.listen)?;
        let client_addr = tcp.local_addr()?;
        let accept = Acceptor {
            ctx: ctx.clone(),
            sessions: sessions.clone(),
            session_cancel: session_cancel.clone(),
        };
        background.spawn(accept.clone().tcp(tcp, accept_cancel.clone()));
        if let Some(path) = &config.unix_socket {
            // A socket file left by a previous run would make bind fail.
            let _ = std::fs::remove_file(path);
            let unix = UnixListener::bind(path)?;
            background.spawn(accept.unix(unix, accept_cancel.clone()));
        }
        let admin_addr = match config.admin {
            Some(addr) => {
                let listener = TcpListener::bind(addr).await?;
                let local = listener.local_addr()?;
                let app = crate::admin::router(ctx.clone(), registry.clone(), reloader.clone())
                    .into_make_service_with_connect_info::<SocketAddr>();
                let cancel = background_cancel.clone();
                background.spawn(async move {
                    let serve = axum::serve(listener, app).with_graceful_shutdown(cancel.cancelled_owned());
                    if let Err(e) = serve.await {
                        tracing::error!(error = %e, "admin listener failed");
                    }
                });
                Some(local)
            }
            None => None,
        };
        background.spawn(sweep_pins(ctx.clone(), background_cancel.clone()));
        tracing::info!(listen = %client_addr, unix_socket = ?config.unix_socket, admin = ?admin_addr, upstream = %config.upstream_redacted, "mongoplex started");
        Ok(Self {
            client_addr,
            admin_addr,
            ctx,
            registry,
            reloader,
            accept_cancel,
            session_cancel,
            background_cancel,
            sessions,
            background,
        })
    }

    /// Re-reads the configuration ([`crate::reload`]); `None` when started without a
    /// reload source.
    pub async fn reload(&self, trigger: &'static str) -> Option<crate::reload::Outcome> {
        let reloader = self.reloader.clone()?;
        tokio::task::spawn_blocking(move || reloader.reload(trigger))
            .await
            .ok()
    }

    /// The first step of a drain: `/ready` answers 503 from now on, while the listeners
    /// keep accepting, so that load balancers stop sending clients before they would be
    /// refused ([`Proxy::shutdown`] closes the listeners).
    pub fn drain(&self) {
        self.ctx.draining.cancel();
    }

    /// Graceful shutdown: returns once everything has stopped or `deadline` passed.
    pub async fn shutdown(self, deadline: Duration) {
        self.ctx.draining.cancel();
        tracing::info!("shutting down: no longer accepting clients");
        self.accept_cancel.cancel();
        self.session_cancel.cancel();
        self.sessions.close();
        if tokio::time::timeout(deadline, self.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.sessions.len(),
                "shutdown deadline reached with requests still in flight"
            );
        }
        self.ctx.topology.shutdown();
        self.background_cancel.cancel();
        self.background.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.background.wait()).await;
        tracing::info!("shutdown complete");
    }
}

#[derive(Clone)]
struct Acceptor {
    ctx: Arc<Context>,
    sessions: TaskTracker,
    session_cancel: CancellationToken,
}

impl Acceptor {
    /// Admits a client if under the limit; otherwise answers its hello with an error
    /// that names the limit, and closes it.
    fn admit(&self, io: ClientStream, peer: String) {
        let capacity = self.ctx.client_capacity;
        let limit = capacity.clients();
        if self.ctx.clients.fetch_add(1, Ordering::Relaxed) >= limit {
            self.ctx.clients.fetch_sub(1, Ordering::Relaxed);
            let refused = self.ctx.metrics.client_rejected.with_label_values(&["limit"]);
            refused.inc();
            // A flood at the limit would log a line per client: the first ten, then one
            // in a thousand, each with the count so far.
            let n = refused.get();
            if n <= 10 || n.is_multiple_of(1000) {
                tracing::warn!(%peer, limit, refused = n, "refusing client: max_client_connections reached");
            }
            if let Some(slot) = RefusalSlot::take(&self.ctx, &self.ctx.refusing) {
                tokio::spawn(session::refuse::refuse(slot, io, capacity));
            }
            return;
        }
        let slot = ClientSlot(self.ctx.clone());
        let ctx = self.ctx.clone();
        let cancel = self.session_cancel.clone();
        self.sessions.spawn(async move {
            let _slot = slot;
            session::serve(ctx, io, peer, cancel).await;
        });
    }

    async fn accept_error(&self, e: std::io::Error) {
        // EMFILE and friends: back off instead of spinning; existing clients carry on.
        self.ctx
            .metrics
            .client_rejected
            .with_label_values(&["accept_error"])
            .inc();
        if let Some(held_back) = self.ctx.throttles.accept.admit() {
            tracing::warn!(error = %e, held_back, "accept failed");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    async fn tcp(self, listener: TcpListener, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = listener.accept() => match r {
                    Ok((sock, peer)) => {
                        let _ = sock.set_nodelay(true);
                        self.admit(ClientStream::Tcp(sock), peer.to_string());
                    }
                    Err(e) => self.accept_error(e).await,
                }
            }
        }
    }

    async fn unix(self, listener: UnixListener, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = listener.accept() => match r {
                    Ok((sock, _)) => self.admit(ClientStream::Unix(sock), "unix".into()),
                    Err(e) => self.accept_error(e).await,
                }
            }
        }
    }
}

/// Accept-queue length for the client listener. A sidecar sees connection storms when an
/// app fleet restarts; the default (1024) overflowed in the 5,000-client storm benchmark,
/// costing those clients a 1 s SYN retry. The kernel caps this at net.core.somaxconn.
const LISTEN_BACKLOG: u32 = 4096;

fn bind_client_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn sweep_pins(ctx: Arc<Context>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => ctx.pins.sweep(std::time::Instant::now()),
        }
    }
}
