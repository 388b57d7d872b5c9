//! The message views: `OpMsg::parse` (sections, document sequences, checksum) and
//! `OpQuery::parse`, then the command peek on their bodies, and the in-place rewrites
//! the session makes (requestID, flag bits, maxTimeMS), which must leave a message that
//! still parses.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mongoplex::command::{as_i64, Command, ReplyInfo};
use mongoplex::handshake::{negotiate_compression, ClientMetadata};
use mongoplex::wire::{
    refresh_checksum, set_body_number, set_msg_flags, Compressor, Frame, OpCode, OpMsg, OpQuery, HEADER_LEN,
    MSG_EXHAUST_ALLOWED,
};

fn op_msg(frame: &Frame) {
    let Ok(m) = OpMsg::parse(frame) else { return };
    let cmd = Command::parse(m.body);
    let _ = cmd.is_retryable_write();
    let _ = cmd.known.spec();
    let _ = ReplyInfo::parse(m.body);
    for s in &m.sequences {
        assert!(s.iter().count() <= s.count);
    }
    let (flags, n) = (m.flags, m.sequences.len());

    let mut f = frame.clone();
    f.set_request_id(f.request_id().wrapping_add(1));
    refresh_checksum(&mut f);
    OpMsg::parse(&f).expect("a new requestID keeps the message valid");

    let mut f = frame.clone();
    set_msg_flags(&mut f, flags & !MSG_EXHAUST_ALLOWED);
    OpMsg::parse(&f).expect("clearing exhaustAllowed keeps the message valid");

    let mut f = frame.clone();
    if set_body_number(&mut f, "maxTimeMS", 7) {
        assert_eq!(f.len(), frame.len());
        let m = OpMsg::parse(&f).expect("a rewritten maxTimeMS keeps the message valid");
        let got = m.body.get("maxTimeMS").ok().flatten().and_then(as_i64);
        assert_eq!(got, Some(7));
        assert_eq!(m.sequences.len(), n);
    } else {
        assert_eq!(&f, frame, "a refused rewrite leaves the frame untouched");
    }
}

fn op_query(frame: &Frame) {
    let Ok(q) = OpQuery::parse(frame) else { return };
    let _ = q.command_db();
    let cmd = q.command();
    let _ = Command::parse(cmd);
    let _ = ClientMetadata::from_hello(cmd);
    let _ = negotiate_compression(cmd, &[Compressor::Snappy, Compressor::Zstd]);
}

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER_LEN {
        return;
    }
    // The frame layer has checked the length; fix it so mutations reach the sections.
    let mut b = BytesMut::from(data);
    let Ok(len) = i32::try_from(b.len()) else { return };
    b[0..4].copy_from_slice(&len.to_le_bytes());
    let frame = Frame::from_bytes(b).expect("length patched to match");
    match frame.op_code() {
        Some(OpCode::Msg) => op_msg(&frame),
        Some(OpCode::Query) => op_query(&frame),
        _ => {
            let _ = OpMsg::parse(&frame);
            let _ = OpQuery::parse(&frame);
        }
    }
});
