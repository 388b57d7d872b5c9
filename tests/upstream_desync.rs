//! An upstream whose replies fall out of step with its requests, or are not replies at
//! all. Every reply's responseTo must match the requestID sent on that connection; one
//! that does not breaks the connection instead of reaching whichever client asked next.
//! Garbage, a length of 2 GB and a close mid-reply each end in a clear error for the
//! client that asked, and touch nothing else.
//!
//! The upstream is a tiny fake standalone written here: no real server sends these.

#[path = "common/proxy.rs"]
mod proxy;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bson::{doc, oid::ObjectId, Document};
use mongoplex::address::ServerAddress;
use mongoplex::upstream::{ConnectOptions, UpstreamConn, UpstreamError};
use mongoplex::wire::{build_msg, Frame, FrameReader, OpMsg};
use proxy::TestProxy;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// How the fake misbehaves.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// Once: the second find on a connection first gets a late copy of the reply to the
    /// first, then its own reply, so the stream is shifted by one.
    LateReply,
    /// Every find's reply carries a responseTo one past the request's id.
    WrongResponseTo,
    /// An unsolicited reply follows every handshake hello.
    UnsolicitedAfterHello,
    /// A find whose filter tag starts with "bad" gets 64 bytes that are not a reply: a
    /// valid header over a body that is no BSON.
    Garbage,
    /// ... gets a header announcing 2,000,000,000 bytes.
    HugeLength,
    /// ... gets the first half of its reply, then the connection closes.
    CloseMidReply,
}

#[derive(Default)]
struct Stats {
    late_replies_sent: AtomicUsize,
    /// The most awaitable hellos answered on one connection (the monitor's stream).
    max_awaitable_on_one_conn: AtomicUsize,
}

struct Fake {
    address: ServerAddress,
    stats: Arc<Stats>,
}

impl Fake {
    async fn start(fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stats = Arc::new(Stats::default());
        let shared = (
            Arc::clone(&stats),
            Arc::new(AtomicBool::new(false)),
            ObjectId::new(),
        );
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (stats, fired, pid) = (Arc::clone(&shared.0), Arc::clone(&shared.1), shared.2);
                tokio::spawn(serve(tcp, fault, stats, fired, pid));
            }
        });
        Self {
            address: ServerAddress {
                host: addr.ip().to_string(),
                port: addr.port(),
            },
            stats,
        }
    }

    fn uri(&self) -> String {
        format!("mongodb://{}/", self.address)
    }
}

fn hello_reply(pid: ObjectId) -> Document {
    doc! {
        "ok": 1,
        "helloOk": true,
        "isWritablePrimary": true,
        "maxWireVersion": 17,
        "minWireVersion": 0,
        "maxBsonObjectSize": 16 * 1024 * 1024,
        "maxMessageSizeBytes": 48_000_000,
        "maxWriteBatchSize": 100_000,
        "logicalSessionTimeoutMinutes": 30,
        "localTime": bson::DateTime::now(),
        "topologyVersion": { "processId": pid, "counter": 0_i64 },
    }
}

fn msg(response_to: i32, body: &Document) -> Frame {
    build_msg(0, response_to, 0, &body.to_vec().expect("encode"))
}

async fn serve(mut tcp: TcpStream, fault: Fault, stats: Arc<Stats>, fired: Arc<AtomicBool>, pid: ObjectId) {
    let mut reader = FrameReader::new();
    let mut awaitable = 0;
    let mut finds = 0;
    let mut last_find_reply: Option<Frame> = None;
    while let Ok(Some(req)) = reader.next(&mut tcp, 64 << 20).await {
        let body = Document::try_from(OpMsg::parse(&req).expect("OP_MSG").body).expect("body");
        let id = req.request_id();
        let name = body.keys().next().cloned().unwrap_or_default();
        let mut out = Vec::new();
        match name.as_str() {
            "hello" | "isMaster" | "ismaster" => {
                if let Ok(wait) = body.get_i64("maxAwaitTimeMS") {
                    // Awaitable hello: nothing changes here, so answer when the wait is up.
                    tokio::time::sleep(Duration::from_millis(wait.unsigned_abs().min(500))).await;
                    awaitable += 1;
                    stats
                        .max_awaitable_on_one_conn
                        .fetch_max(awaitable, Ordering::Relaxed);
                }
                out.push(msg(id, &hello_reply(pid)));
                if fault == Fault::UnsolicitedAfterHello {
                    out.push(msg(0, &doc! { "ok": 1, "unsolicited": true }));
                }
            }
            "find" => {
                finds += 1;
                let tag = body
                    .get_document("filter")
                    .and_then(|f| f.get_str("tag"))
                    .unwrap_or("");
                let reply = doc! {
                    "cursor": { "firstBatch": [{ "_id": tag, "tag": tag }], "id": 0_i64, "ns": "t.c" },
                    "ok": 1,
                };
                let responds_to = if fault == Fault::WrongResponseTo {
                    id.wrapping_add(1)
                } else {
                    id
                };
                let reply = msg(responds_to, &reply);
                if tag.starts_with("bad") {
                    let bytes = reply.as_bytes();
                    let fault_bytes = match fault {
                        Fault::Garbage => {
                            let mut g = bytes[..16].to_vec();
                            g[0..4].copy_from_slice(&64i32.to_le_bytes());
                            g.extend((0..48).map(|i: u8| i.wrapping_mul(37) | 0x80));
                            Some(g)
                        }
                        Fault::HugeLength => {
                            let mut g = bytes[..16].to_vec();
                            g[0..4].copy_from_slice(&2_000_000_000i32.to_le_bytes());
                            Some(g)
                        }
                        Fault::CloseMidReply => Some(bytes[..bytes.len() / 2].to_vec()),
                        _ => None,
                    };
                    if let Some(g) = fault_bytes {
                        let _ = tcp.write_all(&g).await;
                        if fault == Fault::CloseMidReply {
                            return;
                        }
                        continue;
                    }
                }
                if fault == Fault::LateReply && finds == 2 && !fired.swap(true, Ordering::SeqCst) {
                    if let Some(late) = last_find_reply.take() {
                        stats.late_replies_sent.fetch_add(1, Ordering::SeqCst);
                        out.push(late);
                    }
                }
                last_find_reply = Some(reply.clone());
                out.push(reply);
            }
            _ => out.push(msg(id, &doc! { "ok": 1 })),
        }
        for frame in out {
            if tcp.write_all(frame.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

async fn connect(fake: &Fake) -> UpstreamConn {
    UpstreamConn::establish(&fake.address, 1, 0, &ConnectOptions::default())
        .await
        .expect("establish")
}

fn find(tag: &str) -> Frame {
    let body = doc! { "find": "c", "filter": { "tag": tag }, "$db": "t" };
    build_msg(0, 0, 0, &body.to_vec().expect("encode"))
}

#[tokio::test]
async fn a_reply_with_the_wrong_response_to_breaks_the_connection() {
    let fake = Fake::start(Fault::WrongResponseTo).await;
    let mut conn = connect(&fake).await;
    let sent = conn.send(&mut find("a"), true).await.expect("send");
    let err = conn
        .recv()
        .await
        .expect_err("a reply to another request must be refused");
    match &err {
        UpstreamError::ResponseMismatch { expected, got, .. } => {
            assert_eq!((*expected, *got), (Some(sent), sent + 1));
        }
        other => panic!("want ResponseMismatch, got {other:?}"),
    }
    assert_eq!(err.kind(), "response_mismatch");
    assert!(!err.is_timeout());
    assert!(err.to_string().contains("out of step"), "{err}");
    assert!(conn.broken && !conn.reusable() && !conn.looks_alive());
}

#[tokio::test]
async fn an_unsolicited_reply_makes_a_parked_connection_unusable() {
    let fake = Fake::start(Fault::UnsolicitedAfterHello).await;
    let mut conn = connect(&fake).await;
    // The unsolicited frame follows the handshake reply; give the reactor time to see it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !conn.looks_alive(),
        "a parked connection with bytes to read must not be reused"
    );
    let err = conn.recv().await.expect_err("nothing was asked");
    assert!(
        matches!(err, UpstreamError::ResponseMismatch { expected: None, .. }),
        "{err:?}"
    );
    assert!(conn.broken && !conn.reusable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_reply_never_reaches_another_client() {
    let fake = Fake::start(Fault::LateReply).await;
    // One pooled connection: every find shares it, so the second find is the one that
    // meets the late reply to the first.
    let proxy = TestProxy::builder(&fake.uri()).max_pool_size(1).start().await;
    let client =
        mongodb::Client::with_uri_str(proxy.uri_with("retryReads=false&serverSelectionTimeoutMS=20000"))
            .await
            .expect("client");
    let coll = client.database("t").collection::<mongodb::bson::Document>("c");

    let mut tasks = Vec::new();
    for t in 0..6 {
        let coll = coll.clone();
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            for i in 0..5 {
                let tag = format!("task{t}-{i}");
                let got = coll
                    .find_one(mongodb::bson::doc! { "tag": &tag })
                    .await
                    .map(|d| d.and_then(|d| d.get_str("tag").ok().map(str::to_owned)));
                results.push((tag, got));
            }
            results
        }));
    }
    let mut wrong = Vec::new();
    let mut errors = Vec::new();
    let mut own = 0;
    for task in tasks {
        for (tag, got) in task.await.expect("task") {
            match got {
                Ok(Some(t)) if t == tag => own += 1,
                Ok(other) => wrong.push(format!("{tag} got {other:?}")),
                Err(e) => errors.push(format!("{tag}: {e}")),
            }
        }
    }
    assert_eq!(
        fake.stats.late_replies_sent.load(Ordering::SeqCst),
        1,
        "the fault never fired"
    );
    assert!(wrong.is_empty(), "replies reached the wrong client: {wrong:?}");
    // The affected find either failed with the mismatch or was retried by the proxy on a
    // new connection. The mismatch counts as a network error, so SDAM clears the pool and
    // finds queued meanwhile may fail with that; every error is one of those two, never
    // another client's document.
    assert!(
        errors
            .iter()
            .all(|e| e.contains("out of step") || e.contains("network error on an established connection")),
        "unexpected errors: {errors:?}"
    );
    assert_eq!(own + errors.len(), 30);
    // The mismatch was handled as a network error: SDAM cleared the member's pool.
    let pool = proxy.proxy().ctx.topology.pool(&fake.address).expect("pool");
    assert!(
        pool.generation() >= 1,
        "the pool was never cleared after the mismatch"
    );
    // The monitor's awaitable hellos (a new request each, on one connection) still stream.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fake.stats.max_awaitable_on_one_conn.load(Ordering::Relaxed) < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the monitor's hello stream stalled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(client);
    proxy.shutdown().await;
}

/// Garbage, a 2 GB length and a close mid-reply from the upstream: the client that asked
/// gets an error naming the broken connection; another client's finds on the same proxy
/// (and the same member) succeed before and after, and the connection is counted closed
/// for an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_huge_lengths_and_cut_replies_fail_only_the_request_that_met_them() {
    for fault in [Fault::Garbage, Fault::HugeLength, Fault::CloseMidReply] {
        let what = match fault {
            Fault::Garbage => "garbage",
            Fault::HugeLength => "a 2 GB length",
            _ => "a close mid-reply",
        };
        let fake = Fake::start(fault).await;
        let proxy = TestProxy::builder(&fake.uri()).max_pool_size(2).start().await;
        let uri = proxy.uri_with("retryReads=false&serverSelectionTimeoutMS=20000");
        let victim = mongodb::Client::with_uri_str(&uri).await.expect("client");
        let bystander = mongodb::Client::with_uri_str(&uri).await.expect("client");
        let coll = |c: &mongodb::Client| c.database("t").collection::<mongodb::bson::Document>("c");
        let ok_find = |tag: &'static str| {
            let coll = coll(&bystander);
            async move { coll.find_one(mongodb::bson::doc! { "tag": tag }).await }
        };
        ok_find("before")
            .await
            .unwrap_or_else(|e| panic!("{what}: a find before failed: {e}"));
        let err = coll(&victim)
            .find_one(mongodb::bson::doc! { "tag": "bad" })
            .await
            .expect_err("the find that met the fault fails");
        let text = err.to_string();
        assert!(
            text.contains("mongoplex"),
            "{what}: not the proxy's error: {text}"
        );
        for i in 0..5 {
            let got = ok_find("after")
                .await
                .unwrap_or_else(|e| panic!("{what}: find {i} after failed: {e}"));
            assert_eq!(
                got.and_then(|d| d.get_str("tag").ok().map(str::to_owned))
                    .as_deref(),
                Some("after")
            );
        }
        let closed = proxy.metric_sum("mongoplex_pool_connections_closed_total", &["reason=\"error\""]);
        assert!(closed >= 1.0, "{what}: the broken connection is not counted");
        eprintln!("{what}: the client got: {text}");
        drop((victim, bystander));
        proxy.shutdown().await;
    }
}
