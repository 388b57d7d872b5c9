//! Wire compression on the proxy→server leg, against real peers: SecantusDB does not
//! negotiate compression, so the upstream that compresses is a second mongoplex, which
//! compresses for clients that ask:
//!
//! driver → mongoplex A (upstream `compressors=...`) → mongoplex B → SecantusDB
//!
//! On a workload of long repetitive strings, A's upstream byte counters (and B's
//! client-side ones) with compression on are compared with the same workload through an
//! A without it. The client leg stays A's own negotiation with each client. Lying
//! upstreams, which no real server is, are in `upstream_compression_lies.rs`.

mod common;

use bson::{doc, Document};
use common::peers::Secantus;
use common::proxy::TestProxy;
use mongodb::Client;
use mongoplex::wire::{build_msg, compress, decompress, Compressor, Frame, FrameReader, OpCode, OpMsg};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const DOCS: i32 = 40;

fn text(i: i32) -> String {
    format!("record {i}: ") + &"the quick brown fox jumps over the lazy dog ".repeat(500)
}

/// CRUD through `uri` on documents of 22 KB of repetitive text, each result checked.
async fn workload(uri: &str, coll: &str) {
    let client = Client::with_uri_str(uri).await.expect("client");
    let coll = client.database("zip").collection::<Document>(coll);
    let docs: Vec<Document> = (0..DOCS).map(|i| doc! { "_id": i, "text": text(i) }).collect();
    let inserted = coll.insert_many(docs).await.expect("insert_many");
    assert_eq!(inserted.inserted_ids.len(), 40);
    let mut cursor = coll.find(doc! {}).sort(doc! { "_id": 1 }).await.expect("find");
    let mut seen = 0;
    while cursor.advance().await.expect("getMore") {
        let d = cursor.deserialize_current().expect("document");
        assert_eq!(d.get_i32("_id").ok(), Some(seen));
        assert!(
            d.get_str("text").ok() == Some(text(seen).as_str()),
            "text of {seen} changed"
        );
        seen += 1;
    }
    assert_eq!(seen, DOCS, "documents found");
    let updated = coll
        .update_many(doc! { "_id": { "$gte": 20 } }, doc! { "$set": { "tag": "late" } })
        .await
        .expect("update_many");
    assert_eq!(updated.modified_count, 20);
    assert_eq!(
        coll.count_documents(doc! { "tag": "late" }).await.expect("count"),
        20
    );
    let one = coll
        .find_one(doc! { "_id": 27 })
        .await
        .expect("find_one")
        .expect("found");
    assert_eq!(one.get_str("tag").ok(), Some("late"));
    assert!(one.get_str("text").ok() == Some(text(27).as_str()));
    let deleted = coll.delete_many(doc! {}).await.expect("delete_many");
    assert_eq!(deleted.deleted_count, 40);
    assert_eq!(coll.count_documents(doc! {}).await.expect("count"), 0);
}

/// Bytes A wrote and read upstream, and B read and wrote to its clients, during `f`.
struct Traffic {
    sent: f64,
    received: f64,
    b_in: f64,
    b_out: f64,
}

async fn measure(a: &TestProxy, b: Option<&TestProxy>, coll: &str) -> Traffic {
    let up = |d: &str| a.metric_sum("mongoplex_upstream_bytes_total", &[&format!("direction=\"{d}\"")]);
    let b_side = |name: &str| b.map_or(0.0, |b| b.metric_sum(name, &[]));
    let (s0, r0) = (up("sent"), up("received"));
    let (bi0, bo0) = (
        b_side("mongoplex_client_received_bytes_total"),
        b_side("mongoplex_client_sent_bytes_total"),
    );
    workload(&a.uri(), coll).await;
    Traffic {
        sent: up("sent") - s0,
        received: up("received") - r0,
        b_in: b_side("mongoplex_client_received_bytes_total") - bi0,
        b_out: b_side("mongoplex_client_sent_bytes_total") - bo0,
    }
}

fn compressed_messages(a: &TestProxy, compressor: &str, direction: &str) -> f64 {
    a.metric_sum(
        "mongoplex_upstream_compressed_messages_total",
        &[
            &format!("compressor=\"{compressor}\""),
            &format!("direction=\"{direction}\""),
        ],
    )
}

/// A in front of B with `options` appended to its upstream URI.
async fn proxy_a(b: &TestProxy, options: &str) -> TestProxy {
    TestProxy::builder(&format!("mongodb://{}/?directConnection=true{options}", b.addr))
        .start()
        .await
}

/// The same workload through an A without compression and one with `compressor`: the
/// upstream leg must shrink to under half both ways, and the compressor be the one used.
async fn upstream_leg_shrinks(compressor: &str) {
    let server = Secantus::start();
    let b = TestProxy::builder(&server.seed_uri()).start().await;
    let plain_a = proxy_a(&b, "").await;
    let zip_a = proxy_a(&b, &format!("&compressors={compressor}")).await;
    let plain = measure(&plain_a, Some(&b), "plain").await;
    let zip = measure(&zip_a, Some(&b), compressor).await;
    println!(
        "{compressor}: A upstream sent {} -> {} bytes ({:.1}%), received {} -> {} ({:.1}%); \
         B from clients {} -> {}, to clients {} -> {}",
        plain.sent,
        zip.sent,
        100.0 * zip.sent / plain.sent,
        plain.received,
        zip.received,
        100.0 * zip.received / plain.received,
        plain.b_in,
        zip.b_in,
        plain.b_out,
        zip.b_out,
    );
    assert!(
        plain.sent > 800_000.0 && plain.received > 800_000.0,
        "control too small"
    );
    assert!(
        zip.sent < plain.sent * 0.5,
        "{compressor}: sent {} of {}",
        zip.sent,
        plain.sent
    );
    assert!(
        zip.received < plain.received * 0.5,
        "{compressor}: received {} of {}",
        zip.received,
        plain.received
    );
    // B saw the same shrinking on its client side: the counters measure real wire bytes.
    assert!(zip.b_in < plain.b_in * 0.5 && zip.b_out < plain.b_out * 0.5);
    assert!(compressed_messages(&zip_a, compressor, "sent") >= 5.0);
    assert!(compressed_messages(&zip_a, compressor, "received") >= 5.0);
    assert_eq!(
        plain_a.metric_sum("mongoplex_upstream_compressed_messages_total", &[]),
        0.0,
        "an A without compressors compressed"
    );
    zip_a.shutdown().await;
    plain_a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_shrinks_the_upstream_leg() {
    upstream_leg_shrinks("zstd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snappy_shrinks_the_upstream_leg() {
    upstream_leg_shrinks("snappy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zlib_shrinks_the_upstream_leg() {
    upstream_leg_shrinks("zlib").await;
}

/// A asks for zstd then zlib; B offers only zlib: zlib is used, zstd never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiation_falls_back_to_a_compressor_the_server_offers() {
    let server = Secantus::start();
    let b = TestProxy::builder(&server.seed_uri())
        .settings(|s| s.compressors = Some(vec!["zlib".into()]))
        .start()
        .await;
    let a = proxy_a(&b, "&compressors=zstd,zlib&zlibCompressionLevel=9").await;
    let t = measure(&a, Some(&b), "fallback").await;
    println!(
        "fallback: A upstream sent {} received {} bytes",
        t.sent, t.received
    );
    assert!(compressed_messages(&a, "zlib", "sent") >= 5.0);
    assert!(compressed_messages(&a, "zlib", "received") >= 5.0);
    assert_eq!(compressed_messages(&a, "zstd", "sent"), 0.0);
    assert_eq!(compressed_messages(&a, "zstd", "received"), 0.0);
    assert!(
        t.sent < 400_000.0 && t.received < 400_000.0,
        "not compressed: {} {}",
        t.sent,
        t.received
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// SecantusDB's hello has no `compression` field: A asks for zstd, works, and sends
/// everything plain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_compression_gets_plain_messages() {
    let server = Secantus::start();
    let a = TestProxy::builder(&format!("{}?compressors=zstd", server.seed_uri()))
        .start()
        .await;
    let t = measure(&a, None, "offered_none").await;
    println!(
        "no compression offered: A upstream sent {} received {} bytes",
        t.sent, t.received
    );
    assert!(t.sent > 800_000.0 && t.received > 800_000.0);
    assert_eq!(
        a.metric_sum("mongoplex_upstream_compressed_messages_total", &[]),
        0.0
    );
    a.shutdown().await;
}

/// Sends `body` on a raw client connection, compressed with `c` when given, and
/// returns the reply as it came and its body.
async fn raw_command(
    tcp: &mut TcpStream,
    id: i32,
    body: &Document,
    c: Option<Compressor>,
) -> (Frame, Document) {
    let frame = build_msg(id, 0, 0, &body.to_vec().expect("encode"));
    let frame = match c {
        Some(c) => compress(&frame, c).expect("compress"),
        None => frame,
    };
    tcp.write_all(frame.as_bytes()).await.expect("send");
    let reply = FrameReader::new()
        .next(tcp, 48 << 20)
        .await
        .expect("read")
        .expect("a reply");
    let plain = if reply.op_code() == Some(OpCode::Compressed) {
        decompress(&reply, 48 << 20).expect("inflate").0
    } else {
        reply.clone()
    };
    let body = Document::try_from(OpMsg::parse(&plain).expect("OP_MSG").body).expect("body");
    (reply, body)
}

/// The client leg is A's own: through an A whose upstream uses zstd, a client that
/// negotiated snappy gets snappy replies, one without compression gets plain replies,
/// and a driver with snappy sees correct CRUD results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_leg_is_negotiated_apart_from_the_upstream_leg() {
    let server = Secantus::start();
    let b = TestProxy::builder(&server.seed_uri()).start().await;
    let a = proxy_a(&b, "&compressors=zstd").await;
    workload(&a.uri_with("compressors=snappy"), "driver_snappy").await;
    assert!(compressed_messages(&a, "zstd", "sent") >= 5.0);
    assert_eq!(compressed_messages(&a, "snappy", "sent"), 0.0);

    let big = "abcabcabc ".repeat(5_000);
    let find = doc! { "find": "raw", "filter": { "_id": 1 }, "$db": "zip" };
    let mut snappy = TcpStream::connect(a.addr).await.expect("connect");
    let hello = doc! { "hello": 1, "compression": ["snappy"], "$db": "admin" };
    let (_, h) = raw_command(&mut snappy, 1, &hello, None).await;
    assert_eq!(
        h.get_array("compression").ok(),
        Some(&vec!["snappy".into()]),
        "{h}"
    );
    let insert = doc! { "insert": "raw", "documents": [{ "_id": 1, "s": &big }], "$db": "zip" };
    let (_, r) = raw_command(&mut snappy, 2, &insert, Some(Compressor::Snappy)).await;
    assert_eq!(r.get_i32("n").ok(), Some(1), "{r}");
    let zstd_before = compressed_messages(&a, "zstd", "received");
    let (reply, r) = raw_command(&mut snappy, 3, &find, Some(Compressor::Snappy)).await;
    assert_eq!(reply.op_code(), Some(OpCode::Compressed));
    assert_eq!(
        reply.payload()[8],
        Compressor::Snappy.id(),
        "the client got another compressor"
    );
    assert!(
        compressed_messages(&a, "zstd", "received") > zstd_before,
        "upstream reply not zstd"
    );
    let got = r
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .expect("batch");
    assert_eq!(got.len(), 1);

    let mut plain = TcpStream::connect(a.addr).await.expect("connect");
    let (_, h) = raw_command(&mut plain, 1, &doc! { "hello": 1, "$db": "admin" }, None).await;
    assert!(!h.contains_key("compression"), "{h}");
    let (reply, r) = raw_command(&mut plain, 2, &find, None).await;
    assert_eq!(
        reply.op_code(),
        Some(OpCode::Msg),
        "a client without compression got OP_COMPRESSED"
    );
    assert!(reply.len() > big.len(), "plain reply of {} bytes", reply.len());
    let doc = &r.get_document("cursor").unwrap().get_array("firstBatch").unwrap()[0];
    assert_eq!(
        doc.as_document().and_then(|d| d.get_str("s").ok()),
        Some(big.as_str())
    );
    a.shutdown().await;
    b.shutdown().await;
}
