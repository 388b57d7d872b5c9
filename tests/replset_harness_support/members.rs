//! What members say and hold: the shared view of the set in `hello`, awaitable and
//! streamed `hello`, and cursors that live only on the member that opened them.

use std::time::Duration;

use bson::{doc, Document};
use mongoplex::wire::{MSG_EXHAUST_ALLOWED, MSG_MORE_TO_COME};

use crate::common::peers::Secantus;
use crate::common::replset::rules::CURSOR_NOT_FOUND;
use crate::common::replset::{RawClient, ReplSet};
use crate::{reply_code, EVENTUALLY, HANG};

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
