//! mongoplex as a child process (the binary cargo built for this test), so that its RSS
//! and open descriptors are its own: in-process, they would also hold the simulated
//! replica set's sockets and the Rust driver clients of the load.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::peers::free_port;

pub struct ProxyChild {
    child: Child,
    pub listen: u16,
    pub admin: u16,
}

impl Drop for ProxyChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ProxyChild {
    /// Starts the binary in front of `upstream`, logging to `log`, and waits for /ready.
    pub fn start(upstream: &str, max_pool_size: u64, log: &Path) -> Self {
        let (listen, admin) = (free_port(), free_port());
        let log = File::create(log).expect("create the mongoplex log");
        let child = Command::new(env!("CARGO_BIN_EXE_mongoplex"))
            .args(["--listen", &format!("127.0.0.1:{listen}")])
            .args(["--admin", &format!("127.0.0.1:{admin}")])
            .args(["--upstream", upstream])
            .args(["--max-pool-size", &max_pool_size.to_string()])
            .args(["--log-level", "info"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("run target/debug/mongoplex");
        let mut p = Self { child, listen, admin };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((status, _)) = p.get("/ready") {
                if status.contains(" 200 ") {
                    return p;
                }
            }
            assert!(p.alive(), "mongoplex exited during startup");
            assert!(Instant::now() < deadline, "mongoplex not ready within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn uri(&self, app: &str) -> String {
        format!("mongodb://127.0.0.1:{}/?appName={app}", self.listen)
    }

    /// GET on the admin endpoint within 2 s: (status line, body).
    pub fn get(&self, path: &str) -> Result<(String, String), String> {
        get(self.admin, path)
    }
}

pub fn get(admin: u16, path: &str) -> Result<(String, String), String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| format!("{path}: {e}"))?;
    let status = out.lines().next().unwrap_or("").to_string();
    Ok((status, out))
}

/// Resident set size of process `pid`, in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Open file descriptors of process `pid`.
pub fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}
