//! OP_COMPRESSED: `decompress` with the proxy's real bound, for every compressor id the
//! input names (noop, snappy, zlib, zstd and unknown ones). What decompresses must
//! compress and decompress back to itself.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mongoplex::wire::{
    compress, decompress, Frame, OpCode, OpMsg, OpQuery, DEFAULT_MAX_MESSAGE_SIZE, HEADER_LEN,
};

const MAX: usize = DEFAULT_MAX_MESSAGE_SIZE;

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER_LEN {
        return;
    }
    // The frame layer has already checked the length and opcode; fix both so every
    // input reaches the decompressor.
    let mut b = BytesMut::from(data);
    let Ok(len) = i32::try_from(b.len()) else { return };
    b[0..4].copy_from_slice(&len.to_le_bytes());
    b[12..16].copy_from_slice(&OpCode::Compressed.as_i32().to_le_bytes());
    let frame = Frame::from_bytes(b).expect("length patched to match");
    let Ok((inner, used)) = decompress(&frame, MAX) else {
        return;
    };
    assert!(inner.len() <= MAX);
    assert_ne!(inner.op_code(), Some(OpCode::Compressed));
    assert_eq!(inner.request_id(), frame.request_id());
    assert_eq!(inner.response_to(), frame.response_to());
    if let Some(c) = used {
        let again = compress(&inner, c).expect("a decompressed message compresses");
        let (back, used_again) = decompress(&again, MAX).expect("what compress makes decompresses");
        assert_eq!(back, inner);
        assert_eq!(used_again.map(|c| c.id()), Some(c.id()));
    }
    let _ = OpMsg::parse(&inner);
    let _ = OpQuery::parse(&inner);
});
