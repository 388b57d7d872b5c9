//! Tests of the simulated replica set itself (`tests/common/replset.rs`), with the official
//! Rust driver connected DIRECTLY to it, and with a bare wire client where a driver would
//! add `$readPreference`, retry, or hide what the member said.
//!
//! Every test starts its own SecantusDB and set, so tests share nothing.

mod common;

use std::time::Duration;

use bson::{doc, Document};
use common::peers::Secantus;
use common::replset::driver::client as driver;
use common::replset::rules::{
    self, Admission, Kind, CURSOR_NOT_FOUND, INTERRUPTED_DUE_TO_REPL_STATE_CHANGE,
    NOT_PRIMARY_NO_SECONDARY_OK, NOT_WRITABLE_PRIMARY, RETRYABLE_WRITE_ERROR, TRANSIENT_TRANSACTION_ERROR,
};
use common::replset::{RawClient, ReplSet, Role};
use mongodb::error::{Error, ErrorKind};
use mongodb::options::{ReadPreference, SelectionCriteria};
use mongodb::{Client, Collection, ServerType};
use mongoplex::command::Command;
use mongoplex::wire::{MSG_EXHAUST_ALLOWED, MSG_MORE_TO_COME};

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

fn code(err: &Error) -> Option<i32> {
    match *err.kind {
        ErrorKind::Command(ref c) => Some(c.code),
        _ => None,
    }
}

fn reply_code(reply: &Document) -> Option<i32> {
    reply.get_i32("code").ok()
}

fn labels(reply: &Document) -> Vec<String> {
    reply
        .get_array("errorLabels")
        .map(|a| a.iter().filter_map(|l| l.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
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
async fn a_write_sent_straight_to_a_secondary_gets_10107_with_the_retryable_label() {
    let upstream = Secantus::start();
    let rs = ReplSet::start(3, &upstream).await;
    let (client, _seen) = driver(&rs.direct_uri(1)).await;
    let err = coll(&client)
        .insert_one(doc! { "_id": 1 })
        .await
        .expect_err("a secondary took a write");
    assert_eq!(code(&err), Some(NOT_WRITABLE_PRIMARY), "{err}");
    assert!(
        err.contains_label(RETRYABLE_WRITE_ERROR),
        "labels: {:?}",
        err.labels()
    );
    assert!(rs.stats(1).rejected(NOT_WRITABLE_PRIMARY) >= 1);
    assert_eq!(rs.stats(1).forwarded("insert"), 0);

    // Bare: the label comes with txnNumber only, and a transaction gets the transient one.
    let mut raw = RawClient::connect(rs.addr(1)).await.expect("connect");
    let lsid = doc! { "id": bson::Uuid::new() };
    let plain = raw
        .command(doc! { "insert": "items", "documents": [{ "_id": 2 }], "$db": "rs" })
        .await
        .expect("insert");
    assert_eq!(reply_code(&plain), Some(NOT_WRITABLE_PRIMARY));
    assert!(labels(&plain).is_empty(), "{plain}");
    assert!(plain.get_document("topologyVersion").is_ok(), "{plain}");
    let in_txn = raw
        .command(doc! {
            "insert": "items", "documents": [{ "_id": 3 }], "$db": "rs", "lsid": lsid,
            "txnNumber": 1_i64, "startTransaction": true, "autocommit": false,
        })
        .await
        .expect("insert in a transaction");
    assert_eq!(reply_code(&in_txn), Some(NOT_WRITABLE_PRIMARY));
    assert_eq!(labels(&in_txn), [TRANSIENT_TRANSACTION_ERROR]);

    // An unacknowledged write gets no reply: the primary runs it silently, and a secondary
    // hangs up so that the client notices.
    let unacknowledged = doc! {
        "insert": "items", "documents": [{ "_id": 4 }], "$db": "rs", "writeConcern": { "w": 0 },
    };
    let mut primary = RawClient::connect(rs.addr(0)).await.expect("connect");
    primary
        .send(MSG_MORE_TO_COME, &unacknowledged)
        .await
        .expect("send");
    let found = primary
        .command(doc! { "find": "items", "filter": { "_id": 4 }, "$db": "rs" })
        .await
        .expect("the reply after a moreToCome insert must answer the find");
    let batch = found
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap();
    assert_eq!(batch.len(), 1, "the unacknowledged insert was lost: {found}");
    raw.send(MSG_MORE_TO_COME, &unacknowledged).await.expect("send");
    let closed = raw
        .recv_within(EVENTUALLY)
        .await
        .expect("the secondary kept the connection");
    assert!(
        closed.is_err(),
        "the secondary answered a moreToCome write: {closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_on_a_secondary_needs_a_secondary_read_preference() {
    let upstream = Secantus::start();
    let rs = ReplSet::start(3, &upstream).await;
    let find = doc! { "find": "items", "filter": {}, "$db": "rs" };
    let mut secondary = RawClient::connect(rs.addr(2)).await.expect("connect");
    let reply = secondary.command(find.clone()).await.expect("find");
    assert_eq!(reply_code(&reply), Some(NOT_PRIMARY_NO_SECONDARY_OK), "{reply}");
    assert_eq!(reply.get_str("codeName").ok(), Some("NotPrimaryNoSecondaryOk"));
    let mut primary_mode = find.clone();
    primary_mode.insert("$readPreference", doc! { "mode": "primary" });
    let reply = secondary.command(primary_mode).await.expect("find");
    assert_eq!(reply_code(&reply), Some(NOT_PRIMARY_NO_SECONDARY_OK), "{reply}");
    let mut allowed = find.clone();
    allowed.insert("$readPreference", doc! { "mode": "secondaryPreferred" });
    let reply = secondary.command(allowed).await.expect("find");
    assert_eq!(reply.get_f64("ok").ok(), Some(1.0), "{reply}");
    assert_eq!(rs.stats(2).rejected(NOT_PRIMARY_NO_SECONDARY_OK), 2);
    assert_eq!(rs.stats(2).forwarded("find"), 1);

    let mut primary = RawClient::connect(rs.addr(0)).await.expect("connect");
    let reply = primary.command(find).await.expect("find");
    assert_eq!(
        reply.get_f64("ok").ok(),
        Some(1.0),
        "the primary refused a plain read: {reply}"
    );
}

#[test]
fn role_rules_table() {
    let lsid = doc! { "id": 1 };
    // Ok(as_primary): forwarded, interruptible by a step-down when as_primary;
    // Err(code): rejected.
    let cases: Vec<(Document, bool, Result<bool, i32>)> = vec![
        (doc! { "ping": 1 }, false, Ok(false)),
        (doc! { "getMore": 5_i64, "collection": "c" }, false, Ok(false)),
        (doc! { "find": "c" }, true, Ok(true)),
        (doc! { "find": "c" }, false, Err(NOT_PRIMARY_NO_SECONDARY_OK)),
        (
            doc! { "find": "c", "$readPreference": { "mode": "nearest" } },
            false,
            Ok(false),
        ),
        (doc! { "insert": "c" }, true, Ok(true)),
        (doc! { "insert": "c" }, false, Err(NOT_WRITABLE_PRIMARY)),
        (
            doc! { "insert": "c", "$readPreference": { "mode": "secondary" } },
            false,
            Err(NOT_WRITABLE_PRIMARY),
        ),
        (doc! { "dropIndexes": "c" }, false, Err(NOT_WRITABLE_PRIMARY)),
        (
            doc! { "find": "c", "lsid": lsid.clone(), "txnNumber": 1_i64, "autocommit": false },
            false,
            Err(NOT_WRITABLE_PRIMARY),
        ),
    ];
    for (body, primary, want) in cases {
        let raw = bson::RawDocumentBuf::try_from(&body).unwrap();
        let got = match rules::admit(&Command::parse(&raw), primary) {
            Admission::Forward { as_primary } => Ok(as_primary),
            Admission::Reject(e) => Err(e.code),
        };
        assert_eq!(
            got,
            want,
            "{body} on a {}",
            if primary { "primary" } else { "secondary" }
        );
    }
    let label_cases = [
        (doc! { "insert": "c" }, vec![]),
        (
            doc! { "insert": "c", "lsid": lsid.clone(), "txnNumber": 3_i64 },
            vec![RETRYABLE_WRITE_ERROR],
        ),
        (
            doc! { "commitTransaction": 1, "lsid": lsid.clone(), "txnNumber": 3_i64, "autocommit": false },
            vec![RETRYABLE_WRITE_ERROR],
        ),
        (
            doc! { "update": "c", "lsid": lsid, "txnNumber": 3_i64, "autocommit": false },
            vec![TRANSIENT_TRANSACTION_ERROR],
        ),
    ];
    for (body, want) in label_cases {
        let raw = bson::RawDocumentBuf::try_from(&body).unwrap();
        let cmd = Command::parse(&raw);
        assert_eq!(rules::kind(&cmd), Kind::Write);
        assert_eq!(rules::labels(&cmd, NOT_WRITABLE_PRIMARY), want, "{body}");
        assert_eq!(rules::interrupted(&cmd).labels, want, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_agree_on_the_set() {
    let upstream = Secantus::start();
    let rs = ReplSet::start(3, &upstream).await;
    let mut replies = Vec::new();
    for i in 0..3 {
        let mut c = RawClient::connect(rs.addr(i)).await.expect("connect");
        replies.push(
            c.command(doc! { "hello": 1, "$db": "admin" })
                .await
                .expect("hello"),
        );
    }
    let hosts: Vec<String> = (0..3).map(|i| rs.host(i)).collect();
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(r.get_str("setName").ok(), Some("rs0"), "{r}");
        let got: Vec<&str> = r
            .get_array("hosts")
            .unwrap()
            .iter()
            .filter_map(|h| h.as_str())
            .collect();
        assert_eq!(got, hosts, "member {i}");
        assert_eq!(r.get_str("me").ok(), Some(hosts[i].as_str()));
        assert_eq!(r.get_str("primary").ok(), Some(hosts[0].as_str()), "member {i}");
        assert_eq!(r.get_bool("isWritablePrimary").ok(), Some(i == 0));
        assert_eq!(r.get_bool("secondary").ok(), Some(i != 0));
        assert_eq!(
            r.get_object_id("electionId").is_ok(),
            i == 0,
            "electionId on member {i}"
        );
        assert!(r
            .get_document("lastWrite")
            .unwrap()
            .get_datetime("lastWriteDate")
            .is_ok());
    }

    // A lagging member reports an older lastWriteDate, for maxStalenessSeconds.
    rs.set_lag(2, Duration::from_secs(60));
    let last_write = |r: &Document| {
        let lw = r.get_document("lastWrite").unwrap();
        lw.get_datetime("lastWriteDate").unwrap().timestamp_millis()
    };
    let mut lagging = RawClient::connect(rs.addr(2)).await.expect("connect");
    let behind = lagging
        .command(doc! { "hello": 1, "$db": "admin" })
        .await
        .expect("hello");
    let mut current = RawClient::connect(rs.addr(0)).await.expect("connect");
    let ahead = current
        .command(doc! { "hello": 1, "$db": "admin" })
        .await
        .expect("hello");
    let gap = last_write(&ahead) - last_write(&behind);
    assert!((59_000..=61_000).contains(&gap), "lastWriteDate gap {gap} ms");

    // A reconfig raises setVersion on every member.
    let before = rs.set_version();
    rs.reconfig();
    let r = lagging
        .command(doc! { "hello": 1, "$db": "admin" })
        .await
        .expect("hello");
    assert_eq!(r.get_i32("setVersion").ok(), Some(before + 1), "{r}");

    // pymongo 3's handshake: OP_QUERY isMaster, answered with OP_REPLY and `ismaster`.
    let mut legacy = RawClient::connect(rs.addr(0)).await.expect("connect");
    legacy.send_legacy(&doc! { "isMaster": 1 }).await.expect("send");
    let r = legacy.recv().await.expect("OP_REPLY");
    assert_eq!(r.op_code, Some(mongoplex::wire::OpCode::Reply));
    assert_eq!(r.body.get_bool("ismaster").ok(), Some(true), "{}", r.body);
    assert_eq!(r.body.get_object_id("electionId").ok(), Some(rs.election_id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awaitable_hello_waits_for_news_and_streams_under_exhaust() {
    let upstream = Secantus::start();
    let rs = ReplSet::start(3, &upstream).await;
    // No answer while nothing changes, an answer as soon as something does.
    let mut c = RawClient::connect(rs.addr(1)).await.expect("connect");
    let (pid, counter) = rs.topology_version(1);
    let awaitable = doc! {
        "hello": 1, "$db": "admin", "maxAwaitTimeMS": 20_000_i64,
        "topologyVersion": { "processId": pid, "counter": counter },
    };
    c.send(0, &awaitable).await.expect("send");
    assert!(
        c.recv_within(HANG).await.is_none(),
        "an awaitable hello answered without news"
    );
    rs.step_down(0);
    let r = c
        .recv_within(EVENTUALLY)
        .await
        .expect("no reply after step-down")
        .unwrap();
    let tv = r.body.get_document("topologyVersion").unwrap();
    assert_eq!(tv.get_object_id("processId").ok(), Some(pid));
    assert_eq!(tv.get_i64("counter").ok(), Some(counter + 1));
    assert!(
        r.body.get_str("primary").is_err(),
        "no primary after step-down: {}",
        r.body
    );

    // Exhaust: replies keep coming, each answering the one before.
    let (pid, counter) = rs.topology_version(2);
    let streaming = doc! {
        "hello": 1, "$db": "admin", "maxAwaitTimeMS": 100_i64,
        "topologyVersion": { "processId": pid, "counter": counter },
    };
    let mut s = RawClient::connect(rs.addr(2)).await.expect("connect");
    let mut previous = s.send(MSG_EXHAUST_ALLOWED, &streaming).await.expect("send");
    for _ in 0..3 {
        let r = s.recv_within(EVENTUALLY).await.expect("stream stopped").unwrap();
        assert_eq!(r.response_to, previous);
        assert_ne!(
            r.flags & MSG_MORE_TO_COME,
            0,
            "a streamed reply without moreToCome"
        );
        previous = r.request_id;
    }
    rs.elect(2);
    let r = s.recv_within(EVENTUALLY).await.expect("stream stopped").unwrap();
    assert_eq!(
        r.body.get_bool("isWritablePrimary").ok(),
        Some(true),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_drops_its_sockets_and_comes_back_on_the_same_port() {
    let upstream = Secantus::start();
    let rs = ReplSet::start(3, &upstream).await;
    let mut c = RawClient::connect(rs.addr(1)).await.expect("connect");
    let before = c
        .command(doc! { "hello": 1, "$db": "admin" })
        .await
        .expect("hello");
    c.command(doc! { "ping": 1, "$db": "admin" }).await.expect("ping");
    rs.kill(1).await;
    let gone = c.command(doc! { "ping": 1, "$db": "admin" }).await;
    assert!(gone.is_err(), "a killed member answered: {gone:?}");
    assert!(
        RawClient::connect(rs.addr(1)).await.is_err(),
        "a killed member accepted"
    );

    rs.restart(1).await;
    let mut c = RawClient::connect(rs.addr(1))
        .await
        .expect("connect after restart");
    let after = c
        .command(doc! { "hello": 1, "$db": "admin" })
        .await
        .expect("hello");
    let pid = |r: &Document| {
        r.get_document("topologyVersion")
            .unwrap()
            .get_object_id("processId")
            .unwrap()
    };
    assert_ne!(pid(&before), pid(&after), "a restart must bring a new processId");
    assert_eq!(after.get_bool("secondary").ok(), Some(true));
    assert_eq!(rs.role(1), Role::Secondary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_member_keeps_sockets_open_but_answers_nothing() {
    let upstream = Secantus::start();
    let rs = ReplSet::start(3, &upstream).await;
    let mut c = RawClient::connect(rs.addr(2)).await.expect("connect");
    c.command(doc! { "ping": 1, "$db": "admin" }).await.expect("ping");
    rs.partition(2);
    c.send(0, &doc! { "hello": 1, "$db": "admin" })
        .await
        .expect("send");
    assert!(
        c.recv_within(HANG).await.is_none(),
        "a partitioned member answered hello"
    );
    let mut fresh = RawClient::connect(rs.addr(2))
        .await
        .expect("a partitioned member still accepts");
    fresh
        .send(0, &doc! { "ping": 1, "$db": "admin" })
        .await
        .expect("send");
    assert!(
        fresh.recv_within(HANG).await.is_none(),
        "a partitioned member answered ping"
    );

    // The driver, too, gets nothing back.
    let (client, _seen) = driver(&rs.direct_uri(2)).await;
    let admin = client.database("admin");
    let ping = admin.run_command(doc! { "ping": 1 });
    assert!(
        tokio::time::timeout(HANG, ping).await.is_err(),
        "the driver got an answer"
    );

    rs.heal(2);
    let r = c
        .recv_within(EVENTUALLY)
        .await
        .expect("held hello never answered")
        .unwrap();
    assert_eq!(r.body.get_str("setName").ok(), Some("rs0"));
    let r = fresh
        .recv_within(EVENTUALLY)
        .await
        .expect("held ping never answered")
        .unwrap();
    assert_eq!(r.body.get_f64("ok").ok(), Some(1.0));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_set_closes_every_socket() {
    let upstream = Secantus::start();
    let rs = ReplSet::start(2, &upstream).await;
    let addr = rs.addr(0);
    let mut c = RawClient::connect(addr).await.expect("connect");
    c.command(doc! { "ping": 1, "$db": "admin" }).await.expect("ping");
    drop(rs);
    let closed = tokio::time::timeout(Duration::from_secs(2), c.recv()).await;
    assert!(
        matches!(closed, Ok(Err(_))),
        "the connection outlived the set: {closed:?}"
    );
    eventually("the listener is closed", || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_live_on_the_member_that_opened_them() {
    let upstream = Secantus::start();
    let rs = ReplSet::start(3, &upstream).await;
    let mut primary = RawClient::connect(rs.addr(0)).await.expect("connect");
    let docs = vec![doc! { "_id": 1 }, doc! { "_id": 2 }, doc! { "_id": 3 }];
    let r = primary
        .command(doc! { "insert": "items", "documents": docs, "$db": "rs" })
        .await
        .expect("insert");
    assert_eq!(r.get_i32("n").ok(), Some(3), "{r}");

    let mut opener = RawClient::connect(rs.addr(1)).await.expect("connect");
    let r = opener
        .command(doc! {
            "find": "items", "batchSize": 1, "$db": "rs",
            "$readPreference": { "mode": "secondary" },
        })
        .await
        .expect("find");
    let id = r
        .get_document("cursor")
        .unwrap()
        .get_i64("id")
        .expect("a cursor id");
    assert_ne!(id, 0, "the cursor is exhausted already: {r}");
    let get_more = doc! { "getMore": id, "collection": "items", "batchSize": 1, "$db": "rs" };

    // Another connection to the same member may continue it, as with mongod.
    let mut same = RawClient::connect(rs.addr(1)).await.expect("connect");
    // exhaustAllowed is not passed on: one request, one reply.
    same.send(MSG_EXHAUST_ALLOWED, &get_more).await.expect("getMore");
    let r = same.recv().await.expect("getMore reply");
    assert_eq!(r.flags & MSG_MORE_TO_COME, 0, "a streamed getMore reply");
    let batch = r
        .body
        .get_document("cursor")
        .unwrap()
        .get_array("nextBatch")
        .unwrap();
    assert_eq!(batch.len(), 1, "{}", r.body);
    assert!(
        same.recv_within(HANG).await.is_none(),
        "a second reply to one getMore"
    );

    // Another member does not hold it.
    let mut other = RawClient::connect(rs.addr(2)).await.expect("connect");
    let r = other.command(get_more.clone()).await.expect("getMore");
    assert_eq!(reply_code(&r), Some(CURSOR_NOT_FOUND), "{r}");
    assert_eq!(rs.stats(2).rejected(CURSOR_NOT_FOUND), 1);
    assert_eq!(rs.stats(2).forwarded("getMore"), 0);

    // A restart loses it.
    rs.kill(1).await;
    rs.restart(1).await;
    let mut again = RawClient::connect(rs.addr(1)).await.expect("connect");
    let r = again.command(get_more).await.expect("getMore");
    assert_eq!(reply_code(&r), Some(CURSOR_NOT_FOUND), "{r}");
}
