//! The drain of the binary on SIGTERM, for rolling deploys, with SecantusDB upstream:
//! `/ready` answers 503 at once, the listener keeps accepting for `shutdown_delay_ms`
//! and then refuses, a request in flight completes, the process exits 0; a second
//! signal exits at once.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::binary::{http, Running};
use common::failpoint::fail_once;
use common::peers::{free_port, Secantus};
use mongodb::bson::{doc, Document};
use mongodb::Client;

fn start(upstream: &Secantus, delay_ms: u64) -> (Running, u16, SocketAddr) {
    let port = free_port();
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let proxy = Running::spawn(
        &[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin",
            &admin.to_string(),
            "--upstream",
            &upstream.uri(),
        ],
        &[
            ("MONGOPLEX_SHUTDOWN_DELAY_MS", &delay_ms.to_string()),
            ("MONGOPLEX_LOG_LEVEL", "info"),
        ],
    );
    (proxy, port, admin)
}

fn ready(admin: SocketAddr) -> (u16, String) {
    http(admin, "GET", "/ready").expect("GET /ready")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_refuses_then_exits_0() {
    const DELAY: Duration = Duration::from_millis(1500);
    let upstream = Secantus::start();
    let direct = Client::with_uri_str(upstream.uri()).await.unwrap();
    let (mut proxy, port, admin) = start(&upstream, 1500);
    let uri = format!("mongodb://127.0.0.1:{port}/?retryReads=false");
    let client = Client::with_uri_str(&uri).await.unwrap();
    let coll = client.database("drain").collection::<Document>("c");
    coll.insert_one(doc! { "_id": 1 }).await.unwrap();
    // An idle client too: it must not hold the exit back.
    let idle = Client::with_uri_str(&uri).await.unwrap();
    idle.database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .unwrap();
    let t = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while ready(admin).0 != 200 {
            assert!(Instant::now() < deadline, "never ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    t.await.unwrap();
    // In flight across the whole delay: held 2.5 s at the server.
    fail_once(
        &direct,
        doc! { "failCommands": ["find"], "blockConnection": true, "blockTimeMS": 2500 },
    )
    .await;
    let in_flight = tokio::spawn(async move { coll.find_one(doc! { "_id": 1 }).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    proxy.signal("TERM");
    let watch = tokio::task::spawn_blocking(move || {
        // /ready goes 503 at once.
        let mut first_503 = None;
        while sent.elapsed() < Duration::from_millis(500) {
            let (status, body) = ready(admin);
            if status == 503 {
                assert!(body.contains("draining"), "{body}");
                first_503 = Some(sent.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let first_503 = first_503.expect("/ready still 200 half a second after SIGTERM");
        // During the delay: still 503, and still accepting.
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(ready(admin).0, 503, "/ready during the delay");
        let accepted_during = TcpStream::connect(("127.0.0.1", port)).is_ok();
        // After it: refused.
        let refused_at = loop {
            if TcpStream::connect(("127.0.0.1", port)).is_err() {
                break sent.elapsed();
            }
            assert!(
                sent.elapsed() < Duration::from_secs(5),
                "the listener never closed"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        (first_503, accepted_during, refused_at)
    });
    let (first_503, accepted_during, refused_at) = watch.await.unwrap();
    assert!(
        first_503 < Duration::from_millis(300),
        "/ready took {first_503:?}"
    );
    assert!(accepted_during, "the listener closed before shutdown_delay_ms");
    assert!(
        refused_at >= DELAY - Duration::from_millis(100),
        "the listener closed after {refused_at:?}, before the {DELAY:?} delay"
    );
    let got = in_flight
        .await
        .unwrap()
        .expect("the in-flight find completes during the drain");
    assert_eq!(got.and_then(|d| d.get_i32("_id").ok()), Some(1));
    let status = tokio::task::spawn_blocking(move || {
        let status = proxy.wait_exit(Duration::from_secs(5));
        (status, proxy.log())
    })
    .await
    .unwrap();
    let (status, log) = status;
    let status = status.unwrap_or_else(|| panic!("no exit 5 s after the in-flight request: {log}"));
    assert!(status.success(), "exit status {status:?}: {log}");
    assert!(
        sent.elapsed() < Duration::from_secs(6),
        "the idle client held the exit back (shutdown_timeout_ms is 10 s): {:?}",
        sent.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let upstream = Secantus::start();
    for second in ["TERM", "INT"] {
        let (mut proxy, _, admin) = start(&upstream, 20_000);
        proxy.signal("TERM");
        let (p, status) = tokio::task::spawn_blocking(move || {
            assert!(
                proxy.wait_exit(Duration::from_millis(700)).is_none(),
                "exited before the delay ended"
            );
            assert_eq!(ready(admin).0, 503);
            let t = Instant::now();
            proxy.signal(second);
            let status = proxy.wait_exit(Duration::from_secs(2));
            (t.elapsed(), (status, proxy.log()))
        })
        .await
        .unwrap();
        let (status, log) = status;
        let status = status.unwrap_or_else(|| panic!("SIG{second} during the drain: no exit: {log}"));
        assert!(p < Duration::from_secs(1), "SIG{second}: took {p:?}");
        assert_eq!(status.code(), Some(1), "SIG{second}: {log}");
        assert!(log.contains("second signal"), "{log}");
    }
}
