//! The official Rust driver (`mongodb` 3.9) against SecantusDB THROUGH mongoplex: CRUD,
//! cursors, errors, transactions and change streams.
//!
//! Each test starts its own SecantusDB and proxy, so tests share nothing and run in
//! parallel. Besides the driver's view of each result, tests check the proxy's own
//! metrics where they show that a request took the path under test (getMore on a pinned
//! cursor, killCursors unpinning it, a pinned transaction).
//! Wire-level behaviour (hello, compression, w:0) is in `drivers_rust_wire.rs`; the 15 MB
//! document and the ~47 MB insert are in `drivers_rust_large.rs`.

mod common;
mod drivers_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use drivers_support::{client, eventually, number, Setup, EVENTUALLY};
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{doc, Document};
use mongodb::change_stream::event::OperationType;
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::event::command::CommandEvent;
use mongodb::event::EventHandler;
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};

fn numbered(n: i32) -> Vec<Document> {
    (0..n).map(|i| doc! { "i": i, "grp": i % 10 }).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_with_small_batches_uses_get_more() {
    let s = Setup::start().await;
    let coll: Collection<Document> = s.client().await.database("drv").collection("items");
    let res = coll.insert_many(numbered(10_000)).await.expect("insert_many");
    assert_eq!(res.inserted_ids.len(), 10_000);

    let get_mores = s.requests("getMore");
    let mut cursor = coll
        .find(doc! {})
        .sort(doc! { "i": 1 })
        .batch_size(100)
        .await
        .expect("find");
    let mut seen = 0;
    while let Some(d) = cursor.try_next().await.expect("cursor") {
        assert_eq!(d.get_i32("i").ok(), Some(seen), "cursor out of order");
        seen += 1;
    }
    assert_eq!(seen, 10_000, "find returned {seen} documents");
    eventually("the exhausted cursor unpinned", || s.pinned_cursors() == 0.0).await;
    // 100 in the first batch, then 99 or 100 getMores (the last may return nothing).
    let sent = s.requests("getMore") - get_mores;
    assert!(
        (99.0..=101.0).contains(&sent),
        "proxy counted {sent} getMores, want about 100"
    );
    let ok = s.proxy.metric_sum(
        "mongoplex_requests_total",
        &["command=\"getMore\"", "outcome=\"ok\""],
    );
    assert_eq!(ok, sent, "some getMores did not succeed");

    assert_eq!(coll.count_documents(doc! {}).await.expect("count"), 10_000);
    assert_eq!(
        coll.count_documents(doc! { "grp": 3 }).await.expect("count"),
        1_000
    );
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_delete_and_aggregate_report_real_counts() {
    let s = Setup::start().await;
    let coll: Collection<Document> = s.client().await.database("drv").collection("items");
    coll.insert_many(numbered(1_000)).await.expect("insert_many");

    let filter = doc! { "grp": { "$lt": 5 } };
    let set_low = doc! { "$set": { "tag": "low" } };
    let upd = coll
        .update_many(filter.clone(), set_low.clone())
        .await
        .expect("update_many");
    assert_eq!((upd.matched_count, upd.modified_count), (500, 500));
    // The same update again matches the same documents but changes none of them.
    let again = coll
        .update_many(filter, set_low)
        .await
        .expect("update_many again");
    assert_eq!((again.matched_count, again.modified_count), (500, 0));
    assert_eq!(
        coll.count_documents(doc! { "tag": "low" }).await.expect("count"),
        500
    );

    let del = coll.delete_many(doc! { "grp": 9 }).await.expect("delete_many");
    assert_eq!(del.deleted_count, 100);
    let none = coll
        .delete_many(doc! { "grp": 9 })
        .await
        .expect("delete_many again");
    assert_eq!(none.deleted_count, 0);
    assert_eq!(coll.count_documents(doc! {}).await.expect("count"), 900);

    let pipeline = [
        doc! { "$group": { "_id": "$grp", "n": { "$sum": 1 }, "total": { "$sum": "$i" } } },
        doc! { "$sort": { "_id": 1 } },
    ];
    let groups: Vec<Document> = coll
        .aggregate(pipeline)
        .await
        .expect("aggregate")
        .try_collect()
        .await
        .expect("aggregate cursor");
    assert_eq!(groups.len(), 9, "groups: {groups:?}");
    for (g, got) in (0..9).zip(&groups) {
        let want: i32 = (g..1_000).step_by(10).sum();
        assert_eq!(got.get_i32("_id").ok(), Some(g), "{got}");
        assert_eq!(got.get_i32("n").ok(), Some(100), "{got}");
        assert_eq!(number(got, "total"), Some(f64::from(want)), "{got}");
    }
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_key_error_keeps_code_11000() {
    let s = Setup::start().await;
    let users: Collection<Document> = s.client().await.database("drv").collection("users");
    let unique = IndexOptions::builder()
        .unique(true)
        .name("email_unique".to_string())
        .build();
    let index = IndexModel::builder()
        .keys(doc! { "email": 1 })
        .options(unique)
        .build();
    users.create_index(index).await.expect("create_index");
    let names = users.list_index_names().await.expect("listIndexes");
    assert!(names.iter().any(|n| n == "email_unique"), "indexes: {names:?}");

    users
        .insert_one(doc! { "email": "a@example.com" })
        .await
        .expect("first insert");
    let err = users
        .insert_one(doc! { "email": "a@example.com" })
        .await
        .expect_err("a duplicate insert succeeded on a unique index");
    match &*err.kind {
        ErrorKind::Write(WriteFailure::WriteError(e)) => {
            assert_eq!(e.code, 11000, "write error: {e:?}");
            assert!(e.message.contains("duplicate key"), "message: {:?}", e.message);
        }
        other => panic!("expected a write error with code 11000, got {other:?}"),
    }

    // In a batch, the error names the failing document's index and the rest still go in.
    let batch = vec![
        doc! { "email": "b@example.com" },
        doc! { "email": "a@example.com" },
    ];
    let err = users
        .insert_many(batch)
        .ordered(false)
        .await
        .expect_err("duplicate in batch");
    match &*err.kind {
        ErrorKind::InsertMany(e) => {
            let errors = e.write_errors.as_deref().unwrap_or_default();
            assert_eq!(errors.len(), 1, "write errors: {errors:?}");
            assert_eq!((errors[0].index, errors[0].code), (1, 11000), "{errors:?}");
        }
        other => panic!("expected an insert_many error, got {other:?}"),
    }
    assert_eq!(users.count_documents(doc! {}).await.expect("count"), 2);
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_and_abort() {
    let s = Setup::start().await;
    let client = s.client().await;
    let db = client.database("drv");
    db.create_collection("txn").await.expect("create");
    let txn: Collection<Document> = db.collection("txn");
    let mut session = client.start_session().await.expect("session");

    session.start_transaction().await.expect("start");
    txn.insert_one(doc! { "k": "committed" })
        .session(&mut session)
        .await
        .expect("insert");
    txn.update_one(doc! { "k": "committed" }, doc! { "$set": { "v": 1 } })
        .session(&mut session)
        .await
        .expect("update");
    let inside = txn
        .count_documents(doc! {})
        .session(&mut session)
        .await
        .expect("count");
    assert_eq!(inside, 1, "own write invisible inside the transaction");
    let pinned = || s.proxy.metric_sum("mongoplex_pinned_transactions", &[]);
    assert_eq!(pinned(), 1.0, "the open transaction is not pinned");
    session.commit_transaction().await.expect("commit");
    let got = txn
        .find_one(doc! { "k": "committed" })
        .projection(doc! { "_id": 0 })
        .await
        .expect("find_one");
    assert_eq!(got, Some(doc! { "k": "committed", "v": 1 }));

    session.start_transaction().await.expect("start");
    txn.insert_one(doc! { "k": "aborted" })
        .session(&mut session)
        .await
        .expect("insert");
    session.abort_transaction().await.expect("abort");
    assert_eq!(
        txn.count_documents(doc! { "k": "aborted" }).await.expect("count"),
        0
    );
    assert_eq!(txn.count_documents(doc! {}).await.expect("count"), 1);

    assert_eq!(s.requests("commitTransaction"), 1.0);
    assert_eq!(s.requests("abortTransaction"), 1.0);
    drop(session);
    eventually("pinned transactions back to 0", || pinned() == 0.0).await;
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_stream_sees_inserts_from_another_task() {
    let s = Setup::start().await;
    let db = s.client().await.database("drv");
    db.create_collection("events").await.expect("create");
    let coll: Collection<Document> = db.collection("events");
    let mut stream = coll.watch().await.expect("watch");

    // Another client (its own connections) inserts while this one waits on getMore.
    let writer: Collection<Document> = s.client().await.database("drv").collection("events");
    let inserts = tokio::spawn(async move {
        for i in 0..5 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            writer.insert_one(doc! { "i": i }).await.expect("insert");
        }
    });
    for i in 0..5 {
        let event = tokio::time::timeout(EVENTUALLY, stream.next())
            .await
            .unwrap_or_else(|_| panic!("no change event {i} within {EVENTUALLY:?}"))
            .expect("stream ended")
            .expect("change event");
        assert_eq!(event.operation_type, OperationType::Insert, "{event:?}");
        let full = event.full_document.expect("insert event carries the document");
        assert_eq!(full.get_i32("i").ok(), Some(i), "{full}");
    }
    inserts.await.expect("insert task");
    assert_eq!(
        s.pinned_cursors(),
        1.0,
        "the change stream's cursor is not pinned"
    );
    drop(stream);
    eventually("the closed change stream unpinned", || s.pinned_cursors() == 0.0).await;
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_cursor_is_killed_and_unpinned() {
    let s = Setup::start().await;
    let kills: Arc<Mutex<Vec<Document>>> = Arc::default();
    let seen = kills.clone();
    let client = client(&s.proxy.uri(), move |o| {
        o.command_event_handler = Some(EventHandler::callback(move |ev| {
            if let CommandEvent::Succeeded(e) = ev {
                if e.command_name == "killCursors" {
                    seen.lock().expect("lock").push(e.reply);
                }
            }
        }));
    })
    .await;
    let coll: Collection<Document> = client.database("drv").collection("items");
    coll.insert_many(numbered(100)).await.expect("insert_many");
    let pinned = || s.pinned_cursors();
    assert_eq!(pinned(), 0.0);

    let mut cursor = coll.find(doc! {}).batch_size(10).await.expect("find");
    for _ in 0..10 {
        cursor
            .try_next()
            .await
            .expect("cursor")
            .expect("a document in the first batch");
    }
    assert_eq!(pinned(), 1.0, "the open cursor is not pinned");
    let before = s.requests("killCursors");
    drop(cursor);

    eventually("the driver's killCursors reached the proxy", || {
        s.requests("killCursors") > before
    })
    .await;
    let ok = s.proxy.metric_sum(
        "mongoplex_requests_total",
        &["command=\"killCursors\"", "outcome=\"ok\""],
    );
    assert_eq!(ok, 1.0, "killCursors did not succeed");
    eventually("pinned cursors back to 0", || pinned() == 0.0).await;
    eventually("the driver saw the killCursors reply", || {
        !kills.lock().expect("lock").is_empty()
    })
    .await;
    let reply = kills.lock().expect("lock")[0].clone();
    let killed = reply.get_array("cursorsKilled").map(Vec::len).unwrap_or(0);
    assert_eq!(killed, 1, "killCursors reply: {reply}");
    s.finish().await;
}
