//! A client's maxTimeMS bounds the proxy's own waiting for that request, as a mongos
//! applies it: the wait for a primary (failover buffering), pool checkout, and a stalled
//! server all end at maxTimeMS, with MaxTimeMSExpired (50); a request forwarded after a
//! wait carries what is left of it. Also: a read timed out by socketTimeoutMS is not
//! retried by the proxy.
//!
//! Against the simulated replica set (tests/common/replset) and SecantusDB's failCommand
//! with blockConnection, with the official Rust driver. Time bounds are generous (the
//! limit plus seconds of slack), far below what the proxy waited before (the 10 s buffer
//! window, the 10 s wait-queue timeout, the 4 s block).

mod common;

use std::time::{Duration, Instant};

use common::failpoint::fail_once;
use common::peers::Secantus;
use common::proxy::TestProxy;
use common::replset::ReplSet;
use mongodb::bson::{doc, Document};
use mongodb::error::{Error, ErrorKind};
use mongodb::Client;

/// What a loaded 2-core machine may add to a bound.
const SLACK: Duration = Duration::from_millis(2500);

fn command_error(err: &Error) -> (i32, String, String) {
    match &*err.kind {
        ErrorKind::Command(ce) => (ce.code, ce.code_name.clone(), ce.message.clone()),
        other => panic!("expected a command error, got {other:?}"),
    }
}

/// The error must be MaxTimeMSExpired, with no label, within `limit` + slack.
fn assert_expired(what: &str, result: Result<Document, Error>, took: Duration, limit: Duration) {
    let outcome = match &result {
        Ok(_) => "success".to_string(),
        Err(e) => format!("{:?}", command_error(e).1),
    };
    println!("FIGURE {what}: {outcome} after {} ms", took.as_millis());
    let err = result.expect_err(&format!("{what}: must fail, the time was up"));
    let (code, name, message) = command_error(&err);
    assert_eq!(
        (code, name.as_str()),
        (50, "MaxTimeMSExpired"),
        "{what}: {message}"
    );
    assert!(
        message.contains("operation exceeded time limit"),
        "{what}: {message}"
    );
    assert!(
        err.labels().is_empty(),
        "{what}: unexpected labels {:?}",
        err.labels()
    );
    assert!(
        took + Duration::from_millis(50) >= limit && took <= limit + SLACK,
        "{what}: answered after {took:?}, limit {limit:?}"
    );
}

async fn insert(client: &Client, id: &str, max_time_ms: i32) -> (Result<Document, Error>, Duration) {
    let started = Instant::now();
    let result = client
        .database("mt")
        .run_command(doc! { "insert": "c", "documents": [{ "_id": id }], "maxTimeMS": max_time_ms })
        .await;
    (result, started.elapsed())
}

struct Set {
    _upstream: Secantus,
    direct: Client,
    rs: ReplSet,
    proxy: TestProxy,
    client: Client,
}

async fn set() -> Set {
    let upstream = Secantus::start();
    let direct = Client::with_uri_str(upstream.uri()).await.unwrap();
    let rs = ReplSet::start(3, &upstream).await;
    let proxy = TestProxy::builder(&rs.uri()).start().await;
    let client = Client::with_uri_str(proxy.uri_with("retryWrites=false&retryReads=false"))
        .await
        .unwrap();
    Set {
        _upstream: upstream,
        direct,
        rs,
        proxy,
        client,
    }
}

async fn stored(direct: &Client, id: &str) -> u64 {
    direct
        .database("mt")
        .collection::<Document>("c")
        .count_documents(doc! { "_id": id })
        .await
        .unwrap()
}

/// During a primary outage a write with maxTimeMS 500 waited the whole buffer window
/// (10 s) for ExceededTimeLimit; it must get MaxTimeMSExpired at 500 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_time_ms_bounds_the_wait_for_a_primary() {
    let s = set().await;
    let (ok, _) = insert(&s.client, "before", 5000).await;
    ok.expect("a write with a primary");
    s.rs.step_down(0);
    let limit = Duration::from_millis(500);
    let (result, took) = insert(&s.client, "outage", 500).await;
    assert_expired("insert, maxTimeMS 500, no primary", result, took, limit);
    let started = Instant::now();
    let read = s
        .client
        .database("mt")
        .collection::<Document>("c")
        .find_one(doc! {})
        .max_time(limit)
        .await
        .map(|_| doc! {});
    assert_expired(
        "primary find, maxTimeMS 500, no primary",
        read,
        started.elapsed(),
        limit,
    );
    assert!(
        s.proxy
            .metric_sum("mongoplex_failover_evicted_total", &["reason=\"max_time\""])
            >= 2.0
    );
    s.rs.elect(1);
    let (ok, _) = insert(&s.client, "after", 10_000).await;
    ok.expect("a write once a primary is elected");
    assert_eq!(
        stored(&s.direct, "outage").await,
        0,
        "the timed-out write never ran"
    );
    assert_eq!(stored(&s.direct, "after").await, 1);
    s.proxy.shutdown().await;
}

/// A write buffered for a second reaches the new primary with maxTimeMS reduced by that
/// second, as a mongos passes on what is left; one that did not wait goes as it came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_primary_gets_what_is_left_of_max_time_ms() {
    let s = set().await;
    let (ok, _) = insert(&s.client, "direct", 8000).await;
    ok.expect("a write with a primary");
    let sent = s.rs.stats(0).max_time_ms.get("insert").copied();
    assert!(
        sent.is_some_and(|ms| (7900..=8000).contains(&ms)),
        "a request that did not wait carries its own maxTimeMS: {sent:?}"
    );
    s.rs.step_down(0);
    let client = s.client.clone();
    let buffered = tokio::spawn(async move { insert(&client, "buffered", 8000).await });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.rs.elect(1);
    let (result, took) = buffered.await.unwrap();
    result.expect("drained to the new primary within its maxTimeMS");
    let sent = s.rs.stats(1).max_time_ms.get("insert").copied();
    println!(
        "FIGURE buffered {} ms, maxTimeMS 8000 reached the new primary as {sent:?}",
        took.as_millis()
    );
    assert!(
        sent.is_some_and(|ms| ms > 0 && ms <= 8000 - 1100),
        "the new primary must get maxTimeMS less the time spent waiting (>= 1.2 s): {sent:?}"
    );
    assert_eq!(stored(&s.direct, "buffered").await, 1);
    s.proxy.shutdown().await;
}

async fn single() -> (Secantus, Client, TestProxy) {
    let upstream = Secantus::start();
    let direct = Client::with_uri_str(upstream.uri()).await.unwrap();
    let proxy = TestProxy::builder(&upstream.seed_uri())
        .max_pool_size(1)
        .start()
        .await;
    (upstream, direct, proxy)
}

/// A server that holds the request (blockConnection 4 s) is cut at maxTimeMS plus the
/// grace, the connection is discarded, the member stays usable, the next request works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_time_ms_bounds_a_stalled_server() {
    let (_up, direct, proxy) = single().await;
    let client = Client::with_uri_str(proxy.uri_with("retryReads=false"))
        .await
        .unwrap();
    let coll = client.database("mt").collection::<Document>("c");
    coll.find_one(doc! {}).await.expect("warm up");
    fail_once(
        &direct,
        doc! { "failCommands": ["find"], "blockConnection": true, "blockTimeMS": 4000 },
    )
    .await;
    let limit = Duration::from_millis(500);
    let started = Instant::now();
    let result = coll.find_one(doc! {}).max_time(limit).await.map(|_| doc! {});
    let took = started.elapsed();
    assert_expired(
        "find, maxTimeMS 500, server blocked 4 s",
        result,
        took,
        limit + mongoplex::budget::SERVER_GRACE,
    );
    coll.find_one(doc! {}).await.expect("the member is still usable");
    assert_eq!(
        proxy.metric_sum("mongoplex_pool_clears_total", &[]),
        0.0,
        "the client's limit is not the member's fault"
    );
    assert!(
        proxy.metric_sum("mongoplex_pool_connections_closed_total", &["reason=\"error\""]) >= 1.0,
        "the connection cut mid-request is not reused"
    );
    proxy.shutdown().await;
}

/// maxPoolSize 1, held by a blocked request: another client's maxTimeMS 300 ends its
/// wait for the connection (the wait queue alone would wait 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_time_ms_bounds_pool_checkout() {
    let (_up, direct, proxy) = single().await;
    let holder_client = Client::with_uri_str(proxy.uri()).await.unwrap();
    let coll = holder_client.database("mt").collection::<Document>("c");
    coll.find_one(doc! {}).await.expect("warm up");
    fail_once(
        &direct,
        doc! { "failCommands": ["find"], "blockConnection": true, "blockTimeMS": 3000 },
    )
    .await;
    let holder = tokio::spawn(async move { coll.find_one(doc! {}).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = Client::with_uri_str(proxy.uri_with("retryReads=false"))
        .await
        .unwrap();
    let limit = Duration::from_millis(300);
    let started = Instant::now();
    let result = other
        .database("mt")
        .run_command(doc! { "count": "c", "maxTimeMS": 300 })
        .await;
    assert_expired(
        "count, maxTimeMS 300, pool exhausted",
        result,
        started.elapsed(),
        limit,
    );
    holder.await.unwrap().expect("the blocked request still succeeds");
    assert!(proxy.metric_sum("mongoplex_pool_checkout_failures_total", &["reason=\"max_time\""]) >= 1.0);
    proxy.shutdown().await;
}

/// A find the server holds past socketTimeoutMS fails as NetworkTimeout and is not sent
/// again by the proxy: it may still be running, and the driver decides about retrying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_past_socket_timeout_is_not_retried_by_the_proxy() {
    let upstream = Secantus::start();
    let direct = Client::with_uri_str(upstream.uri()).await.unwrap();
    let proxy = TestProxy::builder(&upstream.seed_uri())
        .settings(|s| s.socket_timeout_ms = Some(500))
        .start()
        .await;
    let client = Client::with_uri_str(proxy.uri_with("retryReads=false"))
        .await
        .unwrap();
    let coll = client.database("mt").collection::<Document>("c");
    coll.find_one(doc! {}).await.expect("warm up");
    fail_once(
        &direct,
        doc! { "failCommands": ["find"], "blockConnection": true, "blockTimeMS": 1500 },
    )
    .await;
    let started = Instant::now();
    let err = coll
        .find_one(doc! {})
        .await
        .expect_err("the proxy must not retry a timed-out read");
    let took = started.elapsed();
    let (code, name, message) = command_error(&err);
    assert_eq!((code, name.as_str()), (89, "NetworkTimeout"), "{message}");
    assert!(took <= Duration::from_millis(500) + SLACK, "{took:?}");
    assert_eq!(proxy.metric_sum("mongoplex_retries_total", &[]), 0.0);
    coll.find_one(doc! {}).await.expect("the next find works");
    proxy.shutdown().await;
}

/// A member slow only on some commands: every aggregate is held 1.5 s (socketTimeoutMS
/// 500), finds are not. Each aggregate fails alone, as NetworkTimeout within the socket
/// timeout, on a connection that is then discarded; the member stays selectable, its
/// pool is never cleared, and a client of finds and pings beside it sees no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_slow_only_on_some_commands_fails_only_those() {
    const SLOW: usize = 5;
    let upstream = Secantus::start();
    let direct = Client::with_uri_str(upstream.uri()).await.unwrap();
    let proxy = TestProxy::builder(&upstream.seed_uri())
        .settings(|s| s.socket_timeout_ms = Some(500))
        .start()
        .await;
    let client = Client::with_uri_str(proxy.uri_with("retryReads=false"))
        .await
        .unwrap();
    let coll = client.database("mt").collection::<Document>("slow");
    coll.insert_one(doc! { "_id": 1 }).await.unwrap();
    direct
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": "alwaysOn",
            "data": { "failCommands": ["aggregate"], "blockConnection": true, "blockTimeMS": 1500 },
        })
        .await
        .expect("configureFailPoint");
    let good = common::bystander::Bystander::start(proxy.uri(), Duration::from_millis(5));
    let finds = {
        let coll = client.database("mt").collection::<Document>("slow");
        tokio::spawn(async move {
            let mut errors = Vec::new();
            for _ in 0..100 {
                if let Err(e) = coll.find_one(doc! { "_id": 1 }).await {
                    errors.push(e.to_string());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            errors
        })
    };
    for i in 0..SLOW {
        let started = Instant::now();
        let err = coll
            .aggregate(vec![doc! { "$match": {} }])
            .await
            .expect_err("a held aggregate fails at the socket timeout");
        let took = started.elapsed();
        let (code, name, message) = command_error(&err);
        println!("FIGURE slow aggregate {i}: {name} after {} ms", took.as_millis());
        assert_eq!((code, name.as_str()), (89, "NetworkTimeout"), "{message}");
        assert!(took <= Duration::from_millis(500) + SLACK, "{took:?}");
    }
    let find_errors = finds.await.unwrap();
    assert!(
        find_errors.is_empty(),
        "finds beside the slow aggregates failed: {find_errors:?}"
    );
    good.assert_unaffected().await;
    direct
        .database("admin")
        .run_command(doc! { "configureFailPoint": "failCommand", "mode": "off" })
        .await
        .unwrap();
    assert_eq!(
        proxy.metric_sum("mongoplex_pool_clears_total", &[]),
        0.0,
        "a slow command is not the member's failure"
    );
    assert_eq!(
        proxy.metric_sum(
            "mongoplex_requests_total",
            &["command=\"aggregate\"", "outcome=\"proxy_error\""]
        ),
        SLOW as f64,
        "each slow aggregate is counted"
    );
    assert!(
        proxy.metric_sum("mongoplex_pool_connections_closed_total", &["reason=\"error\""]) >= SLOW as f64,
        "each timed-out connection is discarded, never reused"
    );
    assert_eq!(
        proxy.metric_sum("mongoplex_retries_total", &[]),
        0.0,
        "nothing was sent twice"
    );
    proxy.shutdown().await;
}
