//! Tests of the simulated replica set itself (`tests/common/replset.rs`), with the official
//! Rust driver connected DIRECTLY to it, and with a bare wire client where a driver would
//! add `$readPreference`, retry, or hide what the member said.
//!
//! Every test starts its own SecantusDB and set, so tests share nothing.
//!
//! The driver's view of the set is tested here; `tests/replset_harness_support/` holds the
//! role rules (`roles`), what members report and hold (`members`) and member faults
//! (`faults`).

mod common;
#[path = "replset_harness_support/faults.rs"]
mod faults;
#[path = "replset_harness_support/members.rs"]
mod members;
#[path = "replset_harness_support/roles.rs"]
mod roles;

use std::time::Duration;

use bson::{doc, Document};
use common::peers::Secantus;
use common::replset::driver::client as driver;
use common::replset::rules::INTERRUPTED_DUE_TO_REPL_STATE_CHANGE;
use common::replset::{RawClient, ReplSet};
use mongodb::options::{ReadPreference, SelectionCriteria};
use mongodb::{Client, Collection, ServerType};

const EVENTUALLY: Duration = Duration::from_secs(10);
const HANG: Duration = Duration::from_millis(600);

/// Polls `check` until it holds, panicking after [`EVENTUALLY`].
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn coll(client: &Client) -> Collection<Document> {
    client.database("rs").collection("items")
}

fn reply_code(reply: &Document) -> Option<i32> {
    reply.get_i32("code").ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_discovers_all_members_from_one_seed_and_writes_to_the_primary() {
    let upstream = Secantus::start();
    let rs = ReplSet::start(3, &upstream).await;
    // Only member 1 is named: members 0 and 2 must come from its `hosts`.
    let (client, seen) = driver(&rs.uri_with_seeds(&[1])).await;
    coll(&client).insert_one(doc! { "_id": 1 }).await.expect("insert");
    eventually("the driver sees one primary and two secondaries", || {
        seen.servers().len() == 3
            && seen.server_type(&rs.host(0)) == Some(ServerType::RsPrimary)
            && seen.server_type(&rs.host(1)) == Some(ServerType::RsSecondary)
            && seen.server_type(&rs.host(2)) == Some(ServerType::RsSecondary)
    })
    .await;
    let inserts: Vec<u64> = (0..3).map(|i| rs.stats(i).forwarded("insert")).collect();
    assert_eq!(inserts, [1, 0, 0], "inserts forwarded by member");
    for i in 0..3 {
        assert!(rs.stats(i).hellos > 0, "the driver never monitored member {i}");
    }
    let found = coll(&client).find_one(doc! { "_id": 1 }).await.expect("find");
    assert_eq!(found, Some(doc! { "_id": 1 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_reads_land_on_secondaries() {
    let upstream = Secantus::start();
    let rs = ReplSet::start(3, &upstream).await;
    let (client, seen) = driver(&rs.uri()).await;
    coll(&client)
        .insert_one(doc! { "_id": 7, "v": "x" })
        .await
        .expect("insert");
    eventually("the driver knows both secondaries", || {
        seen.server_type(&rs.host(1)) == Some(ServerType::RsSecondary)
            && seen.server_type(&rs.host(2)) == Some(ServerType::RsSecondary)
    })
    .await;
    let secondary = SelectionCriteria::ReadPreference(ReadPreference::Secondary { options: None });
    for _ in 0..6 {
        let found = coll(&client)
            .find_one(doc! { "_id": 7 })
            .selection_criteria(secondary.clone())
            .await
            .expect("secondary read");
        // "Replication" is instant: the secondary reads what the primary just wrote.
        assert_eq!(found, Some(doc! { "_id": 7, "v": "x" }));
    }
    let finds: Vec<u64> = (0..3).map(|i| rs.stats(i).forwarded("find")).collect();
    assert_eq!(finds[0], 0, "a secondary read reached the primary: {finds:?}");
    assert_eq!(finds[1] + finds[2], 6, "finds by member: {finds:?}");
    assert!(
        (0..3).all(|i| rs.stats(i).rejected.is_empty()),
        "no role rule should fire"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_step_down_and_election_the_next_write_goes_to_the_new_primary() {
    let upstream = Secantus::start();
    let rs = ReplSet::start(3, &upstream).await;
    let (client, _seen) = driver(&rs.uri()).await;
    let old_election = rs.election_id();
    coll(&client)
        .insert_one(doc! { "_id": 1 })
        .await
        .expect("first insert");

    rs.step_down_and_elect(0, 1, Duration::from_millis(200)).await;
    assert_eq!(rs.primary(), Some(1));
    assert!(rs.election_id() > old_election, "electionId must grow");
    coll(&client)
        .insert_one(doc! { "_id": 2 })
        .await
        .expect("insert after failover");

    assert_eq!(
        rs.stats(0).forwarded("insert"),
        1,
        "member 0 took a write after stepping down"
    );
    assert_eq!(
        rs.stats(1).forwarded("insert"),
        1,
        "the new primary did not take the write"
    );
    let n = coll(&client).count_documents(doc! {}).await.expect("count");
    assert_eq!(n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_flight_at_step_down_is_interrupted_and_retried_once() {
    let upstream = Secantus::start();
    let rs = ReplSet::start(3, &upstream).await;
    let (client, _seen) = driver(&rs.uri()).await;
    coll(&client)
        .insert_one(doc! { "_id": 0 })
        .await
        .expect("warm up");
    rs.set_latency(0, Duration::from_secs(30));
    let c = coll(&client);
    let write = tokio::spawn(async move { c.insert_one(doc! { "_id": 1 }).await });
    eventually("member 0 holds the insert", || rs.in_flight(0) == 1).await;
    rs.step_down_and_elect(0, 1, Duration::ZERO).await;
    let done = tokio::time::timeout(EVENTUALLY, write)
        .await
        .expect("the held write was not interrupted");
    done.expect("task").expect("the retried write should succeed");
    assert_eq!(rs.stats(0).rejected(INTERRUPTED_DUE_TO_REPL_STATE_CHANGE), 1);
    assert_eq!(
        rs.stats(0).forwarded("insert"),
        1,
        "the interrupted insert was sent upstream"
    );
    assert_eq!(rs.in_flight(0), 0);
    assert_eq!(
        rs.stats(1).forwarded("insert"),
        1,
        "the retry did not reach the new primary"
    );
    let n = coll(&client)
        .count_documents(doc! { "_id": 1 })
        .await
        .expect("count");
    assert_eq!(n, 1, "exactly one copy of the interrupted write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_ignores_a_stale_primary() {
    let upstream = Secantus::start();
    let rs = ReplSet::start(3, &upstream).await;
    let (client, seen) = driver(&rs.uri()).await;
    coll(&client).insert_one(doc! { "_id": 0 }).await.expect("insert");
    rs.elect(1);
    eventually("the driver follows the election", || {
        seen.server_type(&rs.host(1)) == Some(ServerType::RsPrimary)
    })
    .await;

    rs.bring_back_stale_primary(0);
    let hellos = rs.stats(0).hellos;
    // Its monitor streams the change at once; wait for a few more hellos to be safe.
    eventually("the driver heard the stale claim", || {
        rs.stats(0).hellos >= hellos + 2
    })
    .await;
    let mut raw = RawClient::connect(rs.addr(0)).await.expect("connect");
    let claim = raw
        .command(doc! { "hello": 1, "$db": "admin" })
        .await
        .expect("hello");
    assert_eq!(claim.get_bool("isWritablePrimary").ok(), Some(true), "{claim}");
    assert!(claim.get_object_id("electionId").unwrap() < rs.election_id());
    assert!(claim.get_i32("setVersion").unwrap() < rs.set_version());

    for i in 1..=5 {
        coll(&client).insert_one(doc! { "_id": i }).await.expect("insert");
    }
    assert_eq!(
        rs.stats(0).forwarded("insert"),
        1,
        "a write went to the stale primary"
    );
    assert_eq!(rs.stats(1).forwarded("insert"), 5);
    assert_ne!(seen.server_type(&rs.host(0)), Some(ServerType::RsPrimary));
    assert_eq!(seen.server_type(&rs.host(1)), Some(ServerType::RsPrimary));
}
