//! Change streams through elections, for three real drivers: the Rust `mongodb` crate
//! (here, in the test), pymongo 4 and the Node driver (`tests/clients/cs_election_*`).
//!
//! Each test runs the simulated 3-member set (tests/common/replset) in front of one
//! SecantusDB, and mongoplex in front of the set. The driver under test opens three change
//! streams on one collection through mongoplex; a Rust writer inserts `{_id: i, i}` for
//! i = 0 .. COUNT-1, one at a time, through mongoplex. Meanwhile the primary (member 0) is
//! killed, member 1 elected and member 0 restarted; later member 1 steps down and member 2
//! is elected. Every stream must deliver every insert exactly once, in order.
//!
//! The kill ends every stream's cursor (cursors die with their member), so each stream
//! must resume from its resume token through mongoplex: the proxy labels its own errors on
//! a stream's getMore `ResumableChangeStreamError`, and the new aggregate waits in the
//! failover buffer until the election. A step-down leaves cursors open, as on mongod.
//!
//! The writer is paced and gated: it stops a little past each phase's mark until the test
//! has triggered that phase's event, so the events land while writes are still flowing and
//! after every stream has delivered part of the sequence. Every wait is bounded.

mod common;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use common::peers::{self, Secantus};
use common::proxy::TestProxy;
use common::replset::ReplSet;
use futures::StreamExt;
use mongodb::bson::{doc, Document};
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType};
use mongodb::change_stream::ChangeStream;
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::event::command::CommandEvent;
use mongodb::event::EventHandler;
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const DB: &str = "cs_election";
const COLL: &str = "events";
/// Inserts in the sequence; the streams read until they deliver `i == COUNT - 1`.
const COUNT: i64 = 150;
const STREAMS: usize = 3;
/// How far the writer may run past a phase's mark before that phase's event has happened.
const SLACK: i64 = 30;
/// Between two inserts, so the sequence spans the events instead of finishing first.
const PACE: Duration = Duration::from_millis(5);
/// How long the streams may take to deliver the whole sequence before they report.
const READ_TIME: Duration = Duration::from_secs(45);
/// Each wait of the test (a client ready, a phase reached, the writer done).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// With no primary between a kill or step-down and the next election.
const NO_PRIMARY: Duration = Duration::from_millis(300);

/// What a running client has told the test so far.
#[derive(Debug, Clone, Default)]
struct Progress {
    ready: bool,
    /// Inserts delivered so far, per stream.
    seen: Vec<usize>,
    /// A stream that raised: the test stops at once.
    errors: Vec<String>,
}

impl Progress {
    fn min_seen(&self) -> usize {
        match self.seen.len() {
            STREAMS => self.seen.iter().copied().min().unwrap_or(0),
            _ => 0,
        }
    }
}

/// What a client delivered, in the shape the scripts print as `{"report": ...}`.
#[derive(Debug, Default, Deserialize)]
struct Report {
    /// Per stream, the `i` of every insert event in delivery order.
    streams: Vec<Vec<i64>>,
    errors: Vec<String>,
    /// Aggregates the driver sent (opens plus resumes), where it counts them.
    aggregates: Option<u64>,
    /// getMores that failed, as the driver saw them (code and labels).
    #[serde(default)]
    get_more_failures: Vec<String>,
}

/// A client reading three streams: its progress while it runs, its report at the end.
struct Observer {
    progress: watch::Receiver<Progress>,
    done: JoinHandle<Report>,
}

#[derive(Debug, Clone, Copy)]
enum Driver {
    Rust,
    Pymongo,
    Node,
}

// ----- the Rust driver, in the test -----

/// Aggregates sent and getMores failed, as the Rust driver's command events tell them.
#[derive(Default)]
struct Commands {
    aggregates: u64,
    get_more_failures: Vec<String>,
}

async fn rust_streams(uri: &str) -> Observer {
    let commands = Arc::new(Mutex::new(Commands::default()));
    let mut options = ClientOptions::parse(uri).await.expect("the proxy's URI");
    let seen = Arc::clone(&commands);
    options.command_event_handler = Some(EventHandler::callback(move |event: CommandEvent| {
        let mut c = seen.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            CommandEvent::Started(e) if e.command_name == "aggregate" => c.aggregates += 1,
            CommandEvent::Failed(e) if e.command_name == "getMore" => {
                c.get_more_failures.push(describe(&e.failure));
            }
            _ => {}
        }
    }));
    let client = Client::with_options(options).expect("a Rust client for mongoplex");
    let coll = client.database(DB).collection::<Document>(COLL);
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let stream = coll
            .watch()
            .max_await_time(Duration::from_millis(500))
            .await
            .expect("open a change stream through mongoplex");
        streams.push(stream);
    }
    let (tx, progress) = watch::channel(Progress {
        ready: true,
        seen: vec![0; STREAMS],
        errors: Vec::new(),
    });
    let tx = Arc::new(tx);
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(k, stream)| tokio::spawn(read_rust_stream(stream, k, Arc::clone(&tx))))
        .collect();
    let done = tokio::spawn(async move {
        let mut report = Report::default();
        for task in tasks {
            let (seen, error) = task.await.expect("a stream task");
            report.streams.push(seen);
            report.errors.extend(error);
        }
        drop(client);
        let mut c = commands.lock().unwrap_or_else(PoisonError::into_inner);
        report.aggregates = Some(c.aggregates);
        report.get_more_failures = std::mem::take(&mut c.get_more_failures);
        report
    });
    Observer { progress, done }
}

/// Code, message and labels, without the raw reply the driver's Display adds.
fn describe(e: &mongodb::error::Error) -> String {
    let what = match &*e.kind {
        ErrorKind::Command(c) => format!("code {} ({})", c.code, c.message),
        other => other.to_string(),
    };
    format!("{what} labels {:?}", e.labels())
}

async fn read_rust_stream(
    mut stream: ChangeStream<ChangeStreamEvent<Document>>,
    k: usize,
    tx: Arc<watch::Sender<Progress>>,
) -> (Vec<i64>, Option<String>) {
    let deadline = Instant::now() + READ_TIME;
    let mut seen = Vec::new();
    loop {
        let error = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => format!("deadline: {} events, none with i == {}", seen.len(), COUNT - 1),
            Ok(None) => "the stream ended".to_string(),
            Ok(Some(Err(e))) => describe(&e),
            Ok(Some(Ok(event))) if event.operation_type != OperationType::Insert => continue,
            Ok(Some(Ok(event))) => {
                let i = event.full_document.as_ref().and_then(|d| d.get_i64("i").ok());
                let Some(i) = i else {
                    break (seen, Some(format!("stream {k}: an insert without i: {event:?}")));
                };
                seen.push(i);
                tx.send_modify(|p| p.seen[k] = seen.len());
                if i == COUNT - 1 {
                    break (seen, None);
                }
                continue;
            }
        };
        let error = format!("stream {k}: {error}");
        tx.send_modify(|p| p.errors.push(error.clone()));
        break (seen, Some(error));
    }
}

// ----- pymongo and the Node driver, as scripts -----

fn script_streams(driver: Driver, uri: &str) -> Observer {
    let (mut cmd, script) = match driver {
        Driver::Pymongo => (
            tokio::process::Command::new(peers::python()),
            "cs_election_pymongo.py",
        ),
        Driver::Node => {
            let mut cmd = tokio::process::Command::new("node");
            cmd.env("NODE_PATH", peers::peers_dir().join("node").join("node_modules"));
            (cmd, "cs_election_node.js")
        }
        Driver::Rust => unreachable!("the Rust driver runs in the test"),
    };
    cmd.arg(peers::client_script(script))
        .args([
            uri,
            DB,
            COLL,
            &COUNT.to_string(),
            &READ_TIME.as_secs().to_string(),
        ])
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("DO_NOT_TRACK", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (tx, progress) = watch::channel(Progress::default());
    let done = tokio::spawn(async move {
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        let mut report = None;
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if value.get("ready").is_some() {
                tx.send_modify(|p| p.ready = true);
            } else if let Some(seen) = value.get("seen") {
                let seen = serde_json::from_value(seen.clone()).unwrap_or_default();
                tx.send_modify(|p| p.seen = seen);
            } else if let Some(error) = value.get("error") {
                tx.send_modify(|p| p.errors.push(error.to_string()));
            } else if let Some(r) = value.get("report") {
                report = Some(serde_json::from_value::<Report>(r.clone()));
            }
        }
        let status = child.wait().await;
        let stderr = stderr.await.unwrap_or_default();
        match report {
            Some(Ok(report)) if status.as_ref().is_ok_and(|s| s.success()) => report,
            other => {
                let error = format!("{script} ended with {status:?} and report {other:?}; stderr:\n{stderr}");
                tx.send_modify(|p| p.errors.push(error.clone()));
                Report {
                    errors: vec![error],
                    ..Report::default()
                }
            }
        }
    });
    Observer { progress, done }
}

// ----- the writer -----

struct Writer {
    /// The writer inserts i only once the gate is above i.
    gate: watch::Sender<i64>,
    /// How many of the sequence are stored (0 .. acked).
    acked: watch::Receiver<i64>,
    task: JoinHandle<Vec<String>>,
}

/// An insert the server refused as a duplicate was stored by an earlier attempt whose
/// reply was lost.
fn already_stored(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == 11000)
}

fn start_writer(coll: Collection<Document>) -> Writer {
    let (gate, mut open) = watch::channel(COUNT / 3 + SLACK);
    let (tx, acked) = watch::channel(0);
    let task = tokio::spawn(async move {
        let mut errors = Vec::new();
        for i in 0..COUNT {
            let waited = tokio::time::timeout(STEP_TIMEOUT, open.wait_for(|g| *g > i))
                .await
                .is_ok_and(|r| r.is_ok());
            if !waited {
                errors.push(format!("the gate never opened for i = {i}"));
                return errors;
            }
            let mut attempts = 0;
            loop {
                match coll.insert_one(doc! { "_id": i, "i": i }).await {
                    Ok(_) => break,
                    Err(e) if already_stored(&e) => break,
                    Err(e) => errors.push(format!("insert {i}: {e}")),
                }
                attempts += 1;
                if attempts == 20 {
                    errors.push(format!("gave up on i = {i}"));
                    return errors;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tx.send_replace(i + 1);
            tokio::time::sleep(PACE).await;
        }
        errors
    });
    Writer { gate, acked, task }
}

// ----- the scenario -----

/// Waits, bounded, until `ready(progress, acked)`; panics at once if a stream failed.
async fn wait_for(
    what: &str,
    obs: &Observer,
    acked: &watch::Receiver<i64>,
    ready: impl Fn(&Progress, i64) -> bool,
) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let progress = obs.progress.borrow().clone();
        let n = *acked.borrow();
        assert!(
            progress.errors.is_empty(),
            "waiting for {what}, a stream failed: {:?} (progress {:?}, writer at {n})",
            progress.errors,
            progress.seen
        );
        if ready(&progress, n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {STEP_TIMEOUT:?}: progress {progress:?}, writer at {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The first place where `seen` is not 0, 1, ..., COUNT-1.
fn first_problem(seen: &[i64]) -> Option<String> {
    for (pos, &i) in seen.iter().enumerate() {
        let want = i64::try_from(pos).expect("a small position");
        if i != want {
            let kind = if i > want {
                "a gap"
            } else {
                "a duplicate or reordering"
            };
            let around = &seen[pos.saturating_sub(3)..(pos + 3).min(seen.len())];
            return Some(format!(
                "{kind} at position {pos}: got {i}, expected {want} (around: {around:?})"
            ));
        }
    }
    let len = i64::try_from(seen.len()).expect("a small length");
    (len != COUNT).then(|| format!("delivered {len} of {COUNT} events"))
}

async fn scenario(driver: Driver) {
    let upstream = Secantus::start();
    let direct = Client::with_uri_str(upstream.uri()).await.unwrap();
    // The collection exists before the streams open (its seed is no event of theirs).
    let seed = direct.database(DB).collection::<Document>(COLL);
    seed.insert_one(doc! { "_id": "seed" }).await.unwrap();
    let rs = ReplSet::start(3, &upstream).await;
    let proxy = TestProxy::builder(&rs.uri()).start().await;
    let started = Instant::now();
    let obs = match driver {
        Driver::Rust => rust_streams(&proxy.uri()).await,
        _ => script_streams(driver, &proxy.uri()),
    };
    let writer_client = Client::with_uri_str(proxy.uri_with("retryWrites=true"))
        .await
        .unwrap();
    let no_writes = watch::channel(0).1;
    wait_for("ready streams", &obs, &no_writes, |p, _| p.ready).await;
    let opened = started.elapsed();
    let mut w = start_writer(writer_client.database(DB).collection(COLL));

    let third = COUNT / 3;
    let third_seen = usize::try_from(COUNT / 6).unwrap();
    wait_for("the kill mark", &obs, &w.acked, |p, n| {
        n >= third && p.min_seen() >= third_seen
    })
    .await;
    let killed_at = *w.acked.borrow();
    let kill = Instant::now();
    rs.kill(0).await;
    tokio::time::sleep(NO_PRIMARY).await;
    rs.elect(1);
    rs.restart(0).await;
    w.gate.send_replace(2 * third + SLACK);

    let half_seen = usize::try_from(COUNT / 2).unwrap();
    wait_for("the step-down mark", &obs, &w.acked, |p, n| {
        n >= 2 * third && p.min_seen() >= half_seen
    })
    .await;
    let recovered = kill.elapsed();
    let stepped_at = *w.acked.borrow();
    rs.step_down_and_elect(1, 2, NO_PRIMARY).await;
    w.gate.send_replace(COUNT);

    let writer_errors = tokio::time::timeout(STEP_TIMEOUT, &mut w.task)
        .await
        .expect("the writer finished")
        .expect("the writer task");
    let report = tokio::time::timeout(READ_TIME + STEP_TIMEOUT, obs.done)
        .await
        .expect("the client reported")
        .expect("the observer task");
    let aggregates: u64 = (0..rs.len()).map(|m| rs.stats(m).forwarded("aggregate")).sum();
    println!(
        "SCENARIO {driver:?}: streams open after {opened:?}; kill at i = {killed_at}, streams past \
         the step-down mark {recovered:?} after the kill; step-down at i = {stepped_at}; total \
         {:?}; aggregates at the set {aggregates} (driver counted {:?}); getMores failed at the \
         driver: {:?}; writer errors {}: {:?}",
        started.elapsed(),
        report.aggregates,
        report.get_more_failures,
        writer_errors.len(),
        writer_errors.iter().take(3).collect::<Vec<_>>()
    );
    assert!(
        report.errors.is_empty(),
        "{driver:?}: streams failed: {:?}",
        report.errors
    );
    assert_eq!(
        report.streams.len(),
        STREAMS,
        "{driver:?}: one sequence per stream"
    );
    for (k, seen) in report.streams.iter().enumerate() {
        if let Some(problem) = first_problem(seen) {
            panic!("{driver:?} stream {k}: {problem}; every event must arrive exactly once, in order");
        }
    }
    // The kill ended every cursor: each stream opened once and resumed at least once.
    assert!(
        aggregates >= 2 * STREAMS as u64,
        "{driver:?}: only {aggregates} aggregates reached the set; every stream must have resumed"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_driver_streams_survive_kill_and_step_down() {
    scenario(Driver::Rust).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymongo_streams_survive_kill_and_step_down() {
    scenario(Driver::Pymongo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_streams_survive_kill_and_step_down() {
    scenario(Driver::Node).await;
}

/// The sequence check itself catches a gap, a duplicate, a reordering and a short stream.
#[test]
fn first_problem_finds_gaps_duplicates_and_short_streams() {
    let whole: Vec<i64> = (0..COUNT).collect();
    assert_eq!(first_problem(&whole), None);
    let mut gap = whole.clone();
    gap.remove(70);
    let mut dup = whole.clone();
    dup.insert(71, 70);
    let mut swapped = whole.clone();
    swapped.swap(10, 11);
    for (bad, want) in [(gap, "a gap"), (dup, "a duplicate"), (swapped, "a gap")] {
        assert!(first_problem(&bad).is_some_and(|p| p.starts_with(want)), "{want}");
    }
    assert!(first_problem(&whole[..whole.len() - 1]).is_some_and(|p| p.starts_with("delivered")));
}
