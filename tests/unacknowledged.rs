//! An unacknowledged (w:0, moreToCome) write that reaches a member no longer able to run
//! it: mongod hangs up on that connection instead of answering. The next request that
//! would have used the same pooled connection belongs to another client; it must not
//! fail, and the member must not be marked Unknown (its pool not cleared) for that
//! hang-up. The proxy checks a connection with a ping after every unacknowledged write
//! before pooling it again (`confirm_after_unacknowledged` in src/session/forward.rs).
//!
//! pymongo sends the w:0 insert (the Rust driver refuses w:0); the Rust driver is the
//! other client. The simulated replica set holds the write on the primary
//! (`set_latency`) and steps it down meanwhile, which interrupts it: a moreToCome
//! command gets a closed connection.

mod common;

use std::time::{Duration, Instant};

use common::peers::{self, Secantus};
use common::proxy::TestProxy;
use common::replset::ReplSet;
use mongodb::bson::{doc, Document};
use mongodb::Client;

const INTERRUPTED: i32 = 11602;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_up_after_an_unacknowledged_write_fails_no_other_client() {
    let upstream = Secantus::start();
    let direct = Client::with_uri_str(upstream.uri()).await.unwrap();
    let rs = ReplSet::start(3, &upstream).await;
    // One pooled connection per member: the next request can only use the same one.
    let proxy = TestProxy::builder(&rs.uri()).max_pool_size(1).start().await;
    let other = Client::with_uri_str(proxy.uri_with("retryWrites=false"))
        .await
        .unwrap();
    let coll = other.database("mt").collection::<Document>("c");
    coll.insert_one(doc! { "_id": "warm" })
        .await
        .expect("the pooled connection to the primary is open and idle");

    rs.set_latency(0, Duration::from_secs(5));
    let script = peers::client_script("unacknowledged_pymongo.py");
    let uri = proxy.uri();
    let w0 = tokio::spawn(async move { peers::run_python(&script, &[&uri, "w0"]).await });
    let deadline = Instant::now() + Duration::from_secs(30);
    while rs.in_flight(0) == 0 {
        assert!(
            Instant::now() < deadline,
            "the w:0 insert never reached the primary"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another client's acknowledged write, while the w:0 one is held on the primary.
    let next = tokio::spawn(async move { coll.insert_one(doc! { "_id": "next" }).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The primary steps down, interrupts the held w:0 insert and hangs up on it.
    rs.step_down(0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    rs.set_latency(0, Duration::ZERO);
    rs.elect(1);

    let out = w0.await.unwrap();
    let stdout = peers::assert_success(&out, "unacknowledged_pymongo.py");
    assert!(stdout.contains("sent w0"), "{stdout}");
    assert!(
        rs.stats(0).rejected(INTERRUPTED) >= 1,
        "the scenario did not happen: the primary never interrupted the w:0 insert"
    );
    let result = tokio::time::timeout(Duration::from_secs(30), next)
        .await
        .expect("the other client's write never finished")
        .unwrap();
    let member = format!("member=\"{}\"", rs.host(0));
    let clears = proxy.metric_sum("mongoplex_pool_clears_total", &[&member]);
    // Both conditions, reported together.
    let mut broken = Vec::new();
    if let Err(e) = &result {
        broken.push(format!(
            "the other client's write failed for the w:0 hang-up: {e}"
        ));
    }
    if clears != 0.0 {
        broken.push(format!(
            "the hang-up marked the member Unknown: its pool was cleared {clears} times"
        ));
    }
    assert!(broken.is_empty(), "{broken:#?}");
    let stored = direct
        .database("mt")
        .collection::<Document>("c")
        .count_documents(doc! { "_id": "next" })
        .await
        .unwrap();
    assert_eq!(stored, 1, "the other client's write is stored once");
    proxy.shutdown().await;
}
