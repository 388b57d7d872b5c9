//! Multiplexing and the wait queue, with the official Rust driver through the proxy and
//! SecantusDB as the upstream.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::failpoint::fail_once;
use common::peers::Secantus;
use common::proxy::TestProxy;
use mongodb::bson::{doc, Document};
use mongodb::options::ClientOptions;
use mongodb::Client;

async fn server_connections(direct: &Client) -> (i64, i64) {
    let s = direct
        .database("admin")
        .run_command(doc! { "serverStatus": 1 })
        .await
        .unwrap();
    let c = s.get_document("connections").unwrap();
    let n = |k: &str| c.get_i64(k).or_else(|_| c.get_i32(k).map(i64::from)).unwrap();
    (n("current"), n("totalCreated"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_clients_share_eight_upstream_connections() {
    const CLIENTS: usize = 100;
    const CONNS_PER_CLIENT: u32 = 5;
    const OPS: usize = 10;
    let upstream = Secantus::start();
    let direct = Client::with_uri_str(upstream.uri()).await.unwrap();
    let (_, created_before) = server_connections(&direct).await;
    let proxy = TestProxy::builder(&upstream.seed_uri())
        .max_pool_size(8)
        .start()
        .await;

    // Sample the pool while the load runs: its total must never pass maxPoolSize.
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let pool = proxy.proxy().ctx.topology.pools().pop().unwrap();
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(pool.snapshot().total, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut o = ClientOptions::parse(proxy.uri()).await.unwrap();
        o.min_pool_size = Some(CONNS_PER_CLIENT);
        o.max_pool_size = Some(CONNS_PER_CLIENT);
        o.app_name = Some(format!("mux-{}", i % 4));
        clients.push(Client::with_options(o).unwrap());
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        for j in 0..CONNS_PER_CLIENT as usize {
            let coll = c.database("mux").collection::<Document>("docs");
            tasks.push(tokio::spawn(async move {
                for k in 0..OPS {
                    let id = format!("{i}-{j}-{k}");
                    coll.insert_one(doc! { "_id": &id, "k": i64::try_from(k).unwrap() })
                        .await?;
                    let got = coll.find_one(doc! { "_id": &id }).await?;
                    assert_eq!(
                        got.and_then(|d| d.get_i64("k").ok()),
                        Some(i64::try_from(k).unwrap())
                    );
                }
                Ok::<_, mongodb::error::Error>(())
            }));
        }
    }
    let mut errors = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            errors.push(e.to_string());
        }
    }
    sampler.abort();
    let elapsed = started.elapsed();
    assert!(
        errors.is_empty(),
        "{} operations failed, first: {:?}",
        errors.len(),
        errors.first()
    );

    let expected = CLIENTS * CONNS_PER_CLIENT as usize * OPS;
    let n = direct
        .database("mux")
        .collection::<Document>("docs")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(n, expected as u64, "every insert arrived upstream");

    let opened = proxy.metric_sum("mongoplex_client_connections_opened_total", &[]);
    assert!(opened >= 500.0, "only {opened} client connections were opened");
    let peak = peak.load(Ordering::Relaxed);
    assert!(
        (1..=8).contains(&peak),
        "pool peaked at {peak} connections with maxPoolSize 8"
    );
    // The upstream's own count: at most 8 pooled connections, the proxy's two monitoring
    // connections (awaitable hello and RTT probe), and this test's direct client.
    let (_, created_after) = server_connections(&direct).await;
    let upstream_new = created_after - created_before;
    assert!(
        upstream_new <= 8 + 2 + 1,
        "upstream accepted {upstream_new} connections (8 pooled + 2 monitoring + 1 direct allowed)"
    );
    let created = proxy.metric_sum("mongoplex_pool_connections_created_total", &[]);
    assert!(created <= 8.0, "the pool opened {created} connections");
    println!(
        "{expected} ops from {opened} client connections in {elapsed:?}; pool peak {peak}, upstream connections created {upstream_new}"
    );
    for c in clients {
        c.shutdown().await;
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_queue_timeout_gives_an_error_document_and_the_holder_succeeds() {
    let upstream = Secantus::start();
    let direct = Client::with_uri_str(upstream.uri()).await.unwrap();
    let proxy = TestProxy::builder(&upstream.seed_uri())
        .max_pool_size(1)
        .wait_queue_timeout_ms(200)
        .start()
        .await;
    let coll = |c: &Client| c.database("wq").collection::<Document>("c");
    let first = Client::with_uri_str(proxy.uri()).await.unwrap();
    coll(&first).insert_one(doc! { "_id": 1 }).await.unwrap();

    // Every find blocks its connection for 1.5 s: the single pooled connection is held.
    fail_once(
        &direct,
        doc! { "failCommands": ["find"], "blockConnection": true, "blockTimeMS": 1500 },
    )
    .await;
    let holder = {
        let c = coll(&first);
        tokio::spawn(async move { c.find_one(doc! { "_id": 1 }).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let second = Client::with_uri_str(proxy.uri_with("retryReads=false"))
        .await
        .unwrap();
    let t = Instant::now();
    let err = second
        .database("wq")
        .run_command(doc! { "count": "c" })
        .await
        .expect_err("the pool is exhausted");
    let waited = t.elapsed();
    let mongodb::error::ErrorKind::Command(ce) = *err.kind else {
        panic!("expected a command error, got {err:?}")
    };
    assert_eq!(ce.code, 89, "{ce:?}");
    assert_eq!(ce.code_name, "NetworkTimeout");
    assert!(ce.message.contains("waitQueueTimeoutMS 200"), "{}", ce.message);
    assert!(
        waited >= Duration::from_millis(190) && waited < Duration::from_millis(1400),
        "waited {waited:?}"
    );

    let held = holder
        .await
        .unwrap()
        .expect("the blocked operation still succeeds");
    assert_eq!(held.and_then(|d| d.get_i32("_id").ok()), Some(1));
    let timeouts = proxy.metric_sum("mongoplex_pool_checkout_failures_total", &["reason=\"timeout\""]);
    assert_eq!(timeouts, 1.0);
    proxy.shutdown().await;
}
