//! The processes a benchmark runs (secantusd-rs, mongoplex, valgrind) and what the
//! harness reads about them from `/proc` and the proxy's admin endpoint.

use std::collections::HashSet;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{wire, Res};

/// A child process, killed (and reaped) when dropped, with its output in a log file.
pub struct Proc {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Res<Self> {
        let out = fs::File::create(&log)?;
        cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {name} ({cmd:?}): {e}"))?;
        Ok(Self {
            child,
            name: name.to_string(),
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits up to 10 s for the exit (SecantusDB flushes a store on disk
    /// then); SIGKILL after that.
    pub fn terminate(&mut self) -> Res<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Errors out, quoting the log, if the process has exited.
    pub fn check_alive(&mut self) -> Res<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(format!(
                "{} exited with {status}; its log ({}):\n{}",
                self.name,
                self.log.display(),
                self.log_text()
            )
            .into()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The upstream server: a secantusd-rs the harness started, or an address it was given.
pub struct Upstream {
    pub addr: SocketAddr,
    proc: Option<Proc>,
    data: Option<PathBuf>,
}

impl Upstream {
    pub fn external(addr: SocketAddr) -> Self {
        Self {
            addr,
            proc: None,
            data: None,
        }
    }

    /// Starts `secantusd-rs` on an ephemeral port and waits until it answers a ping.
    pub async fn spawn(bin: &Path, dir: &Path) -> Res<Self> {
        let data = dir.join("secantus-data");
        let mut cmd = Command::new(bin);
        cmd.args(["--host", "127.0.0.1", "--port", "0", "--cache-size", "512M"])
            .arg("--storage-path")
            .arg(&data)
            .arg("--enable-test-commands");
        let mut proc = Proc::spawn("secantusd-rs", cmd, dir.join("secantusd.log"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let log = proc.log_text();
            if let Some(word) = log
                .split("listening on ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
            {
                break word
                    .parse::<SocketAddr>()
                    .map_err(|e| format!("secantusd-rs address {word:?}: {e}"))?;
            }
            proc.check_alive()?;
            if Instant::now() > deadline {
                return Err("secantusd-rs did not log its address within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        loop {
            if ping(addr).await.is_ok() {
                break;
            }
            proc.check_alive()?;
            if Instant::now() > deadline {
                return Err(format!("secantusd-rs on {addr} did not answer a ping within 30 s").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            addr,
            proc: Some(proc),
            data: Some(data),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        drop(self.proc.take());
        if let Some(data) = self.data.take() {
            let _ = fs::remove_dir_all(data);
        }
    }
}

/// The cached `secantusd-rs`, installed by `tests/peers/install-secantus-rs.sh` (a no-op
/// when already cached) unless an explicit path is given.
pub fn secantus_binary(explicit: Option<&Path>) -> Res<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let root = match std::env::var_os("MONGOPLEX_SECANTUS_RS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
            PathBuf::from(home).join(".cache/mongoplex/secantus-rs")
        }
    };
    let bin = root.join("bin/secantusd-rs");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/install-secantus-rs.sh");
    // Its progress goes to our stderr: stdout carries the report.
    let status = Command::new("bash")
        .arg(&script)
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !status.success() || !bin.exists() {
        return Err(format!("{} failed ({status}); no {}", script.display(), bin.display()).into());
    }
    Ok(bin)
}

/// What a proxy process is started with.
pub struct ProxySpec<'a> {
    pub bin: &'a Path,
    /// The upstream connection string.
    pub upstream: String,
    pub max_pool_size: Option<u64>,
    pub env: Vec<(&'static str, String)>,
    /// Run under this command line (e.g. valgrind and its flags), the proxy appended.
    pub wrapper: Vec<String>,
    pub ready_timeout: Duration,
    /// Also listen on this unix socket; [`ProxyProc::uri`] then points clients at it.
    pub unix_socket: Option<PathBuf>,
}

/// A running mongoplex, ready (admin `/ready` answered 200).
pub struct ProxyProc {
    proc: Proc,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    unix_socket: Option<PathBuf>,
}

impl ProxyProc {
    pub async fn spawn(spec: ProxySpec<'_>, dir: &Path, name: &str) -> Res<Self> {
        let (addr, admin) = (free_port()?, free_port()?);
        let mut cmd = match spec.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(spec.bin);
                c
            }
            None => Command::new(spec.bin),
        };
        cmd.arg("--listen")
            .arg(addr.to_string())
            .arg("--upstream")
            .arg(&spec.upstream)
            .arg("--admin")
            .arg(admin.to_string())
            // A RUST_LOG meant for the harness must not change what the proxy does.
            .env_remove("RUST_LOG");
        if let Some(n) = spec.max_pool_size {
            cmd.arg("--max-pool-size").arg(n.to_string());
        }
        if let Some(path) = &spec.unix_socket {
            cmd.arg("--unix-socket").arg(path);
        }
        cmd.envs(spec.env.iter().map(|(k, v)| (*k, v)));
        let mut proc = Proc::spawn(name, cmd, dir.join(format!("{name}.log")))?;
        let deadline = Instant::now() + spec.ready_timeout;
        loop {
            if matches!(http_get(admin, "/ready").await, Ok((200, _))) {
                break;
            }
            proc.check_alive()?;
            if Instant::now() > deadline {
                return Err(format!(
                    "{name} not ready within {:?}:\n{}",
                    spec.ready_timeout,
                    proc.log_text()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            proc,
            addr,
            admin,
            unix_socket: spec.unix_socket,
        })
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn check_alive(&mut self) -> Res<()> {
        self.proc.check_alive()
    }

    /// The driver connection string for clients of the proxy: its unix socket when it
    /// has one, else its TCP listener.
    pub fn uri(&self) -> String {
        let host = match &self.unix_socket {
            // The driver takes a socket path as the host, with its slashes escaped.
            Some(path) => path.display().to_string().replace('/', "%2F"),
            None => self.addr.to_string(),
        };
        format!("mongodb://{host}/?appName=mongoplex-bench")
    }

    pub async fn metrics(&self) -> Res<String> {
        match http_get(self.admin, "/metrics").await? {
            (200, body) => Ok(body),
            (code, body) => Err(format!("/metrics answered {code}: {body}").into()),
        }
    }

    pub async fn status(&self) -> Res<serde_json::Value> {
        match http_get(self.admin, "/status").await? {
            (200, body) => Ok(serde_json::from_str(&body)?),
            (code, body) => Err(format!("/status answered {code}: {body}").into()),
        }
    }
}

/// Upstream connections in the proxy's pools, summed over members, from `/status`.
pub fn pool_total(status: &serde_json::Value) -> u64 {
    status["members"]
        .as_array()
        .map(|ms| ms.iter().filter_map(|m| m["pool"]["total"].as_u64()).sum())
        .unwrap_or(0)
}

/// Sum of a metric's samples in Prometheus text, over all label sets.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A Prometheus sample that counts things (connections, events) as an integer.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn count(sample: f64) -> u64 {
    // Counts are whole and non-negative; rounding guards against float formatting, and
    // the cast saturates anything else (NaN becomes 0).
    sample.max(0.0).round() as u64
}

fn free_port() -> Res<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A one-shot HTTP/1.1 GET; returns the status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Res<(u16, String)> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| format!("GET {path} on {addr} timed out"))??;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad HTTP reply from {addr}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// An OP_MSG ping on a fresh connection.
pub async fn ping(addr: SocketAddr) -> Res<()> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let reply = wire::round_trip(&mut s, 1, &wire::ping()).await?;
        wire::expect_ok("ping", &reply)
    };
    Ok(tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .map_err(|_| "ping timed out")??)
}

/// Clock ticks per second for `/proc/<pid>/stat` times.
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// CPU time of a whole process in clock ticks: user (utime) and kernel (stime).
#[derive(Debug, Clone, Copy)]
pub struct CpuTicks {
    pub user: u64,
    pub sys: u64,
}

/// utime and stime of the whole process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Res<CpuTicks> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces; fields after it are plain.
    let rest = stat.rsplit_once(')').ok_or("unreadable /proc/<pid>/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let field = |n: usize| -> Res<u64> { Ok(fields.get(n - 3).ok_or("short /proc/<pid>/stat")?.parse()?) };
    Ok(CpuTicks {
        user: field(14)?,
        sys: field(15)?,
    })
}

/// A `kB` line of `/proc/<pid>/status`, e.g. `VmRSS` or `VmHWM`, in bytes.
pub fn status_bytes(pid: u32, key: &str) -> Res<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.split(':').next() == Some(key))
        .ok_or_else(|| format!("no {key} in /proc/{pid}/status"))?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| format!("bad {key} line"))?
        .parse()?;
    Ok(kib * 1024)
}

/// `TcpExt: ListenOverflows` from /proc/net/netstat: SYNs or handshakes dropped because
/// a listen queue was full (the whole network namespace, so read it around a run).
pub fn listen_overflows() -> Res<u64> {
    let text = fs::read_to_string("/proc/net/netstat")?;
    let mut rows = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (
        rows.next().ok_or("no TcpExt")?,
        rows.next().ok_or("no TcpExt values")?,
    );
    let i = names
        .split_whitespace()
        .position(|n| n == "ListenOverflows")
        .ok_or("no ListenOverflows")?;
    Ok(values
        .split_whitespace()
        .nth(i)
        .ok_or("short TcpExt line")?
        .parse()?)
}

/// The inodes of a process's sockets, from its fd table (slow with 10k fds).
fn socket_inodes(pid: u32) -> Res<HashSet<String>> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect())
}

/// A `/proc/net/tcp` address (`0100007F:6989`) is `target`; IPv6 tables match the port only.
fn is_address(field: &str, target: SocketAddr) -> bool {
    let Some((ip, port)) = field.split_once(':') else {
        return false;
    };
    if u16::from_str_radix(port, 16).ok() != Some(target.port()) {
        return false;
    }
    match target.ip() {
        // Printed as a host-order (little-endian) u32 of the network-order bytes.
        std::net::IpAddr::V4(v4) if ip.len() == 8 => {
            u32::from_str_radix(ip, 16).is_ok_and(|n| n.to_le_bytes() == v4.octets())
        }
        _ => true,
    }
}

/// Established (or connecting) TCP sockets whose remote end is `target`; only those
/// owned by `pid` when given.
pub fn sockets_to(target: SocketAddr, pid: Option<u32>) -> Res<usize> {
    let inodes = pid.map(socket_inodes).transpose()?;
    let table = if target.is_ipv4() {
        "/proc/net/tcp"
    } else {
        "/proc/net/tcp6"
    };
    let mut count = 0;
    for line in fs::read_to_string(table)?.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(remote), Some(state), Some(inode)) = (f.get(2), f.get(3), f.get(9)) else {
            continue;
        };
        let live = *state == "01" || *state == "02";
        let owned = inodes.as_ref().is_none_or(|set| set.contains(*inode));
        if live && owned && is_address(remote, target) {
            count += 1;
        }
    }
    Ok(count)
}
