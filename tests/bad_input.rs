//! Malformed client input through raw sockets. Each case must end in a clean close or
//! an error reply, with a protocol-error metric, while a well-behaved driver client in
//! parallel sees no error at all.

mod common;

use std::time::Duration;

use bson::{rawdoc, RawDocument};
use common::peers::Secantus;
use common::proxy::TestProxy;
use mongoplex::wire::{build_msg, decode_frame, Frame, OpCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLOSE_WAIT: Duration = Duration::from_secs(5);

fn header(len: i32, op: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(&1i32.to_le_bytes());
    b.extend_from_slice(&0i32.to_le_bytes());
    b.extend_from_slice(&op.to_le_bytes());
    b
}

fn fix_len(mut b: Vec<u8>) -> Vec<u8> {
    let len = i32::try_from(b.len()).unwrap();
    b[0..4].copy_from_slice(&len.to_le_bytes());
    b
}

fn ping_msg() -> Vec<u8> {
    build_msg(7, 0, 0, rawdoc! { "ping": 1, "$db": "admin" }.as_bytes())
        .as_bytes()
        .to_vec()
}

/// Reads one reply frame, or None if the proxy closed the connection.
async fn read_reply(s: &mut TcpStream) -> Option<Frame> {
    let mut buf = bytes::BytesMut::new();
    loop {
        if let Some(f) = decode_frame(&mut buf, 64 << 20).expect("proxy sends valid frames") {
            return Some(f);
        }
        let n = tokio::time::timeout(CLOSE_WAIT, s.read_buf(&mut buf))
            .await
            .expect("proxy answers or closes")
            .ok()?;
        if n == 0 {
            return None;
        }
    }
}

async fn assert_closed(s: &mut TcpStream, what: &str) {
    let mut b = [0u8; 64];
    match tokio::time::timeout(CLOSE_WAIT, s.read(&mut b)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("{what}: expected close, got {n} bytes"),
        Err(_) => panic!("{what}: connection still open after {CLOSE_WAIT:?}"),
    }
}

fn body(f: &Frame) -> &RawDocument {
    match f.op_code() {
        Some(OpCode::Msg) => RawDocument::from_bytes(&f.payload()[5..]).unwrap(),
        Some(OpCode::Reply) => RawDocument::from_bytes(&f.payload()[20..]).unwrap(),
        other => panic!("unexpected opcode {other:?}"),
    }
}

async fn connect(p: &TestProxy) -> TcpStream {
    TcpStream::connect(p.addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_contained() {
    let upstream = Secantus::start();
    let proxy = TestProxy::builder(&upstream.seed_uri())
        .settings(|s| s.client_read_timeout_ms = Some(1000))
        .start()
        .await;

    // A well-behaved client pinging throughout.
    let client = mongodb::Client::with_uri_str(proxy.uri()).await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let good = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let db = client.database("admin");
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match db.run_command(bson::doc! { "ping": 1 }).await {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        })
    };

    // Truncated header: 10 bytes, then silence. The read deadline closes it.
    let mut s = connect(&proxy).await;
    s.write_all(&header(100, 2013)[..10]).await.unwrap();
    assert_closed(&mut s, "truncated header").await;

    // Length below the header size.
    let mut s = connect(&proxy).await;
    s.write_all(&header(5, 2013)).await.unwrap();
    assert_closed(&mut s, "length 5").await;

    // Length above maxMessageSizeBytes: closed without reading (or allocating) the body.
    let mut s = connect(&proxy).await;
    s.write_all(&header(100_000_000, 2013)).await.unwrap();
    assert_closed(&mut s, "length 100 MB").await;

    // Unknown opcode.
    let mut s = connect(&proxy).await;
    s.write_all(&fix_len([header(0, 9999), vec![0; 8]].concat()))
        .await
        .unwrap();
    assert_closed(&mut s, "unknown opcode").await;

    // Unknown section kind.
    let mut bad = ping_msg();
    bad[20] = 9;
    let mut s = connect(&proxy).await;
    s.write_all(&bad).await.unwrap();
    assert_closed(&mut s, "unknown section kind").await;

    // Bad checksum: an error reply, and the connection stays usable.
    let mut m = ping_msg();
    m[16] |= 1; // checksumPresent
    m.extend_from_slice(&0xdead_beef_u32.to_le_bytes());
    let mut s = connect(&proxy).await;
    s.write_all(&fix_len(m)).await.unwrap();
    let reply = read_reply(&mut s).await.expect("error reply for a bad checksum");
    let d = body(&reply);
    assert_eq!(d.get_f64("ok").unwrap(), 0.0);
    assert_eq!(d.get_str("codeName").unwrap(), "ProtocolError");
    assert!(d.get_str("errmsg").unwrap().contains("checksum"), "{d:?}");
    s.write_all(&ping_msg()).await.unwrap();
    let reply = read_reply(&mut s).await.expect("ping after a bad checksum");
    assert_eq!(body(&reply).get_f64("ok").unwrap(), 1.0);
    assert_eq!(reply.response_to(), 7);

    // OP_QUERY that is not a handshake.
    let q = rawdoc! { "find": "c" };
    let mut m = header(0, 2004);
    m.extend_from_slice(&0i32.to_le_bytes());
    m.extend_from_slice(b"app.c\0");
    m.extend_from_slice(&0i32.to_le_bytes());
    m.extend_from_slice(&1i32.to_le_bytes());
    m.extend_from_slice(q.as_bytes());
    let mut s = connect(&proxy).await;
    s.write_all(&fix_len(m)).await.unwrap();
    let reply = read_reply(&mut s).await.expect("OP_REPLY error");
    assert_eq!(reply.op_code(), Some(OpCode::Reply));
    let d = body(&reply);
    assert_eq!(d.get_i32("code").unwrap(), 352);
    assert_eq!(d.get_str("codeName").unwrap(), "UnsupportedOpQueryCommand");
    assert!(d.get_str("$err").is_ok());

    // A client that sends OP_REPLY.
    let mut s = connect(&proxy).await;
    s.write_all(&fix_len(
        [header(0, 1), vec![0; 20], rawdoc! {}.as_bytes().to_vec()].concat(),
    ))
    .await
    .unwrap();
    assert_closed(&mut s, "OP_REPLY from a client").await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = good.await.unwrap();
    assert!(
        failed.is_empty(),
        "the well-behaved client saw errors: {failed:?}"
    );
    assert!(ok > 0, "the well-behaved client ran nothing");

    for kind in [
        "stalled",
        "length_too_small",
        "length_too_large",
        "unknown_opcode",
        "unknown_section_kind",
        "bad_checksum",
        "op_query",
        "malformed",
    ] {
        let n = proxy.metric_sum(
            "mongoplex_client_protocol_errors_total",
            &[&format!("kind=\"{kind}\"")],
        );
        assert!(
            n >= 1.0,
            "no protocol-error metric for {kind}:\n{}",
            proxy.metrics_text()
        );
    }
    proxy.shutdown().await;
}
