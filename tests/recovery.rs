//! Recovery at the speed of the server. The upstream is killed and started again on the
//! same port 2.3 s later, with heartbeatFrequencyMS at 10 s. Before, clients were down
//! for 10.0 s: the proxy checked the member once when requests began to wait, then only
//! at the next heartbeat. Now, while requests wait, the member is re-checked every
//! 500 ms (SDAM's minHeartbeatFrequencyMS), so the first write succeeds within 1.5 s of
//! the server's return, and none is lost.

mod common;

use std::time::{Duration, Instant};

use bson::doc;
use common::peers::Secantus;
use common::proxy::TestProxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_upstream_is_used_within_a_second_and_a_half() {
    let first = Secantus::start();
    let port = first.port().to_string();
    let proxy = TestProxy::builder(&first.seed_uri())
        .settings(|s| s.heartbeat_frequency_ms = Some(10_000))
        .start()
        .await;
    let client = mongodb::Client::with_uri_str(proxy.uri_with("retryWrites=false"))
        .await
        .unwrap();
    let coll = client.database("recovery").collection::<bson::Document>("c");
    coll.insert_one(doc! { "i": -1 }).await.unwrap();

    drop(first);
    // A writer keeps inserting; each insert waits in the proxy's failover buffer.
    let writer = {
        let coll = coll.clone();
        tokio::spawn(async move {
            let mut done = Vec::new();
            for i in 0..2000 {
                match coll.insert_one(doc! { "i": i }).await {
                    Ok(_) => done.push((i, Instant::now())),
                    Err(e) => return (done, Some(e.to_string())),
                }
                if done.len() >= 5 {
                    break;
                }
            }
            (done, None)
        })
    };
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let second = Secantus::start_with_args(&["--port", &port]);
    // `start` returns once the server answers a ping: it is back.
    let back = Instant::now();
    let (done, err) = tokio::time::timeout(Duration::from_secs(20), writer)
        .await
        .expect("the writer finishes")
        .unwrap();
    assert!(err.is_none(), "an insert failed during the outage: {err:?}");
    let first_ok = done.first().expect("an insert succeeded").1;
    let after = first_ok.saturating_duration_since(back);
    eprintln!(
        "first insert after the restart: {} ms after the server answered",
        after.as_millis()
    );
    assert!(
        after < Duration::from_millis(1500),
        "the first insert succeeded {} ms after the server came back (heartbeat 10 s)",
        after.as_millis()
    );
    let direct = mongodb::Client::with_uri_str(second.uri()).await.unwrap();
    let stored = direct
        .database("recovery")
        .collection::<bson::Document>("c")
        .count_documents(doc! { "i": { "$gte": 0 } })
        .await
        .unwrap();
    assert_eq!(
        stored,
        done.len() as u64,
        "every acknowledged insert is stored once"
    );
    proxy.shutdown().await;
}

/// No thundering herd when the server returns: 40 clients' inserts wait through a
/// restart, and the pool opens at most maxConnecting (2) connections at a time to the
/// returning member, sampled every 2 ms; every insert then succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_upstream_sees_at_most_max_connecting_handshakes() {
    const WRITERS: usize = 40;
    let first = Secantus::start();
    let port = first.port().to_string();
    let proxy = TestProxy::builder(&first.seed_uri())
        .max_pool_size(50)
        .settings(|s| {
            s.heartbeat_frequency_ms = Some(10_000);
            s.max_connecting = Some(2);
        })
        .start()
        .await;
    let client = mongodb::Client::with_uri_str(proxy.uri_with("retryWrites=false&maxPoolSize=100"))
        .await
        .unwrap();
    let coll = client.database("recovery").collection::<bson::Document>("herd");
    coll.insert_one(doc! { "w": -1 }).await.unwrap();

    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let coll = coll.clone();
            tokio::spawn(async move { coll.insert_one(doc! { "w": i64::try_from(w).unwrap() }).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _second = Secantus::start_with_args(&["--port", &port]);
    let member = format!("member=\"127.0.0.1:{port}\"");
    let mut peak = 0.0f64;
    let mut samples = 0u32;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !writers.iter().all(|w| w.is_finished()) && Instant::now() < deadline {
        let connecting = proxy.metric_sum("mongoplex_pool_connections", &[&member, "state=\"connecting\""]);
        peak = peak.max(connecting);
        samples += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let opened = proxy.metric_sum("mongoplex_pool_connections", &[&member]);
    eprintln!("peak concurrent handshakes {peak} over {samples} samples; {opened} connections open after");
    for w in writers {
        let r = tokio::time::timeout(Duration::from_secs(20), w)
            .await
            .expect("every insert finishes")
            .unwrap();
        assert!(r.is_ok(), "an insert failed across the restart: {r:?}");
    }
    assert!(
        samples > 10,
        "the gauge was sampled while the pool filled ({samples} samples)"
    );
    assert!(
        opened > 2.0,
        "the pool grew past maxConnecting once the member was back ({opened})"
    );
    assert!(
        peak <= 2.0,
        "{peak} connections were opened at once; maxConnecting is 2"
    );
    proxy.shutdown().await;
}
