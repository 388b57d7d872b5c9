//! Support for `tests/observability.rs`: an HTTP GET client, a real Prometheus server
//! and promtool ([`prom`]), a driver workload from named apps, and a parser for the
//! Prometheus text format.

// Not every helper is used by every test.
#![allow(dead_code)]

pub mod admin_checks;
pub mod deploy;
pub mod http;
pub mod prom;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;

use futures::future::try_join_all;
use std::future::IntoFuture;
use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::error::ErrorKind;
use mongodb::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A file of the repository.
pub fn repo_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Known numbers of operations from one client app.
#[derive(Debug, Clone, Copy)]
pub struct AppLoad {
    pub app: &'static str,
    /// Concurrent tasks sharing the app's client.
    pub tasks: usize,
    /// insert_one calls per task: one `insert` command each.
    pub inserts: usize,
    /// find_one calls per task: one `find` command each.
    pub finds: usize,
}

impl AppLoad {
    pub fn total_inserts(&self) -> usize {
        self.tasks * self.inserts
    }

    pub fn total_finds(&self) -> usize {
        self.tasks * self.finds
    }
}

/// A driver client for `app` through the proxy at `proxy`, with room for `pool` sockets.
pub async fn app_client(proxy: SocketAddr, app: &str, pool: usize) -> Client {
    let uri = format!("mongodb://{proxy}/?appName={app}&maxPoolSize={pool}&serverSelectionTimeoutMS=20000");
    Client::with_uri_str(uri).await.expect("driver client")
}

/// Runs `load` on `client`: each task inserts its documents, then finds them back.
pub async fn run_load(client: &Client, load: AppLoad) {
    assert!(load.inserts > 0, "finds look up the task's own inserts");
    let coll = client.database("observability").collection::<Document>(load.app);
    let tasks = (0..load.tasks).map(|t| {
        let coll = coll.clone();
        async move {
            for i in 0..load.inserts {
                coll.insert_one(doc! { "_id": format!("{t}-{i}"), "app": load.app })
                    .await?;
            }
            for i in 0..load.finds {
                let id = format!("{t}-{}", i % load.inserts);
                let found = coll.find_one(doc! { "_id": &id }).await?;
                assert!(found.is_some(), "{}: document {id} not found", load.app);
            }
            Ok::<_, mongodb::error::Error>(())
        }
    });
    try_join_all(tasks)
        .await
        .unwrap_or_else(|e| panic!("{} workload failed: {e}", load.app));
}

/// Paths that only errors take, so their metric families have samples to lint: an
/// unknown command (a server error) and a message with an unknown opCode.
pub async fn provoke_errors(proxy: SocketAddr, client: &Client) {
    let err = client
        .database("observability")
        .run_command(doc! { "noSuchCommandForMetrics": 1 })
        .await
        .expect_err("an unknown command fails");
    let code = match *err.kind {
        ErrorKind::Command(ref e) => e.code,
        _ => panic!("not a command error: {err}"),
    };
    assert_eq!(code, 59, "CommandNotFound: {err}");
    let mut raw = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let mut msg = Vec::new();
    for field in [16i32, 1, 0, 9999] {
        msg.extend_from_slice(&field.to_le_bytes()); // length, requestID, responseTo, opCode
    }
    raw.write_all(&msg).await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut sink)).await;
}

/// Holds `n` upstream connections for `hold`: a failCommand fail point on the server
/// blocks the next `n` finds, and `n` concurrent find_one calls through `client` wait
/// on it. Returns how many finds were sent (each one `find` command).
pub async fn hold_connections(upstream: &str, client: &Client, n: usize, hold: Duration) -> usize {
    let direct = Client::with_uri_str(upstream).await.expect("direct client");
    let block_ms = i64::try_from(hold.as_millis()).expect("a short hold");
    let times = i64::try_from(n).expect("a few finds");
    direct
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": { "times": times },
            "data": { "failCommands": ["find"], "blockConnection": true, "blockTimeMS": block_ms },
        })
        .await
        .expect("configureFailPoint (SecantusDB runs with --enable-test-commands)");
    let coll = client.database("observability").collection::<Document>("held");
    let finds = (0..n).map(|_| coll.find_one(doc! {}).into_future());
    try_join_all(finds)
        .await
        .expect("the held finds succeed once unblocked");
    n
}

/// One metric family of a text-format scrape.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Family {
    pub kind: String,
    pub help: String,
    /// Label names seen on its samples (`le` excluded).
    pub labels: BTreeSet<String>,
    pub samples: Vec<(BTreeMap<String, String>, f64)>,
}

/// Parses the Prometheus text format into families by name. Histogram samples
/// (`_bucket`, `_sum`, `_count`) go to their family.
pub fn parse_exposition(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            families.entry(name.into()).or_default().help = help.to_string();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            families.entry(name.into()).or_default().kind = kind.to_string();
        } else if !line.starts_with('#') {
            let (name, labels, value) = parse_sample(line);
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| name.strip_suffix(s))
                .find(|base| families.get(*base).is_some_and(|f| f.kind == "histogram"))
                .unwrap_or(&name)
                .to_string();
            let f = families.entry(family).or_default();
            f.labels.extend(labels.keys().filter(|k| *k != "le").cloned());
            f.samples.push((labels, value));
        }
    }
    families
}

/// `name{a="x",b="y"} value` (label values may hold escaped quotes and commas).
fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let bad = || -> ! { panic!("unreadable sample line {line:?}") };
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| bad());
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let mut key = String::new();
        loop {
            let Some((i, c)) = chars.next() else { bad() };
            match c {
                '}' => {
                    rest = &inner[i + 1..];
                    break;
                }
                ',' => {}
                '=' => {
                    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                    let mut value = String::new();
                    while let Some((_, c)) = chars.next() {
                        match c {
                            '\\' => match chars.next().map(|(_, c)| c) {
                                Some('n') => value.push('\n'),
                                Some(other) => value.push(other),
                                None => bad(),
                            },
                            '"' => break,
                            c => value.push(c),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                c => key.push(c),
            }
        }
    }
    let value = rest.split_whitespace().next().unwrap_or_else(|| bad());
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| bad()),
    };
    (name, labels, value)
}

/// The value of `mongoplex_member_state` for one member and state.
pub fn member_state(f: &BTreeMap<String, Family>, member: &str, state: &str) -> Option<f64> {
    f.get("mongoplex_member_state")?
        .samples
        .iter()
        .find(|(l, _)| l["member"] == member && l["state"] == state)
        .map(|s| s.1)
}

/// Every metric the source registers: the names in src/metrics.rs and its submodules
/// (src/metrics/*.rs), which register families of their own.
pub fn registered_metrics() -> BTreeSet<String> {
    let mut text = deploy::read("src/metrics.rs");
    let dir = repo_file("src/metrics");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    for f in files {
        text.push_str(&std::fs::read_to_string(&f).expect("read a metrics module"));
    }
    metric_names_in(&text)
}

/// Every `mongoplex_*` metric name mentioned in `text`, with histogram suffixes removed.
pub fn metric_names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("mongoplex_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(base.to_string());
        rest = &tail[end..];
    }
    names
}
