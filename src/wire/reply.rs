//! OP_REPLY, built only to answer legacy OP_QUERY handshakes.

use bytes::{BufMut, BytesMut};

use super::{Frame, Header, OpCode, HEADER_LEN};

/// Builds an OP_REPLY carrying one document.
pub fn build_reply(request_id: i32, response_to: i32, doc: &[u8]) -> Frame {
    let len = HEADER_LEN + 20 + doc.len();
    let mut buf = BytesMut::with_capacity(len);
    Header {
        length: i32::try_from(len).unwrap_or(i32::MAX),
        request_id,
        response_to,
        op_code: OpCode::Reply.as_i32(),
    }
    .write(&mut buf);
    buf.put_i32_le(8); // responseFlags: AwaitCapable
    buf.put_i64_le(0); // cursorID
    buf.put_i32_le(0); // startingFrom
    buf.put_i32_le(1); // numberReturned
    buf.extend_from_slice(doc);
    Frame::from_bytes(buf).expect("build_reply computes a consistent length")
}
