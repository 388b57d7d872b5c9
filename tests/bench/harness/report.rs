//! Medians over rounds, the issue's targets, and the markdown report.

use std::fmt::Write;

use serde::Serialize;

use super::load::Workload;
use super::{Pair, Results};

/// One workload at one task count: medians over the rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub workload: Workload,
    pub tasks: usize,
    pub rounds: usize,
    pub direct_ops_per_sec: f64,
    pub proxied_ops_per_sec: f64,
    /// Median of the per-round proxied ÷ direct throughput.
    pub ratio: f64,
    pub ratio_min: f64,
    pub ratio_max: f64,
    pub direct_p50_us: f64,
    pub proxied_p50_us: f64,
    /// Median of the per-round differences proxied − direct.
    pub added_p50_us: f64,
    pub direct_p99_us: f64,
    pub proxied_p99_us: f64,
    pub added_p99_us: f64,
    pub direct_p999_us: f64,
    pub proxied_p999_us: f64,
    pub added_p999_us: f64,
    pub direct_max_us: f64,
    pub proxied_max_us: f64,
    pub proxy_cpu_us_per_op: Option<f64>,
    /// Its user-time part (the rest is kernel time, mostly the sockets).
    pub proxy_cpu_user_us_per_op: Option<f64>,
    /// Failed operations over all rounds, both sides.
    pub errors: u64,
}

/// A target from the issue and where the run left it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub goal: String,
    pub measured: Option<String>,
    /// None when this run did not measure it.
    pub met: Option<bool>,
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

pub fn summarize(pairs: &[Pair]) -> Vec<Summary> {
    let mut keys: Vec<(Workload, usize)> = Vec::new();
    for p in pairs {
        if !keys.contains(&(p.workload, p.tasks)) {
            keys.push((p.workload, p.tasks));
        }
    }
    keys.into_iter()
        .map(|(workload, tasks)| {
            let ps: Vec<&Pair> = pairs
                .iter()
                .filter(|p| p.workload == workload && p.tasks == tasks)
                .collect();
            let m = |f: &dyn Fn(&Pair) -> f64| median(ps.iter().map(|p| f(p)).collect());
            let ratios: Vec<f64> = ps
                .iter()
                .map(|p| p.proxied.ops_per_sec / p.direct.ops_per_sec)
                .collect();
            let cpu: Vec<f64> = ps.iter().filter_map(|p| p.proxied.proxy_cpu_us_per_op).collect();
            let user: Vec<f64> = ps
                .iter()
                .filter_map(|p| p.proxied.proxy_cpu_user_us_per_op)
                .collect();
            Summary {
                workload,
                tasks,
                rounds: ps.len(),
                direct_ops_per_sec: m(&|p| p.direct.ops_per_sec),
                proxied_ops_per_sec: m(&|p| p.proxied.ops_per_sec),
                ratio: median(ratios.clone()),
                ratio_min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
                ratio_max: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                direct_p50_us: m(&|p| p.direct.p50_us),
                proxied_p50_us: m(&|p| p.proxied.p50_us),
                added_p50_us: m(&|p| p.proxied.p50_us - p.direct.p50_us),
                direct_p99_us: m(&|p| p.direct.p99_us),
                proxied_p99_us: m(&|p| p.proxied.p99_us),
                added_p99_us: m(&|p| p.proxied.p99_us - p.direct.p99_us),
                direct_p999_us: m(&|p| p.direct.p999_us),
                proxied_p999_us: m(&|p| p.proxied.p999_us),
                added_p999_us: m(&|p| p.proxied.p999_us - p.direct.p999_us),
                direct_max_us: m(&|p| p.direct.max_us),
                proxied_max_us: m(&|p| p.proxied.max_us),
                proxy_cpu_us_per_op: (!cpu.is_empty()).then(|| median(cpu)),
                proxy_cpu_user_us_per_op: (!user.is_empty()).then(|| median(user)),
                errors: ps.iter().map(|p| p.direct.errors + p.proxied.errors).sum(),
            }
        })
        .collect()
}

fn target(name: impl Into<String>, goal: &str, measured: Option<(String, bool)>) -> Target {
    Target {
        name: name.into(),
        goal: goal.into(),
        met: measured.as_ref().map(|m| m.1),
        measured: measured.map(|m| m.0),
    }
}

pub fn targets(r: &Results) -> Vec<Target> {
    let find = |w: Workload, t: usize| r.summary.iter().find(|s| s.workload == w && s.tasks == t);
    let ratio = |w, t, goal: f64| find(w, t).map(|s| (format!("{:.3}", s.ratio), s.ratio >= goal));
    let worst_cpu = r
        .summary
        .iter()
        .filter_map(|s| Some((s, s.proxy_cpu_us_per_op?)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let mut out = vec![
        target(
            "ping, 64 tasks: proxied ÷ direct ops/s",
            "≥ 0.90",
            ratio(Workload::Ping, 64, 0.90),
        ),
        target(
            "find_one, 64 tasks: proxied ÷ direct ops/s",
            "≥ 0.95",
            ratio(Workload::FindOne, 64, 0.95),
        ),
        target(
            "ping, 1 task: added p50 latency",
            "≤ 30 µs",
            find(Workload::Ping, 1).map(|s| (format!("{:.1} µs", s.added_p50_us), s.added_p50_us <= 30.0)),
        ),
        target(
            "proxy CPU per request (worst workload × tasks)",
            "≤ 10 µs",
            worst_cpu.map(|(s, cpu)| {
                (
                    format!("{cpu:.1} µs ({} x{})", s.workload.name(), s.tasks),
                    cpu <= 10.0,
                )
            }),
        ),
    ];
    let idle_name = format!(
        "RSS per idle client connection at {}",
        r.idle.as_ref().map_or(10_000, |i| i.requested)
    );
    out.push(target(
        idle_name,
        "≤ 4 KiB",
        r.idle.as_ref().map(|i| {
            let b = i.rss_growth_per_connection_bytes;
            (
                format!(
                    "{:.2} KiB ({}/{} connected)",
                    b / 1024.0,
                    i.connected,
                    i.requested
                ),
                b <= 4096.0 && i.connected == i.requested,
            )
        }),
    ));
    if let Some(s) = &r.storm {
        let tcp_added = s
            .peak_upstream_tcp_sockets
            .saturating_sub(s.upstream_tcp_sockets_before);
        let within = s.peak_pool_connections <= s.max_pool_size
            && u64::try_from(tcp_added).is_ok_and(|t| t <= s.max_pool_size);
        out.push(target(
            format!("storm of {}: upstream connections", s.clients),
            &format!("≤ maxPoolSize {}", s.max_pool_size),
            Some((
                format!(
                    "peak pool {}, peak TCP {} (+{tcp_added} over {} monitor sockets), {} created",
                    s.peak_pool_connections,
                    s.peak_upstream_tcp_sockets,
                    s.upstream_tcp_sockets_before,
                    s.upstream_connections_created
                ),
                within,
            )),
        ));
        out.push(target(
            format!("storm of {}: every client served", s.clients),
            "all",
            Some((format!("{}/{}", s.served, s.clients), s.served == s.clients)),
        ));
    } else {
        out.push(target(
            "storm of 5000: upstream connections",
            "≤ maxPoolSize 20",
            None,
        ));
        out.push(target("storm of 5000: every client served", "all", None));
    }
    out
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The whole report as markdown.
pub fn markdown(r: &Results) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "## mongoplex benchmark\n");
    let _ = writeln!(
        o,
        "upstream `{}`, proxy `{}`; medians over rounds.\n",
        r.upstream, r.proxy_bin
    );
    if !r.summary.is_empty() {
        let leg = match r.client_socket.as_str() {
            "unix" => "a unix socket (`--client-socket unix`)",
            _ => "loopback TCP, as the direct runs do",
        };
        let _ = writeln!(
            o,
            "Proxied clients reach the proxy over {leg}; the proxy reaches the upstream over loopback TCP.\n"
        );
    }
    if !r.summary.is_empty() {
        throughput_table(&mut o, r);
    }
    if let Some(i) = &r.idle {
        let _ = writeln!(o, "### Idle connections (hello, then nothing)\n");
        let _ = writeln!(o, "| connections | connected | open s | listen overflows | RSS before MiB | RSS after MiB | RSS growth B/conn | peak RSS MiB | proxy clients | upstream pool conns | upstream TCP sockets |");
        let _ = writeln!(o, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            o,
            "| {} | {} | {:.1} | {} | {:.1} | {:.1} | {:.0} | {:.1} | {} | {} | {} |\n",
            i.requested,
            i.connected,
            i.open_seconds,
            i.listen_overflows,
            mib(i.rss_before_bytes),
            mib(i.rss_after_bytes),
            i.rss_growth_per_connection_bytes,
            mib(i.peak_rss_bytes),
            i.proxy_clients.map_or("?".into(), |c| c.to_string()),
            i.upstream_pool_connections,
            i.upstream_tcp_sockets
        );
        if let Some(e) = &i.first_error {
            let _ = writeln!(o, "first error: `{e}`\n");
        }
    }
    if let Some(s) = &r.storm {
        let _ = writeln!(o, "### Connection storm (all connect at once, one find each)\n");
        let _ = writeln!(o, "| clients | maxPoolSize | served | wall s | listen overflows | connect p50 / p99 ms | hello p50 / p99 ms | find reply p50 / p99 / max ms | peak pool conns | created | peak upstream TCP (monitors before) | peak RSS MiB |");
        let _ = writeln!(o, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.2} | {} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | {} | {} | {} ({}) | {:.1} |\n",
            s.clients,
            s.max_pool_size,
            s.served,
            s.wall_seconds,
            s.listen_overflows,
            s.connect_p50_ms,
            s.connect_p99_ms,
            s.hello_p50_ms,
            s.hello_p99_ms,
            s.find_p50_ms,
            s.find_p99_ms,
            s.find_max_ms,
            s.peak_pool_connections,
            s.upstream_connections_created,
            s.peak_upstream_tcp_sockets,
            s.upstream_tcp_sockets_before,
            mib(s.peak_rss_bytes)
        );
        if let Some(e) = &s.first_error {
            let _ = writeln!(o, "first error: `{e}`\n");
        }
    }
    if !r.callgrind.is_empty() {
        let _ = writeln!(o, "### Instructions per proxied request (callgrind)\n");
        let _ = writeln!(o, "| workload | requests | instructions | instructions/request |");
        let _ = writeln!(o, "|---|---:|---:|---:|");
        for c in &r.callgrind {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.0} |",
                c.workload.name(),
                c.requests,
                c.instructions,
                c.instructions_per_request
            );
        }
        for c in &r.callgrind {
            let name = c.workload.name();
            let (n, file) = (c.top_inclusive.len(), &c.annotate_file);
            let _ = writeln!(o, "\n{name}: top {n} inclusive (`{file}`):\n\n```");
            for line in &c.top_inclusive {
                let _ = writeln!(o, "{line}");
            }
            let _ = writeln!(o, "```\n\n{name}: top {} by self cost:\n\n```", c.top_self.len());
            for line in &c.top_self {
                let _ = writeln!(o, "{line}");
            }
            let _ = writeln!(o, "```");
        }
        let _ = writeln!(o);
    }
    if let Some(t) = &r.tls {
        super::tls::markdown(&mut o, t);
    }
    let _ = writeln!(
        o,
        "### Targets\n\n| target | goal | measured | status |\n|---|---|---|---|"
    );
    for t in &r.targets {
        let status = match t.met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "not measured",
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {status} |",
            t.name,
            t.goal,
            t.measured.as_deref().unwrap_or("–")
        );
    }
    o
}

fn throughput_table(o: &mut String, r: &Results) {
    let rounds = r.summary.iter().map(|s| s.rounds).max().unwrap_or(0);
    let _ = writeln!(
        o,
        "### Throughput and latency ({rounds} rounds, direct and proxied alternated)\n"
    );
    let _ = writeln!(o, "| workload | tasks | direct ops/s | proxied ops/s | ratio | ratio range | p50 µs direct / proxied / added | p99 µs direct / proxied / added | p99.9 µs direct / proxied / added | max ms direct / proxied | proxy CPU µs/req (user part) | errors |");
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in &r.summary {
        let _ = writeln!(
            o,
            "| {} | {} | {:.0} | {:.0} | {:.3} | {:.3}–{:.3} | {:.1} / {:.1} / {:+.1} | {:.1} / {:.1} / {:+.1} | {:.1} / {:.1} / {:+.1} | {:.1} / {:.1} | {} | {} |",
            s.workload.name(),
            s.tasks,
            s.direct_ops_per_sec,
            s.proxied_ops_per_sec,
            s.ratio,
            s.ratio_min,
            s.ratio_max,
            s.direct_p50_us,
            s.proxied_p50_us,
            s.added_p50_us,
            s.direct_p99_us,
            s.proxied_p99_us,
            s.added_p99_us,
            s.direct_p999_us,
            s.proxied_p999_us,
            s.added_p999_us,
            s.direct_max_us / 1000.0,
            s.proxied_max_us / 1000.0,
            s.proxy_cpu_us_per_op.map_or("–".into(), |c| match s.proxy_cpu_user_us_per_op {
                Some(u) => format!("{c:.1} ({u:.1})"),
                None => format!("{c:.1}"),
            }),
            s.errors
        );
    }
    if let Some(rss) = r.proxy_peak_rss_bytes {
        let _ = writeln!(o, "\nProxy peak RSS (VmHWM) over these runs: {:.1} MiB", mib(rss));
    }
    if let Some(clears) = r.proxy_pool_clears {
        let warn = if clears > 0 {
            " (the proxy dropped its pool during the runs: see bench-work/mongoplex.log)"
        } else {
            ""
        };
        let _ = writeln!(o, "\nProxy pool clears during these runs: {clears}{warn}");
    }
    let _ = writeln!(o);
}
