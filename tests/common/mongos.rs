//! Simulated mongos routers for `mongodb+srv` polling tests: no peer here is a sharded
//! cluster (../shared/PEERS.md). Each router is a loopback listener whose hello says
//! what a mongos says (`msg: "isdbgrid"`, no setName, writable, wire version 21, no
//! topologyVersion, so monitors poll) and which forwards every other OP_MSG to one
//! shared SecantusDB, so all routers see the same data, as a real cluster's would.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bson::doc;
use mongoplex::wire::{build_msg, refresh_checksum, FrameReader, OpCode, OpMsg, DEFAULT_MAX_MESSAGE_SIZE};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::replset::upstream::Upstream;

pub struct Mongos {
    pub addr: SocketAddr,
    /// Commands forwarded (hello not counted).
    forwarded: Arc<AtomicU64>,
    cancel: CancellationToken,
}

impl Mongos {
    /// A router on 127.0.0.1 forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let forwarded = Arc::new(AtomicU64::new(0));
        let cancel = CancellationToken::new();
        let (count, stop) = (forwarded.clone(), cancel.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stop.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((stream, _)) = accepted else { return };
                let (count, stop) = (count.clone(), stop.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = serve(stream, upstream, count) => {}
                    }
                });
            }
        });
        Self {
            addr,
            forwarded,
            cancel,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }
}

impl Drop for Mongos {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn hello_reply() -> Vec<u8> {
    let d = doc! {
        "isWritablePrimary": true,
        "ismaster": true,
        "msg": "isdbgrid",
        "maxBsonObjectSize": 16 * 1024 * 1024,
        "maxMessageSizeBytes": 48_000_000,
        "maxWriteBatchSize": 100_000,
        "localTime": bson::DateTime::now(),
        "logicalSessionTimeoutMinutes": 30,
        "connectionId": 1,
        "minWireVersion": 0,
        "maxWireVersion": 21,
        "readOnly": false,
        "ok": 1.0,
    };
    d.to_vec().expect("a static document serializes")
}

async fn serve(mut stream: TcpStream, upstream: SocketAddr, count: Arc<AtomicU64>) {
    let _ = stream.set_nodelay(true);
    let mut reader = FrameReader::new();
    let mut link: Option<Upstream> = None;
    loop {
        let Ok(Some(frame)) = reader.next(&mut stream, DEFAULT_MAX_MESSAGE_SIZE).await else {
            return;
        };
        if frame.op_code() != Some(OpCode::Msg) {
            return;
        }
        let (is_hello, flags) = match OpMsg::parse(&frame) {
            Ok(msg) => (
                mongoplex::command::Command::parse(msg.body).known.is_hello(),
                msg.flags,
            ),
            Err(_) => return,
        };
        let request_id = frame.request_id();
        let reply = if is_hello {
            build_msg(request_id.wrapping_add(1 << 20), request_id, 0, &hello_reply())
        } else {
            count.fetch_add(1, Ordering::Relaxed);
            if link.is_none() {
                match Upstream::connect(upstream).await {
                    Ok(u) => link = Some(u),
                    Err(_) => return,
                }
            }
            let Some(up) = link.as_mut() else { return };
            match up.round_trip(frame, flags).await {
                Ok(Some(mut reply)) => {
                    reply.set_response_to(request_id);
                    refresh_checksum(&mut reply);
                    reply
                }
                Ok(None) => continue,
                Err(_) => return,
            }
        };
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}
