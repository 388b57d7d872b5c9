//! The soak's load, all through the proxy: Rust-driver writers, a Rust cursor reader
//! (partial reads that the driver kills, and raw finds it abandons without killCursors),
//! a Rust client that churns, and the scripts: a pymongo writer, a Node writer and a
//! pymongo client that churns (tests/clients/soak_client.py, soak_writer.js).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document};
use mongodb::Client;

use super::writes::{write, WriterReport, DB};
use crate::common::peers;

/// Collection the cursors read (seeded before the load).
pub const DOCS: &str = "docs";
/// Pause between one client's operations: moderate load, not saturation.
const PACE: Duration = Duration::from_millis(10);

pub struct Load {
    stop: Arc<AtomicBool>,
    /// When each abandoned cursor was last used (its find or its one getMore).
    pub abandoned: Arc<Mutex<Vec<Instant>>>,
    tasks: Vec<tokio::task::JoinHandle<WriterReport>>,
    scripts: Vec<tokio::task::JoinHandle<WriterReport>>,
}

impl Load {
    /// Starts everything; the scripts stop by themselves after `run_for`.
    pub fn start(uri: impl Fn(&str) -> String, run_for: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let abandoned = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for w in 0..2 {
            tasks.push(tokio::spawn(writer(
                uri("soak-rust"),
                format!("rust{w}"),
                stop.clone(),
            )));
        }
        tasks.push(tokio::spawn(cursors(
            uri("soak-cursors"),
            stop.clone(),
            abandoned.clone(),
        )));
        tasks.push(tokio::spawn(churn(uri("soak-churn-rust"), stop.clone())));
        let secs = run_for.as_secs().to_string();
        let limit = run_for + Duration::from_secs(180);
        let scripts = vec![
            tokio::spawn(script(
                true,
                "soak_client.py",
                [uri("soak-pymongo"), secs.clone(), "writer".into()],
                limit,
            )),
            tokio::spawn(script(
                true,
                "soak_client.py",
                [uri("soak-churn-py"), secs.clone(), "churn".into()],
                limit,
            )),
            tokio::spawn(script(
                false,
                "soak_writer.js",
                [uri("soak-node"), secs, "node".into()],
                limit,
            )),
        ];
        Load {
            stop,
            abandoned,
            tasks,
            scripts,
        }
    }

    /// Stops the Rust tasks, waits for the scripts, and returns every report.
    pub async fn stop(self) -> Vec<WriterReport> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for t in self.tasks.into_iter().chain(self.scripts) {
            out.push(t.await.expect("a load task panicked"));
        }
        out
    }
}

async fn client(uri: &str) -> Client {
    Client::with_uri_str(uri).await.expect("client options")
}

async fn writer(uri: String, name: String, stop: Arc<AtomicBool>) -> WriterReport {
    let c = client(&uri).await;
    let coll = c.database(DB).collection::<Document>(super::writes::COLL);
    let mut r = WriterReport {
        writer: name,
        clients: 1,
        ..Default::default()
    };
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = write(&coll, &r.writer, r.attempts).await {
            r.errors.push((r.attempts, e));
        }
        r.attempts += 1;
        tokio::time::sleep(PACE).await;
    }
    c.shutdown().await;
    r
}

/// Reads up to `n` documents from a find with a small batch; the cursor is then dropped,
/// and the driver kills it.
async fn partial_read(c: &Client, n: usize, r: &mut WriterReport) {
    let coll = c.database(DB).collection::<Document>(DOCS);
    match coll.find(doc! {}).batch_size(10).await {
        Ok(mut cursor) => {
            for _ in 0..n {
                match cursor.advance().await {
                    Ok(true) => r.cursor_reads += 1,
                    Ok(false) => break,
                    Err(e) => {
                        r.cursor_errors.push(format!("getMore: {e}"));
                        break;
                    }
                }
            }
        }
        Err(e) => r.cursor_errors.push(format!("find: {e}")),
    }
}

/// A find and one getMore as plain commands, so no driver cursor exists to kill it: the
/// cursor is abandoned, as by a client that dies or leaks it. Returns when it was last used.
async fn abandon(c: &Client, r: &mut WriterReport) -> Option<Instant> {
    let db = c.database(DB);
    let reply = match db.run_command(doc! { "find": DOCS, "batchSize": 5 }).await {
        Ok(reply) => reply,
        Err(e) => {
            r.cursor_errors.push(format!("abandoned find: {e}"));
            return None;
        }
    };
    let id = reply
        .get_document("cursor")
        .and_then(|c| c.get_i64("id"))
        .unwrap_or(0);
    if id == 0 {
        r.cursor_errors
            .push("abandoned find returned no open cursor".into());
        return None;
    }
    r.cursor_reads += 5;
    let more = doc! { "getMore": id, "collection": DOCS, "batchSize": 5 };
    match db.run_command(more).await {
        Ok(_) => r.cursor_reads += 5,
        Err(e) => r.cursor_errors.push(format!("abandoned getMore: {e}")),
    }
    Some(Instant::now())
}

async fn cursors(uri: String, stop: Arc<AtomicBool>, abandoned: Arc<Mutex<Vec<Instant>>>) -> WriterReport {
    let c = client(&uri).await;
    let mut r = WriterReport {
        writer: "cursors".into(),
        clients: 1,
        ..Default::default()
    };
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        partial_read(&c, 25, &mut r).await;
        if i % 4 == 3 {
            if let Some(at) = abandon(&c, &mut r).await {
                abandoned.lock().unwrap().push(at);
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    c.shutdown().await;
    r
}

/// Connect, two checked writes, a partial cursor, disconnect; again.
async fn churn(uri: String, stop: Arc<AtomicBool>) -> WriterReport {
    let mut r = WriterReport {
        writer: "churn-rust".into(),
        ..Default::default()
    };
    while !stop.load(Ordering::Relaxed) {
        let c = client(&uri).await;
        r.clients += 1;
        let coll = c.database(DB).collection::<Document>(super::writes::COLL);
        for _ in 0..2 {
            if let Err(e) = write(&coll, &r.writer, r.attempts).await {
                r.errors.push((r.attempts, e));
            }
            r.attempts += 1;
        }
        partial_read(&c, 7, &mut r).await;
        c.shutdown().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    r
}

/// Runs a client script; its last stdout line is its report.
async fn script(python: bool, name: &'static str, args: [String; 3], limit: Duration) -> WriterReport {
    let path = peers::client_script(name);
    let mut cmd = if python {
        tokio::process::Command::new(peers::python())
    } else {
        let mut c = tokio::process::Command::new("node");
        c.env("NODE_PATH", peers::peers_dir().join("node/node_modules"));
        c
    };
    cmd.env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd.arg(path).args(&args);
    let out = peers::run_with_timeout(cmd, limit).await;
    let stdout = peers::assert_success(&out, name);
    let line = stdout.lines().last().unwrap_or("{}");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{name} printed {line:?}: {e}"))
}
