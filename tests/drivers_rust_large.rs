//! Large messages through mongoplex with the official Rust driver: a 15 MB document (near
//! maxBsonObjectSize) and one insert message of about 47 MB (near maxMessageSizeBytes).
//!
//! Payloads are pseudo-random so that nothing compresses or dedupes them away, and each
//! is compared byte for byte after the round trip.

mod common;
mod drivers_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use drivers_support::{client, Setup};
use futures::TryStreamExt;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Document};
use mongodb::event::command::CommandEvent;
use mongodb::event::EventHandler;
use mongodb::{Client, Collection};

/// `len` bytes from a xorshift generator seeded with `seed`: reproducible, incompressible.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn binary(bytes: Vec<u8>) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes,
    }
}

fn payload(d: &Document) -> &[u8] {
    &d.get_binary_generic("data").expect("data is binary")[..]
}

/// A client through the proxy that counts the insert commands it starts.
async fn counting_client(s: &Setup) -> (Client, Arc<AtomicUsize>) {
    let inserts = Arc::new(AtomicUsize::new(0));
    let counter = inserts.clone();
    let client = client(&s.proxy.uri(), |o| {
        o.command_event_handler = Some(EventHandler::callback(move |ev| {
            if matches!(&ev, CommandEvent::Started(e) if e.command_name == "insert") {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    })
    .await;
    (client, inserts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_of_15_mb_round_trips_intact() {
    const LEN: usize = 15_000_000;
    let s = Setup::start().await;
    let client = s.client().await;
    let coll: Collection<Document> = client.database("drv").collection("big");

    let data = noise(15, LEN);
    coll.insert_one(doc! { "_id": 1, "data": binary(data.clone()), "tail": "end" })
        .await
        .expect("insert 15 MB");
    let got = coll
        .find_one(doc! { "_id": 1 })
        .await
        .expect("find_one")
        .expect("found");
    let back = payload(&got);
    assert_eq!(back.len(), LEN, "length changed");
    // Not assert_eq!: a failure would print 15 MB twice.
    assert!(back == data.as_slice(), "15 MB payload changed in transit");
    assert_eq!(got.get_str("tail").ok(), Some("end"));
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_of_47_mb_goes_in_one_message() {
    const DOCS: usize = 47;
    const LEN: usize = 1_000_000;
    let s = Setup::start().await;
    let proxy = &s.proxy;
    let (client, driver_inserts) = counting_client(&s).await;
    let coll: Collection<Document> = client.database("drv").collection("bulk");
    let seed = |i: usize| u64::try_from(i).expect("small") + 1000;
    let docs: Vec<Document> = (0..DOCS)
        .map(|i| doc! { "_id": i64::try_from(i).expect("small"), "data": binary(noise(seed(i), LEN)) })
        .collect();

    let proxy_inserts = || proxy.metric_sum("mongoplex_requests_total", &["command=\"insert\""]);
    let received = || proxy.metric_sum("mongoplex_client_received_bytes_total", &[]);
    let (inserts0, bytes0) = (proxy_inserts(), received());
    let res = coll.insert_many(docs).await.expect("insert_many of ~47 MB");
    assert_eq!(res.inserted_ids.len(), DOCS);

    // The driver fits ~47 MB under maxMessageSizeBytes (48,000,000) in one OP_MSG; the
    // proxy counted one insert and at least 47 MB from clients, so it took that message
    // whole.
    let sent = driver_inserts.load(Ordering::Relaxed);
    assert_eq!(sent, 1, "the driver split the batch into {sent} inserts");
    let counted = proxy_inserts() - inserts0;
    let ok = proxy.metric_sum(
        "mongoplex_requests_total",
        &["command=\"insert\"", "outcome=\"ok\""],
    );
    assert_eq!((counted, ok), (1.0, 1.0), "proxy insert requests (all, ok)");
    let bytes = received() - bytes0;
    assert!(
        bytes > 47e6,
        "proxy received only {bytes} bytes for a ~47 MB insert"
    );

    assert_eq!(coll.count_documents(doc! {}).await.expect("count"), 47);
    // Read everything back (the replies span several ~16 MB batches) and compare.
    let mut cursor = coll.find(doc! {}).sort(doc! { "_id": 1 }).await.expect("find");
    let mut n = 0;
    while let Some(d) = cursor.try_next().await.expect("cursor") {
        assert_eq!(d.get_i64("_id").ok(), Some(i64::try_from(n).expect("small")));
        assert!(
            payload(&d) == noise(seed(n), LEN).as_slice(),
            "document {n} changed"
        );
        n += 1;
    }
    assert_eq!(n, DOCS, "read back {n} documents");
    s.finish().await;
}
