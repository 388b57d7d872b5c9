//! Load for failover scenarios: writers that insert unique ids through the proxy and
//! record every acknowledgement and every error, so a test can check that no
//! acknowledged write is lost, none is applied twice, and which errors clients saw.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document};
use mongodb::Client;

use crate::common::peers;

pub struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    /// Time of each acknowledgement, to find the first success after an event.
    acks: Arc<Mutex<Vec<Instant>>>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
    scripts: Vec<tokio::task::JoinHandle<serde_json::Value>>,
}

pub struct Outcome {
    pub acked: u64,
    pub errors: Vec<String>,
}

impl Load {
    /// `n` Rust-driver writers on `client`, inserting into failover.load.
    pub fn start(client: &Client, n: usize, prefix: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for w in 0..n {
            let coll = client.database("failover").collection::<Document>("load");
            let (stop, acked, acks) = (stop.clone(), acked.clone(), acks.clone());
            let prefix = format!("{prefix}-rs{w}");
            tasks.push(tokio::spawn(async move {
                let mut errors = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match coll.insert_one(doc! { "_id": format!("{prefix}-{i}") }).await {
                        Ok(_) => {
                            acked.fetch_add(1, Ordering::Relaxed);
                            acks.lock().unwrap().push(Instant::now());
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                    i += 1;
                }
                errors
            }));
        }
        Load {
            stop,
            acked,
            acks,
            tasks,
            scripts: Vec::new(),
        }
    }

    /// Adds a pymongo writer and a Node writer running for `seconds`.
    pub fn with_script_writers(mut self, uri: &str, seconds: u64, prefix: &str) -> Self {
        for (script, python) in [("writer.py", true), ("writer.js", false)] {
            let path = peers::client_script(script);
            let args = [uri.to_string(), seconds.to_string(), format!("{prefix}-{script}")];
            self.scripts.push(tokio::spawn(async move {
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = if python {
                    peers::run_python(&path, &a).await
                } else {
                    peers::run_node(&path, &a).await
                };
                let stdout = peers::assert_success(&out, script);
                let line = stdout.lines().last().unwrap_or("{}").to_string();
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{script} printed {line:?}: {e}"))
            }));
        }
        self
    }

    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Time from `event` to the first acknowledgement after it, waiting up to `limit`.
    pub async fn first_success_after(&self, event: Instant, limit: Duration) -> Option<Duration> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(t) = self.acks.lock().unwrap().iter().find(|t| **t > event) {
                return Some(t.duration_since(event));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    pub async fn stop(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        let mut errors = Vec::new();
        for t in self.tasks {
            errors.extend(t.await.unwrap());
        }
        let mut acked = self.acked.load(Ordering::Relaxed);
        for s in self.scripts {
            let v = s.await.unwrap();
            acked += v["acked"].as_u64().expect("script reports acked");
            for e in v["errors"].as_array().expect("script reports errors") {
                errors.push(e.as_str().unwrap_or("?").to_string());
            }
        }
        Outcome { acked, errors }
    }
}

/// Documents in failover.load, counted on the shared upstream.
pub async fn stored(direct: &Client) -> u64 {
    direct
        .database("failover")
        .collection::<Document>("load")
        .count_documents(doc! {})
        .await
        .unwrap()
}
