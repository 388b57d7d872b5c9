//! Role rules of the simulated set: what a secondary refuses, with which code and labels,
//! seen through the driver, a bare wire client, and the rules table itself.

use bson::{doc, Document};
use mongodb::error::{Error, ErrorKind};
use mongoplex::command::Command;
use mongoplex::wire::MSG_MORE_TO_COME;

use crate::common::peers::Secantus;
use crate::common::replset::driver::client as driver;
use crate::common::replset::rules::{
    self, Admission, Kind, NOT_PRIMARY_NO_SECONDARY_OK, NOT_WRITABLE_PRIMARY, RETRYABLE_WRITE_ERROR,
    TRANSIENT_TRANSACTION_ERROR,
};
use crate::common::replset::{RawClient, ReplSet};
use crate::{coll, reply_code, EVENTUALLY};

fn code(err: &Error) -> Option<i32> {
    match *err.kind {
        ErrorKind::Command(ref c) => Some(c.code),
        _ => None,
    }
}

fn labels(reply: &Document) -> Vec<String> {
    reply
        .get_array("errorLabels")
        .map(|a| a.iter().filter_map(|l| l.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
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
