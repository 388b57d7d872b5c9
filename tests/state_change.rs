//! A member's state-change error reaches a driver the way a mongos would report it: with a
//! routing code, so the driver, which believes it talks to a mongos, neither clears its
//! pool to mongoplex nor marks it Unknown. Labels stay exactly as the server gave them.
//! The official Rust driver's CMAP events are the witness.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::failpoint::fail_once;
use common::peers::Secantus;
use common::proxy::TestProxy;
use mongodb::bson::{doc, Document};
use mongodb::event::cmap::CmapEvent;
use mongodb::event::EventHandler;
use mongodb::options::ClientOptions;
use mongodb::Client;

/// A client through the proxy that counts the pool clears its driver performs.
async fn counting_client(uri: &str) -> (Client, Arc<AtomicUsize>) {
    let clears = Arc::new(AtomicUsize::new(0));
    let seen = clears.clone();
    let mut options = ClientOptions::parse(uri).await.unwrap();
    options.cmap_event_handler = Some(EventHandler::callback(move |ev: CmapEvent| {
        if matches!(ev, CmapEvent::PoolCleared(_)) {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    }));
    (Client::with_options(options).unwrap(), clears)
}

/// SecantusDB, a direct client to arm its fail points, a proxy, and a counting client
/// through the proxy with retryWrites=false.
async fn setup() -> (Secantus, Client, TestProxy, Client, Arc<AtomicUsize>) {
    let upstream = Secantus::start();
    let direct = Client::with_uri_str(upstream.uri()).await.unwrap();
    let proxy = TestProxy::builder(&upstream.seed_uri()).start().await;
    let (client, clears) = counting_client(&proxy.uri_with("retryWrites=false")).await;
    (upstream, direct, proxy, client, clears)
}

/// ShutdownInProgress (91) and InterruptedAtShutdown (11600) on a write the proxy may not
/// retry (no txnNumber; it may have run): passed to a driver as they are, each makes the
/// driver clear its whole pool to mongoplex. A mongos reports HostUnreachable instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_shutdown_error_does_not_clear_the_drivers_pool() {
    let (_upstream, direct, _proxy, client, clears) = setup().await;
    let coll = client.database("sc").collection::<Document>("c");
    coll.insert_one(doc! { "_id": 0 }).await.unwrap();
    for (i, code) in [91, 11600, 11602, 10107].into_iter().enumerate() {
        // 10107 is retried by the proxy (nothing ran), so arm it twice to see it fail.
        let times = if code == 10107 { 2 } else { 1 };
        direct
            .database("admin")
            .run_command(doc! {
                "configureFailPoint": "failCommand", "mode": { "times": times },
                "data": { "failCommands": ["insert"], "errorCode": code },
            })
            .await
            .unwrap();
        let id = i32::try_from(i).unwrap() + 1;
        let err = coll
            .insert_one(doc! { "_id": id })
            .await
            .expect_err("the fail point fired");
        let code_seen = match *err.kind {
            mongodb::error::ErrorKind::Command(ref c) => c.code,
            ref other => panic!("expected a command error for {code}, got {other:?}"),
        };
        assert_eq!(
            code_seen, 6,
            "member code {code} reaches the driver as HostUnreachable: {err}"
        );
        assert!(
            err.to_string().contains(&code.to_string()),
            "the member's code is named: {err}"
        );
    }
    assert_eq!(
        clears.load(Ordering::SeqCst),
        0,
        "the driver never cleared its pool to mongoplex"
    );
    // The driver kept using its connections: the next write succeeds at once.
    coll.insert_one(doc! { "_id": 100 }).await.unwrap();
}

/// The server's RetryableWriteError label survives the rewrite, so a retryable write is
/// still retried by the driver exactly as it would be against a mongos.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_pass_through_the_rewrite() {
    let (_upstream, direct, _proxy, client, clears) = setup().await;
    fail_once(
        &direct,
        doc! { "failCommands": ["insert"], "errorCode": 11602, "errorLabels": ["RetryableWriteError"] },
    )
    .await;
    let err = client
        .database("sc")
        .collection::<Document>("c")
        .insert_one(doc! { "_id": 1 })
        .await
        .expect_err("retryWrites=false: nobody retries a plain write after 11602");
    assert!(err.contains_label("RetryableWriteError"), "label kept: {err}");
    assert_eq!(clears.load(Ordering::SeqCst), 0);
}
