//! The upstream socket on its own: TCP keepalive is on (read back from the kernel's
//! /proc/net/tcp), a write to a server that stops reading ends at socketTimeoutMS, and a
//! read ends at the caller's deadline, each breaking the connection.
//!
//! The upstream is a tiny fake written here: it answers the handshake hello, then reads
//! nothing more, as a stalled server would. The test needs no peers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bson::{doc, oid::ObjectId, Document};
use mongoplex::address::ServerAddress;
use mongoplex::upstream::{ConnectOptions, UpstreamConn, UpstreamError};
use mongoplex::wire::{build_msg, Frame, FrameReader};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Generous: these bounds are hundreds of milliseconds; a loaded 2-core machine may add
/// a second, never ten.
const SLACK: Duration = Duration::from_secs(3);
/// What a test waits before it calls a hang a failure.
const HANG: Duration = Duration::from_secs(20);

struct Stalling {
    address: ServerAddress,
    /// The client side of each accepted connection, as the server sees its peer.
    peers: mpsc::UnboundedReceiver<SocketAddr>,
}

impl Stalling {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, peers) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, peer)) = listener.accept().await {
                let _ = tx.send(peer);
                tokio::spawn(serve(tcp));
            }
        });
        Self {
            address: ServerAddress {
                host: addr.ip().to_string(),
                port: addr.port(),
            },
            peers,
        }
    }

    async fn connect(&mut self, socket_timeout: Option<Duration>) -> (UpstreamConn, SocketAddr) {
        let opts = ConnectOptions {
            socket_timeout,
            ..ConnectOptions::default()
        };
        let conn = UpstreamConn::establish(&self.address, 1, 0, &opts)
            .await
            .expect("establish");
        let peer = self.peers.recv().await.expect("accepted");
        (conn, peer)
    }
}

/// Answers the handshake hello, then reads nothing more and holds the socket open.
async fn serve(mut tcp: TcpStream) {
    let mut reader = FrameReader::new();
    if let Ok(Some(req)) = reader.next(&mut tcp, 1 << 20).await {
        let reply = doc! {
            "ok": 1, "helloOk": true, "isWritablePrimary": true,
            "maxWireVersion": 17, "minWireVersion": 0,
            "maxBsonObjectSize": 16 * 1024 * 1024, "maxMessageSizeBytes": 48_000_000,
            "topologyVersion": { "processId": ObjectId::new(), "counter": 0_i64 },
        };
        let frame = build_msg(0, req.request_id(), 0, &reply.to_vec().expect("encode"));
        if tcp.write_all(frame.as_bytes()).await.is_err() {
            return;
        }
    }
    tokio::time::sleep(HANG * 2).await;
}

fn command(body: &Document) -> Frame {
    build_msg(0, 0, 0, &body.to_vec().expect("encode"))
}

/// The kernel's view of a TCP socket: its timer kind (`tr` in /proc/net/tcp: 0 none,
/// 1 retransmit, 2 keepalive, 3 TIME_WAIT, 4 zero-window probe) and the time left on it.
/// Both ends are matched: an earlier connection in TIME_WAIT can share the local port.
fn tcp_timer(local: SocketAddr, remote: SocketAddr) -> Option<(u8, Duration)> {
    let hex = |a: SocketAddr| {
        let SocketAddr::V4(v4) = a else {
            panic!("the test listens on IPv4")
        };
        format!("{:08X}:{:04X}", u32::from_le_bytes(v4.ip().octets()), v4.port())
    };
    let (want_local, want_remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(1) != Some(&want_local.as_str()) || cols.get(2) != Some(&want_remote.as_str()) {
            return None;
        }
        let (kind, jiffies) = cols.get(5)?.split_once(':')?;
        // USER_HZ is 100 on Linux: the field counts hundredths of a second.
        let left = u64::from_str_radix(jiffies, 16).ok()?;
        Some((kind.parse().ok()?, Duration::from_millis(left * 10)))
    })
}

#[tokio::test]
async fn upstream_sockets_have_tcp_keepalive() {
    let mut fake = Stalling::start().await;
    let (_conn, local) = fake.connect(None).await;
    let remote: SocketAddr = format!("{}:{}", fake.address.host, fake.address.port)
        .parse()
        .unwrap();
    let (kind, left) = tcp_timer(local, remote).expect("the connection in /proc/net/tcp");
    assert_eq!(
        kind, 2,
        "an idle upstream connection must have its keepalive timer armed (timer {kind}, {left:?} left)"
    );
    assert!(
        left <= Duration::from_secs(120) && left > Duration::from_secs(60),
        "the first probe should come after 120 s idle, not {left:?}"
    );
}

#[tokio::test]
async fn a_write_to_a_server_that_stopped_reading_ends_at_socket_timeout() {
    let mut fake = Stalling::start().await;
    let timeout = Duration::from_millis(300);
    let (mut conn, _) = fake.connect(Some(timeout)).await;
    // Far more than the loopback socket buffers of both ends hold.
    let pad = bson::Binary {
        subtype: bson::spec::BinarySubtype::Generic,
        bytes: vec![0u8; 30 << 20],
    };
    let mut big = command(&doc! { "insert": "c", "$db": "t", "pad": pad });
    let started = Instant::now();
    let sent = tokio::time::timeout(HANG, conn.send(&mut big, true))
        .await
        .expect("the write was never bounded: it waited for a server that does not read");
    let took = started.elapsed();
    let err = sent.expect_err("the server read nothing, so the write cannot complete");
    assert!(
        matches!(err, UpstreamError::WriteTimeout { ms: 300, .. }),
        "{err:?}"
    );
    assert!(err.is_timeout(), "a write timeout is a network timeout");
    assert!(
        took >= timeout && took < timeout + SLACK,
        "the write ended after {took:?}"
    );
    assert!(
        conn.broken && !conn.reusable(),
        "a cut write leaves the stream unusable"
    );
}

#[tokio::test]
async fn a_read_ends_at_the_callers_deadline_before_socket_timeout() {
    let mut fake = Stalling::start().await;
    let (mut conn, _) = fake.connect(Some(Duration::from_secs(60))).await;
    let deadline = Instant::now() + Duration::from_millis(300);
    conn.send_by(
        &mut command(&doc! { "ping": 1, "$db": "admin" }),
        true,
        Some(deadline),
    )
    .await
    .expect("a small request fits in the socket buffer");
    let err = tokio::time::timeout(HANG, conn.recv_by(Some(deadline)))
        .await
        .expect("the read was never bounded by the deadline")
        .expect_err("the server never answers");
    assert!(matches!(err, UpstreamError::DeadlineExceeded { .. }), "{err:?}");
    assert!(!err.is_timeout(), "the client's limit is not the member's fault");
    assert!(Instant::now() < deadline + SLACK);
    assert!(conn.broken && !conn.reusable());

    // Without a deadline, socketTimeoutMS still bounds the read.
    let (mut conn, _) = fake.connect(Some(Duration::from_millis(200))).await;
    conn.send(&mut command(&doc! { "ping": 1, "$db": "admin" }), true)
        .await
        .expect("send");
    let err = tokio::time::timeout(HANG, conn.recv())
        .await
        .expect("socketTimeoutMS did not bound the read")
        .expect_err("no reply");
    assert!(matches!(err, UpstreamError::Timeout { ms: 200, .. }), "{err:?}");
}
