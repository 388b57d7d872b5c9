//! Refusing a client at `max_client_connections` with words, not a bare close: the
//! newcomer's first message (its hello, OP_MSG or legacy OP_QUERY) is read and answered
//! with an error document that names the limit, then the connection is closed. A driver
//! reports that message to the app instead of a connection reset.
//!
//! Refusals are themselves bounded, so that a flood at the limit costs little: at most
//! [`MAX_REFUSING`] at once (past that, a bare close), each reading at most
//! [`MAX_REFUSAL_READ`] bytes within [`REFUSAL_DEADLINE`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::ClientStream;
use crate::context::Context;
use crate::errors::{ErrorCode, ProxyError};
use crate::fdlimit::Capacity;
use crate::wire::{build_msg, build_reply, Frame, FrameReader, OpCode};

/// Refusals served at once; beyond this a refused client is closed without a reply.
pub const MAX_REFUSING: usize = 64;
/// A hello is small: a first message larger than this is not read.
const MAX_REFUSAL_READ: usize = 16 * 1024;
/// How long a refused client has to send its first message.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(2);

/// Counts refusals in progress; the slot is released when dropped.
pub struct RefusalSlot(Arc<Context>);

impl RefusalSlot {
    /// A slot, if fewer than [`MAX_REFUSING`] refusals are in progress.
    pub fn take(ctx: &Arc<Context>, refusing: &AtomicUsize) -> Option<Self> {
        if refusing.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
            refusing.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Self(ctx.clone()))
    }
}

impl Drop for RefusalSlot {
    fn drop(&mut self) {
        self.0.refusing.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The error a refused client gets.
pub fn limit_error(capacity: Capacity) -> ProxyError {
    let why = match capacity {
        Capacity::Configured(limit) => {
            format!("max_client_connections ({limit}) reached; try again later or raise the limit")
        }
        Capacity::Descriptors { clients, soft } => format!(
            "{clients} clients open, the most the file-descriptor limit ({soft}) allows beside \
             the proxy's own upstream and admin connections; raise the limit (ulimit -n) to \
             admit more"
        ),
    };
    ProxyError::new(ErrorCode::HostUnreachable, format!("connection refused: {why}"))
}

/// The reply to a refused client's first message, in the protocol it spoke.
pub fn refusal_reply(first: &Frame, capacity: Capacity) -> Option<Frame> {
    let doc = limit_error(capacity).to_document();
    match first.op_code() {
        Some(OpCode::Msg) => Some(build_msg(0, first.request_id(), 0, doc.as_bytes())),
        Some(OpCode::Query) => Some(build_reply(0, first.request_id(), doc.as_bytes())),
        _ => None,
    }
}

/// Reads the refused client's first message, answers it with the limit error, and
/// closes.
pub async fn refuse(_slot: RefusalSlot, mut io: ClientStream, capacity: Capacity) {
    let mut reader = FrameReader::new();
    let first = tokio::time::timeout(REFUSAL_DEADLINE, reader.next(&mut io, MAX_REFUSAL_READ)).await;
    if let Ok(Ok(Some(frame))) = first {
        if let Some(reply) = refusal_reply(&frame, capacity) {
            let _ = tokio::time::timeout(REFUSAL_DEADLINE, io.write_all(reply.as_bytes())).await;
        }
    }
    let _ = io.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::OpMsg;
    use bson::rawdoc;

    #[test]
    fn the_reply_names_the_limit_in_the_clients_protocol() {
        let hello = build_msg(41, 0, 0, rawdoc! { "hello": 1, "$db": "admin" }.as_bytes());
        let reply = refusal_reply(&hello, Capacity::Configured(10_000)).unwrap();
        assert_eq!(reply.response_to(), 41);
        let msg = OpMsg::parse(&reply).unwrap();
        assert_eq!(msg.body.get_i32("code").unwrap(), 6);
        assert_eq!(msg.body.get_str("codeName").unwrap(), "HostUnreachable");
        let errmsg = msg.body.get_str("errmsg").unwrap();
        assert!(errmsg.contains("max_client_connections (10000)"), "{errmsg}");
        assert!(msg.body.get("errorLabels").unwrap().is_none());

        let mut q = Vec::new();
        q.extend_from_slice(&0i32.to_le_bytes());
        q.extend_from_slice(&42i32.to_le_bytes());
        q.extend_from_slice(&0i32.to_le_bytes());
        q.extend_from_slice(&2004i32.to_le_bytes());
        q.extend_from_slice(&[0; 4]);
        q.extend_from_slice(b"admin.$cmd\0");
        q.extend_from_slice(&[0; 4]);
        q.extend_from_slice(&(-1i32).to_le_bytes());
        q.extend_from_slice(rawdoc! { "isMaster": 1 }.as_bytes());
        let len = i32::try_from(q.len()).unwrap();
        q[0..4].copy_from_slice(&len.to_le_bytes());
        let query = Frame::from_bytes(bytes::BytesMut::from(&q[..])).unwrap();
        let reply = refusal_reply(
            &query,
            Capacity::Descriptors {
                clients: 5,
                soft: 1024,
            },
        )
        .unwrap();
        assert_eq!(reply.op_code(), Some(OpCode::Reply));
        assert_eq!(reply.response_to(), 42);
        let doc = bson::RawDocument::from_bytes(&reply.payload()[20..]).unwrap();
        let errmsg = doc.get_str("errmsg").unwrap();
        assert!(errmsg.contains("file-descriptor limit (1024)"), "{errmsg}");

        let mut other = q.clone();
        other[12..16].copy_from_slice(&2001i32.to_le_bytes());
        let other = Frame::from_bytes(bytes::BytesMut::from(&other[..])).unwrap();
        assert!(
            refusal_reply(&other, Capacity::Configured(5)).is_none(),
            "no reply to a message that is not a request"
        );
    }
}
