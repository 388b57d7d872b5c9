//! Connection scale, on raw sockets with hand-encoded OP_MSG (10k driver `Client`s would
//! each bring monitor tasks and sockets, and measure the harness instead of the proxy).
//!
//! - idle: N clients complete the hello handshake and go quiet; the proxy's RSS growth
//!   per connection and its upstream connections.
//! - storm: N clients connect at once and each runs one find against a proxy with a
//!   small maxPoolSize; how many are served, how long they wait, and the peak number of
//!   upstream connections.
//!
//! Clients bind to 127.0.0.x source addresses before connecting, [`PER_SOURCE_IP`] per
//! address, so that ephemeral ports (and TIME_WAIT from a previous run) never run short.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

use super::load::{DB, ITEMS};
use super::{procs, start_proxy, wire, Options, Res};

const PER_SOURCE_IP: usize = 4_000;
/// Connections being opened at once by the idle run.
const IDLE_CONCURRENCY: usize = 256;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    pub requested: usize,
    /// Clients whose hello was answered ok.
    pub connected: usize,
    pub first_error: Option<String>,
    pub open_seconds: f64,
    /// `ListenOverflows` while they connected (full accept queue: the SYN is retried after 1 s).
    pub listen_overflows: u64,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    pub rss_growth_per_connection_bytes: f64,
    pub peak_rss_bytes: u64,
    /// `clients` from the proxy's /status while they were all connected.
    pub proxy_clients: Option<u64>,
    /// Pool connections (all members) from /status.
    pub upstream_pool_connections: u64,
    /// The proxy's TCP sockets to the upstream port, monitors included.
    pub upstream_tcp_sockets: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct StormResult {
    pub clients: usize,
    pub max_pool_size: u64,
    /// Clients whose find returned the document.
    pub served: usize,
    pub first_error: Option<String>,
    pub wall_seconds: f64,
    /// `ListenOverflows` during the storm (full accept queue: the SYN is retried after 1 s).
    pub listen_overflows: u64,
    /// Time for connect() itself.
    pub connect_p50_ms: f64,
    pub connect_p99_ms: f64,
    /// From the start of connect to the hello reply (answered by the proxy itself).
    pub hello_p50_ms: f64,
    pub hello_p99_ms: f64,
    /// From the start of connect to the find reply (needs an upstream connection).
    pub find_p50_ms: f64,
    pub find_p99_ms: f64,
    pub find_max_ms: f64,
    /// Highest sampled sum of `mongoplex_pool_connections` (all states).
    pub peak_pool_connections: u64,
    pub pool_samples: u64,
    /// `mongoplex_pool_connections_created_total` during the storm.
    pub upstream_connections_created: u64,
    /// Highest sampled count of the proxy's TCP sockets to the upstream (pool and monitors).
    pub peak_upstream_tcp_sockets: usize,
    /// The same count just before the storm (the monitors' sockets).
    pub upstream_tcp_sockets_before: usize,
    pub peak_rss_bytes: u64,
}

fn source_ip(base: u8, i: usize) -> Res<Ipv4Addr> {
    let offset = u8::try_from(i / PER_SOURCE_IP).map_err(|_| "too many clients for the 127.0.0.x spread")?;
    let last = base
        .checked_add(offset)
        .ok_or("too many clients for the 127.0.0.x spread")?;
    Ok(Ipv4Addr::new(127, 0, 0, last))
}

/// Bind-before-connect from `source` (port chosen by the kernel).
async fn connect_from(source: Ipv4Addr, target: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    // Lets the kernel reuse a port still in TIME_WAIT from an earlier run.
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::new(source.into(), 0))?;
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn hello(stream: &mut TcpStream) -> io::Result<()> {
    let reply = wire::round_trip(stream, 1, &wire::hello()).await?;
    wire::expect_ok("hello", &reply)
}

pub async fn idle(opts: &Options, bin: &Path, upstream: SocketAddr, dir: &Path) -> Res<IdleResult> {
    let n = opts.idle_connections;
    let env = vec![("MONGOPLEX_MAX_CLIENT_CONNECTIONS", (n + 100).to_string())];
    let proxy = start_proxy(bin, upstream, None, env, None, dir, "mongoplex-idle").await?;
    let pid = proxy.pid();
    // One handshake first, so state the proxy sets up lazily is in the baseline.
    {
        let mut s = TcpStream::connect(proxy.addr).await?;
        hello(&mut s).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = procs::status_bytes(pid, "VmRSS")?;

    let overflows_before = procs::listen_overflows()?;
    let start = Instant::now();
    let permits = Arc::new(Semaphore::new(IDLE_CONCURRENCY));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (source, target, permits) = (source_ip(2, i)?, proxy.addr, permits.clone());
        handles.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.map_err(io::Error::other)?;
            let open = async {
                let mut s = connect_from(source, target).await?;
                hello(&mut s).await?;
                Ok::<_, io::Error>(s)
            };
            tokio::time::timeout(CLIENT_TIMEOUT, open)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect + hello timed out"))?
        }));
    }
    let mut streams = Vec::with_capacity(n);
    let mut first_error = None;
    for h in handles {
        match h.await? {
            Ok(s) => streams.push(s),
            Err(e) => {
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let open_seconds = start.elapsed().as_secs_f64();
    let listen_overflows = procs::listen_overflows()?.saturating_sub(overflows_before);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let rss_after = procs::status_bytes(pid, "VmRSS")?;
    let status = proxy.status().await?;
    let connected = streams.len();
    let result = IdleResult {
        requested: n,
        connected,
        first_error,
        open_seconds,
        listen_overflows,
        rss_before_bytes: rss_before,
        rss_after_bytes: rss_after,
        rss_growth_per_connection_bytes: rss_after.saturating_sub(rss_before) as f64
            / connected.max(1) as f64,
        peak_rss_bytes: procs::status_bytes(pid, "VmHWM")?,
        proxy_clients: status["clients"].as_u64(),
        upstream_pool_connections: procs::pool_total(&status),
        upstream_tcp_sockets: procs::sockets_to(upstream, Some(pid))?,
    };
    drop(streams);
    eprintln!(
        "[bench] idle: {connected}/{n} connected in {open_seconds:.1} s, RSS +{:.0} B/connection, {} upstream sockets",
        result.rss_growth_per_connection_bytes, result.upstream_tcp_sockets
    );
    Ok(result)
}

/// Times of one storm client, each from the start of its connect.
#[derive(Clone, Copy)]
struct StormTimes {
    connected: Duration,
    hello: Duration,
    find: Duration,
}

/// Connect, hello, find. The stream is handed back so that every client stays
/// connected until all have replies.
async fn storm_client(source: Ipv4Addr, target: SocketAddr, id: i64) -> io::Result<(StormTimes, TcpStream)> {
    let start = Instant::now();
    let mut s = connect_from(source, target).await?;
    let connected = start.elapsed();
    hello(&mut s).await?;
    let hello_at = start.elapsed();
    let reply = wire::round_trip(&mut s, 2, &wire::find_by_id(DB, ITEMS, id)).await?;
    wire::expect_ok("find", &reply)?;
    if wire::first_batch_len(&reply) != Some(1) {
        return Err(io::Error::other(format!(
            "find _id {id}: expected one document, got {reply}"
        )));
    }
    let times = StormTimes {
        connected,
        hello: hello_at,
        find: start.elapsed(),
    };
    Ok((times, s))
}

/// Samples the pool gauge (admin /metrics) and the TCP table until `stop` is set.
///
/// Counting the proxy's own sockets means reading its fd table (one readlink per client
/// connection), so it is done only when the cheap count of all sockets to the upstream
/// is above the proxy's highest count so far (the proxy's count cannot be higher
/// otherwise), and at most every 100 ms.
async fn sample_upstream(
    proxy_admin: SocketAddr,
    proxy_pid: u32,
    upstream: SocketAddr,
    stop: Arc<AtomicBool>,
    peak_pool: Arc<AtomicU64>,
) -> Res<(u64, usize)> {
    let (mut samples, mut peak_owned) = (0u64, 0usize);
    let mut last_scan: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        if let Ok((200, text)) = procs::http_get(proxy_admin, "/metrics").await {
            let pool = procs::count(procs::metric_sum(&text, "mongoplex_pool_connections"));
            peak_pool.fetch_max(pool, Ordering::Relaxed);
            samples += 1;
        }
        let any = tokio::task::spawn_blocking(move || procs::sockets_to(upstream, None)).await??;
        let due = last_scan.is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
        if any > peak_owned && due {
            last_scan = Some(Instant::now());
            let owned =
                tokio::task::spawn_blocking(move || procs::sockets_to(upstream, Some(proxy_pid))).await??;
            peak_owned = peak_owned.max(owned);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((samples, peak_owned))
}

pub async fn storm(opts: &Options, bin: &Path, upstream: SocketAddr, dir: &Path) -> Res<StormResult> {
    let n = opts.storm_clients;
    let env = vec![("MONGOPLEX_MAX_CLIENT_CONNECTIONS", (n + 100).to_string())];
    let proxy = start_proxy(
        bin,
        upstream,
        Some(opts.storm_pool_size),
        env,
        None,
        dir,
        "mongoplex-storm",
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let created = |text: &str| procs::metric_sum(text, "mongoplex_pool_connections_created_total");
    let created_before = created(&proxy.metrics().await?);
    let sockets_before = procs::sockets_to(upstream, Some(proxy.pid()))?;

    let (go_tx, go_rx) = watch::channel(false);
    let (release_tx, release_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::channel(n.max(1));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (source, target) = (source_ip(20, i)?, proxy.addr);
        let id = i64::try_from(u64::try_from(i)? % opts.preload.max(1))?;
        let (mut go, mut release, done) = (go_rx.clone(), release_rx.clone(), done_tx.clone());
        handles.push(tokio::spawn(async move {
            let _ = go.wait_for(|&g| g).await;
            let outcome = tokio::time::timeout(CLIENT_TIMEOUT, storm_client(source, target, id)).await;
            let (report, stream) = match outcome {
                Ok(Ok((times, s))) => (Ok(times), Some(s)),
                Ok(Err(e)) => (Err(e.to_string()), None),
                Err(_) => (Err("connect + hello + find timed out".to_string()), None),
            };
            let _ = done.send(report).await;
            let _ = release.wait_for(|&r| r).await;
            drop(stream);
        }));
    }
    drop(done_tx);
    let stop = Arc::new(AtomicBool::new(false));
    let peak_pool = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn(sample_upstream(
        proxy.admin,
        proxy.pid(),
        upstream,
        stop.clone(),
        peak_pool.clone(),
    ));

    let overflows_before = procs::listen_overflows()?;
    let start = Instant::now();
    go_tx.send(true)?;
    let (mut connects, mut hellos, mut finds, mut first_error) = (Vec::new(), Vec::new(), Vec::new(), None);
    // Every client reports once (each holds a sender until released, so count them).
    for _ in 0..n {
        let Some(report) = done_rx.recv().await else { break };
        match report {
            Ok(t) => {
                connects.push(t.connected);
                hellos.push(t.hello);
                finds.push(t.find);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let wall_seconds = start.elapsed().as_secs_f64();
    let listen_overflows = procs::listen_overflows()?.saturating_sub(overflows_before);
    // Let the sampler see the pool as the storm left it, then release the clients.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let (pool_samples, peak_sockets) = sampler.await??;
    // A storm shorter than one sampling round (a slow /metrics) can slip between samples;
    // the pool it leaves behind is a lower bound for its peak.
    let pool_after = procs::count(procs::metric_sum(
        &proxy.metrics().await?,
        "mongoplex_pool_connections",
    ));
    peak_pool.fetch_max(pool_after, Ordering::Relaxed);
    let peak_sockets = peak_sockets.max(procs::sockets_to(upstream, Some(proxy.pid()))?);
    release_tx.send(true)?;
    for h in handles {
        h.await?;
    }
    connects.sort_unstable();
    hellos.sort_unstable();
    finds.sort_unstable();
    let ms = |v: &[Duration], q: usize| quantile(v, q).as_secs_f64() * 1000.0;
    let result = StormResult {
        clients: n,
        max_pool_size: opts.storm_pool_size,
        served: finds.len(),
        first_error,
        wall_seconds,
        listen_overflows,
        connect_p50_ms: ms(&connects, 5000),
        connect_p99_ms: ms(&connects, 9900),
        hello_p50_ms: ms(&hellos, 5000),
        hello_p99_ms: ms(&hellos, 9900),
        find_p50_ms: ms(&finds, 5000),
        find_p99_ms: ms(&finds, 9900),
        find_max_ms: ms(&finds, 10_000),
        peak_pool_connections: peak_pool.load(Ordering::Relaxed),
        pool_samples,
        upstream_connections_created: procs::count(created(&proxy.metrics().await?) - created_before),
        peak_upstream_tcp_sockets: peak_sockets,
        upstream_tcp_sockets_before: sockets_before,
        peak_rss_bytes: procs::status_bytes(proxy.pid(), "VmHWM")?,
    };
    eprintln!(
        "[bench] storm: {}/{n} served, find p99 {:.1} ms, peak pool {} (max {}), peak upstream sockets {}",
        result.served, result.find_p99_ms, result.peak_pool_connections, opts.storm_pool_size, peak_sockets
    );
    Ok(result)
}

/// `q` in parts per 10,000 of a sorted slice; zero when empty.
fn quantile(sorted: &[Duration], q: usize) -> Duration {
    let n = sorted.len();
    if n == 0 {
        return Duration::ZERO;
    }
    sorted[(n * q).div_ceil(10_000).clamp(1, n) - 1]
}
