//! About ten seconds of the benchmark harness (tests/bench/) in a tiny mode, so that it
//! cannot rot: every section runs and must produce its figures. It asserts nothing about
//! how fast or how well the proxy does; `cargo bench --bench proxy` measures that.
//!
//! The upstream is the cached secantusd-rs when tests/peers/install-secantus-rs.sh has
//! built it, else the Python SecantusDB from tests/peers/install.sh. The callgrind
//! section runs when valgrind is installed.

#[path = "bench/harness/mod.rs"]
mod harness;
// Only the peers helper: the rest of tests/common/ is not needed here.
#[path = "common/peers.rs"]
mod peers;

use std::path::PathBuf;

use clap::Parser;
use peers::Secantus;

fn cached_secantus_rs() -> Option<PathBuf> {
    let root = std::env::var_os("MONGOPLEX_SECANTUS_RS_DIR")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(std::env::var_os("HOME")?).join(".cache/mongoplex/secantus-rs")))?;
    Some(root.join("bin/secantusd-rs")).filter(|p| p.is_file())
}

fn have_valgrind() -> bool {
    std::process::Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The upstream arguments for a harness run: the cached secantusd-rs, else a Python
/// SecantusDB that the caller keeps alive for the whole run.
fn upstream_args(args: &mut Vec<String>) -> Option<Secantus> {
    match cached_secantus_rs() {
        Some(bin) => {
            args.extend(["--secantus".to_string(), bin.display().to_string()]);
            None
        }
        None => {
            let server = Secantus::start();
            args.extend(["--upstream".to_string(), server.addr().to_string()]);
            Some(server)
        }
    }
}

fn positive(what: &str, v: f64) {
    assert!(
        v.is_finite() && v > 0.0,
        "{what} = {v}, expected a positive figure"
    );
}

#[test]
fn harness_produces_every_figure() {
    let dir = std::env::temp_dir().join(format!("mongoplex-bench-smoke-{}", std::process::id()));
    let json = dir.join("results.json");
    let (work, json_arg) = (dir.join("work").display().to_string(), json.display().to_string());
    let mut args: Vec<String> = [
        "proxy",
        "--workloads",
        "ping,find_one,insert_one,mix",
        "--tasks",
        "1,4",
        "--seconds",
        "0.25",
        "--warmup",
        "0.05",
        "--rounds",
        "1",
        "--preload",
        "200",
        "--idle",
        "--idle-connections",
        "300",
        "--storm",
        "--storm-clients",
        "200",
        "--storm-pool-size",
        "4",
        "--tls",
        "--work-dir",
        &work,
        "--json",
        &json_arg,
    ]
    .map(String::from)
    .to_vec();
    let callgrind = have_valgrind();
    if callgrind {
        args.extend(["--callgrind", "--callgrind-requests", "20"].map(String::from));
    } else {
        eprintln!("valgrind is not installed: the callgrind section is not exercised");
    }
    let _python_upstream = upstream_args(&mut args);
    let opts = harness::Options::parse_from(&args);
    let r = harness::run(&opts).unwrap_or_else(|e| panic!("harness failed: {e}"));

    assert_eq!(r.summary.len(), 8, "4 workloads x 2 task counts");
    assert_eq!(r.pairs.len(), 8, "1 round of 8 pairs");
    for s in &r.summary {
        let at = format!("{} x{}", s.workload.name(), s.tasks);
        // Failed operations are the proxy's business, not the harness's: only report them.
        if s.errors > 0 {
            eprintln!("{at}: {} failed operations", s.errors);
        }
        for (what, v) in [
            ("direct ops/s", s.direct_ops_per_sec),
            ("proxied ops/s", s.proxied_ops_per_sec),
            ("ratio", s.ratio),
            ("direct p50", s.direct_p50_us),
            ("proxied p50", s.proxied_p50_us),
            ("proxied p99", s.proxied_p99_us),
            ("proxied p99.9", s.proxied_p999_us),
        ] {
            positive(&format!("{at}: {what}"), v);
        }
        let cpu = s
            .proxy_cpu_us_per_op
            .unwrap_or_else(|| panic!("{at}: no proxy CPU figure"));
        assert!(cpu.is_finite() && cpu >= 0.0, "{at}: proxy CPU {cpu}");
        let user = s
            .proxy_cpu_user_us_per_op
            .unwrap_or_else(|| panic!("{at}: no user part of the proxy CPU"));
        assert!((0.0..=cpu).contains(&user), "{at}: user {user} of {cpu}");
    }
    // /proc/<pid>/stat counts in clock ticks (10 ms), so a single short run may show
    // none; over all of them the proxy must have used some CPU.
    positive(
        "proxy CPU over all runs",
        r.summary.iter().filter_map(|s| s.proxy_cpu_us_per_op).sum(),
    );
    positive("proxy peak RSS", r.proxy_peak_rss_bytes.map_or(0.0, |b| b as f64));

    let idle = r.idle.as_ref().expect("idle figures");
    assert!(
        idle.connected > 0,
        "no idle client connected: {:?}",
        idle.first_error
    );
    positive(
        "idle RSS growth per connection",
        idle.rss_growth_per_connection_bytes,
    );
    assert!(
        idle.upstream_tcp_sockets > 0,
        "the proxy's monitor holds an upstream socket"
    );

    let storm = r.storm.as_ref().expect("storm figures");
    assert!(
        storm.served > 0,
        "no storm client served: {:?}",
        storm.first_error
    );
    positive("storm find p99", storm.find_p99_ms);
    positive("storm peak pool connections", storm.peak_pool_connections as f64);
    assert!(
        storm.peak_upstream_tcp_sockets > 0,
        "no upstream socket sampled during the storm"
    );

    if callgrind {
        let c = r.callgrind.first().expect("callgrind figures");
        positive("instructions per request", c.instructions_per_request);
        assert!(!c.top_inclusive.is_empty(), "no callgrind_annotate entries");
    }
    let tls = r.tls.as_ref().expect("TLS figures");
    assert_eq!(tls.summary.len(), 4, "ping and find_one x 2 task counts");
    for s in &tls.summary {
        positive("direct TLS ops/s", s.direct_tls_ops_per_sec);
        positive("proxied TLS ops/s", s.proxied_tls_ops_per_sec);
        positive("TLS ratio", s.ratio);
    }
    assert_eq!(tls.connect.len(), 4, "plaintext, SCRAM, TLS, TLS + SCRAM");
    for c in &tls.connect {
        positive(
            &format!("{}: CPU per connection", c.kind),
            c.cpu_us_per_connection,
        );
        positive(
            &format!("{}: wall per connection", c.kind),
            c.wall_us_per_connection,
        );
    }
    assert_eq!(r.targets.len(), 7);
    let report = harness::report::markdown(&r);
    assert!(report.contains("TLS + SCRAM-SHA-256"), "{report}");
    assert!(
        report.contains("### Targets") && report.contains("| ping | 4 |"),
        "{report}"
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written")).expect("JSON parses");
    assert_eq!(written["summary"].as_array().map(Vec::len), Some(8));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--client-socket unix`: the proxied side runs over the proxy's unix socket.
#[test]
fn harness_runs_the_proxied_side_over_a_unix_socket() {
    let dir = std::env::temp_dir().join(format!("mongoplex-bench-unix-{}", std::process::id()));
    let (work, json) = (
        dir.join("work").display().to_string(),
        dir.join("results.json").display().to_string(),
    );
    let mut args: Vec<String> = [
        "proxy",
        "--workloads",
        "ping",
        "--tasks",
        "2",
        "--seconds",
        "0.25",
        "--warmup",
        "0.05",
        "--rounds",
        "1",
        "--preload",
        "50",
        "--client-socket",
        "unix",
        "--work-dir",
        &work,
        "--json",
        &json,
    ]
    .map(String::from)
    .to_vec();
    let _python_upstream = upstream_args(&mut args);
    let opts = harness::Options::parse_from(&args);
    let r = harness::run(&opts).unwrap_or_else(|e| panic!("harness failed: {e}"));
    assert_eq!(r.client_socket, "unix");
    let s = r.summary.first().expect("one summary");
    positive("proxied ops/s over the unix socket", s.proxied_ops_per_sec);
    let report = harness::report::markdown(&r);
    assert!(report.contains("over a unix socket"), "{report}");
    // The proxy was started with the socket; the driver was given only its path.
    let log = std::fs::read_to_string(std::path::Path::new(&work).join("mongoplex.log")).unwrap_or_default();
    assert!(
        log.contains("mongoplex.sock"),
        "the proxy log names no unix socket:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
