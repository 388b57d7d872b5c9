//! The benchmark harness behind `cargo bench --bench proxy` (see tests/bench/README.md).
//!
//! Layout:
//! - `mod.rs` (here): options, and the run: start the upstream, pre-load, then each
//!   selected section in turn.
//! - `load.rs`: the closed-loop load generator on the official driver.
//! - `scale.rs`: 10k idle connections and the 5k connection storm, on raw sockets
//!   speaking hand-encoded OP_MSG (`wire.rs`).
//! - `callgrind.rs`: instructions per proxied request under valgrind.
//! - `tls.rs`: TLS and SCRAM on the upstream leg (the Python SecantusDB: the Rust one
//!   has no TLS), and the cost of establishing one upstream connection.
//! - `procs.rs`: the processes, and what is read from `/proc` and the admin endpoint.
//! - `report.rs`: medians, targets, the markdown tables and the JSON.
//!
//! Every direct-vs-proxied figure comes from runs alternated within one invocation
//! against the same upstream, and is reported as a ratio or a difference: the machine
//! is shared, so absolute numbers drift and only side-by-side figures compare.

// The smoke test (tests/bench_smoke.rs) compiles this module too and uses less of it.
#![allow(dead_code)]

pub mod callgrind;
pub mod load;
pub mod procs;
pub mod report;
pub mod scale;
pub mod tls;
pub mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Serialize;

use load::Workload;
use procs::{ProxyProc, ProxySpec, Upstream};

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// mongoplex benchmark: every figure direct-to-upstream and through the proxy, side by side.
#[derive(Debug, Clone, Parser)]
#[command(name = "proxy")]
pub struct Options {
    /// Throughput/latency workloads (ping, find_one, insert_one, mix).
    #[arg(long, value_delimiter = ',', value_parser = Workload::parse, default_value = "ping,find_one,insert_one,mix")]
    pub workloads: Vec<Workload>,
    /// Concurrent driver tasks; each workload runs at each count.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    pub tasks: Vec<usize>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Unmeasured warm-up seconds before each run (fills the pools).
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Rounds; each round runs direct and proxied once per workload and task count.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Documents pre-loaded for find_one (and the storm's find).
    #[arg(long, default_value_t = 10_000)]
    pub preload: u64,
    /// Skip the throughput/latency section.
    #[arg(long)]
    pub no_throughput: bool,
    /// Both connection-scale runs (--idle and --storm).
    #[arg(long)]
    pub scale: bool,
    /// Idle connections: hello, then nothing; RSS per connection, upstream connections.
    #[arg(long)]
    pub idle: bool,
    #[arg(long, default_value_t = 10_000)]
    pub idle_connections: usize,
    /// Connection storm: every client connects at once and runs one find.
    #[arg(long)]
    pub storm: bool,
    #[arg(long, default_value_t = 5_000)]
    pub storm_clients: usize,
    /// The proxy's maxPoolSize during the storm.
    #[arg(long, default_value_t = 20)]
    pub storm_pool_size: u64,
    /// Instructions per proxied request under valgrind --tool=callgrind.
    #[arg(long)]
    pub callgrind: bool,
    #[arg(long, value_delimiter = ',', value_parser = Workload::parse, default_value = "ping")]
    pub callgrind_workloads: Vec<Workload>,
    /// Measured requests per callgrind workload (sequential, one connection).
    #[arg(long, default_value_t = 2_000)]
    pub callgrind_requests: u64,
    /// How the throughput section's proxied clients reach the proxy: `tcp` (loopback, like
    /// the direct runs) or `unix` (a unix socket, the cheaper leg a sidecar can offer).
    #[arg(long, value_parser = ["tcp", "unix"], default_value = "tcp")]
    pub client_socket: String,
    /// TLS and SCRAM upstream: proxied-TLS ÷ direct-TLS, proxy CPU per request with and
    /// without TLS, and the cost of one upstream connection (on the Python SecantusDB).
    #[arg(long)]
    pub tls: bool,
    /// Everything: throughput, --scale, --callgrind and --tls.
    #[arg(long)]
    pub all: bool,
    /// Use this running server (HOST:PORT) instead of starting secantusd-rs.
    #[arg(long)]
    pub upstream: Option<SocketAddr>,
    /// The secantusd-rs binary [default: installed by tests/peers/install-secantus-rs.sh].
    #[arg(long)]
    pub secantus: Option<PathBuf>,
    /// The mongoplex binary [default: the one cargo built for this target].
    #[arg(long)]
    pub proxy_bin: Option<PathBuf>,
    /// Where the JSON results go [default: <target dir>/bench-results.json].
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Scratch directory for logs and callgrind output [default: <target dir>/bench-work].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Passed by `cargo bench`; without it (`cargo test --benches`) nothing runs.
    #[arg(long, hide = true)]
    pub bench: bool,
}

impl Options {
    fn throughput(&self) -> bool {
        !self.no_throughput && !self.workloads.is_empty() && !self.tasks.is_empty() && self.rounds > 0
    }
    fn idle_on(&self) -> bool {
        self.idle || self.scale || self.all
    }
    fn storm_on(&self) -> bool {
        self.storm || self.scale || self.all
    }
    fn callgrind_on(&self) -> bool {
        self.callgrind || self.all
    }
    fn tls_on(&self) -> bool {
        self.tls || self.all
    }
    fn proxy_bin(&self) -> PathBuf {
        self.proxy_bin
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_mongoplex")))
    }
    fn work_dir(&self) -> PathBuf {
        self.work_dir
            .clone()
            .unwrap_or_else(|| target_dir().join("bench-work"))
    }
    pub fn json_path(&self) -> PathBuf {
        self.json
            .clone()
            .unwrap_or_else(|| target_dir().join("bench-results.json"))
    }
}

/// Cargo's target directory (CARGO_TARGET_TMPDIR is `<target>/tmp`).
fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_path_buf()
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct RunStats {
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// The proxy's user+sys CPU during the run divided by operations (proxied runs only).
    pub proxy_cpu_us_per_op: Option<f64>,
    /// The user-time part of `proxy_cpu_us_per_op`; the rest is the kernel's.
    pub proxy_cpu_user_us_per_op: Option<f64>,
}

/// Direct and proxied runs of one workload at one task count, back to back.
#[derive(Debug, Clone, Serialize)]
pub struct Pair {
    pub round: usize,
    pub workload: Workload,
    pub tasks: usize,
    pub proxied_first: bool,
    pub direct: RunStats,
    pub proxied: RunStats,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub options: String,
    pub upstream: String,
    pub proxy_bin: String,
    /// How proxied throughput clients reached the proxy: `tcp` or `unix`.
    pub client_socket: String,
    pub pairs: Vec<Pair>,
    pub summary: Vec<report::Summary>,
    /// VmHWM of the proxy that served the throughput runs.
    pub proxy_peak_rss_bytes: Option<u64>,
    /// `mongoplex_pool_clears_total` over the throughput runs: each clear drops the
    /// pool (and may fail requests in flight), so a non-zero count marks disturbed runs.
    pub proxy_pool_clears: Option<u64>,
    pub idle: Option<scale::IdleResult>,
    pub storm: Option<scale::StormResult>,
    pub callgrind: Vec<callgrind::CallgrindResult>,
    pub tls: Option<tls::TlsResult>,
    pub targets: Vec<report::Target>,
}

/// Runs the selected sections on a runtime of its own, writes the JSON, returns results.
pub fn run(opts: &Options) -> Res<Results> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let results = rt.block_on(run_async(opts))?;
    let path = opts.json_path();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
    eprintln!("[bench] JSON written to {}", path.display());
    Ok(results)
}

async fn run_async(opts: &Options) -> Res<Results> {
    let dir = opts.work_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let proxy_bin = opts.proxy_bin();
    let upstream = match opts.upstream {
        Some(addr) => Upstream::external(addr),
        None => Upstream::spawn(&procs::secantus_binary(opts.secantus.as_deref())?, &dir).await?,
    };
    let direct_uri = format!("mongodb://{}/?directConnection=true", upstream.addr);
    eprintln!(
        "[bench] upstream {} (pid {:?}), proxy {}",
        upstream.addr,
        upstream.pid(),
        proxy_bin.display()
    );
    load::preload(&direct_uri, opts.preload).await?;

    let mut results = Results {
        options: format!("{opts:?}"),
        upstream: upstream.addr.to_string(),
        proxy_bin: proxy_bin.display().to_string(),
        client_socket: opts.client_socket.clone(),
        pairs: Vec::new(),
        summary: Vec::new(),
        proxy_peak_rss_bytes: None,
        proxy_pool_clears: None,
        idle: None,
        storm: None,
        callgrind: Vec::new(),
        tls: None,
        targets: Vec::new(),
    };
    if opts.throughput() {
        let unix_socket = (opts.client_socket == "unix").then(|| dir.join("mongoplex.sock"));
        let proxy = start_proxy(
            &proxy_bin,
            upstream.addr,
            None,
            vec![],
            unix_socket,
            &dir,
            "mongoplex",
        )
        .await?;
        let clears = |text: &str| procs::count(procs::metric_sum(text, "mongoplex_pool_clears_total"));
        let clears_before = clears(&proxy.metrics().await?);
        results.pairs = throughput(opts, &direct_uri, &proxy).await?;
        results.proxy_pool_clears = Some(clears(&proxy.metrics().await?).saturating_sub(clears_before));
        results.summary = report::summarize(&results.pairs);
        results.proxy_peak_rss_bytes = Some(procs::status_bytes(proxy.pid(), "VmHWM")?);
    }
    if opts.idle_on() {
        results.idle = Some(scale::idle(opts, &proxy_bin, upstream.addr, &dir).await?);
    }
    if opts.storm_on() {
        results.storm = Some(scale::storm(opts, &proxy_bin, upstream.addr, &dir).await?);
    }
    if opts.callgrind_on() {
        results.callgrind = callgrind::run(opts, &proxy_bin, upstream.addr, &dir).await?;
    }
    if opts.tls_on() {
        results.tls = Some(tls::run(opts, &proxy_bin, &dir).await?);
    }
    results.targets = report::targets(&results);
    Ok(results)
}

pub async fn start_proxy(
    bin: &Path,
    upstream: SocketAddr,
    max_pool_size: Option<u64>,
    env: Vec<(&'static str, String)>,
    unix_socket: Option<PathBuf>,
    dir: &Path,
    name: &str,
) -> Res<ProxyProc> {
    let spec = ProxySpec {
        bin,
        upstream: format!("mongodb://{upstream}/"),
        max_pool_size,
        env,
        wrapper: Vec::new(),
        ready_timeout: Duration::from_secs(30),
        unix_socket,
    };
    ProxyProc::spawn(spec, dir, name).await
}

async fn throughput(opts: &Options, direct_uri: &str, proxy: &ProxyProc) -> Res<Vec<Pair>> {
    let proxied_uri = proxy.uri();
    let ticks = procs::clock_ticks();
    let mut pairs = Vec::new();
    let mut seed = 1u64;
    for round in 0..opts.rounds {
        for &workload in &opts.workloads {
            for &tasks in &opts.tasks {
                // A B in even rounds, B A in odd ones, so drift during a pair cancels out.
                let proxied_first = round % 2 == 1;
                let mut direct = None;
                let mut proxied = None;
                for proxied_side in [proxied_first, !proxied_first] {
                    seed += 1;
                    if proxied_side {
                        let pid = Some((proxy.pid(), ticks));
                        proxied = Some(measure(opts, &proxied_uri, pid, workload, tasks, seed).await?);
                    } else {
                        direct = Some(measure(opts, direct_uri, None, workload, tasks, seed).await?);
                    }
                }
                let (direct, proxied) = (direct.ok_or("no direct run")?, proxied.ok_or("no proxied run")?);
                eprintln!(
                    "[bench] round {}/{} {} x{tasks}: direct {:.0} ops/s p50 {:.1} µs, proxied {:.0} ops/s p50 {:.1} µs, ratio {:.3}",
                    round + 1,
                    opts.rounds,
                    workload.name(),
                    direct.ops_per_sec,
                    direct.p50_us,
                    proxied.ops_per_sec,
                    proxied.p50_us,
                    proxied.ops_per_sec / direct.ops_per_sec
                );
                pairs.push(Pair {
                    round,
                    workload,
                    tasks,
                    proxied_first,
                    direct,
                    proxied,
                });
            }
        }
    }
    Ok(pairs)
}

/// One run on a fresh client: warm-up, then the measured closed loop; with `proxy`
/// (pid, clock ticks per second), the proxy's CPU time is read around the measured part.
async fn measure(
    opts: &Options,
    uri: &str,
    proxy: Option<(u32, u64)>,
    workload: Workload,
    tasks: usize,
    seed: u64,
) -> Res<RunStats> {
    let client = load::client(uri, tasks).await?;
    if opts.warmup > 0.0 {
        load::drive(
            &client,
            workload,
            tasks,
            Duration::from_secs_f64(opts.warmup),
            opts.preload,
            seed,
        )
        .await?;
    }
    let cpu_before = proxy.map(|(pid, _)| procs::cpu_ticks(pid)).transpose()?;
    let s = load::drive(
        &client,
        workload,
        tasks,
        Duration::from_secs_f64(opts.seconds),
        opts.preload,
        seed,
    )
    .await?;
    let cpu_after = proxy.map(|(pid, _)| procs::cpu_ticks(pid)).transpose()?;
    client.shutdown().await;
    if s.ops == 0 {
        return Err(format!(
            "{} x{tasks} on {uri}: no operation succeeded ({:?})",
            workload.name(),
            s.first_error
        )
        .into());
    }
    let per_op = |ticks: u64, hz: u64| ticks as f64 * 1e6 / hz as f64 / s.ops as f64;
    let (cpu, cpu_user) = match (proxy, cpu_before, cpu_after) {
        (Some((_, hz)), Some(a), Some(b)) => {
            let user = b.user.saturating_sub(a.user);
            let sys = b.sys.saturating_sub(a.sys);
            (Some(per_op(user + sys, hz)), Some(per_op(user, hz)))
        }
        _ => (None, None),
    };
    Ok(RunStats {
        ops: s.ops,
        errors: s.errors,
        first_error: s.first_error.clone(),
        seconds: s.elapsed.as_secs_f64(),
        ops_per_sec: s.ops_per_sec(),
        p50_us: s.quantile_us(5000),
        p99_us: s.quantile_us(9900),
        p999_us: s.quantile_us(9990),
        max_us: s.quantile_us(10_000),
        proxy_cpu_us_per_op: cpu,
        proxy_cpu_user_us_per_op: cpu_user,
    })
}
