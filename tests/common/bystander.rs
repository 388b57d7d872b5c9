//! What robustness tests share: a well-behaved driver client that pings beside a probe
//! and must see no error, and reading one reply frame off a raw socket.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mongoplex::wire::{decode_frame, Frame};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A running well-behaved client.
pub struct Bystander {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u32, Vec<String>)>,
}

impl Bystander {
    /// A Rust-driver client on `uri` that pings every `every` until stopped.
    pub fn start(uri: String, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let client = mongodb::Client::with_uri_str(uri).await.unwrap();
            let db = client.database("admin");
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !flag.load(Ordering::Relaxed) {
                match db.run_command(bson::doc! { "ping": 1 }).await {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
                tokio::time::sleep(every).await;
            }
            (ok, failed)
        });
        Self { stop, task }
    }

    /// Stops it and asserts that it saw no error and made at least a few pings.
    pub async fn assert_unaffected(self) {
        self.stop.store(true, Ordering::Relaxed);
        let (ok, failed) = self.task.await.unwrap();
        assert!(
            failed.is_empty(),
            "the well-behaved client saw errors: {failed:?}"
        );
        assert!(ok > 10, "the well-behaved client made only {ok} pings");
    }
}

/// A new driver client's error when it tries a ping through `uri` (which should include
/// a short serverSelectionTimeoutMS): for a client the proxy refuses.
pub async fn refused_ping(uri: &str) -> String {
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    client
        .database("admin")
        .run_command(bson::doc! { "ping": 1 })
        .await
        .expect_err("a refused client cannot run a command")
        .to_string()
}

/// Reads one frame within `wait`; panics if the peer closes first.
pub async fn read_frame(s: &mut TcpStream, wait: Duration) -> Frame {
    let mut buf = bytes::BytesMut::new();
    loop {
        if let Some(f) = decode_frame(&mut buf, 64 << 20).expect("a valid frame") {
            return f;
        }
        let n = tokio::time::timeout(wait, s.read_buf(&mut buf))
            .await
            .expect("a reply in time")
            .unwrap();
        assert!(n > 0, "closed without a reply");
    }
}

/// A legacy OP_QUERY `isMaster` on admin.$cmd with the given requestID.
pub fn legacy_is_master(request_id: i32) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&0i32.to_le_bytes());
    q.extend_from_slice(&request_id.to_le_bytes());
    q.extend_from_slice(&0i32.to_le_bytes());
    q.extend_from_slice(&2004i32.to_le_bytes());
    q.extend_from_slice(&[0; 4]);
    q.extend_from_slice(b"admin.$cmd\0");
    q.extend_from_slice(&[0; 4]);
    q.extend_from_slice(&(-1i32).to_le_bytes());
    q.extend_from_slice(bson::rawdoc! { "isMaster": 1 }.as_bytes());
    let len = i32::try_from(q.len()).unwrap();
    q[0..4].copy_from_slice(&len.to_le_bytes());
    q
}
