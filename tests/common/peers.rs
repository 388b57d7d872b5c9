//! Real peers for integration tests: SecantusDB as the upstream server, and real drivers
//! (pymongo 4, Debian's pymongo 3.11, the Node driver, mongosh) as clients.
//!
//! Everything comes from `tests/peers/install.sh`, which installs into
//! `$MONGOPLEX_PEERS_DIR` or `<repo>/.peers`; see ../shared/PEERS.md for the peers
//! themselves and `tests/clients/` for the client scripts.
//!
//! Sync or async:
//! - [`Secantus::start`] blocks. The server is a separate process, so blocking while it
//!   boots starves nothing; it works from `#[test]` and `#[tokio::test]` alike.
//! - The `run_*` helpers are `async`. The client they run usually talks to a proxy served
//!   by the test's own tokio runtime, and blocking that runtime's only thread (the
//!   default `#[tokio::test]` flavour) would deadlock the test.
//!
//! ```ignore
//! mod common;
//! use common::peers::{self, Secantus};
//!
//! #[tokio::test]
//! async fn pymongo_crud() {
//!     let upstream = Secantus::start();
//!     let script = peers::client_script("crud_pymongo.py");
//!     let out = peers::run_python(&script, &[&upstream.uri()]).await;
//!     peers::assert_success(&out, "crud_pymongo.py");
//! }
//! ```

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

const INSTALL_HINT: &str = "run `bash tests/peers/install.sh` first (see ../shared/PEERS.md)";

/// How long a client script may run before it is killed and reported as failed.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long SecantusDB gets to start listening and answer a ping.
pub const SECANTUS_START_TIMEOUT: Duration = Duration::from_secs(20);

/// The repository root (where Cargo.toml is).
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where tests/peers/install.sh put the peers: `$MONGOPLEX_PEERS_DIR`, else `<repo>/.peers`.
///
/// Panics with instructions when the directory is missing.
/// A loopback port free at the time of asking, for a binary that must be told its port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn peers_dir() -> PathBuf {
    let dir = std::env::var_os("MONGOPLEX_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_dir().join(".peers"));
    assert!(
        dir.is_dir(),
        "test peers are not installed: {} is missing; {INSTALL_HINT}",
        dir.display()
    );
    dir
}

/// A file inside the peers directory, panicking with instructions when it is missing.
fn peer_file(relative: &str) -> PathBuf {
    let path = peers_dir().join(relative);
    assert!(
        path.exists(),
        "test peer missing: {} does not exist; {INSTALL_HINT}",
        path.display()
    );
    path
}

/// A client script in `tests/clients/`.
pub fn client_script(name: &str) -> PathBuf {
    let path = repo_dir().join("tests").join("clients").join(name);
    assert!(path.is_file(), "no client script {}", path.display());
    path
}

/// The venv interpreter with pymongo 4, mockupdb and SecantusDB.
pub fn python() -> PathBuf {
    peer_file("venv/bin/python")
}

/// The system interpreter that imports Debian's pymongo 3.11 (recorded by install.sh).
pub fn legacy_python() -> PathBuf {
    let record = peer_file("legacy-python");
    let text = fs::read_to_string(&record)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; {INSTALL_HINT}", record.display()));
    PathBuf::from(text.trim())
}

/// The mongosh launcher installed from npm.
pub fn mongosh() -> PathBuf {
    peer_file("node/node_modules/.bin/mongosh")
}

/// A fresh, empty directory under the system temp dir, unique within this machine.
pub fn unique_temp_dir(kind: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("mongoplex-{kind}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// A running `secantusd-py` on 127.0.0.1 with an in-memory store and test commands on.
///
/// The process is killed, and its temp directory removed, when this value is dropped,
/// including during a panic's unwinding. Each instance has its own data.
pub struct Secantus {
    child: Child,
    addr: SocketAddr,
    /// The server's TMPDIR (its `:memory:` store lives there) and its log file.
    dir: PathBuf,
}

impl Secantus {
    /// Starts a server and waits until it answers a ping; panics with its log if it
    /// does not within [`SECANTUS_START_TIMEOUT`].
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// Like [`Secantus::start`], with extra `secantusd-py` flags (e.g. `--standalone`).
    pub fn start_with_args(extra: &[&str]) -> Self {
        let mut server = Self::spawn(extra);
        let deadline = Instant::now() + SECANTUS_START_TIMEOUT;
        server.addr = server.wait_for_address(deadline);
        server.wait_for_ping(deadline);
        server
    }

    /// A server with TLS flags: ready once it accepts TCP connections (the ping helper
    /// speaks plaintext).
    pub fn start_tls(extra: &[&str]) -> Self {
        let mut server = Self::spawn(extra);
        let deadline = Instant::now() + SECANTUS_START_TIMEOUT;
        server.addr = server.wait_for_address(deadline);
        while TcpStream::connect(server.addr).is_err() {
            server.check_alive();
            assert!(Instant::now() < deadline, "SecantusDB with TLS did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn spawn(extra: &[&str]) -> Self {
        let exe = peer_file("venv/bin/secantusd-py");
        let dir = unique_temp_dir("secantus");
        let log = fs::File::create(dir.join("secantusd.log")).expect("create secantusd.log");
        // Port 0: the server binds an ephemeral port itself and logs it, so no other
        // process can take the port between choosing it and binding it.
        let child = Command::new(&exe)
            .args(["--host", "127.0.0.1", "--port", "0", "--storage-path", ":memory:"])
            .arg("--enable-test-commands")
            .args(extra)
            // `:memory:` still makes a scratch dir under TMPDIR; keep it inside ours, so
            // that a SIGKILL leaves nothing behind once `dir` is removed.
            .env("TMPDIR", &dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL_HINT}", exe.display()));
        Secantus {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `mongodb://127.0.0.1:PORT/?directConnection=true`; append options with `&`.
    /// A seed-list URI without `directConnection`, as a proxy's upstream: the proxy then
    /// discovers the single-member replica set as a replica set (writes only to a primary).
    pub fn seed_uri(&self) -> String {
        format!("mongodb://{}/", self.addr())
    }

    pub fn uri(&self) -> String {
        format!("mongodb://{}/?directConnection=true", self.addr)
    }

    /// The server's process id, e.g. to SIGSTOP it and simulate a partition.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server with SIGTERM, so that a store on disk is flushed, and waits for
    /// it to exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "SecantusDB did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("secantusd.log")).unwrap_or_default()
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "SecantusDB (secantusd-py) {what}\n--- its log ({}) ---\n{}",
            self.dir.join("secantusd.log").display(),
            self.log()
        )
    }

    fn check_alive(&mut self) {
        match self.child.try_wait() {
            Ok(Some(status)) => self.fail(&format!("exited during startup with {status}")),
            Ok(None) => {}
            Err(e) => self.fail(&format!("cannot be waited on: {e}")),
        }
    }

    /// Reads the port it bound from its "secantus listening on HOST:PORT" log line.
    fn wait_for_address(&mut self, deadline: Instant) -> SocketAddr {
        loop {
            let log = self.log();
            if let Some(rest) = log.split("listening on ").nth(1) {
                let word = rest.split_whitespace().next().unwrap_or("");
                match word.parse() {
                    Ok(addr) => return addr,
                    Err(_) => self.fail(&format!("logged an unreadable address {word:?}")),
                }
            }
            self.check_alive();
            if Instant::now() > deadline {
                self.fail(&format!(
                    "did not log its address within {SECANTUS_START_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for_ping(&mut self, deadline: Instant) {
        loop {
            let error = match ping(self.addr) {
                Ok(()) => return,
                Err(e) => e,
            };
            self.check_alive();
            if Instant::now() > deadline {
                self.fail(&format!(
                    "did not answer a ping on {} within {SECANTUS_START_TIMEOUT:?}: {error}",
                    self.addr
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Secantus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "SecantusDB log kept at {}",
                self.dir.join("secantusd.log").display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Sends `{ping: 1, $db: "admin"}` as an OP_MSG and checks for an `ok: 1` reply.
///
/// Hand-encoded so that the harness depends on nothing under test.
fn ping(addr: SocketAddr) -> io::Result<()> {
    const OP_MSG: i32 = 2013;
    const REQUEST_ID: i32 = 1;
    const MAX_REPLY: usize = 48_000_000;
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);

    let mut doc = vec![0u8; 4];
    doc.extend_from_slice(b"\x10ping\x00");
    doc.extend_from_slice(&1i32.to_le_bytes());
    doc.extend_from_slice(b"\x02$db\x00");
    doc.extend_from_slice(&6i32.to_le_bytes());
    doc.extend_from_slice(b"admin\x00\x00");
    let doc_len = i32::try_from(doc.len()).expect("small document");
    doc[..4].copy_from_slice(&doc_len.to_le_bytes());
    let total = i32::try_from(16 + 4 + 1 + doc.len()).expect("small message");
    let mut msg = Vec::new();
    for field in [total, REQUEST_ID, 0, OP_MSG, 0] {
        msg.extend_from_slice(&field.to_le_bytes()); // header, then flagBits = 0
    }
    msg.push(0); // section kind 0: the body document
    msg.extend_from_slice(&doc);

    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(&msg)?;

    let mut header = [0u8; 16];
    stream.read_exact(&mut header)?;
    let word = |i: usize| i32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
    let (len, response_to, op_code) = (word(0), word(8), word(12));
    let len = usize::try_from(len).map_err(|_| bad(format!("negative reply length {len}")))?;
    if !(16..=MAX_REPLY).contains(&len) || response_to != REQUEST_ID || op_code != OP_MSG {
        return Err(bad(format!(
            "unexpected reply header: length {len}, responseTo {response_to}, opCode {op_code}"
        )));
    }
    let mut body = vec![0u8; len - 16];
    stream.read_exact(&mut body)?;
    let ok_double: Vec<u8> = [&b"\x01ok\x00"[..], &1.0f64.to_le_bytes()].concat();
    let ok_int: &[u8] = b"\x10ok\x00\x01\x00\x00\x00";
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    if has(&ok_double) || has(ok_int) {
        Ok(())
    } else {
        Err(bad(format!("ping reply is not ok: 1 ({} bytes)", body.len())))
    }
}

/// Environment every client script gets.
fn client_command(program: impl AsRef<Path>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program.as_ref());
    cmd.env("MONGOPLEX_PEERS_DIR", peers_dir())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("DO_NOT_TRACK", "1");
    cmd
}

/// Runs a script with the venv's Python (pymongo 4).
pub async fn run_python(script: &Path, args: &[&str]) -> Output {
    let mut cmd = client_command(python());
    cmd.arg(script).args(args);
    run_with_timeout(cmd, CLIENT_TIMEOUT).await
}

/// Runs a script with the system Python that has Debian's pymongo 3.11.
pub async fn run_legacy_python(script: &Path, args: &[&str]) -> Output {
    let mut cmd = client_command(legacy_python());
    cmd.arg(script).args(args);
    run_with_timeout(cmd, CLIENT_TIMEOUT).await
}

/// Runs a script with `node`; `require("mongodb")` resolves to the installed driver.
pub async fn run_node(script: &Path, args: &[&str]) -> Output {
    let modules = peer_file("node/node_modules/mongodb")
        .parent()
        .expect("node_modules")
        .to_path_buf();
    let mut cmd = client_command("node");
    cmd.env("NODE_PATH", modules).arg(script).args(args);
    run_with_timeout(cmd, CLIENT_TIMEOUT).await
}

/// Runs a mongosh script file against `uri`.
pub async fn run_mongosh(uri: &str, file: &Path) -> Output {
    let mut cmd = client_command(mongosh());
    cmd.args(["--quiet", "--norc", uri, "--file"]).arg(file);
    run_with_timeout(cmd, CLIENT_TIMEOUT).await
}

/// Runs `cmd` with stdin closed, collecting its output. Past `limit` the process is
/// killed, and the returned stderr ends with a line saying so.
pub async fn run_with_timeout(mut cmd: tokio::process::Command, limit: Duration) -> Output {
    let shown = format!("{:?}", cmd.as_std());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    // Drain both pipes while waiting: a client that fills a pipe would otherwise block.
    let stdout = tokio::spawn(read_all(child.stdout.take()));
    let stderr = tokio::spawn(read_all(child.stderr.take()));
    let (status, timed_out) = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => (status, false),
        Err(_) => {
            let _ = child.start_kill();
            (child.wait().await, true)
        }
    };
    let status = status.unwrap_or_else(|e| panic!("cannot wait for {shown}: {e}"));
    let stdout = collect(stdout).await;
    let mut stderr = collect(stderr).await;
    if timed_out {
        stderr.extend_from_slice(format!("\n[harness] killed {shown} after {limit:?}\n").as_bytes());
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

async fn read_all(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_end(&mut buf).await;
    }
    buf
}

/// A grandchild that inherited the pipe can hold it open after the child exits, so the
/// reader gets a few seconds and then whatever it has is abandoned.
async fn collect(reader: tokio::task::JoinHandle<Vec<u8>>) -> Vec<u8> {
    match tokio::time::timeout(Duration::from_secs(5), reader).await {
        Ok(Ok(buf)) => buf,
        _ => b"[harness] output unavailable: the pipe stayed open after exit\n".to_vec(),
    }
}

/// Panics with both output streams unless the process exited with status 0; returns stdout.
pub fn assert_success(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        panic!(
            "{what} failed: {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stdout
}
