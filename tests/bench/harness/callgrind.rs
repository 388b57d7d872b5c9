//! Instructions per proxied request: the proxy runs under `valgrind --tool=callgrind`,
//! one driver connection sends requests one after another, and `callgrind_control
//! --dump` brackets the measured requests (each dump zeroes the counters). Unlike
//! time, the count does not depend on what else the machine runs, so it is the
//! number to watch for regressions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::load::{self, Workload};
use super::procs::{ProxyProc, ProxySpec};
use super::{Options, Res};

/// How many entries of `callgrind_annotate --inclusive=yes` the report keeps.
pub const TOP: usize = 25;
/// How many functions by self cost (exclusive) it keeps.
pub const TOP_SELF: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub struct CallgrindResult {
    pub workload: Workload,
    pub requests: u64,
    /// Instructions (Ir) the proxy executed while serving the measured requests.
    pub instructions: u64,
    pub instructions_per_request: f64,
    pub dump_file: String,
    pub annotate_file: String,
    /// The first [`TOP`] inclusive entries of `callgrind_annotate`.
    pub top_inclusive: Vec<String>,
    /// The first [`TOP_SELF`] entries by self cost.
    pub top_self: Vec<String>,
}

pub async fn run(opts: &Options, bin: &Path, upstream: SocketAddr, dir: &Path) -> Res<Vec<CallgrindResult>> {
    let found = std::process::Command::new("valgrind").arg("--version").output();
    if !found.is_ok_and(|o| o.status.success()) {
        return Err("--callgrind needs valgrind (apt-get install valgrind)".into());
    }
    let spec = ProxySpec {
        bin,
        upstream: format!("mongodb://{upstream}/"),
        max_pool_size: None,
        env: Vec::new(),
        wrapper: vec![
            "valgrind".into(),
            "--tool=callgrind".into(),
            format!("--callgrind-out-file={}/callgrind.out.%p", dir.display()),
        ],
        ready_timeout: Duration::from_secs(180),
        unix_socket: None,
    };
    let mut proxy = ProxyProc::spawn(spec, dir, "mongoplex-callgrind").await?;
    // valgrind runs the tool in the process it was started as, so this is the proxy.
    let pid = proxy.pid();
    // Polling monitoring and a slow heartbeat keep the driver's own traffic out of the count.
    let uri = format!(
        "{}&serverMonitoringMode=poll&heartbeatFrequencyMS=60000",
        proxy.uri()
    );
    let client = load::client(&uri, 1).await?;
    let mut dumps = 0u32;
    let mut results = Vec::new();
    for &w in &opts.callgrind_workloads {
        let n = opts.callgrind_requests.max(1);
        load::sequential(&client, w, (n / 10).max(20), opts.preload).await?;
        dump(pid, &mut dumps, dir).await?;
        let start = Instant::now();
        load::sequential(&client, w, n, opts.preload).await?;
        let file = dump(pid, &mut dumps, dir).await?;
        proxy.check_alive()?;
        let instructions = totals(&std::fs::read_to_string(&file)?)?;
        let annotate_file = dir.join(format!("callgrind-{}.annotate.txt", w.name()));
        let annotated = annotate(&file, &annotate_file).await?;
        let result = CallgrindResult {
            workload: w,
            requests: n,
            instructions,
            instructions_per_request: instructions as f64 / n as f64,
            dump_file: file.display().to_string(),
            annotate_file: annotate_file.display().to_string(),
            top_inclusive: top_entries(&annotated, TOP),
            top_self: top_self(&std::fs::read_to_string(&file)?, instructions, TOP_SELF),
        };
        eprintln!(
            "[bench] callgrind {}: {n} requests in {:.1} s, {:.0} instructions/request",
            w.name(),
            start.elapsed().as_secs_f64(),
            result.instructions_per_request
        );
        results.push(result);
    }
    client.shutdown().await;
    Ok(results)
}

/// Asks callgrind to write its counters (and zero them); returns the new file once it
/// is complete.
async fn dump(pid: u32, dumps: &mut u32, dir: &Path) -> Res<PathBuf> {
    *dumps += 1;
    let file = dir.join(format!("callgrind.out.{pid}.{dumps}"));
    let out = tokio::process::Command::new("callgrind_control")
        .arg("--dump")
        .arg(pid.to_string())
        .output()
        .await
        .map_err(|e| format!("cannot run callgrind_control: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "callgrind_control --dump {pid}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // `totals:` is the last line callgrind writes.
        if std::fs::read_to_string(&file).is_ok_and(|t| t.contains("\ntotals:")) {
            return Ok(file);
        }
        if Instant::now() > deadline {
            return Err(format!("callgrind did not write {} within 60 s", file.display()).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `totals:` line of a callgrind profile (the first event, Ir).
pub fn totals(profile: &str) -> Res<u64> {
    let line = profile
        .lines()
        .find_map(|l| l.strip_prefix("totals:"))
        .ok_or("no totals line in the callgrind profile")?;
    Ok(line
        .split_whitespace()
        .next()
        .ok_or("empty totals line")?
        .parse()?)
}

async fn annotate(profile: &Path, out: &Path) -> Res<String> {
    let output = tokio::process::Command::new("callgrind_annotate")
        .arg("--inclusive=yes")
        .arg(profile)
        .output()
        .await
        .map_err(|e| format!("cannot run callgrind_annotate: {e}"))?;
    if !output.status.success() {
        return Err(format!("callgrind_annotate: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    std::fs::write(out, &text)?;
    Ok(text)
}

/// The first `n` function entries: the lines after the `Ir  file:function` header.
pub fn top_entries(annotated: &str, n: usize) -> Vec<String> {
    annotated
        .lines()
        .skip_while(|l| !(l.trim_start().starts_with("Ir") && l.contains("file:function")))
        .skip(1)
        .filter(|l| !l.trim().is_empty() && !l.starts_with("---"))
        .take(n)
        .map(|l| l.trim_end().to_string())
        .collect()
}

/// A compressed name in a callgrind profile: `(id) name` defines one, `(id)` refers to it.
fn compressed_name<'a>(spec: &'a str, names: &mut HashMap<&'a str, &'a str>) -> Option<&'a str> {
    let (id, name) = match spec.split_once(") ") {
        Some((id, name)) => (id, Some(name)),
        None => (spec.trim_end_matches(')'), None),
    };
    if let Some(name) = name {
        names.insert(id, name);
    }
    names.get(id).copied()
}

/// Functions by self cost, read from the profile itself: callgrind_annotate 3.19 books
/// everything to `clone` for a dump taken while threads are inside calls.
pub fn top_self(profile: &str, total: u64, n: usize) -> Vec<String> {
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut costs: HashMap<&str, u64> = HashMap::new();
    let mut current: Option<&str> = None;
    let mut after_calls = false;
    for line in profile.lines() {
        if let Some(spec) = line.strip_prefix("fn=") {
            current = compressed_name(spec, &mut names);
        } else if let Some(spec) = line.strip_prefix("cfn=") {
            compressed_name(spec, &mut names);
        } else if line.starts_with("calls=") {
            after_calls = true;
            continue;
        } else if line.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '*')) {
            // The line after `calls=` is the callee's inclusive cost, not self cost.
            if !after_calls {
                let ir = line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok());
                if let (Some(f), Some(ir)) = (current, ir) {
                    *costs.entry(f).or_default() += ir;
                }
            }
        }
        after_calls = false;
    }
    let mut by_cost: Vec<(&str, u64)> = costs.into_iter().collect();
    by_cost.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    by_cost
        .into_iter()
        .take(n)
        .map(|(f, ir)| format!("{ir:>12} ({:5.2}%)  {f}", ir as f64 * 100.0 / total.max(1) as f64))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_totals_and_top_entries() {
        use super::{top_entries, top_self, totals};
        assert_eq!(
            totals("events: Ir\nsummary: 12\ntotals: 12345\n").ok(),
            Some(12345)
        );
        let annotated =
            "Ir  \n----\n10 PROGRAM TOTALS\n\n----\nIr  file:function\n----\n10 (100%)  a\n 5 (50%)  b\n";
        assert_eq!(top_entries(annotated, 1), vec!["10 (100%)  a".to_string()]);
        let profile = "fn=(1) main\n3 5\ncfn=(2) leaf\ncalls=1 9\n9 40\n+1 2\nfn=(2)\n1 40\n";
        let top = top_self(profile, 47, 2);
        assert!(
            top[0].ends_with("leaf") && top[0].trim_start().starts_with("40"),
            "{top:?}"
        );
        assert!(
            top[1].ends_with("main") && top[1].trim_start().starts_with("7"),
            "{top:?}"
        );
    }
}
