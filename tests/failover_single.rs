//! Failover behaviour against SecantusDB's own single-node step-down and its failCommand
//! fail points, with the official Rust driver through the proxy.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::failpoint::fail_once;
use common::peers::Secantus;
use common::proxy::TestProxy;
use mongodb::bson::{doc, Document};
use mongodb::error::ErrorKind;
use mongodb::Client;

async fn setup() -> (Secantus, Client, TestProxy) {
    let upstream = Secantus::start();
    let direct = Client::with_uri_str(upstream.uri()).await.unwrap();
    let proxy = TestProxy::builder(&upstream.seed_uri()).start().await;
    (upstream, direct, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_writable_primary_is_retried_once_and_the_write_lands_once() {
    let (_up, direct, proxy) = setup().await;
    let client = Client::with_uri_str(proxy.uri_with("retryWrites=false"))
        .await
        .unwrap();
    let coll = client.database("fo").collection::<Document>("c");
    fail_once(&direct, doc! { "failCommands": ["insert"], "errorCode": 10107 }).await;
    // retryWrites=false: the driver itself would not retry; the proxy does, because
    // 10107 proves nothing ran.
    coll.insert_one(doc! { "_id": 1 })
        .await
        .expect("the proxy retried on the primary");
    let n = direct
        .database("fo")
        .collection::<Document>("c")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        proxy.metric_sum("mongoplex_retries_total", &["reason=\"not_writable_primary\""]),
        1.0
    );
    assert!(proxy.metric_sum("mongoplex_state_change_errors_total", &["code=\"10107\""]) >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_read_is_retried() {
    let (_up, direct, proxy) = setup().await;
    let client = Client::with_uri_str(proxy.uri_with("retryReads=false"))
        .await
        .unwrap();
    let coll = client.database("fo").collection::<Document>("c");
    coll.insert_one(doc! { "_id": 1 }).await.unwrap();
    fail_once(&direct, doc! { "failCommands": ["find"], "errorCode": 11602 }).await;
    let got = coll
        .find_one(doc! { "_id": 1 })
        .await
        .expect("the proxy retried the read");
    assert!(got.is_some());
    assert_eq!(
        proxy.metric_sum("mongoplex_retries_total", &["reason=\"state_change\""]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_write_survives_a_dropped_connection() {
    let (_up, direct, proxy) = setup().await;
    let client = Client::with_uri_str(proxy.uri_with("retryWrites=true"))
        .await
        .unwrap();
    let coll = client.database("fo").collection::<Document>("c");
    fail_once(
        &direct,
        doc! { "failCommands": ["insert"], "closeConnection": true },
    )
    .await;
    coll.insert_one(doc! { "_id": 7 })
        .await
        .expect("retried on a new connection");
    let n = direct
        .database("fo")
        .collection::<Document>("c")
        .count_documents(doc! { "_id": 7 })
        .await
        .unwrap();
    assert_eq!(n, 1, "applied exactly once");
    assert_eq!(
        proxy.metric_sum("mongoplex_retries_total", &["reason=\"network_error\""]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retryable_write_error_passes_through_without_a_retry() {
    let (_up, direct, proxy) = setup().await;
    let client = Client::with_uri_str(proxy.uri_with("retryWrites=false"))
        .await
        .unwrap();
    let coll = client.database("fo").collection::<Document>("c");
    fail_once(
        &direct,
        doc! { "failCommands": ["insert"], "closeConnection": true },
    )
    .await;
    let err = coll
        .insert_one(doc! { "_id": 8 })
        .await
        .expect_err("a plain write is not replayed");
    let ErrorKind::Command(ce) = *err.kind.clone() else {
        panic!("expected a command error: {err:?}")
    };
    assert_eq!(ce.code, 6, "{ce:?}");
    assert!(!err.contains_label("RetryableWriteError"), "{err:?}");
    assert_eq!(proxy.metric_sum("mongoplex_retries_total", &[]), 0.0);
    // The proxy and the next request are fine.
    coll.insert_one(doc! { "_id": 9 }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_step_down_is_invisible_to_retryable_writers() {
    let (_up, direct, proxy) = setup().await;
    let client = Client::with_uri_str(proxy.uri_with("retryWrites=true"))
        .await
        .unwrap();
    let coll = client.database("fo").collection::<Document>("load");
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (coll, stop, acked) = (coll.clone(), stop.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match coll.insert_one(doc! { "_id": format!("{w}-{i}") }).await {
                    Ok(_) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => errors.push(e.to_string()),
                }
                i += 1;
            }
            errors
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = acked.load(Ordering::Relaxed);
    let event = Instant::now();
    direct
        .database("admin")
        .run_command(doc! { "replSetStepDown": 2, "force": true })
        .await
        .unwrap();
    // Wait for writes to flow again after the step-down window.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut recovered = None;
    let at_event = acked.load(Ordering::Relaxed);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if event.elapsed() > Duration::from_secs(2) && acked.load(Ordering::Relaxed) > at_event + 10 {
            recovered = Some(event.elapsed());
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for w in writers {
        errors.extend(w.await.unwrap());
    }
    let recovered = recovered.expect("writes resumed after the step-down");
    println!(
        "step-down: {} writes before, recovered {recovered:?} after the event, errors {}",
        before,
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "client-visible errors during a planned step-down: {errors:?}"
    );
    let n = direct
        .database("fo")
        .collection::<Document>("load")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(
        n,
        acked.load(Ordering::Relaxed),
        "every acknowledged write is present, none twice"
    );
    assert!(
        proxy.metric_sum("mongoplex_failover_buffered_total", &[]) >= 1.0,
        "requests were buffered"
    );
    assert!(proxy.metric_sum("mongoplex_primary_changes_total", &[]) >= 1.0);
}

/// An awaitable hello waits at the server for up to maxAwaitTimeMS (the heartbeat), so
/// the monitor must allow connectTimeoutMS + heartbeatFrequencyMS for it. With a connect
/// timeout shorter than the heartbeat, a bound of connectTimeoutMS alone fails every
/// check of a healthy member, clearing its pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awaitable_hello_is_not_mistaken_for_a_dead_member() {
    let upstream = Secantus::start();
    let proxy = TestProxy::builder(&upstream.seed_uri())
        .settings(|s| {
            s.heartbeat_frequency_ms = Some(500);
            s.connect_timeout_ms = Some(400);
        })
        .start()
        .await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(
        proxy.metric_sum("mongoplex_heartbeat_failures_total", &[]),
        0.0,
        "{}",
        proxy.metrics_text()
    );
    assert_eq!(proxy.metric_sum("mongoplex_pool_clears_total", &[]), 0.0);
    assert!(proxy.proxy().ctx.topology.snapshot().primary.is_some());
}

/// The proxy's retry and the driver's retry do not stack past the cap: one retryable
/// write reaches the server at most three times in all (the driver alone makes two).
/// With the fail point armed for three attempts, the third fails and nobody sends a
/// fourth; without the cap, a fourth attempt would succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_by_proxy_and_driver_are_capped_at_three_attempts() {
    let (_up, direct, proxy) = setup().await;
    let client = Client::with_uri_str(proxy.uri_with("retryWrites=true"))
        .await
        .unwrap();
    direct
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "failCommand", "mode": { "times": 3 },
            "data": { "failCommands": ["insert"], "errorCode": 11602, "errorLabels": ["RetryableWriteError"] },
        })
        .await
        .unwrap();
    let coll = client.database("fo").collection::<Document>("cap");
    let err = coll
        .insert_one(doc! { "_id": 1 })
        .await
        .expect_err("three attempts failed; a fourth was never sent");
    assert!(err.contains_label("RetryableWriteError"), "{err}");
    assert_eq!(
        proxy.metric_sum("mongoplex_retries_total", &[]),
        1.0,
        "the proxy retried the first attempt only; the driver's retry was the last"
    );
    let n = direct
        .database("fo")
        .collection::<Document>("cap")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(n, 0);
    // The fail point is spent: the next write goes through on its first attempt.
    coll.insert_one(doc! { "_id": 2 }).await.unwrap();
}
