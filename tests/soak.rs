//! A long soak: mongoplex in front of the simulated 3-member replica set
//! (tests/common/replset), under moderate load from the Rust driver, pymongo and the Node
//! driver (checked writes, cursors read in part, cursors abandoned without killCursors,
//! clients that connect, do a few operations and leave), through elections and member
//! kills, sampled once a second.
//!
//! ```text
//! cargo nextest run --test soak                                   # 120 s, as in CI
//! MONGOPLEX_SOAK_SECS=1800 cargo nextest run --test soak --no-capture   # 30 minutes
//! .peers/plot-venv/bin/python tests/soak/plot.py target/soak tests/soak   # the PNGs
//! ```
//!
//! The proxy runs as a child process (the `mongoplex` binary cargo builds for this test),
//! so /proc/PID gives its own RSS and descriptors; in-process, they would include the
//! simulated members' sockets and the Rust driver clients. Everything else comes from its
//! /metrics. Output in target/soak/: samples.csv (one row a second), events.csv (faults),
//! abandoned.csv (when each abandoned cursor was last used), summary.json, mongoplex.log.
//!
//! After the load stops and a settle period it asserts that descriptors, RSS, waiters,
//! pool sizes and client connections are back to their idle baseline (within the slack
//! below), that pins held are only those of abandoned cursors still inside the proxy's
//! pin idle bound ([`mongoplex::pins::CURSOR_PIN_TTL`] plus the 30 s sweep tick; this
//! bound is also checked at every sample), and that every acknowledged write is stored
//! exactly once (writes that failed with an error: at most once).

mod common;
mod soak_support;

use std::time::{Duration, Instant};

use common::peers::{repo_dir, Secantus};
use common::replset::ReplSet;
use mongodb::bson::doc;
use mongodb::Client;
use soak_support::child::ProxyChild;
use soak_support::faults::{self, Event};
use soak_support::load::{Load, DOCS};
use soak_support::sampler::{Sample, Sampler};
use soak_support::writes::{self, WriterReport};

const DEFAULT_SECS: u64 = 120;
/// Idle before the load, for the baseline sample.
const IDLE: Duration = Duration::from_secs(5);
/// After the load: idle pooled connections expire (maxIdleTimeMS below) and close.
const SETTLE: Duration = Duration::from_secs(20);
const MAX_IDLE_MS: u64 = 5_000;
const MAX_POOL_SIZE: u64 = 16;
/// Heap the allocator keeps after a burst is not a leak; more than this is.
const RSS_SLACK_KIB: u64 = 32 * 1024;
/// Descriptors: at most a monitor reconnecting at the moment of the last sample.
const FD_SLACK: u64 = 3;
/// src/server.rs sweeps pins every 30 s; a pin can outlive its TTL by up to one tick.
const SWEEP_TICK: Duration = Duration::from_secs(30);
/// Cursors open at once that are not abandoned (Rust cursors, two churners, Node).
const LIVE_CURSORS: f64 = 8.0;
/// Client-visible write errors allowed, as a fraction of writes (measured: see README).
const MAX_WRITE_ERROR_FRACTION: f64 = 0.005;

fn run_for() -> Duration {
    let secs = std::env::var("MONGOPLEX_SOAK_SECS")
        .ok()
        .map(|s| {
            s.parse::<u64>()
                .expect("MONGOPLEX_SOAK_SECS is a number of seconds")
        })
        .unwrap_or(DEFAULT_SECS);
    Duration::from_secs(secs)
}

async fn seed(direct: &Client) {
    let docs: Vec<_> = (0..300)
        .map(|i| doc! { "_id": i, "pad": "x".repeat(100) })
        .collect();
    let coll = direct.database(writes::DB).collection(DOCS);
    coll.insert_many(docs).await.expect("seed the cursor collection");
}

/// Pins the proxy may hold at soak time `t`: the baseline's, abandoned cursors last used
/// within the pin idle bound, and `live` cursors in use.
fn pins_allowed(baseline: f64, abandoned: &[f64], t: f64, live: f64) -> f64 {
    let bound = (mongoplex::pins::CURSOR_PIN_TTL + SWEEP_TICK).as_secs_f64() + 2.0;
    let held = abandoned.iter().filter(|&&a| a <= t && a > t - bound).count();
    baseline + held as f64 + live
}

fn write_events(path: &std::path::Path, events: &[Event]) {
    let mut csv = String::from("t_s,kind,detail\n");
    for e in events {
        csv.push_str(&format!("{:.1},{},{}\n", e.t, e.kind, e.detail));
    }
    std::fs::write(path, csv).expect("write events.csv");
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak() {
    let run_for = run_for();
    let out = repo_dir().join("target").join("soak");
    std::fs::create_dir_all(&out).expect("create target/soak");

    let upstream = Secantus::start();
    let direct = Client::with_uri_str(upstream.uri()).await.unwrap();
    seed(&direct).await;
    let rs = ReplSet::start(3, &upstream).await;
    let upstream_uri = format!(
        "{}&heartbeatFrequencyMS=500&maxIdleTimeMS={MAX_IDLE_MS}",
        rs.uri()
    );
    let log = out.join("mongoplex.log");
    let mut proxy = tokio::task::block_in_place(|| ProxyChild::start(&upstream_uri, MAX_POOL_SIZE, &log));

    let soak_start = Instant::now();
    let sampler = Sampler::start(proxy.pid(), proxy.admin, soak_start, &out.join("samples.csv"));
    tokio::time::sleep(IDLE).await;
    let baseline = tokio::task::block_in_place(|| sampler.latest());

    let load_start = Instant::now();
    let load = Load::start(|app| proxy.uri(app), run_for);
    let events = faults::run(&rs, run_for, soak_start, load_start).await;
    tokio::time::sleep_until((load_start + run_for).into()).await;
    let abandoned_at = load.abandoned.clone();
    let reports = load.stop().await;
    let load_end = soak_start.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let (samples, gaps) = tokio::task::block_in_place(|| sampler.stop());
    write_events(&out.join("events.csv"), &events);

    let abandoned: Vec<f64> = abandoned_at
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.duration_since(soak_start).as_secs_f64())
        .collect();
    let listed: String = abandoned.iter().map(|t| format!("{t:.1}\n")).collect();
    std::fs::write(out.join("abandoned.csv"), format!("t_s\n{listed}")).expect("write abandoned.csv");
    let check = writes::check(&direct, &reports).await;
    let end = samples.last().cloned().expect("samples");
    let alive = proxy.alive();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let figures = Figures::new(
        &samples,
        &baseline,
        &end,
        load_end,
        &reports,
        &check,
        abandoned.len(),
    );
    figures.report(&out, &events, gaps);

    // The process itself.
    assert!(alive, "mongoplex exited during the soak; see {}", log.display());
    assert!(
        !log_text.contains("panicked"),
        "mongoplex panicked; see {}",
        log.display()
    );
    assert!(
        gaps * 100 <= samples.len() as u64,
        "/metrics failed {gaps} times of {}",
        samples.len()
    );
    // The faults happened.
    let count = |k: &str| events.iter().filter(|e| e.kind == k).count();
    assert!(
        count("election") >= 2 && count("kill") >= 1 && count("restart") >= 1,
        "{events:?}"
    );

    // Resources back to baseline.
    assert!(
        end.fds <= baseline.fds + FD_SLACK,
        "descriptors: baseline {}, end {}",
        baseline.fds,
        end.fds
    );
    assert!(
        end.rss_kib <= baseline.rss_kib + RSS_SLACK_KIB,
        "RSS: baseline {:.1} MiB, end {:.1} MiB (slack {} MiB)",
        mib(baseline.rss_kib),
        mib(end.rss_kib),
        RSS_SLACK_KIB / 1024
    );
    assert_eq!(end.waiters, 0.0, "requests still waiting for a connection");
    assert_eq!(
        end.pool_in_use + end.pool_connecting,
        0.0,
        "pooled connections still busy: {end:?}"
    );
    assert!(
        end.pool_total <= baseline.pool_total,
        "pools: baseline {}, end {}",
        baseline.pool_total,
        end.pool_total
    );
    assert!(
        end.clients <= baseline.clients,
        "client connections: baseline {}, end {}",
        baseline.clients,
        end.clients
    );
    assert_eq!(end.pinned_txns, baseline.pinned_txns, "transaction pins left");

    // Pins: only abandoned cursors inside the idle bound, at the end and at every sample.
    let allowed = pins_allowed(baseline.pinned_cursors, &abandoned, end.t, 0.0);
    assert!(
        end.pinned_cursors <= allowed,
        "cursor pins at the end: {} > {allowed}",
        end.pinned_cursors
    );
    for s in &samples {
        let allowed = pins_allowed(baseline.pinned_cursors, &abandoned, s.t, LIVE_CURSORS);
        assert!(
            s.pinned_cursors <= allowed,
            "cursor pins at t={:.0}s: {} > {allowed}",
            s.t,
            s.pinned_cursors
        );
    }

    // Writes: exactly once.
    assert!(
        check.missing.is_empty(),
        "acknowledged writes missing: {:?}",
        &check.missing[..check.missing.len().min(10)]
    );
    assert!(
        check.duplicated.is_empty(),
        "writes applied twice: {:?}",
        &check.duplicated[..check.duplicated.len().min(10)]
    );
    assert!(
        check.phantoms.is_empty(),
        "writes nobody made: {:?}",
        &check.phantoms[..check.phantoms.len().min(10)]
    );
    for r in &reports {
        assert!(
            r.attempts + r.cursor_reads >= run_for.as_secs(),
            "{} made little progress: {r:?}",
            r.writer
        );
    }
    assert!(
        check.errored as f64 <= check.writes as f64 * MAX_WRITE_ERROR_FRACTION,
        "{} of {} writes failed",
        check.errored,
        check.writes
    );
}

/// The figures a run reports (stdout, summary.json) and the README quotes.
struct Figures {
    json: serde_json::Value,
}

impl Figures {
    fn new(
        samples: &[Sample],
        baseline: &Sample,
        end: &Sample,
        load_end: f64,
        reports: &[WriterReport],
        check: &writes::Check,
        abandoned: usize,
    ) -> Self {
        let peak = |f: fn(&Sample) -> f64| samples.iter().map(f).fold(0.0, f64::max);
        let during: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.t > baseline.t && s.t <= load_end)
            .collect();
        let ops_mean = during.iter().map(|s| s.ops_per_s).sum::<f64>() / during.len().max(1) as f64;
        let mut errors: Vec<String> = Vec::new();
        for r in reports {
            errors.extend(
                r.errors
                    .iter()
                    .map(|(seq, e)| format!("{} #{seq}: {e}", r.writer)),
            );
            errors.extend(
                r.cursor_errors
                    .iter()
                    .map(|e| format!("{} cursor: {e}", r.writer)),
            );
        }
        let json = serde_json::json!({
            "load_seconds": load_end - baseline.t,
            "rss_mib": { "baseline": mib(baseline.rss_kib), "peak": peak(|s| s.rss_kib as f64) / 1024.0, "end": mib(end.rss_kib) },
            "fds": { "baseline": baseline.fds, "peak": peak(|s| s.fds as f64), "end": end.fds },
            "pinned_cursors": { "baseline": baseline.pinned_cursors, "peak": peak(|s| s.pinned_cursors), "end": end.pinned_cursors },
            "pool_total": { "baseline": baseline.pool_total, "peak": peak(|s| s.pool_total), "end": end.pool_total },
            "waiters_peak": peak(|s| s.waiters),
            "clients_peak": peak(|s| s.clients),
            "ops_per_s": { "mean": ops_mean, "peak": peak(|s| s.ops_per_s) },
            "requests_total": end.requests - baseline.requests,
            "abandoned_cursors": abandoned,
            "writes": { "checked": check.writes, "acked": check.acked, "errored": check.errored,
                        "errored_but_stored": check.errored_stored, "missing": check.missing.len(),
                        "duplicated": check.duplicated.len(), "phantoms": check.phantoms.len() },
            "clients_opened": reports.iter().map(|r| r.clients).sum::<u64>(),
            "cursor_reads": reports.iter().map(|r| r.cursor_reads).sum::<u64>(),
            "client_errors": errors,
        });
        Self { json }
    }

    fn report(&self, out: &std::path::Path, events: &[Event], gaps: u64) {
        let mut json = self.json.clone();
        json["events"] = events
            .iter()
            .map(|e| serde_json::json!([e.t, e.kind, e.detail]))
            .collect();
        json["metrics_gaps"] = gaps.into();
        let text = serde_json::to_string_pretty(&json).unwrap();
        std::fs::write(out.join("summary.json"), &text).expect("write summary.json");
        println!("SOAK summary ({}):\n{text}", out.join("summary.json").display());
    }
}
