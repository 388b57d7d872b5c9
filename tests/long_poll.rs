//! Long-polling getMores (change streams) have their own connections per member
//! (`long_poll_pool_size`): 50 open change streams, each holding a connection for up to
//! maxAwaitTimeMS per getMore, must not starve ordinary requests on a maxPoolSize of 8.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::peers::Secantus;
use common::proxy::TestProxy;
use mongodb::bson::{doc, Document};
use mongodb::{Client, Collection};

const STREAMS: usize = 50;

/// p99 of find_one latencies from 4 tasks making `per_task` requests each.
async fn crud_p99(coll: &Collection<Document>, per_task: usize) -> Duration {
    let mut tasks = Vec::new();
    for t in 0..4 {
        let coll = coll.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in 0..per_task {
                let started = Instant::now();
                coll.find_one(doc! { "_id": i64::try_from((t * per_task + i) % 10).unwrap() })
                    .await
                    .unwrap();
                lat.push(started.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all[all.len() * 99 / 100]
}

async fn p99s_without_and_with_streams(
    long_poll_pool_size: u64,
    streams_n: usize,
    per_task: usize,
) -> (Duration, Duration, usize) {
    let upstream = Secantus::start();
    let proxy = TestProxy::builder(&upstream.seed_uri())
        .max_pool_size(8)
        .settings(|s| s.long_poll_pool_size = Some(long_poll_pool_size))
        .start()
        .await;
    // The driver's own pool to mongoplex must hold every stream's getMore at once.
    let client = Client::with_uri_str(proxy.uri_with("maxPoolSize=100"))
        .await
        .unwrap();
    let coll = client.database("lp").collection::<Document>("c");
    let docs: Vec<Document> = (0..10).map(|i| doc! { "_id": i }).collect();
    coll.insert_many(docs).await.unwrap();
    crud_p99(&coll, 40).await; // warm-up
    let quiet = crud_p99(&coll, 40).await;

    let stop = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicUsize::new(0));
    let mut streams = Vec::new();
    for _ in 0..streams_n {
        let mut cs = client
            .database("lp")
            .collection::<Document>("events")
            .watch()
            .max_await_time(Duration::from_millis(1000))
            .await
            .unwrap();
        let (stop, polls) = (stop.clone(), polls.clone());
        streams.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // Nothing is written to "events": every getMore waits maxAwaitTimeMS.
                let _ = cs.next_if_any().await;
                polls.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Let every stream's getMore be waiting at the server.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let busy = crud_p99(&coll, per_task).await;
    stop.store(true, Ordering::Relaxed);
    for s in streams {
        let _ = tokio::time::timeout(Duration::from_secs(10), s).await;
    }
    (quiet, busy, polls.load(Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_streams_do_not_starve_crud_on_a_small_pool() {
    let (quiet, busy, polls) = p99s_without_and_with_streams(16, STREAMS, 40).await;
    println!("CRUD p99 without streams {quiet:?}, with {STREAMS} streams {busy:?}; {polls} getMores");
    assert!(polls >= STREAMS, "the streams were polling ({polls} getMores)");
    // Starved, a find waits for a stream's getMore to give its connection back: up to
    // maxAwaitTimeMS (1 s). The bound is half of that, so that scheduler noise on a busy
    // machine (p99 seen from 20 to 46 ms) cannot decide the test, but starvation does.
    let bound = Duration::from_millis(500);
    assert!(
        busy < bound,
        "CRUD p99 with {STREAMS} change streams is {busy:?} (without: {quiet:?}); a find waited for a getMore's connection"
    );
}

/// The same load with the long-poll pool turned off: 16 streams' getMores take the main
/// pool's 8 connections and finds wait behind them, past the bound the test above holds.
/// (Fewer streams and finds than above: each waits about a second.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_long_poll_pool_streams_starve_crud() {
    let (quiet, busy, _) = p99s_without_and_with_streams(0, 16, 2).await;
    println!("long-poll pool off: CRUD p99 without streams {quiet:?}, with 16 streams {busy:?}");
    assert!(
        busy >= Duration::from_millis(500),
        "with the long-poll pool off, CRUD p99 was {busy:?}: the starvation this pool prevents did not show"
    );
}
