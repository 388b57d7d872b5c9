//! Hand-encoded OP_MSG for the connection-scale runs, where thousands of driver
//! `Client`s (each with its own monitor tasks and sockets) would measure the harness
//! rather than the proxy. Only what those runs send: a hello and a find, each one
//! section of kind 0.

use std::io;

use mongodb::bson::{doc, Bson, Document};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OP_MSG: i32 = 2013;
/// Replies larger than this are a protocol error here (the scale runs get tiny replies).
const MAX_REPLY: usize = 16 * 1024 * 1024;

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// header (length, requestID, responseTo, opCode) + flagBits + section kind 0 + `body`.
pub fn encode(request_id: i32, body: &Document) -> io::Result<Vec<u8>> {
    let doc = body.to_vec().map_err(|e| invalid(e.to_string()))?;
    let total = i32::try_from(16 + 4 + 1 + doc.len()).map_err(|_| invalid("message too large"))?;
    let mut msg = Vec::with_capacity(21 + doc.len());
    for word in [total, request_id, 0, OP_MSG, 0] {
        msg.extend_from_slice(&word.to_le_bytes());
    }
    msg.push(0);
    msg.extend_from_slice(&doc);
    Ok(msg)
}

/// The minimal handshake a driver opens with.
pub fn hello() -> Document {
    doc! {
        "hello": 1,
        "helloOk": true,
        "client": {
            "driver": { "name": "mongoplex-bench", "version": "0" },
            "os": { "type": "linux" },
            "application": { "name": "mongoplex-bench" },
        },
        "$db": "admin",
    }
}

pub fn ping() -> Document {
    doc! { "ping": 1, "$db": "admin" }
}

/// `find` by `_id`, one document, no cursor left open.
pub fn find_by_id(db: &str, coll: &str, id: i64) -> Document {
    doc! {
        "find": coll,
        "filter": { "_id": id },
        "limit": 1,
        "singleBatch": true,
        "$db": db,
    }
}

/// Sends one request and reads its reply body, checking header fields and the length
/// against [`MAX_REPLY`] before allocating.
pub async fn round_trip<S>(stream: &mut S, request_id: i32, body: &Document) -> io::Result<Document>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(&encode(request_id, body)?).await?;
    let mut header = [0u8; 16];
    stream.read_exact(&mut header).await?;
    let word = |i: usize| i32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let (len, response_to, op_code) = (word(0), word(8), word(12));
    let len = usize::try_from(len).map_err(|_| invalid(format!("negative reply length {len}")))?;
    if !(21..=MAX_REPLY).contains(&len) || response_to != request_id || op_code != OP_MSG {
        return Err(invalid(format!(
            "unexpected reply header: length {len}, responseTo {response_to}, opCode {op_code}"
        )));
    }
    let mut rest = vec![0u8; len - 16];
    stream.read_exact(&mut rest).await?;
    if rest[4] != 0 {
        return Err(invalid(format!("reply section kind {} (expected 0)", rest[4])));
    }
    Document::from_reader(&rest[5..]).map_err(|e| invalid(format!("reply document: {e}")))
}

/// `ok: 1` in any numeric type.
pub fn is_ok(reply: &Document) -> bool {
    match reply.get("ok") {
        Some(Bson::Double(v)) => *v == 1.0,
        Some(Bson::Int32(v)) => *v == 1,
        Some(Bson::Int64(v)) => *v == 1,
        _ => false,
    }
}

/// How many documents a find reply's first batch holds.
pub fn first_batch_len(reply: &Document) -> Option<usize> {
    Some(
        reply
            .get_document("cursor")
            .ok()?
            .get_array("firstBatch")
            .ok()?
            .len(),
    )
}

/// Checks a reply is `ok: 1`, quoting it otherwise.
pub fn expect_ok(what: &str, reply: &Document) -> io::Result<()> {
    if is_ok(reply) {
        Ok(())
    } else {
        Err(invalid(format!("{what} failed: {reply}")))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_header_and_section() {
        use super::{encode, ping, Document, OP_MSG};
        let msg = encode(7, &ping()).expect("encode");
        let len = i32::from_le_bytes(msg[0..4].try_into().expect("4 bytes"));
        assert_eq!(usize::try_from(len).ok(), Some(msg.len()));
        assert_eq!(
            i32::from_le_bytes(msg[12..16].try_into().expect("4 bytes")),
            OP_MSG
        );
        assert_eq!(msg[20], 0);
        assert_eq!(Document::from_reader(&msg[21..]).expect("doc"), ping());
    }
}
