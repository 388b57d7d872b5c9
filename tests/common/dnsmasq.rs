//! dnsmasq (Debian `dnsmasq-base`, see ../shared/PEERS.md) as the DNS server of
//! `mongodb+srv` tests: unprivileged on a loopback port, authoritative for
//! `example.test` (unknown names there are NXDOMAIN, not REFUSED), TTL 0 so no cache
//! hides a change. [`Dns::restart`] serves new records on the same port, as a DNS
//! change under a running proxy.

#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The records to serve.
#[derive(Debug, Clone, Default)]
pub struct Records {
    /// `--host-record=NAME,127.0.0.1` for each name.
    pub hosts: Vec<String>,
    /// (SRV name, target, port).
    pub srv: Vec<(String, String, u16)>,
    /// (name, text); two entries for one name make two TXT records.
    pub txt: Vec<(String, String)>,
}

impl Records {
    pub fn host(mut self, name: &str) -> Self {
        self.hosts.push(name.to_owned());
        self
    }

    pub fn srv(mut self, name: &str, target: &str, port: u16) -> Self {
        self.srv.push((name.to_owned(), target.to_owned(), port));
        self
    }

    pub fn txt(mut self, name: &str, text: &str) -> Self {
        self.txt.push((name.to_owned(), text.to_owned()));
        self
    }
}

pub struct Dns {
    child: Option<Child>,
    pub port: u16,
}

fn dnsmasq() -> PathBuf {
    ["/usr/sbin/dnsmasq", "/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("dnsmasq is not installed: run `bash tests/peers/install.sh` (apt package dnsmasq-base)")
        })
}

impl Dns {
    /// Starts dnsmasq on a free loopback port and waits until it answers.
    pub fn start(records: &Records) -> Self {
        let mut dns = Self {
            child: None,
            port: super::peers::free_port(),
        };
        dns.spawn(records);
        dns
    }

    /// `127.0.0.1:PORT`, for `--dns-server` / `dns_server`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the server; lookups then fail until [`Dns::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Serves `records` instead, on the same port.
    pub fn restart(&mut self, records: &Records) {
        self.stop();
        self.spawn(records);
    }

    fn spawn(&mut self, records: &Records) {
        let mut cmd = Command::new(dnsmasq());
        cmd.args([
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--pid-file=",
            "--local-ttl=0",
            "--local=/example.test/",
            "--log-facility=-",
        ])
        .arg(format!("--port={}", self.port));
        for host in &records.hosts {
            cmd.arg(format!("--host-record={host},127.0.0.1"));
        }
        for (name, target, port) in &records.srv {
            cmd.arg(format!("--srv-host={name},{target},{port}"));
        }
        for (name, text) in &records.txt {
            cmd.arg(format!("--txt-record={name},{text}"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run dnsmasq: {e}"));
        self.child = Some(child);
        self.wait_ready();
    }

    /// Until a query for `example.test` gets any answer (the port may be taken briefly
    /// by the previous run).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let server = SocketAddr::from(([127, 0, 0, 1], self.port));
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut query = vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["example", "test"] {
            query.push(u8::try_from(label.len()).unwrap());
            query.extend_from_slice(label.as_bytes());
        }
        query.extend_from_slice(&[0, 0, 1, 0, 1]);
        let mut buf = [0u8; 512];
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("dnsmasq exited at start: {status} (port {} taken?)", self.port);
            }
            let _ = sock.send_to(&query, server);
            if sock.recv_from(&mut buf).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not answer on port {}",
                self.port
            );
        }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop();
    }
}
