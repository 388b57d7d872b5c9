//! An upstream that lies in its compressed replies, which no real server does: a fake
//! standalone written here, that offers zstd. It checks, on the wire, what an upstream
//! connection compresses (never the hello or the login's commands), and that every lie
//! (garbage, a wrong or huge announced size, an unknown compressor) is an upstream
//! protocol error on a discarded connection, counted by kind, never a panic. The real
//! compressed leg is tested in `upstream_compression.rs`.

#[path = "common/proxy.rs"]
mod proxy;

use std::sync::{Arc, Mutex};

use bson::{doc, rawdoc, Document};
use mongoplex::address::ServerAddress;
use mongoplex::upstream::{ConnectOptions, UpstreamConn, UpstreamError};
use mongoplex::wire::{
    build_msg, compress, decompress, Compressor, Frame, FrameReader, OpCode, OpMsg, WireError,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// What the fake saw: each command's name and the compressor id it came with.
type Seen = Arc<Mutex<Vec<(String, Option<u8>)>>>;

/// A standalone that offers zstd, answers ping compressed, and answers `find` on a
/// collection named after a fault with that fault.
async fn lying_upstream() -> (ServerAddress, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve_lies(tcp, Arc::clone(&log)));
        }
    });
    let address = ServerAddress {
        host: addr.ip().to_string(),
        port: addr.port(),
    };
    (address, seen)
}

/// An OP_COMPRESSED header over `data`, announcing `size` bytes of OP_MSG.
fn compressed_frame(response_to: i32, size: i32, id: u8, data: &[u8]) -> Vec<u8> {
    let len = i32::try_from(16 + 9 + data.len()).expect("small");
    let mut out = Vec::new();
    for word in [len, 99, response_to, 2012, 2013, size] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.push(id);
    out.extend_from_slice(data);
    out
}

async fn serve_lies(mut tcp: TcpStream, seen: Seen) {
    let mut reader = FrameReader::new();
    while let Ok(Some(req)) = reader.next(&mut tcp, 64 << 20).await {
        let (plain, used) = decompress_any(&req);
        let body = Document::try_from(OpMsg::parse(&plain).expect("OP_MSG").body).expect("body");
        let name = body.keys().next().cloned().unwrap_or_default();
        seen.lock().unwrap().push((name.clone(), used));
        let to = req.request_id();
        let reply = |d: Document| build_msg(0, to, 0, &d.to_vec().expect("encode"));
        let out: Vec<u8> = match name.as_str() {
            "hello" => reply(doc! {
                "ok": 1, "isWritablePrimary": true, "maxWireVersion": 17, "minWireVersion": 0,
                "maxMessageSizeBytes": 1_000_000, "maxBsonObjectSize": 16 * 1024 * 1024,
                "maxWriteBatchSize": 100_000, "logicalSessionTimeoutMinutes": 30,
                "compression": ["zstd"],
            })
            .as_bytes()
            .to_vec(),
            "saslStart" => reply(doc! { "ok": 0, "code": 18, "errmsg": "no" })
                .as_bytes()
                .to_vec(),
            "ping" => compress(&reply(doc! { "ok": 1 }), Compressor::Zstd)
                .expect("compress")
                .as_bytes()
                .to_vec(),
            _ => {
                let plain = reply(doc! { "ok": 1, "cursor": { "id": 0_i64, "ns": "d.c", "firstBatch": [] } });
                let size = i32::try_from(plain.len() - 16).expect("small");
                let good = zstd::bulk::compress(plain.payload(), 0).expect("zstd");
                match body.get_str("find").unwrap_or("") {
                    // zstd id over bytes that are no zstd frame.
                    "garbage" => compressed_frame(to, size, 3, &[0xde; 64]),
                    // A real frame whose announced size is larger than the message.
                    "short" => compressed_frame(to, size + 40, 3, &good),
                    // ... or smaller than it.
                    "long" => compressed_frame(to, size - 10, 3, &good),
                    // 2 GB announced in 30 bytes.
                    "huge" => compressed_frame(to, 2_000_000_000, 3, &good),
                    // Over the 1 MB maxMessageSizeBytes this server announced.
                    "over_max" => compressed_frame(to, 1_100_000, 2, &[0x78, 0x9c]),
                    "unknown_compressor" => compressed_frame(to, size, 9, &good),
                    "snappy_garbage" => compressed_frame(to, size, 1, &[0xff; 16]),
                    _ => compress(&plain, Compressor::Zstd)
                        .expect("compress")
                        .as_bytes()
                        .to_vec(),
                }
            }
        };
        if tcp.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn decompress_any(req: &Frame) -> (Frame, Option<u8>) {
    if req.op_code() == Some(OpCode::Compressed) {
        let id = req.payload()[8];
        (
            decompress(req, 64 << 20).expect("the proxy compressed badly").0,
            Some(id),
        )
    } else {
        (req.clone(), None)
    }
}

fn options(registry: &prometheus::Registry) -> ConnectOptions {
    ConnectOptions {
        compressors: vec![Compressor::Zstd, Compressor::Snappy],
        wire_metrics: Some(mongoplex::metrics::Metrics::new(registry, 4).upstream_wire),
        ..ConnectOptions::default()
    }
}

/// On the wire: the hello and the login's commands go out plain even once zstd is
/// negotiated, other commands go out compressed, and compressed replies are inflated.
#[tokio::test]
async fn handshake_and_auth_go_plain_everything_else_compressed() {
    let (address, seen) = lying_upstream().await;
    let registry = prometheus::Registry::new();
    let mut conn = UpstreamConn::establish(&address, 1, 0, &options(&registry))
        .await
        .expect("establish");
    assert_eq!(conn.hello.compressor, Some(Compressor::Zstd));
    let sasl =
        rawdoc! { "saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": "n,,n=u,r=abc", "$db": "admin" };
    let r = conn.command(&sasl).await.expect("saslStart reply");
    assert_eq!(r.get_i32("code").ok(), Some(18));
    let cont = rawdoc! { "saslContinue": 1, "conversationId": 1, "payload": "c=biws", "$db": "admin" };
    conn.command(&cont).await.expect("saslContinue reply");
    let r = conn
        .command(&rawdoc! { "ping": 1, "$db": "admin" })
        .await
        .expect("ping");
    assert_eq!(
        r.get_i32("ok").ok(),
        Some(1),
        "compressed ping reply not inflated"
    );
    conn.command(&rawdoc! { "find": "fine", "$db": "d" })
        .await
        .expect("find");
    let seen = seen.lock().unwrap().clone();
    let want: Vec<(String, Option<u8>)> = vec![
        ("hello".into(), None),
        ("saslStart".into(), None),
        ("saslContinue".into(), None),
        ("ping".into(), Some(3)),
        ("find".into(), Some(3)),
    ];
    assert_eq!(seen, want);
}

/// Each lie in a compressed reply is an upstream protocol error on a broken
/// connection, counted by kind: never a panic, never an allocation of what it announces.
#[tokio::test]
async fn a_lying_compressed_reply_is_an_upstream_error() {
    let (address, _) = lying_upstream().await;
    let registry = prometheus::Registry::new();
    let opts = options(&registry);
    let table: &[(&str, &str)] = &[
        ("garbage", "decompress"),
        ("short", "decompress"),
        ("long", "decompress"),
        ("huge", "length_too_large"),
        ("over_max", "length_too_large"),
        ("unknown_compressor", "unknown_compressor"),
        ("snappy_garbage", "decompress"),
    ];
    for (fault, kind) in table {
        let mut conn = UpstreamConn::establish(&address, 1, 0, &opts)
            .await
            .expect("establish");
        let err = conn
            .command(&rawdoc! { "find": *fault, "$db": "d" })
            .await
            .expect_err(fault);
        match &err {
            UpstreamError::Protocol { source, .. } => assert_eq!(source.kind(), *kind, "{fault}: {err}"),
            other => panic!("{fault}: {other}"),
        }
        if *fault == "huge" {
            assert!(matches!(
                err,
                UpstreamError::Protocol { source: WireError::LengthTooLarge { max, .. }, .. } if max < 2_000_000
            ));
        }
        assert!(
            !conn.reusable(),
            "{fault}: the connection would go back to the pool"
        );
        let label = format!("kind=\"{kind}\"");
        assert!(
            metric(&registry, "mongoplex_upstream_protocol_errors_total", &label) >= 1.0,
            "{fault}"
        );
    }
}

fn metric(registry: &prometheus::Registry, name: &str, label: &str) -> f64 {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("encode");
    String::from_utf8(buf)
        .expect("utf8")
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Through the proxy, with a real driver: the find that met the lie fails with the
/// proxy's error naming it, and the finds after it work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gets_an_error_for_a_lying_reply_and_the_proxy_carries_on() {
    let (address, _) = lying_upstream().await;
    let upstream = format!("mongodb://{address}/?compressors=zstd");
    let proxy = proxy::TestProxy::builder(&upstream).start().await;
    let client = mongodb::Client::with_uri_str(proxy.uri_with("retryReads=false"))
        .await
        .expect("client");
    let db = client.database("d");
    let err = db
        .collection::<Document>("garbage")
        .find_one(doc! {})
        .await
        .expect_err("a find answered with garbage");
    let text = err.to_string();
    assert!(text.contains("decompression failed"), "{text}");
    assert!(
        matches!(*err.kind, mongodb::error::ErrorKind::Command(ref c) if c.code == 6),
        "not HostUnreachable: {err:?}"
    );
    for _ in 0..3 {
        let found = db.collection::<Document>("fine").find_one(doc! {}).await;
        assert!(found.is_ok(), "after the lie: {found:?}");
    }
    let errors = proxy.metric_sum(
        "mongoplex_upstream_protocol_errors_total",
        &["kind=\"decompress\""],
    );
    assert!(errors >= 1.0, "not counted");
    proxy.shutdown().await;
}
