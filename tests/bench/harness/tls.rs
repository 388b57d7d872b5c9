//! `--tls`: what TLS and SCRAM cost on the upstream leg. The Rust SecantusDB has no TLS,
//! so this section runs on the Python server (`tests/peers/install.sh`), with `--auth`,
//! twice: one server plaintext, one with TLS (certificates made here by rcgen).
//!
//! - Throughput, side by side per round: the driver straight to the TLS server
//!   (TLS and SCRAM of its own), the driver through a mongoplex holding a TLS+SCRAM
//!   upstream, and the driver through a mongoplex with a plaintext+SCRAM upstream. The
//!   ratio is proxied-TLS ÷ direct-TLS; the proxy's CPU per request with and without TLS
//!   comes from the two proxied runs.
//! - Establishing one upstream connection, in this process through mongoplex's own
//!   `UpstreamConn::establish` on a thread of its own: wall time and that thread's CPU
//!   (schedstat, in ns) per connection, plaintext or TLS, with or without SCRAM, and
//!   how many key derivations (PBKDF2) the credential needed for all of them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use serde::Serialize;

use super::load::{self, Workload};
use super::procs::{Proc, ProxyProc, ProxySpec};
use super::{measure, report, Options, Res, RunStats};

const USER: &str = "bench";
const PASSWORD: &str = "bench-Pw-1";

/// One round of one workload at one task count: the three runs, back to back.
#[derive(Debug, Clone, Serialize)]
pub struct TlsRound {
    pub round: usize,
    pub workload: Workload,
    pub tasks: usize,
    pub direct_tls: RunStats,
    pub proxied_tls: RunStats,
    pub proxied_plain: RunStats,
}

#[derive(Debug, Clone, Serialize)]
pub struct TlsSummary {
    pub workload: Workload,
    pub tasks: usize,
    pub direct_tls_ops_per_sec: f64,
    pub proxied_tls_ops_per_sec: f64,
    /// Median of the per-round proxied-TLS ÷ direct-TLS throughput.
    pub ratio: f64,
    pub proxy_cpu_us_per_op_tls: Option<f64>,
    pub proxy_cpu_us_per_op_plain: Option<f64>,
}

/// Establishing upstream connections one after another.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectCost {
    pub kind: &'static str,
    pub connections: u32,
    pub wall_us_per_connection: f64,
    pub cpu_us_per_connection: f64,
    /// PBKDF2 runs the credential needed for all of them (SCRAM kinds).
    pub key_derivations: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TlsResult {
    pub upstream: String,
    pub rounds: Vec<TlsRound>,
    pub summary: Vec<TlsSummary>,
    pub connect: Vec<ConnectCost>,
}

pub async fn run(opts: &Options, bin: &Path, dir: &Path) -> Res<TlsResult> {
    let dir = dir.join("tls");
    std::fs::create_dir_all(&dir)?;
    let ca = make_certificates(&dir)?;
    let plain_store = dir.join("store-plain");
    create_user(&plain_store, &dir).await?;
    let tls_store = dir.join("store-tls");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&plain_store)
        .arg(&tls_store)
        .status()?;
    if !copied.success() {
        return Err(format!("cp -a {} failed", plain_store.display()).into());
    }
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    let mut tls_args = vec![
        "--tls-cert-file".to_owned(),
        cert.display().to_string(),
        "--tls-key-file".to_owned(),
        key.display().to_string(),
    ];
    let (_plain, plain_addr) = python_server(&plain_store, &["--auth".into()], &dir, "plain").await?;
    tls_args.push("--auth".into());
    let (_tls, tls_addr) = python_server(&tls_store, &tls_args, &dir, "tls").await?;
    let ca_opt = format!("tls=true&tlsCAFile={}", ca.display());
    let direct_tls = format!("mongodb://{USER}:{PASSWORD}@{tls_addr}/?directConnection=true&{ca_opt}");
    let upstream_tls = direct_tls.clone();
    let upstream_plain = format!("mongodb://{USER}:{PASSWORD}@{plain_addr}/?directConnection=true");
    let preload = opts.preload.min(2_000);
    load::preload(&direct_tls, preload).await?;
    load::preload(&upstream_plain, preload).await?;
    let opts = Options {
        preload,
        ..opts.clone()
    };
    let proxy_tls = proxy(bin, &upstream_tls, &dir, "mongoplex-tls").await?;
    let proxy_plain = proxy(bin, &upstream_plain, &dir, "mongoplex-plain").await?;
    let rounds = throughput(&opts, &direct_tls, &proxy_tls, &proxy_plain).await?;
    let connect = connect_costs(&upstream_plain, &upstream_tls, 100)?;
    Ok(TlsResult {
        upstream: format!("secantusd-py with --auth: plaintext {plain_addr}, TLS {tls_addr}"),
        summary: summarize(&rounds),
        rounds,
        connect,
    })
}

/// A CA, and a certificate for 127.0.0.1 it signed; returns the CA file.
fn make_certificates(dir: &Path) -> Res<PathBuf> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    std::fs::write(dir.join("server.pem"), cert.pem())?;
    std::fs::write(dir.join("server.key"), key.serialize_pem())?;
    Ok(dir.join("ca.pem"))
}

fn python_bin() -> PathBuf {
    let peers = std::env::var_os("MONGOPLEX_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".peers"));
    peers.join("venv/bin/secantusd-py")
}

/// Starts the Python server on `store` and waits for its port to accept connections.
async fn python_server(store: &Path, extra: &[String], dir: &Path, name: &str) -> Res<(Proc, SocketAddr)> {
    let bin = python_bin();
    if !bin.exists() {
        return Err(format!("--tls needs {} (run tests/peers/install.sh)", bin.display()).into());
    }
    let mut cmd = Command::new(&bin);
    cmd.args(["--host", "127.0.0.1", "--port", "0", "--storage-path"])
        .arg(store)
        .args(extra);
    let mut proc = Proc::spawn(name, cmd, dir.join(format!("secantusd-py-{name}.log")))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = proc.log_text();
        if let Some(word) = log
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
        {
            let addr: SocketAddr = word
                .parse()
                .map_err(|e| format!("{name} address {word:?}: {e}"))?;
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                proc.check_alive()?;
                if Instant::now() > deadline {
                    return Err(format!("{name} did not accept connections on {addr}").into());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            return Ok((proc, addr));
        }
        proc.check_alive()?;
        if Instant::now() > deadline {
            return Err(format!("{name} did not log its address within 30 s").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The store with the benchmark's root user, made without `--auth` and flushed.
async fn create_user(store: &Path, dir: &Path) -> Res<()> {
    let (mut setup, addr) = python_server(store, &[], dir, "setup").await?;
    let client = mongodb::Client::with_uri_str(format!("mongodb://{addr}/?directConnection=true")).await?;
    client
        .database("admin")
        .run_command(mongodb::bson::doc! { "createUser": USER, "pwd": PASSWORD, "roles": ["root"] })
        .await?;
    client.shutdown().await;
    setup.terminate()
}

async fn proxy(bin: &Path, upstream: &str, dir: &Path, name: &str) -> Res<ProxyProc> {
    let spec = ProxySpec {
        bin,
        upstream: upstream.to_owned(),
        max_pool_size: None,
        env: Vec::new(),
        wrapper: Vec::new(),
        ready_timeout: Duration::from_secs(30),
        unix_socket: None,
    };
    ProxyProc::spawn(spec, dir, name).await
}

async fn throughput(opts: &Options, direct: &str, tls: &ProxyProc, plain: &ProxyProc) -> Res<Vec<TlsRound>> {
    let ticks = super::procs::clock_ticks();
    let mut out = Vec::new();
    let mut seed = 1_000u64;
    for round in 0..opts.rounds {
        for workload in [Workload::Ping, Workload::FindOne] {
            for &tasks in &opts.tasks {
                let mut runs: [Option<RunStats>; 3] = [None, None, None];
                // Rotate the order each round, so that drift spreads over the three.
                for k in 0..3 {
                    let which = (k + round) % 3;
                    seed += 1;
                    runs[which] = Some(match which {
                        0 => measure(opts, direct, None, workload, tasks, seed).await?,
                        1 => {
                            measure(opts, &tls.uri(), Some((tls.pid(), ticks)), workload, tasks, seed).await?
                        }
                        _ => {
                            measure(
                                opts,
                                &plain.uri(),
                                Some((plain.pid(), ticks)),
                                workload,
                                tasks,
                                seed,
                            )
                            .await?
                        }
                    });
                }
                let [Some(d), Some(t), Some(p)] = runs else {
                    return Err("a TLS run is missing".into());
                };
                eprintln!(
                    "[bench] tls round {}/{} {} x{tasks}: direct TLS {:.0} ops/s, proxied TLS {:.0} ops/s (ratio {:.3}), proxied plaintext {:.0} ops/s",
                    round + 1,
                    opts.rounds,
                    workload.name(),
                    d.ops_per_sec,
                    t.ops_per_sec,
                    t.ops_per_sec / d.ops_per_sec,
                    p.ops_per_sec
                );
                out.push(TlsRound {
                    round,
                    workload,
                    tasks,
                    direct_tls: d,
                    proxied_tls: t,
                    proxied_plain: p,
                });
            }
        }
    }
    Ok(out)
}

fn summarize(rounds: &[TlsRound]) -> Vec<TlsSummary> {
    let mut keys: Vec<(Workload, usize)> = Vec::new();
    for r in rounds {
        if !keys.contains(&(r.workload, r.tasks)) {
            keys.push((r.workload, r.tasks));
        }
    }
    keys.into_iter()
        .map(|(workload, tasks)| {
            let these: Vec<&TlsRound> = rounds
                .iter()
                .filter(|r| r.workload == workload && r.tasks == tasks)
                .collect();
            let med = |f: &dyn Fn(&TlsRound) -> f64| report::median(these.iter().map(|r| f(r)).collect());
            let cpu = |f: &dyn Fn(&TlsRound) -> Option<f64>| {
                let v: Vec<f64> = these.iter().filter_map(|r| f(r)).collect();
                (!v.is_empty()).then(|| report::median(v))
            };
            TlsSummary {
                workload,
                tasks,
                direct_tls_ops_per_sec: med(&|r| r.direct_tls.ops_per_sec),
                proxied_tls_ops_per_sec: med(&|r| r.proxied_tls.ops_per_sec),
                ratio: med(&|r| r.proxied_tls.ops_per_sec / r.direct_tls.ops_per_sec),
                proxy_cpu_us_per_op_tls: cpu(&|r| r.proxied_tls.proxy_cpu_us_per_op),
                proxy_cpu_us_per_op_plain: cpu(&|r| r.proxied_plain.proxy_cpu_us_per_op),
            }
        })
        .collect()
}

/// Per kind, `n` connections established and dropped one after another on a thread of
/// its own (a current-thread runtime), so that its schedstat is the cost of exactly
/// that work. Two warm-up connections first: the first one's costs are one-time.
fn connect_costs(plain_scram: &str, tls_scram: &str, n: u32) -> Res<Vec<ConnectCost>> {
    let without_user = |uri: &str| uri.replacen(&format!("{USER}:{PASSWORD}@"), "", 1);
    let kinds = [
        ("plaintext", without_user(plain_scram)),
        ("plaintext + SCRAM-SHA-256", plain_scram.to_owned()),
        ("TLS", without_user(tls_scram)),
        ("TLS + SCRAM-SHA-256", tls_scram.to_owned()),
    ];
    let mut out = Vec::new();
    for (kind, uri) in kinds {
        let settings = mongoplex::config::Settings {
            upstream: Some(uri.clone()),
            ..mongoplex::config::Settings::default()
        };
        let config = mongoplex::config::Config::validate(settings).map_err(|e| format!("{kind}: {e}"))?;
        let handle = std::thread::spawn(move || -> Res<ConnectCost> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let address = config.seeds.first().ok_or("no seed")?.clone();
            let opts = config.connect.clone();
            rt.block_on(async {
                for id in 0..2 {
                    mongoplex::upstream::UpstreamConn::establish(&address, id, 0, &opts).await?;
                }
                let (cpu0, t0) = (thread_cpu_ns()?, Instant::now());
                for id in 0..u64::from(n) {
                    mongoplex::upstream::UpstreamConn::establish(&address, 2 + id, 0, &opts).await?;
                }
                let (cpu1, wall) = (thread_cpu_ns()?, t0.elapsed());
                Ok(ConnectCost {
                    kind,
                    connections: n,
                    wall_us_per_connection: wall.as_secs_f64() * 1e6 / f64::from(n),
                    cpu_us_per_connection: (cpu1 - cpu0) as f64 / 1e3 / f64::from(n),
                    key_derivations: opts.credential.as_ref().map(|c| c.derivations()),
                })
            })
        });
        let cost = handle
            .join()
            .map_err(|_| format!("{kind}: the connecting thread panicked"))??;
        eprintln!(
            "[bench] connect {kind}: {:.0} µs wall, {:.0} µs CPU per connection",
            cost.wall_us_per_connection, cost.cpu_us_per_connection
        );
        out.push(cost);
    }
    Ok(out)
}

/// This thread's time on a CPU so far (the first field of its schedstat), in ns.
fn thread_cpu_ns() -> Res<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let first = text.split_whitespace().next().ok_or("empty schedstat")?;
    Ok(first.parse()?)
}

pub fn markdown(o: &mut String, t: &TlsResult) {
    use std::fmt::Write;
    let _ = writeln!(o, "### TLS and SCRAM on the upstream leg\n");
    let _ = writeln!(o, "upstream: {} (the Rust server has no TLS).\n", t.upstream);
    let _ = writeln!(o, "| workload | tasks | direct TLS ops/s | proxied TLS ops/s | ratio | proxy CPU µs/op, TLS | proxy CPU µs/op, plaintext |");
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|");
    let us = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.1}"));
    for s in &t.summary {
        let _ = writeln!(
            o,
            "| {} | {} | {:.0} | {:.0} | {:.3} | {} | {} |",
            s.workload.name(),
            s.tasks,
            s.direct_tls_ops_per_sec,
            s.proxied_tls_ops_per_sec,
            s.ratio,
            us(s.proxy_cpu_us_per_op_tls),
            us(s.proxy_cpu_us_per_op_plain)
        );
    }
    let _ = writeln!(o, "\n| establishing one upstream connection | connections | wall µs | CPU µs (mongoplex's side) | PBKDF2 runs for all |");
    let _ = writeln!(o, "|---|---:|---:|---:|---:|");
    for c in &t.connect {
        let _ = writeln!(
            o,
            "| {} | {} | {:.0} | {:.0} | {} |",
            c.kind,
            c.connections,
            c.wall_us_per_connection,
            c.cpu_us_per_connection,
            c.key_derivations.map_or("–".to_owned(), |d| d.to_string())
        );
    }
    let _ = writeln!(o);
}
