//! A real Prometheus server (Debian's `prometheus` 2.42) on loopback, and `promtool`.
//!
//! [`PromServer`] owns its process and a temp dir (config, TSDB, log): dropping it kills
//! the process and removes the dir, also while a failed test unwinds (the log is kept
//! then, and its path printed).

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http;

const INSTALL_HINT: &str = "run `bash tests/peers/install.sh` (it installs Debian's prometheus package)";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `promtool` with `args`, feeding `stdin` when given.
pub async fn promtool(args: &[&str], stdin: Option<&str>) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("promtool")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e}; {INSTALL_HINT}"));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .expect("write promtool stdin");
        drop(pipe); // EOF: promtool reads stdin to the end before it lints
    }
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("promtool finished within 60 s")
        .expect("promtool output")
}

/// Both output streams of a promtool run, for assertions and failure messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `promtool check metrics` on `text`; returns its problems, one per line.
pub async fn lint_metrics(text: &str) -> Vec<String> {
    let out = promtool(&["check", "metrics"], Some(text)).await;
    let mut problems: Vec<String> = output_text(&out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    if !out.status.success() && problems.is_empty() {
        problems.push(format!("promtool exited with {} and said nothing", out.status));
    }
    problems
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

fn temp_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("mongoplex-prom-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create Prometheus temp dir");
    dir
}

/// One instant-vector sample from `/api/v1/query`.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: serde_json::Map<String, Value>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).and_then(Value::as_str).unwrap_or("")
    }
}

pub struct PromServer {
    child: Child,
    dir: PathBuf,
    pub addr: SocketAddr,
}

impl PromServer {
    /// Starts Prometheus scraping `target` every second, evaluating `rule_files` every
    /// second, and waits until it is ready.
    pub async fn start(target: SocketAddr, rule_files: &[&Path]) -> Self {
        let dir = temp_dir();
        let rules: String = rule_files
            .iter()
            .map(|p| format!("  - {}\n", p.display()))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n{}\
             scrape_configs:\n  - job_name: mongoplex\n    static_configs:\n      - targets: ['{target}']\n",
            if rules.is_empty() { "  []\n" } else { &rules }
        );
        fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        // The port is free when chosen but may be taken before Prometheus binds it: then
        // Prometheus exits at once, and another port is tried.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut server = Self::spawn(dir.clone());
            match server.wait_ready().await {
                Ok(()) => return server,
                Err(e) if attempt < 3 && server.log().contains("address already in use") => {
                    eprintln!("retrying Prometheus on another port: {e}");
                    server.dir = PathBuf::new(); // the next attempt reuses the dir
                }
                Err(e) => server.fail(&e),
            }
        }
    }

    fn spawn(dir: PathBuf) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = fs::File::create(dir.join("prometheus.log")).expect("create prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run prometheus: {e}; {INSTALL_HINT}"));
        PromServer { child, dir, addr }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    fn fail(&self, what: &str) -> ! {
        panic!("Prometheus {what}\n--- its log ---\n{}", self.log())
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(r) = http::get(self.addr, "/-/ready").await {
                if r.status == 200 {
                    return Ok(());
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited during startup with {status}"));
            }
            if Instant::now() > deadline {
                return Err(format!("was not ready on {} within {START_TIMEOUT:?}", self.addr));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET /api/v1/<path>`; panics unless the answer is `status: success`.
    pub async fn api(&self, path: &str) -> Value {
        let r = http::get(self.addr, &format!("/api/v1/{path}"))
            .await
            .unwrap_or_else(|e| self.fail(&format!("API {path}: {e}")));
        let v: Value = serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("API {path}: not JSON ({e}): {}", r.body));
        assert_eq!(
            v["status"], "success",
            "API {path} failed (HTTP {}): {}",
            r.status, r.body
        );
        v
    }

    /// An instant query; panics unless it succeeds with a vector result.
    pub async fn query(&self, promql: &str) -> Vec<Sample> {
        let v = self.api(&format!("query?query={}", http::encode(promql))).await;
        assert_eq!(v["data"]["resultType"], "vector", "{promql}: {v}");
        v["data"]["result"]
            .as_array()
            .expect("result array")
            .iter()
            .map(|s| Sample {
                labels: s["metric"].as_object().cloned().unwrap_or_default(),
                value: s["value"][1]
                    .as_str()
                    .and_then(|x| x.parse().ok())
                    .unwrap_or_else(|| panic!("{promql}: bad sample {s}")),
            })
            .collect()
    }

    /// The single value of `promql`, or None when the result is empty.
    pub async fn value(&self, promql: &str) -> Option<f64> {
        let samples = self.query(promql).await;
        assert!(
            samples.len() <= 1,
            "{promql}: expected one series, got {samples:?}"
        );
        samples.first().map(|s| s.value)
    }

    /// Polls `promql` until `ok` accepts its samples; panics with the last ones after
    /// `limit`.
    pub async fn wait_for(
        &self,
        promql: &str,
        limit: Duration,
        ok: impl Fn(&[Sample]) -> bool,
    ) -> Vec<Sample> {
        let deadline = Instant::now() + limit;
        loop {
            let samples = self.query(promql).await;
            if ok(&samples) {
                return samples;
            }
            assert!(
                Instant::now() < deadline,
                "{promql}: condition not met within {limit:?}; last result {samples:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.dir.as_os_str().is_empty() {
            return; // a failed start whose dir the next attempt took over
        }
        if std::thread::panicking() {
            let log = self.dir.join("prometheus.log");
            eprintln!("Prometheus log kept at {}", log.display());
            let _ = fs::remove_dir_all(self.dir.join("data"));
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
