//! The official Rust driver (`mongodb` 3.9) through mongoplex, at the wire level: the
//! proxy's own hello as a driver sees it, compression on the client leg (snappy, zlib,
//! zstd), and unacknowledged (w:0, moreToCome) writes.
//!
//! Each test starts its own SecantusDB and proxy.

mod common;
mod drivers_support;

use std::time::Duration;

use common::proxy::TestProxy;
use drivers_support::{client, number, Setup, EVENTUALLY};
use mongodb::bson::{doc, Document};
use mongodb::error::ErrorKind;
use mongodb::options::{Acknowledgment, WriteConcern};
use mongodb::Collection;

/// Waits until `filter` finds exactly `want` in `coll`.
async fn becomes_visible(coll: &Collection<Document>, filter: Document, want: Document) {
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    loop {
        if let Some(d) = coll.find_one(filter.clone()).await.expect("find_one") {
            assert_eq!(d, want);
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "w:0 write {want} not visible"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One OP_MSG frame with a single body section.
fn op_msg(request_id: i32, flags: u32, body: &Document) -> Vec<u8> {
    let body = body.to_vec().expect("encode");
    let len = i32::try_from(16 + 4 + 1 + body.len()).expect("small message");
    let mut out = Vec::new();
    for word in [len, request_id, 0, 2013] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(&flags.to_le_bytes());
    out.push(0);
    out.extend_from_slice(&body);
    out
}

/// Reads one OP_MSG reply: its responseTo and body.
async fn read_reply(stream: &mut tokio::net::TcpStream) -> (i32, Document) {
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; 16];
    stream.read_exact(&mut header).await.expect("reply header");
    let word = |i: usize| i32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
    let len = usize::try_from(word(0)).expect("positive length");
    assert!(
        (21..1 << 20).contains(&len) && word(12) == 2013,
        "reply header {header:?}"
    );
    let mut body = vec![0u8; len - 16];
    stream.read_exact(&mut body).await.expect("reply body");
    (
        word(8),
        Document::from_reader(&body[5..]).expect("reply document"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_insert_becomes_visible() {
    let s = Setup::start().await;
    let coll: Collection<Document> = s.client().await.database("drv").collection("w0");
    let w0 = WriteConcern::builder().w(Acknowledgment::Nodes(0)).build();

    // The Rust driver 3.9 refuses w:0 before sending anything (executor.rs: "Unacknowledged
    // write concerns are not supported"), so the proxy sees no insert.
    let inserts = s.requests("insert");
    let err = coll
        .insert_one(doc! { "_id": "w0-driver" })
        .write_concern(w0)
        .await
        .expect_err("this driver sends w:0 writes now: check them through the proxy here");
    assert!(matches!(*err.kind, ErrorKind::InvalidArgument { .. }), "{err}");
    assert_eq!(s.requests("insert"), inserts);

    // Through the driver as a command with writeConcern {w: 0}: acknowledged at the wire
    // level, unacknowledged in the server.
    let cmd = doc! { "insert": "w0", "documents": [{ "_id": "w0-cmd", "v": 1 }], "writeConcern": { "w": 0 } };
    let reply = coll
        .client()
        .database("drv")
        .run_command(cmd)
        .await
        .expect("insert w:0");
    assert_eq!(number(&reply, "ok"), Some(1.0), "{reply}");
    becomes_visible(&coll, doc! { "_id": "w0-cmd" }, doc! { "_id": "w0-cmd", "v": 1 }).await;

    // As pymongo and Node send it: OP_MSG with moreToCome, which gets no reply. The ping
    // that follows on the same socket must get the first reply, and it must be the ping's.
    let mut raw = tokio::net::TcpStream::connect(s.proxy.addr)
        .await
        .expect("connect");
    let insert = doc! {
        "insert": "w0", "documents": [{ "_id": "w0-raw", "v": 2 }],
        "writeConcern": { "w": 0 }, "$db": "drv",
    };
    let mut frames = op_msg(1, 0b10, &insert);
    frames.extend(op_msg(2, 0, &doc! { "ping": 1, "$db": "admin" }));
    tokio::io::AsyncWriteExt::write_all(&mut raw, &frames)
        .await
        .expect("send");
    let (response_to, body) = tokio::time::timeout(EVENTUALLY, read_reply(&mut raw))
        .await
        .expect("no reply to the ping after a moreToCome insert");
    assert_eq!(
        response_to, 2,
        "first reply answers request {response_to}: {body}"
    );
    becomes_visible(&coll, doc! { "_id": "w0-raw" }, doc! { "_id": "w0-raw", "v": 2 }).await;
    assert_eq!(
        s.requests("insert") - inserts,
        2.0,
        "proxy did not forward both inserts"
    );
    s.finish().await;
}

/// Inserts and reads back 1 MB of text that compresses well, returning the bytes the
/// proxy received from and sent to clients meanwhile.
async fn compressed_round_trip(proxy: &TestProxy, compressor: Option<&str>) -> (f64, f64) {
    let uri = proxy.uri_with(&compressor.map(|c| format!("compressors={c}")).unwrap_or_default());
    let name = compressor.unwrap_or("plain");
    let coll: Collection<Document> = client(&uri, |_| {}).await.database("drv").collection(name);
    coll.insert_one(doc! { "warm": 1 }).await.expect("warm-up insert");
    let text = "mongoplex compresses ".repeat(50_000); // 1.05 MB
    let bytes_in = || proxy.metric_sum("mongoplex_client_received_bytes_total", &[]);
    let bytes_out = || proxy.metric_sum("mongoplex_client_sent_bytes_total", &[]);
    let (in0, out0) = (bytes_in(), bytes_out());

    coll.insert_one(doc! { "_id": "big", "text": &text })
        .await
        .expect("insert");
    let got = coll
        .find_one(doc! { "_id": "big" })
        .await
        .expect("find_one")
        .expect("found");
    assert!(
        got.get_str("text").ok() == Some(text.as_str()),
        "{name}: text changed"
    );
    let upd = coll
        .update_one(doc! { "_id": "big" }, doc! { "$set": { "n": 1 } })
        .await
        .expect("update");
    assert_eq!(upd.modified_count, 1);
    assert_eq!(
        coll.delete_one(doc! { "_id": "big" })
            .await
            .expect("delete")
            .deleted_count,
        1
    );
    assert_eq!(
        coll.count_documents(doc! { "_id": "big" }).await.expect("count"),
        0
    );
    (bytes_in() - in0, bytes_out() - out0)
}

/// The client leg is compressed both ways: 1 MB each way costs far less on the wire
/// than with no compressor, which this measures first on the same proxy as a control.
async fn compression_shrinks_client_traffic(compressor: &str) {
    let s = Setup::start().await;
    let (plain_in, plain_out) = compressed_round_trip(&s.proxy, None).await;
    assert!(
        plain_in > 1e6 && plain_out > 1e6,
        "control: in {plain_in}, out {plain_out}"
    );
    let (zin, zout) = compressed_round_trip(&s.proxy, Some(compressor)).await;
    assert!(
        zin < 250_000.0,
        "{compressor}: client sent {zin} bytes (uncompressed: {plain_in})"
    );
    assert!(
        zout < 250_000.0,
        "{compressor}: proxy sent {zout} bytes (uncompressed: {plain_out})"
    );
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_zstd() {
    compression_shrinks_client_traffic("zstd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_snappy() {
    compression_shrinks_client_traffic("snappy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_zlib() {
    compression_shrinks_client_traffic("zlib").await;
}

/// Negotiation: a compressor the proxy does not enable is not used, and the client still
/// works (uncompressed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_not_enabled_on_the_proxy_is_not_used() {
    let s = Setup::start_with(|b| b.settings(|c| c.compressors = Some(vec!["zstd".into()]))).await;
    let (bytes_in, bytes_out) = compressed_round_trip(&s.proxy, Some("snappy")).await;
    assert!(
        bytes_in > 1e6 && bytes_out > 1e6,
        "snappy was used though the proxy enables only zstd: in {bytes_in}, out {bytes_out}"
    );
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_presents_a_mongos_without_replica_set_fields() {
    let s = Setup::start().await;
    let direct = client(&s.upstream.uri(), |_| {}).await;
    let upstream = direct
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .expect("hello");
    // The upstream does have replica-set fields, so their absence below is the proxy's doing.
    assert!(
        upstream.contains_key("setName") && upstream.contains_key("hosts"),
        "{upstream}"
    );
    let upstream_wire = upstream
        .get_i32("maxWireVersion")
        .expect("upstream maxWireVersion");
    assert_eq!(upstream_wire, 27, "{upstream}");

    let hello = s
        .client()
        .await
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .expect("hello through the proxy");
    assert_eq!(hello.get_str("msg").ok(), Some("isdbgrid"), "{hello}");
    assert_eq!(hello.get_bool("isWritablePrimary").ok(), Some(true), "{hello}");
    assert_eq!(
        hello.get_i32("maxWireVersion").ok(),
        Some(upstream_wire),
        "{hello}"
    );
    let conn_id = number(&hello, "connectionId");
    assert!(conn_id.is_some_and(|id| id > 0.0), "connectionId: {hello}");
    for leak in [
        "hosts",
        "setName",
        "setVersion",
        "primary",
        "me",
        "electionId",
        "passives",
    ] {
        assert!(!hello.contains_key(leak), "hello leaks {leak}: {hello}");
    }
    s.finish().await;
}
