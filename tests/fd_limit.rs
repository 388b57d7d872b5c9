//! File-descriptor limits, on the binary started under `prlimit`. Before, a soft limit of
//! 1024 (the default in many containers) stalled the proxy at about 1,011 clients
//! against its limit of 10,000, and `/live`, `/ready` and `/metrics` timed out.
//!
//! - soft 1024 under hard 20000: the proxy raises its soft limit and admits 3,000
//!   clients;
//! - soft = hard = 1024: it admits what the limit allows beside its reserve, answers
//!   the rest with an error naming the limit, and its admin endpoint keeps answering.
//!
//! A driver client connected first pings throughout and must see no error.
//!
//! Also on the binary, since it reads the binary's own log: a flood of clients sending
//! bad messages is counted in full and logged once a second, not once per client.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::bystander::{refused_ping, Bystander};
use common::peers::{free_port, Secantus};
use tokio::net::TcpStream;

const CLIENTS: usize = 3000;

struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// What it logged up to "mongoplex started".
    startup: Vec<String>,
    listen: u16,
    admin: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary under `prlimit --nofile=SOFT:HARD`, once it logs that it started.
fn start(upstream: &str, soft: u64, hard: u64) -> Running {
    let (listen, admin) = (free_port(), free_port());
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={soft}:{hard}"))
        .arg(env!("CARGO_BIN_EXE_mongoplex"))
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args([
            "--upstream",
            upstream,
            "--max-pool-size",
            "8",
            "--log-format",
            "json",
        ])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("prlimit (util-linux) runs the binary");
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut r = Running {
        child,
        lines,
        startup: Vec::new(),
        listen,
        admin,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = r
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("mongoplex started");
        let started = line.contains("mongoplex started");
        r.startup.push(line);
        if started {
            return r;
        }
    }
}

impl Running {
    /// Lines logged so far that contain `needle`.
    fn logged(&self, needle: &str) -> Vec<String> {
        let later: Vec<String> = self.lines.try_iter().collect();
        self.startup
            .iter()
            .chain(&later)
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// GET on the admin endpoint within 2 s: (status line, body).
    fn get(&self, path: &str) -> Result<(String, String), String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.admin)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| format!("{path}: {e}"))?;
        let status = out.lines().next().unwrap_or("").to_string();
        Ok((status, out))
    }

    fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.get("/metrics").expect("/metrics answers");
        body.lines()
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Opens `n` client sockets, as fast as they are accepted.
async fn open_clients(port: u16, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_soft_limit_is_raised_to_the_hard_one() {
    let upstream = Secantus::start();
    let p = start(&upstream.uri(), 1024, 20_000);
    let raised = p.logged("file-descriptor limit");
    assert!(
        raised
            .iter()
            .any(|l| l.contains("\"soft_before\":1024") && l.contains("\"soft\":20000")),
        "no log of the raised limit: {raised:?}"
    );
    let good = Bystander::start(
        format!("mongodb://127.0.0.1:{}/", p.listen),
        Duration::from_millis(20),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let clients = open_clients(p.listen, CLIENTS).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let open = loop {
        let open = p.metric("mongoplex_client_connections");
        if open >= CLIENTS as f64 || Instant::now() > deadline {
            break open;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        open >= CLIENTS as f64,
        "only {open} of {CLIENTS} clients admitted"
    );
    let (status, _) = p.get("/live").expect("/live answers with 3,000 clients open");
    assert!(status.contains("200"), "/live: {status}");

    good.assert_unaffected().await;
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_hard_limit_refuses_clients_cleanly_and_keeps_the_admin_endpoint() {
    let upstream = Secantus::start();
    let p = start(&upstream.uri(), 1024, 1024);
    let warned = p.logged("file-descriptor limit allows fewer clients");
    assert!(!warned.is_empty(), "no warning that the limit caps the clients");
    let capacity = p.metric("mongoplex_client_connections_limit");
    // Reserve with --max-pool-size 8: 3 members × (8 + 16 + 2) + 64 refusals + 128 others.
    assert_eq!(capacity, (1024 - 270) as f64, "the published client capacity");
    let good = Bystander::start(
        format!("mongodb://127.0.0.1:{}/", p.listen),
        Duration::from_millis(20),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let clients = open_clients(p.listen, CLIENTS).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for path in ["/live", "/ready", "/metrics"] {
        let (status, _) = p
            .get(path)
            .unwrap_or_else(|e| panic!("{path} with {CLIENTS} clients: {e}"));
        assert!(status.contains("200"), "{path}: {status}");
    }
    let open = p.metric("mongoplex_client_connections");
    assert_eq!(open, capacity, "clients admitted up to the capacity");
    let refused = p.metric("mongoplex_client_connections_rejected_total");
    assert!(refused > 0.0, "refusals are counted");

    // A newcomer's driver names the reason.
    let err = refused_ping(&format!(
        "mongodb://127.0.0.1:{}/?serverSelectionTimeoutMS=1500",
        p.listen
    ))
    .await;
    assert!(
        err.contains("file-descriptor limit (1024)"),
        "the refusal does not name the descriptor limit: {err}"
    );

    good.assert_unaffected().await;
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_clients_is_counted_in_full_and_logged_once_a_second() {
    use tokio::io::AsyncWriteExt;
    const BAD: usize = 300;
    let upstream = Secantus::start();
    let p = start(&upstream.uri(), 20_000, 20_000);
    let good = Bystander::start(
        format!("mongodb://127.0.0.1:{}/", p.listen),
        Duration::from_millis(20),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    for _ in 0..BAD {
        // A header below the 16-byte minimum: each is closed as a bad message.
        let mut s = TcpStream::connect(("127.0.0.1", p.listen)).await.unwrap();
        s.write_all(&5i32.to_le_bytes()).await.unwrap();
        let _ = s.write_all(&[0; 12]).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.metric("mongoplex_client_protocol_errors_total") < BAD as f64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counted = p.metric("mongoplex_client_protocol_errors_total");
    assert_eq!(counted, BAD as f64, "every bad message is counted");
    let seconds = started.elapsed().as_secs() + 1;
    let lines = p.logged("closing client: bad message").len();
    eprintln!("{BAD} bad clients in {seconds} s: {lines} log lines");
    assert!(lines >= 1, "the flood is logged");
    assert!(
        lines as u64 <= seconds + 1,
        "{lines} log lines for {BAD} bad clients in {seconds} s: at most one a second"
    );
    good.assert_unaffected().await;
}
