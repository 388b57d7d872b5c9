//! Elections through mongoplex, against the simulated replica set (tests/common/replset)
//! whose members forward to one shared SecantusDB. Writers use the Rust driver, pymongo
//! and the Node driver with retryable writes. Each scenario checks that every
//! acknowledged write is stored exactly once and which errors clients saw, and prints
//! the time from the event to the first success on the new primary.

mod common;
mod failover_support;

use std::time::{Duration, Instant};

use common::peers::Secantus;
use common::proxy::TestProxy;
use common::replset::ReplSet;
use failover_support::{stored, Load};
use mongodb::bson::{doc, Document};
use mongodb::options::{ReadPreference, SelectionCriteria};
use mongodb::Client;

struct Rig {
    _upstream: Secantus,
    direct: Client,
    rs: ReplSet,
    proxy: TestProxy,
    client: Client,
}

async fn rig(configure: impl FnOnce(&mut mongoplex::config::Settings)) -> Rig {
    let upstream = Secantus::start();
    let direct = Client::with_uri_str(upstream.uri()).await.unwrap();
    let rs = ReplSet::start(3, &upstream).await;
    let proxy = TestProxy::builder(&rs.uri()).settings(configure).start().await;
    let client = Client::with_uri_str(proxy.uri_with("retryWrites=true"))
        .await
        .unwrap();
    Rig {
        _upstream: upstream,
        direct,
        rs,
        proxy,
        client,
    }
}

fn report(scenario: &str, acked: u64, errors: &[String], recovery: Option<Duration>) {
    println!(
        "SCENARIO {scenario}: acked {acked}, client errors {}, first success after event {recovery:?}",
        errors.len()
    );
}

/// At most the first few errors, for assertion messages.
fn some(errors: &[String]) -> Vec<&str> {
    errors.iter().take(3).map(|e| &e[..e.len().min(300)]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_step_down() {
    let r = rig(|_| {}).await;
    let load = Load::start(&r.client, 4, "planned").with_script_writers(&r.proxy.uri(), 4, "planned");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let event = Instant::now();
    r.rs.step_down_and_elect(0, 1, Duration::from_millis(500)).await;
    let recovery = load
        .first_success_after(event + Duration::from_millis(500), Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let out = load.stop().await;
    report("planned step-down", out.acked, &out.errors, recovery);
    assert!(
        out.errors.is_empty(),
        "{} errors in a planned step-down: {:?}",
        out.errors.len(),
        some(&out.errors)
    );
    assert_eq!(
        stored(&r.direct).await,
        out.acked,
        "acknowledged writes stored exactly once"
    );
    assert!(
        r.rs.stats(1).forwarded("insert") > 0,
        "writes moved to the new primary"
    );
    assert!(recovery.is_some());
    assert!(r.proxy.metric_sum("mongoplex_primary_changes_total", &[]) >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed() {
    let r = rig(|_| {}).await;
    let load = Load::start(&r.client, 4, "killed").with_script_writers(&r.proxy.uri(), 4, "killed");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let event = Instant::now();
    r.rs.kill(0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.rs.elect(1);
    let recovery = load.first_success_after(event, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let out = load.stop().await;
    report("primary killed", out.acked, &out.errors, recovery);
    // Retryable writes in flight on the killed primary are retried on the new one
    // (the server deduplicates by lsid + txnNumber), so none is unavoidable here.
    assert!(
        out.errors.is_empty(),
        "{} errors after a primary was killed: {:?}",
        out.errors.len(),
        some(&out.errors)
    );
    assert_eq!(stored(&r.direct).await, out.acked);
    assert!(recovery.is_some());
    assert!(
        r.proxy.metric_sum(
            "mongoplex_pool_clears_total",
            &[&format!("member=\"{}\"", r.rs.host(0))]
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_primary_longer_than_the_buffer_window() {
    let r = rig(|s| s.failover_buffer_window_ms = Some(800)).await;
    let load = Load::start(&r.client, 2, "window");
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.rs.step_down(0);
    // The driver's own retry waits through a second window; stay without a primary longer.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let event = Instant::now();
    r.rs.elect(2);
    let recovery = load.first_success_after(event, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = load.stop().await;
    report(
        "no primary beyond the buffer window",
        out.acked,
        &out.errors,
        recovery,
    );
    assert!(
        !out.errors.is_empty(),
        "clients must hear about a failover longer than the window"
    );
    for e in &out.errors {
        assert!(
            e.contains("262") && e.contains("no primary"),
            "not the routing error: {e}"
        );
    }
    assert!(recovery.is_some(), "writes recovered after the election");
    // A write interrupted by the step-down after it was applied (11602) and then failed
    // with the routing error was stored without an acknowledgement: at-least-once, as
    // with any retryable write whose retries are exhausted. Never more than that.
    let n = stored(&r.direct).await;
    assert!(
        n >= out.acked && n <= out.acked + out.errors.len() as u64,
        "stored {n}, acked {}",
        out.acked
    );
    assert!(
        r.proxy
            .metric_sum("mongoplex_failover_evicted_total", &["reason=\"window\""])
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_primary_comes_back() {
    let r = rig(|_| {}).await;
    let coll = r.client.database("failover").collection::<Document>("load");
    r.rs.step_down_and_elect(0, 1, Duration::from_millis(200)).await;
    coll.insert_one(doc! { "_id": "before" }).await.unwrap();
    r.rs.bring_back_stale_primary(0);
    tokio::time::sleep(Duration::from_millis(1500)).await; // several heartbeats
    r.rs.reset_stats();
    for i in 0..20 {
        coll.insert_one(doc! { "_id": format!("after-{i}") })
            .await
            .unwrap();
    }
    assert_eq!(
        r.rs.stats(0).forwarded("insert"),
        0,
        "a write went to the stale primary"
    );
    assert_eq!(r.rs.stats(1).forwarded("insert"), 20);
    let status = r.proxy.proxy().ctx.topology.snapshot();
    assert_eq!(
        status.primary.as_ref().map(ToString::to_string),
        Some(r.rs.host(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_reads_continue_during_failover() {
    let r = rig(|_| {}).await;
    r.client
        .database("failover")
        .collection::<Document>("r")
        .insert_one(doc! { "_id": 1 })
        .await
        .unwrap();
    let reader = {
        let coll = r.client.database("failover").collection::<Document>("r");
        let sel = SelectionCriteria::ReadPreference(ReadPreference::SecondaryPreferred { options: None });
        tokio::spawn(async move {
            let (mut ok, mut errors) = (0u32, Vec::new());
            let until = Instant::now() + Duration::from_secs(4);
            while Instant::now() < until {
                match coll
                    .find_one(doc! { "_id": 1 })
                    .selection_criteria(sel.clone())
                    .await
                {
                    Ok(Some(_)) => ok += 1,
                    Ok(None) => errors.push("missing document".to_string()),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (ok, errors)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.rs.reset_stats();
    r.rs.step_down(0);
    tokio::time::sleep(Duration::from_millis(2000)).await; // no primary at all
    let during: u64 = (0..3).map(|i| r.rs.stats(i).forwarded("find")).sum();
    r.rs.elect(1);
    let (ok, errors) = reader.await.unwrap();
    println!("SCENARIO secondary reads during failover: {ok} reads, errors {}, {during} finds served with no primary", errors.len());
    assert!(errors.is_empty(), "{errors:?}");
    assert!(during > 0, "no reads were served while there was no primary");
    assert_eq!(r.rs.stats(0).rejected(13435), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_spanning_an_election() {
    let r = rig(|_| {}).await;
    let coll = r.client.database("failover").collection::<Document>("txn");
    coll.insert_one(doc! { "_id": "seed" }).await.unwrap();
    let mut session = r.client.start_session().await.unwrap();
    let mut attempts = 0;
    let mut transient_seen = 0;
    let event = Instant::now();
    loop {
        attempts += 1;
        session.start_transaction().await.unwrap();
        let step = async {
            coll.insert_one(doc! { "_id": "in-txn" })
                .session(&mut session)
                .await?;
            if attempts == 1 {
                r.rs.step_down_and_elect(0, 1, Duration::from_millis(300)).await;
            }
            coll.update_one(doc! { "_id": "seed" }, doc! { "$inc": { "n": 1 } })
                .session(&mut session)
                .await?;
            session.commit_transaction().await
        };
        match step.await {
            Ok(()) => break,
            Err(e) if e.contains_label("TransientTransactionError") && attempts < 5 => {
                transient_seen += 1;
                let _ = session.abort_transaction().await;
            }
            Err(e) => panic!("transaction failed without TransientTransactionError: {e}"),
        }
    }
    println!(
        "SCENARIO transaction spanning an election: {attempts} attempts, committed {:?} after the event",
        event.elapsed()
    );
    assert!(
        transient_seen >= 1,
        "the election did not reach the transaction as TransientTransactionError"
    );
    let direct = r.direct.database("failover").collection::<Document>("txn");
    assert_eq!(direct.count_documents(doc! { "_id": "in-txn" }).await.unwrap(), 1);
    let seed = direct.find_one(doc! { "_id": "seed" }).await.unwrap().unwrap();
    assert_eq!(
        seed.get_i32("n").unwrap(),
        1,
        "the transaction applied exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_whose_member_dies() {
    let r = rig(|_| {}).await;
    let coll = r.client.database("failover").collection::<Document>("cur");
    let docs: Vec<Document> = (0..50).map(|i| doc! { "_id": i }).collect();
    coll.insert_many(docs).await.unwrap();
    let sel = SelectionCriteria::ReadPreference(ReadPreference::Secondary { options: None });
    let mut cursor = coll
        .find(doc! {})
        .batch_size(10)
        .selection_criteria(sel)
        .await
        .unwrap();
    let mut seen = 0;
    for _ in 0..10 {
        assert!(cursor.advance().await.unwrap());
        seen += 1;
    }
    let member = (1..3)
        .find(|i| r.rs.stats(*i).forwarded("find") > 0)
        .expect("the find ran on a secondary");
    r.rs.kill(member).await;
    let t = Instant::now();
    let err = loop {
        match cursor.advance().await {
            Ok(true) => seen += 1,
            Ok(false) => panic!("cursor ended normally after its member died"),
            Err(e) => break e,
        }
    };
    println!(
        "SCENARIO cursor whose member dies: {seen} documents, then after {:?}: {err}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(15), "getMore hung");
    assert!(
        err.to_string().contains(&r.rs.host(member)),
        "the error should name the member: {err}"
    );
    drop(cursor);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        r.proxy.metric_sum("mongoplex_pinned_cursors", &[]),
        0.0,
        "the dead cursor's pin was dropped"
    );
}

/// Found by the soak (tests/soak.rs): a cursor closed while its member is down. The
/// driver's killCursors cannot reach the member, and no client will name that cursor
/// again, yet its pin used to stay until the 15-minute pin TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_closed_while_its_member_is_down_is_unpinned() {
    let r = rig(|_| {}).await;
    let coll = r.client.database("failover").collection::<Document>("closed");
    let docs: Vec<Document> = (0..50).map(|i| doc! { "_id": i }).collect();
    coll.insert_many(docs).await.unwrap();
    let mut cursor = coll.find(doc! {}).batch_size(10).await.unwrap();
    for _ in 0..10 {
        assert!(cursor.advance().await.unwrap());
    }
    assert_eq!(r.proxy.metric_sum("mongoplex_pinned_cursors", &[]), 1.0);
    r.rs.kill(0).await;
    drop(cursor); // the driver sends killCursors, which the proxy cannot deliver
    let deadline = Instant::now() + Duration::from_secs(5);
    while r.proxy.metric_sum("mongoplex_pinned_cursors", &[]) > 0.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kills = r
        .proxy
        .metric_sum("mongoplex_requests_total", &["command=\"killCursors\""]);
    assert_eq!(kills, 1.0, "the driver's killCursors reached the proxy");
    assert_eq!(
        r.proxy.metric_sum("mongoplex_pinned_cursors", &[]),
        0.0,
        "the pin of a cursor its client closed outlived the close"
    );
}
