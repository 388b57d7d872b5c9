//! Property tests for the wire codec: arbitrary bytes never panic the decoder or the
//! message parsers, and building then decoding gives back the same message.

use bson::{RawBson, RawDocumentBuf};
use bytes::BytesMut;
use mongoplex::command::{Command, ReplyInfo};
use mongoplex::wire::{
    build_msg, compress, decode_frame, decompress, refresh_checksum, Compressor, Frame, OpMsg, OpQuery,
};
use proptest::prelude::*;

fn doc_strategy() -> impl Strategy<Value = RawDocumentBuf> {
    let value = prop_oneof![
        any::<i32>().prop_map(RawBson::Int32),
        any::<i64>().prop_map(RawBson::Int64),
        any::<bool>().prop_map(RawBson::Boolean),
        "[a-z]{0,40}".prop_map(RawBson::String),
        any::<f64>().prop_map(RawBson::Double),
    ];
    proptest::collection::vec(("[a-zA-Z$]{1,12}", value), 0..12).prop_map(|fields| {
        let mut d = RawDocumentBuf::new();
        for (k, v) in fields {
            if let Ok(key) = bson::raw::CString::try_from(k) {
                d.append(key, v);
            }
        }
        d
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut buf = BytesMut::from(&bytes[..]);
        // Whatever happens, the decoder returns; every frame it yields parses without panicking.
        while let Ok(Some(frame)) = decode_frame(&mut buf, 1 << 20) {
            if let Ok(m) = OpMsg::parse(&frame) {
                let _ = Command::parse(m.body);
                let _ = ReplyInfo::parse(m.body);
            }
            let _ = OpQuery::parse(&frame);
            let _ = decompress(&frame, 1 << 20);
        }
    }

    #[test]
    fn framed_garbage_bodies_never_panic(op in prop_oneof![Just(2013i32), Just(2004), Just(2012), Just(1)], body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut b = BytesMut::new();
        let len = i32::try_from(16 + body.len()).unwrap();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&op.to_le_bytes());
        b.extend_from_slice(&body);
        let frame = decode_frame(&mut b, 1 << 20).unwrap().unwrap();
        if let Ok(m) = OpMsg::parse(&frame) {
            let _ = Command::parse(m.body);
            for s in &m.sequences {
                let _ = s.iter().count();
            }
        }
        let _ = OpQuery::parse(&frame);
        let _ = decompress(&frame, 1 << 20);
    }

    #[test]
    fn build_then_decode_round_trips(doc in doc_strategy(), request_id in any::<i32>(), response_to in any::<i32>(), flags in prop_oneof![Just(0u32), Just(2), Just(1 << 16)], split in 0usize..64) {
        let frame = build_msg(request_id, response_to, flags, doc.as_bytes());
        let bytes = frame.as_bytes().to_vec();
        // Delivered in two pieces: the first piece alone never yields a frame.
        let split = split.min(bytes.len() - 1);
        let mut buf = BytesMut::from(&bytes[..split]);
        prop_assert!(decode_frame(&mut buf, 1 << 20).unwrap().is_none());
        buf.extend_from_slice(&bytes[split..]);
        let back = decode_frame(&mut buf, 1 << 20).unwrap().unwrap();
        prop_assert_eq!(&back, &frame);
        prop_assert_eq!(back.request_id(), request_id);
        prop_assert_eq!(back.response_to(), response_to);
        let m = OpMsg::parse(&back).unwrap();
        prop_assert_eq!(m.flags, flags);
        prop_assert_eq!(m.body.as_bytes(), doc.as_bytes());
    }

    #[test]
    fn checksum_survives_id_rewrites(doc in doc_strategy(), new_id in any::<i32>()) {
        prop_assume!(new_id != 1);
        let frame = build_msg(1, 0, 0, doc.as_bytes());
        let mut b = frame.into_inner();
        b[16] |= 1;
        b.extend_from_slice(&[0; 4]);
        let len = i32::try_from(b.len()).unwrap();
        b[0..4].copy_from_slice(&len.to_le_bytes());
        let mut f = Frame::from_bytes(b).unwrap();
        refresh_checksum(&mut f);
        prop_assert!(OpMsg::parse(&f).is_ok());
        f.set_request_id(new_id);
        prop_assert!(OpMsg::parse(&f).is_err(), "a rewrite without a refresh must break the checksum");
        refresh_checksum(&mut f);
        prop_assert!(OpMsg::parse(&f).is_ok());
    }

    #[test]
    fn compression_round_trips(doc in doc_strategy(), which in 0usize..3) {
        let c = [Compressor::Snappy, Compressor::Zlib { level: None }, Compressor::Zstd][which];
        let frame = build_msg(3, 4, 0, doc.as_bytes());
        let z = compress(&frame, c).unwrap();
        let (back, used) = decompress(&z, 1 << 20).unwrap();
        prop_assert_eq!(back, frame);
        prop_assert_eq!(used.map(Compressor::id), Some(c.id()));
    }
}
