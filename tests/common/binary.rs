//! The `mongoplex` binary as a child process: its log lines, signals, and plain HTTP to
//! its admin port (for the reload and drain tests, which need the real `main`).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running binary; killed on drop.
pub struct Running {
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    /// Starts the binary with `args` (no `RUST_LOG`: the config's `log_level` rules) and
    /// waits until it logs that it started.
    pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Self {
        // MONGOPLEX_TEST_BIN runs these tests against another build, e.g. an older one,
        // to see a test fail where the behaviour is missing.
        let bin =
            std::env::var_os("MONGOPLEX_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_mongoplex").into());
        let mut child = Command::new(bin)
            .args(args)
            .envs(envs.iter().copied())
            .env_remove("RUST_LOG")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut running = Self { child, lines };
        if !running.wait_log("mongoplex started", Duration::from_secs(20)) {
            let _ = running.child.kill();
            panic!("mongoplex did not start:\n{}", running.log());
        }
        running
    }

    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Lines logged so far that contain `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until a line containing `needle` has been logged.
    pub fn wait_log(&mut self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.count_log(needle) > 0 {
                return true;
            }
            if self.child.try_wait().unwrap().is_some() {
                std::thread::sleep(Duration::from_millis(100));
                return self.count_log(needle) > 0;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name}");
    }

    /// The exit status once it exits, or `None` if it is still running after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request; the status code and the body.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The sum of a metric's samples (from `/metrics`) whose line contains every matcher.
pub fn metric(admin: SocketAddr, name: &str, matchers: &[&str]) -> f64 {
    let (_, text) = http(admin, "GET", "/metrics").expect("GET /metrics");
    super::proxy::metric_sum(&text, name, matchers)
}
