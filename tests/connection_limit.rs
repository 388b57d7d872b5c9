//! At `max_client_connections`, a newcomer's hello is answered with an error document
//! that names the limit, in the protocol it spoke, and the refusal is counted. Before,
//! it got a bare close (or RST), which a driver reports as a network error with no
//! reason. A well-behaved driver client connected earlier sees no error.

mod common;

use std::time::Duration;

use common::bystander::{legacy_is_master, read_frame, refused_ping, Bystander};
use common::peers::Secantus;
use common::proxy::TestProxy;
use mongoplex::wire::OpCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hello_at_the_limit_gets_an_error_naming_it() {
    let upstream = Secantus::start();
    let proxy = TestProxy::builder(&upstream.seed_uri())
        .settings(|s| s.max_client_connections = Some(LIMIT))
        .start()
        .await;
    let open = || proxy.metric_sum("mongoplex_client_connections", &[]);

    // A well-behaved client, connected before the limit is reached.
    let pinger = Bystander::start(proxy.uri_with("maxPoolSize=1"), Duration::from_millis(10));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Fill the rest with idle sockets.
    let mut idle = Vec::new();
    while open() < LIMIT as f64 {
        idle.push(TcpStream::connect(proxy.addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open(), LIMIT as f64);
    let refused_before = proxy.metric_sum(
        "mongoplex_client_connections_rejected_total",
        &["reason=\"limit\""],
    );

    // The Rust driver reports the proxy's reason, not a reset.
    let text = refused_ping(&proxy.uri_with("serverSelectionTimeoutMS=1500")).await;
    assert!(
        text.contains(&format!("max_client_connections ({LIMIT}) reached")),
        "the driver's error does not name the limit: {text}"
    );

    // A legacy OP_QUERY hello gets an OP_REPLY with the same error, then a close.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(&legacy_is_master(77)).await.unwrap();
    let frame = read_frame(&mut s, Duration::from_secs(5)).await;
    assert_eq!(frame.op_code(), Some(OpCode::Reply));
    assert_eq!(frame.response_to(), 77);
    let body = bson::RawDocument::from_bytes(&frame.payload()[20..]).unwrap();
    assert_eq!(body.get_f64("ok").unwrap(), 0.0);
    assert_eq!(body.get_i32("code").unwrap(), 6);
    assert!(body
        .get_str("errmsg")
        .unwrap()
        .contains("max_client_connections (8)"));
    let mut rest = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut rest))
        .await
        .expect("the refused connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "the refused connection is closed after the reply");

    let refused = proxy.metric_sum(
        "mongoplex_client_connections_rejected_total",
        &["reason=\"limit\""],
    );
    assert!(
        refused >= refused_before + 2.0,
        "refusals counted: {refused_before} -> {refused}"
    );
    assert_eq!(open(), LIMIT as f64, "refused clients never count as open");

    pinger.assert_unaffected().await;
    drop(idle);
    proxy.shutdown().await;
}
