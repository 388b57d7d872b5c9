//! Samples the proxy child once a second (RSS and descriptors from /proc, everything else
//! from its /metrics) into memory and into a CSV file, on a thread of its own so that a
//! busy test runtime cannot skew the clock.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::child::{get, open_fds, rss_kib};
use crate::common::proxy::metric_sum;

pub const HEADER: &str = "t_s,rss_kib,fds,pinned_cursors,pinned_txns,waiters,pool_total,pool_in_use,pool_idle,pool_connecting,clients,requests_total,ops_per_s";

#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Seconds since the soak began.
    pub t: f64,
    pub rss_kib: u64,
    pub fds: u64,
    pub pinned_cursors: f64,
    pub pinned_txns: f64,
    pub waiters: f64,
    pub pool_total: f64,
    pub pool_in_use: f64,
    pub pool_idle: f64,
    pub pool_connecting: f64,
    pub clients: f64,
    /// mongoplex_requests_total, every command and outcome.
    pub requests: f64,
    /// Requests per second since the previous sample.
    pub ops_per_s: f64,
}

impl Sample {
    fn csv(&self) -> String {
        format!(
            "{:.1},{},{},{},{},{},{},{},{},{},{},{},{:.1}",
            self.t,
            self.rss_kib,
            self.fds,
            self.pinned_cursors,
            self.pinned_txns,
            self.waiters,
            self.pool_total,
            self.pool_in_use,
            self.pool_idle,
            self.pool_connecting,
            self.clients,
            self.requests,
            self.ops_per_s
        )
    }
}

/// One scrape; `None` if /metrics did not answer (counted by the caller as a gap).
fn scrape(pid: u32, admin: u16, t: f64) -> Option<Sample> {
    let (_, text) = get(admin, "/metrics").ok()?;
    let pool = |state: &str| {
        metric_sum(
            &text,
            "mongoplex_pool_connections",
            &[&format!("state=\"{state}\"")],
        )
    };
    Some(Sample {
        t,
        rss_kib: rss_kib(pid),
        fds: open_fds(pid),
        pinned_cursors: metric_sum(&text, "mongoplex_pinned_cursors", &[]),
        pinned_txns: metric_sum(&text, "mongoplex_pinned_transactions", &[]),
        waiters: metric_sum(&text, "mongoplex_pool_waiters", &[]),
        pool_total: metric_sum(&text, "mongoplex_pool_connections", &[]),
        pool_in_use: pool("in_use"),
        pool_idle: pool("idle"),
        pool_connecting: pool("connecting"),
        clients: metric_sum(&text, "mongoplex_client_connections", &[]),
        requests: metric_sum(&text, "mongoplex_requests_total", &[]),
        ops_per_s: 0.0,
    })
}

pub struct Sampler {
    stop: Arc<AtomicBool>,
    pub samples: Arc<Mutex<Vec<Sample>>>,
    gaps: Arc<Mutex<u64>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    pub fn start(pid: u32, admin: u16, start: Instant, csv: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let gaps = Arc::new(Mutex::new(0));
        let mut out = BufWriter::new(File::create(csv).expect("create the soak CSV"));
        writeln!(out, "{HEADER}").unwrap();
        let (flag, into, missed) = (stop.clone(), samples.clone(), gaps.clone());
        let thread = std::thread::spawn(move || {
            let mut next = Instant::now();
            let mut last: Option<Sample> = None;
            while !flag.load(Ordering::Relaxed) {
                let t = start.elapsed().as_secs_f64();
                match scrape(pid, admin, t) {
                    Some(mut s) => {
                        if let Some(p) = &last {
                            s.ops_per_s = (s.requests - p.requests) / (s.t - p.t).max(0.001);
                        }
                        writeln!(out, "{}", s.csv()).unwrap();
                        out.flush().unwrap();
                        into.lock().unwrap().push(s.clone());
                        last = Some(s);
                    }
                    None => *missed.lock().unwrap() += 1,
                }
                next += Duration::from_secs(1);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        });
        Self {
            stop,
            samples,
            gaps,
            thread: Some(thread),
        }
    }

    /// The latest sample (waits for the first).
    pub fn latest(&self) -> Sample {
        loop {
            if let Some(s) = self.samples.lock().unwrap().last() {
                return s.clone();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops sampling; returns every sample and how many scrapes failed.
    pub fn stop(mut self) -> (Vec<Sample>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("sampler thread");
        }
        let samples = self.samples.lock().unwrap().clone();
        let gaps = *self.gaps.lock().unwrap();
        (samples, gaps)
    }
}
