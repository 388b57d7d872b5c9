//! `mongoplex top`: a live, mongostat-style view of a running mongoplex, refreshed from
//! its admin `/status` (members, pools, clients) and `/metrics` (counters turned into
//! rates between two ticks, wait-time p99 from the histogram buckets' growth).
//!
//! On a terminal the screen is redrawn each tick with plain ANSI (it works over SSH, no
//! curses); otherwise one line per tick is printed, for logs and scripts. Fetching is
//! the only I/O: [`view`] and the renderers are pure, tested from tables.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::http;

/// /metrics grows with members and apps; a proxy's is far below this.
const MAX_BODY: u64 = 8 * 1024 * 1024;
/// App rows on the screen; the rest are summed into one line.
const APP_ROWS: usize = 10;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Status {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub upstream: String,
    #[serde(default)]
    pub ready: bool,
    pub primary: Option<String>,
    #[serde(default)]
    pub members: Vec<Member>,
    #[serde(default)]
    pub clients: u64,
    #[serde(default)]
    pub pinned_cursors: u64,
    #[serde(default)]
    pub pinned_transactions: u64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Member {
    pub address: String,
    pub state: String,
    pub rtt_ms: Option<f64>,
    pub error: Option<String>,
    pub pool: Option<Pool>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
pub struct Pool {
    pub total: u64,
    pub idle: u64,
    pub in_use: u64,
    pub connecting: u64,
    pub waiters: u64,
}

/// One sample line of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples of an exposition text; comments and lines it cannot read are skipped
/// (mongoplex writes this text itself with the prometheus crate, so none are expected).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series, Vec::new()),
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y \"q\""`: values are quoted, with `\"`, `\\` and `\n` escapes.
fn parse_labels(mut s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key.trim_start_matches(',').to_owned(), value));
        s = rest[end + 1..].trim_start_matches(',');
    }
    Some(out)
}

/// One tick's reading: when it was taken, `/status` and `/metrics`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: Duration,
    pub status: Status,
    pub metrics: Vec<Sample>,
}

impl Snapshot {
    fn sum(&self, name: &str, keep: impl Fn(&Sample) -> bool) -> f64 {
        self.metrics
            .iter()
            .filter(|s| s.name == name && keep(s))
            .map(|s| s.value)
            .sum()
    }
}

/// What one screen shows. Rates are `None` on the first tick (nothing to compare).
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub at: Duration,
    pub version: String,
    pub upstream: String,
    pub ready: bool,
    pub primary: Option<String>,
    pub clients: u64,
    pub pinned_cursors: u64,
    pub pinned_transactions: u64,
    pub requests_per_s: Option<f64>,
    pub errors_per_s: Option<f64>,
    pub retries_per_s: Option<f64>,
    pub buffered: f64,
    pub buffered_per_s: Option<f64>,
    pub evicted_per_s: Option<f64>,
    pub members: Vec<MemberRow>,
    pub apps: Vec<AppRow>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberRow {
    pub address: String,
    pub state: String,
    pub rtt_ms: Option<f64>,
    pub pool: Pool,
    /// The bucket bound under which 99 % of this tick's checkouts waited, in ms.
    pub wait_p99_ms: Option<f64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppRow {
    pub app: String,
    pub clients: f64,
    pub requests_per_s: Option<f64>,
}

/// The view of `cur`, with rates against `prev`.
pub fn view(prev: Option<&Snapshot>, cur: &Snapshot) -> View {
    let dt = prev
        .map(|p| cur.at.saturating_sub(p.at).as_secs_f64())
        .filter(|d| *d > 0.0);
    let rate = |name: &str, keep: &dyn Fn(&Sample) -> bool| -> Option<f64> {
        let (p, dt) = (prev?, dt?);
        Some(((cur.sum(name, keep) - p.sum(name, keep)) / dt).max(0.0))
    };
    let all = |_: &Sample| true;
    let members = cur
        .status
        .members
        .iter()
        .map(|m| MemberRow {
            address: m.address.clone(),
            state: m.state.clone(),
            rtt_ms: m.rtt_ms,
            pool: m.pool.unwrap_or_default(),
            wait_p99_ms: prev.and_then(|p| wait_p99_ms(p, cur, &m.address)),
            error: m.error.clone(),
        })
        .collect();
    // A gauge's samples are floats; connection counts are whole, so f64 holds them exactly.
    let mut apps: BTreeMap<String, f64> = BTreeMap::new();
    for s in cur
        .metrics
        .iter()
        .filter(|s| s.name == "mongoplex_client_connections")
    {
        let app = s.label("app").unwrap_or("unknown").to_owned();
        *apps.entry(app).or_default() += s.value.max(0.0);
    }
    let mut apps: Vec<AppRow> = apps
        .into_iter()
        .map(|(app, clients)| AppRow {
            requests_per_s: rate("mongoplex_app_requests_total", &|s| s.label("app") == Some(&app)),
            app,
            clients,
        })
        .filter(|a| a.clients > 0.0 || a.requests_per_s.is_some_and(|r| r > 0.0))
        .collect();
    apps.sort_by(|a, b| b.clients.total_cmp(&a.clients).then_with(|| a.app.cmp(&b.app)));
    let st = &cur.status;
    View {
        at: cur.at,
        version: st.version.clone(),
        upstream: st.upstream.clone(),
        ready: st.ready,
        primary: st.primary.clone(),
        clients: st.clients,
        pinned_cursors: st.pinned_cursors,
        pinned_transactions: st.pinned_transactions,
        requests_per_s: rate("mongoplex_requests_total", &all),
        errors_per_s: rate("mongoplex_requests_total", &|s| s.label("outcome") != Some("ok")),
        retries_per_s: rate("mongoplex_retries_total", &all),
        buffered: cur.sum("mongoplex_failover_buffer_size", all),
        buffered_per_s: rate("mongoplex_failover_buffered_total", &all),
        evicted_per_s: rate("mongoplex_failover_evicted_total", &all),
        members,
        apps,
    }
}

/// p99 of the checkouts between two ticks: the smallest bucket bound holding 99 % of
/// the growth of `mongoplex_pool_checkout_wait_seconds` for `member`.
fn wait_p99_ms(prev: &Snapshot, cur: &Snapshot, member: &str) -> Option<f64> {
    let buckets = |s: &Snapshot| -> Vec<(f64, f64)> {
        let mut v: Vec<(f64, f64)> = s
            .metrics
            .iter()
            .filter(|x| {
                x.name == "mongoplex_pool_checkout_wait_seconds_bucket" && x.label("member") == Some(member)
            })
            .filter_map(|x| Some((parse_le(x.label("le")?)?, x.value)))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    };
    let (before, after) = (buckets(prev), buckets(cur));
    let grown: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let old = before.iter().find(|(l, _)| l == le).map_or(0.0, |(_, o)| *o);
            (*le, n - old)
        })
        .collect();
    let total = grown.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let le = grown.iter().find(|(_, n)| *n >= 0.99 * total)?.0;
    Some(le * 1000.0)
}

fn parse_le(le: &str) -> Option<f64> {
    match le {
        "+Inf" => Some(f64::INFINITY),
        v => v.parse().ok(),
    }
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

/// The whole screen (no escape codes; the caller clears the terminal).
pub fn render_screen(v: &View) -> String {
    let mut o = String::new();
    let ready = if v.ready { "ready" } else { "NOT READY" };
    let primary = v.primary.as_deref().unwrap_or("none");
    let _ = writeln!(
        o,
        "mongoplex {}  {}  primary {primary}  upstream {}  [{}s]",
        v.version,
        ready,
        v.upstream,
        v.at.as_secs()
    );
    let _ = writeln!(
        o,
        "clients {}  req/s {}  errors/s {}  retries/s {}  pinned cursors {} transactions {}",
        v.clients,
        opt(v.requests_per_s, 0),
        opt(v.errors_per_s, 1),
        opt(v.retries_per_s, 1),
        v.pinned_cursors,
        v.pinned_transactions
    );
    let _ = writeln!(
        o,
        "failover buffer: held now {}  buffered/s {}  failed/s {}\n",
        v.buffered,
        opt(v.buffered_per_s, 1),
        opt(v.evicted_per_s, 1)
    );
    let _ = writeln!(
        o,
        "{:<28} {:<14} {:>7} {:>6} {:>5} {:>10} {:>7} {:>11}",
        "MEMBER", "STATE", "RTT ms", "IN USE", "IDLE", "CONNECTING", "WAITERS", "WAIT p99 ms"
    );
    for m in &v.members {
        let p = m.pool;
        let _ = writeln!(
            o,
            "{:<28} {:<14} {:>7} {:>6} {:>5} {:>10} {:>7} {:>11}",
            m.address,
            m.state,
            opt(m.rtt_ms, 1),
            p.in_use,
            p.idle,
            p.connecting,
            p.waiters,
            opt(m.wait_p99_ms, 1)
        );
        if let Some(e) = &m.error {
            let _ = writeln!(o, "  error: {}", http::truncate(e));
        }
    }
    let _ = writeln!(o, "\n{:<40} {:>8} {:>8}", "APP", "CLIENTS", "REQ/S");
    for a in v.apps.iter().take(APP_ROWS) {
        let _ = writeln!(
            o,
            "{:<40} {:>8.0} {:>8}",
            a.app,
            a.clients,
            opt(a.requests_per_s, 0)
        );
    }
    if v.apps.len() > APP_ROWS {
        let rest = &v.apps[APP_ROWS..];
        let clients: f64 = rest.iter().map(|a| a.clients).sum();
        let _ = writeln!(
            o,
            "{:<40} {:>8.0}",
            format!("({} more apps)", rest.len()),
            clients
        );
    }
    o
}

/// One line per tick, `key=value` pairs, for a pipe or a log.
pub fn render_line(v: &View) -> String {
    let pools = v.members.iter().fold(Pool::default(), |a, m| Pool {
        total: a.total + m.pool.total,
        idle: a.idle + m.pool.idle,
        in_use: a.in_use + m.pool.in_use,
        connecting: a.connecting + m.pool.connecting,
        waiters: a.waiters + m.pool.waiters,
    });
    let p99 = v.members.iter().filter_map(|m| m.wait_p99_ms).reduce(f64::max);
    format!(
        "t={}s ready={} primary={} members={} clients={} req/s={} errors/s={} retries/s={} in_use={} idle={} connecting={} waiters={} wait_p99_ms={} buffered={} buffered/s={}",
        v.at.as_secs(),
        v.ready,
        v.primary.as_deref().unwrap_or("none"),
        v.members.len(),
        v.clients,
        opt(v.requests_per_s, 0),
        opt(v.errors_per_s, 1),
        opt(v.retries_per_s, 1),
        pools.in_use,
        pools.idle,
        pools.connecting,
        pools.waiters,
        opt(p99, 1),
        v.buffered,
        opt(v.buffered_per_s, 1)
    )
}

/// Reads `/status` and `/metrics` once.
pub fn fetch(admin: SocketAddr, timeout: Duration, started: Instant) -> Result<Snapshot, String> {
    let body = |path: &str| match http::get(admin, path, timeout, MAX_BODY)? {
        (200, body) => Ok(body),
        (code, body) => Err(format!("{path}: HTTP {code}: {}", http::truncate(&body))),
    };
    let status: Status = serde_json::from_str(&body("/status")?).map_err(|e| format!("/status: {e}"))?;
    let metrics = parse_metrics(&body("/metrics")?);
    Ok(Snapshot {
        at: started.elapsed(),
        status,
        metrics,
    })
}

/// Refreshes every `interval` until `count` ticks (forever without it), redrawing the
/// screen when `tty`, else printing one line per tick. A failed fetch is shown and
/// retried, not fatal: the proxy may be restarting.
pub fn run(
    admin: SocketAddr,
    interval: Duration,
    count: Option<u64>,
    tty: bool,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let started = Instant::now();
    let mut prev: Option<Snapshot> = None;
    let mut tick = 0u64;
    loop {
        let text = match fetch(admin, interval.max(Duration::from_secs(1)), started) {
            Ok(cur) => {
                let v = view(prev.as_ref(), &cur);
                prev = Some(cur);
                if tty {
                    render_screen(&v)
                } else {
                    render_line(&v)
                }
            }
            Err(e) => format!("mongoplex top: {e}"),
        };
        if tty {
            // Home, clear: a full redraw each tick.
            write!(out, "\x1b[H\x1b[2J{text}")?;
        } else {
            writeln!(out, "{text}")?;
        }
        out.flush()?;
        tick += 1;
        if count.is_some_and(|c| tick >= c) {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests;
