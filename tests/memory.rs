//! Memory under hostile clients: what the proxy reserves is bounded by what clients
//! send, never by what their headers announce. A well-behaved driver client runs beside
//! each probe and must see no error.
//!
//! The proxy runs in the test's own process (each test is a process of its own under
//! nextest), so the process's address space (VmSize) is the proxy's, plus the test's
//! clients, which hold nothing large.

mod common;

use std::time::Duration;

use common::bystander::{read_frame, Bystander};
use common::peers::Secantus;
use common::proxy::TestProxy;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A `/proc/self/status` field, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// 300 clients each announce a 47 MB OP_MSG, send 1 KiB of it, and stall. Before, the
/// proxy reserved every announced length at once: 13.9 GB of address space, and an abort
/// under a 2 GiB limit. Now each holds at most one growth step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_large_messages_reserve_what_arrived() {
    const CLIENTS: usize = 300;
    const ANNOUNCED: i32 = 47_000_000;
    let upstream = Secantus::start();
    let proxy = TestProxy::builder(&upstream.seed_uri())
        .settings(|s| s.client_read_timeout_ms = Some(20_000))
        .start()
        .await;
    let good = Bystander::start(proxy.uri(), Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let before = status_bytes("VmSize:");
    let mut start = Vec::with_capacity(1024);
    start.extend_from_slice(&ANNOUNCED.to_le_bytes());
    start.extend_from_slice(&1i32.to_le_bytes());
    start.extend_from_slice(&0i32.to_le_bytes());
    start.extend_from_slice(&2013i32.to_le_bytes());
    start.resize(1024, 0);
    let mut stalled = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(&start).await.unwrap();
        stalled.push(s);
    }
    // Let the proxy read every first KiB.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = status_bytes("VmSize:");
    let grown = after.saturating_sub(before);
    let announced_total = CLIENTS as u64 * u64::try_from(ANNOUNCED).unwrap();
    eprintln!(
        "VmSize grew {} MiB for {CLIENTS} stalled clients announcing {} MiB in all",
        grown >> 20,
        announced_total >> 20
    );
    // One 64 KiB step per client is about 19 MiB; the rest is slack for the runtime's
    // own growth (thread stacks, allocator arenas).
    assert!(
        grown < 512 << 20,
        "address space grew {} MiB for {CLIENTS} clients that sent 1 KiB each",
        grown >> 20
    );

    good.assert_unaffected().await;
    drop(stalled);
    proxy.shutdown().await;
}

/// 20 clients each pipeline 3 finds whose replies are about 14 MB and never read them.
/// Before, each held a reply (and its session) for as long as it stayed connected:
/// 1.57 GB for 100 such clients. Now each is closed at `client_write_timeout_ms`, which
/// frees what it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_are_closed_at_the_write_timeout() {
    const CLIENTS: usize = 20;
    let upstream = Secantus::start();
    let proxy = TestProxy::builder(&upstream.seed_uri())
        .settings(|s| s.client_write_timeout_ms = Some(1000))
        .start()
        .await;
    {
        let direct = mongodb::Client::with_uri_str(upstream.uri()).await.unwrap();
        let coll = direct.database("memtest").collection::<bson::Document>("big");
        let filler = "x".repeat(1_000_000);
        let docs: Vec<_> = (0..14).map(|i| bson::doc! { "_id": i, "f": &filler }).collect();
        coll.insert_many(docs).await.unwrap();
    }
    let good = Bystander::start(proxy.uri(), Duration::from_millis(5));

    tokio::time::sleep(Duration::from_millis(300)).await;
    let open_before = proxy.metric_sum("mongoplex_client_connections", &[]);
    let find = |id: i32| {
        mongoplex::wire::build_msg(
            id,
            0,
            0,
            bson::rawdoc! { "find": "big", "$db": "memtest" }.as_bytes(),
        )
        .as_bytes()
        .to_vec()
    };
    let pipelined = [find(1), find(2), find(3)].concat();
    let mut silent = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(&pipelined).await.unwrap();
        silent.push(s);
    }
    let closed = || {
        proxy.metric_sum(
            "mongoplex_client_connections_closed_total",
            &["reason=\"write_timeout\""],
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while closed() < CLIENTS as f64 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        closed(),
        CLIENTS as f64,
        "clients closed for not reading (write timeout 1 s, 20 s allowed)"
    );
    let open = proxy.metric_sum("mongoplex_client_connections", &[]);
    assert_eq!(
        open, open_before,
        "only the well-behaved client's connections stay open"
    );

    good.assert_unaffected().await;
    drop(silent);
    proxy.shutdown().await;
}

/// 50 clients each send a real 40 MB message (all but its last byte) at once, under a
/// 256 MiB budget. Before, the proxy buffered all of them: RSS grew by about 2 GB (1.96 GB
/// measured for 50 clients, 4.69 GB for 120). Now six fit the budget, the rest wait with
/// their sockets unread, and one more client, whose message is complete, gets an error
/// document once it has waited 5 s; its connection carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_wait_for_the_buffer_budget() {
    const CLIENTS: usize = 50;
    const LEN: usize = 40_000_000;
    const BUDGET: u64 = 256 << 20;
    let upstream = Secantus::start();
    let proxy = TestProxy::builder(&upstream.seed_uri())
        .settings(|s| {
            s.max_buffered_bytes = Some(BUDGET);
            s.client_read_timeout_ms = Some(30_000);
        })
        .start()
        .await;
    let good = Bystander::start(proxy.uri(), Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // One 40 MB OP_MSG shared by every writer (the test must not hold 2 GB itself).
    let mut msg = vec![0u8; LEN];
    msg[0..4].copy_from_slice(&i32::try_from(LEN).unwrap().to_le_bytes());
    msg[4..8].copy_from_slice(&99i32.to_le_bytes());
    msg[12..16].copy_from_slice(&2013i32.to_le_bytes());
    let msg = bytes::Bytes::from(msg);
    let rss_before = status_bytes("VmRSS:");
    let mut writers = Vec::new();
    for _ in 0..CLIENTS {
        let msg = msg.clone();
        let addr = proxy.addr;
        writers.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let _ = s.write_all(&msg[..LEN - 1]).await;
            s
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown = status_bytes("VmRSS:").saturating_sub(rss_before);
    let held = proxy.metric_sum("mongoplex_buffered_bytes", &[]);
    eprintln!(
        "RSS grew {} MiB with {CLIENTS} clients sending 40 MB each; {:.0} MiB held against a {} MiB budget",
        grown >> 20,
        held / f64::from(1u32 << 20),
        BUDGET >> 20
    );
    assert!(
        held <= BUDGET as f64,
        "held {held} bytes against a budget of {BUDGET}"
    );
    assert!(
        held >= (LEN * 6) as f64,
        "six messages fit the budget; held {held}"
    );
    assert!(
        grown < (BUDGET + (128 << 20)),
        "RSS grew {} MiB under a {} MiB budget",
        grown >> 20,
        BUDGET >> 20
    );

    // A complete message that finds no room is read off and answered after 5 s.
    let mut late = TcpStream::connect(proxy.addr).await.unwrap();
    let started = std::time::Instant::now();
    late.write_all(&msg).await.unwrap();
    let reply = read_frame(&mut late, Duration::from_secs(15)).await;
    let waited = started.elapsed();
    assert_eq!(reply.response_to(), 99);
    let body = bson::RawDocument::from_bytes(&reply.payload()[5..]).unwrap();
    assert_eq!(body.get_i32("code").unwrap(), 262);
    let errmsg = body.get_str("errmsg").unwrap();
    assert!(errmsg.contains("buffer budget"), "{errmsg}");
    assert!(
        waited >= Duration::from_secs(4),
        "answered after {waited:?}, before the 5 s wait"
    );
    assert!(proxy.metric_sum("mongoplex_buffer_budget_refusals_total", &[]) >= 1.0);
    // The connection carries on.
    let ping = mongoplex::wire::build_msg(5, 0, 0, bson::rawdoc! { "ping": 1, "$db": "admin" }.as_bytes());
    late.write_all(ping.as_bytes()).await.unwrap();
    let pong = read_frame(&mut late, Duration::from_secs(5)).await;
    assert_eq!(pong.response_to(), 5);
    let body = bson::RawDocument::from_bytes(&pong.payload()[5..]).unwrap();
    assert_eq!(body.get_f64("ok").unwrap(), 1.0, "{body:?}");

    good.assert_unaffected().await;
    for w in writers {
        w.abort();
    }
    proxy.shutdown().await;
}

/// `client_idle_timeout_ms` closes a client that begins no message for that long, and
/// only that client: one that keeps talking stays, and so does a driver whose heartbeat
/// and maxIdleTimeMS are shorter than the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_are_closed_at_the_idle_timeout() {
    use tokio::io::AsyncReadExt;
    let upstream = Secantus::start();
    let proxy = TestProxy::builder(&upstream.seed_uri())
        .settings(|s| s.client_idle_timeout_ms = Some(1500))
        .start()
        .await;
    let good = Bystander::start(
        proxy.uri_with("heartbeatFrequencyMS=500&maxIdleTimeMS=1000"),
        Duration::from_millis(5),
    );
    let ping = |id: i32| {
        mongoplex::wire::build_msg(id, 0, 0, bson::rawdoc! { "ping": 1, "$db": "admin" }.as_bytes())
            .as_bytes()
            .to_vec()
    };
    let mut idle = TcpStream::connect(proxy.addr).await.unwrap();
    let mut talker = TcpStream::connect(proxy.addr).await.unwrap();
    idle.write_all(&ping(1)).await.unwrap();
    read_frame(&mut idle, Duration::from_secs(5)).await;
    let last_reply = std::time::Instant::now();
    let talk = async {
        for i in 0..8 {
            talker.write_all(&ping(10 + i)).await.unwrap();
            read_frame(&mut talker, Duration::from_secs(5)).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let watch = async {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut byte))
            .await
            .expect("the idle client is closed within 10 s")
            .unwrap_or(0);
        assert_eq!(n, 0, "the idle client gets no bytes, only a close");
        last_reply.elapsed()
    };
    let ((), closed_after) = tokio::join!(talk, watch);
    assert!(
        closed_after >= Duration::from_millis(1400) && closed_after < Duration::from_secs(4),
        "idle client closed after {closed_after:?}, timeout 1.5 s"
    );
    // The talker outlived the timeout twice over and still gets replies.
    talker.write_all(&ping(99)).await.unwrap();
    read_frame(&mut talker, Duration::from_secs(5)).await;
    assert!(
        proxy.metric_sum(
            "mongoplex_client_connections_closed_total",
            &["reason=\"idle_timeout\""]
        ) >= 1.0,
        "the close is counted"
    );
    good.assert_unaffected().await;
    proxy.shutdown().await;
}

/// A compressed message of 40 bytes that announces 40 MB once inflated: its size is
/// leased from the buffer budget before anything is inflated. With a 64 MiB budget held
/// by another client's unfinished 40 MB message, it waits 5 s, is answered with an error
/// document, and the connection carries on. Before, the proxy allocated the announced
/// size for every such message, outside the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_messages_lease_their_inflated_size() {
    let upstream = Secantus::start();
    let proxy = TestProxy::builder(&upstream.seed_uri())
        .settings(|s| s.max_buffered_bytes = Some(64 << 20))
        .start()
        .await;
    let good = Bystander::start(proxy.uri(), Duration::from_millis(5));
    let mut holder = TcpStream::connect(proxy.addr).await.unwrap();
    let mut start = vec![0u8; 200_000];
    start[0..4].copy_from_slice(&40_000_000i32.to_le_bytes());
    start[12..16].copy_from_slice(&2013i32.to_le_bytes());
    holder.write_all(&start).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while proxy.metric_sum("mongoplex_buffered_bytes", &[]) < 40e6 {
        assert!(
            std::time::Instant::now() < deadline,
            "the holder's message never leased"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut msg = Vec::new();
    msg.extend_from_slice(&0i32.to_le_bytes());
    msg.extend_from_slice(&41i32.to_le_bytes());
    msg.extend_from_slice(&0i32.to_le_bytes());
    msg.extend_from_slice(&2012i32.to_le_bytes());
    msg.extend_from_slice(&2013i32.to_le_bytes());
    msg.extend_from_slice(&40_000_000i32.to_le_bytes());
    msg.push(1); // snappy
    msg.extend_from_slice(&[0x80, 0xb4, 0x89, 0x13, 0x00, 0x01, 0x02]);
    let len = i32::try_from(msg.len()).unwrap();
    msg[0..4].copy_from_slice(&len.to_le_bytes());
    s.write_all(&msg).await.unwrap();
    let reply = read_frame(&mut s, Duration::from_secs(10)).await;
    assert_eq!(reply.response_to(), 41);
    let body = mongoplex::wire::OpMsg::parse(&reply).unwrap().body.to_owned();
    assert_eq!(body.get_i32("code").ok(), Some(262), "{body:?}");
    assert!(body.get_str("errmsg").unwrap().contains("budget"), "{body:?}");
    assert_eq!(
        proxy.metric_sum("mongoplex_buffer_budget_refusals_total", &[]),
        1.0
    );
    // The connection carries on.
    let ping = mongoplex::wire::build_msg(42, 0, 0, bson::rawdoc! { "ping": 1, "$db": "admin" }.as_bytes());
    s.write_all(ping.as_bytes()).await.unwrap();
    let reply = read_frame(&mut s, Duration::from_secs(5)).await;
    assert_eq!(reply.response_to(), 42);
    good.assert_unaffected().await;
    proxy.shutdown().await;
}
