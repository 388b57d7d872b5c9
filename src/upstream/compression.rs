//! Wire compression on the proxy→server leg (the compression spec, `OP_COMPRESSED.md`):
//! what the hello offers, which compressor a connection then uses, and which messages
//! may be compressed. Pure functions; the codec itself is [`crate::wire::compress`].
//!
//! The client↔proxy leg is negotiated apart ([`crate::handshake::negotiate_compression`]):
//! the upstream's choice never reaches a client.

use bson::RawDocument;

use crate::wire::{cstring, Compressor, Frame, OpCode};

/// Commands whose messages must never be compressed (the spec's list, against
/// compression side channels on credentials). Compared without case, so that `ismaster`
/// and any other spelling a server accepts are covered.
const NEVER_COMPRESSED: &[&str] = &[
    "hello",
    "isMaster",
    "saslStart",
    "saslContinue",
    "getnonce",
    "authenticate",
    "createUser",
    "updateUser",
    "copydbSaslStart",
    "copydbgetnonce",
    "copydb",
];

/// The compressor a connection uses: the first of `ours` (the URI's order) that the
/// server's hello reply lists. `None` when the reply lists none of them, or none at all
/// (a server without compression leaves the field out; that is not an error).
pub fn choose(ours: &[Compressor], hello_reply: &RawDocument) -> Option<Compressor> {
    let offered = hello_reply.get_array("compression").ok()?;
    let offered: Vec<&str> = offered
        .into_iter()
        .filter_map(|v| v.ok().and_then(|v| v.as_str()))
        .collect();
    ours.iter().copied().find(|c| offered.contains(&c.name()))
}

/// Whether `frame` may go out compressed: an OP_MSG whose command (the body's first key,
/// the body being the first section, as every driver and the proxy send it) is not one
/// of `NEVER_COMPRESSED`. Anything the check cannot read goes out uncompressed, which
/// every server accepts.
pub fn may_compress(frame: &Frame) -> bool {
    if frame.op_code() != Some(OpCode::Msg) {
        return false;
    }
    // flags (4), section kind (1), document length (4), element type (1), then the key.
    let p = frame.payload();
    if p.get(4) != Some(&0) {
        return false;
    }
    match cstring(p, 10) {
        Ok((name, _)) => !NEVER_COMPRESSED.iter().any(|n| n.eq_ignore_ascii_case(name)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{build_msg, build_reply};
    use bson::rawdoc;

    fn msg(body: &bson::RawDocumentBuf) -> Frame {
        build_msg(1, 0, 0, body.as_bytes())
    }

    #[test]
    fn handshake_and_auth_commands_are_never_compressed() {
        let never = [
            rawdoc! { "hello": 1, "compression": ["zstd"], "$db": "admin" },
            rawdoc! { "isMaster": 1, "$db": "admin" },
            rawdoc! { "ismaster": 1, "$db": "admin" },
            rawdoc! { "saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: b"n,,n=u,r=x".to_vec() }, "$db": "admin" },
            rawdoc! { "saslContinue": 1, "conversationId": 1, "payload": "p", "$db": "admin" },
            rawdoc! { "getnonce": 1, "$db": "admin" },
            rawdoc! { "authenticate": 1, "$db": "$external" },
            rawdoc! { "createUser": "u", "pwd": "secret", "roles": [], "$db": "admin" },
            rawdoc! { "updateUser": "u", "pwd": "secret", "$db": "admin" },
            rawdoc! { "copydbSaslStart": 1, "$db": "admin" },
            rawdoc! { "copydbgetnonce": 1, "$db": "admin" },
            rawdoc! { "copydb": 1, "$db": "admin" },
        ];
        for body in &never {
            assert!(!may_compress(&msg(body)), "{body:?}");
        }
        for body in [
            rawdoc! { "find": "c", "filter": {}, "$db": "d" },
            rawdoc! { "insert": "hello", "documents": [{ "saslStart": 1 }], "$db": "d" },
            rawdoc! { "ping": 1, "$db": "admin" },
        ] {
            assert!(may_compress(&msg(&body)), "{body:?}");
        }
    }

    #[test]
    fn what_cannot_be_read_goes_out_plain() {
        let legacy = build_reply(1, 0, rawdoc! { "find": "c" }.as_bytes());
        assert!(!may_compress(&legacy));
        let f = msg(&rawdoc! { "find": "c" });
        let mut bytes = f.into_inner();
        bytes[20] = 1; // a document sequence first
        assert!(!may_compress(&Frame::from_bytes(bytes).unwrap()));
    }

    #[test]
    fn first_of_ours_that_the_server_lists() {
        let zstd = Compressor::Zstd;
        let zlib = Compressor::Zlib { level: Some(9) };
        let snappy = Compressor::Snappy;
        let table: &[(&[Compressor], bson::RawDocumentBuf, Option<Compressor>)] = &[
            (
                &[zstd, zlib],
                rawdoc! { "compression": ["zlib", "zstd"] },
                Some(zstd),
            ),
            (&[zstd, zlib], rawdoc! { "compression": ["zlib"] }, Some(zlib)),
            (&[snappy], rawdoc! { "compression": ["zlib"] }, None),
            (&[zstd], rawdoc! { "ok": 1 }, None),
            (&[zstd], rawdoc! { "compression": [] }, None),
            (&[zstd], rawdoc! { "compression": "zstd" }, None),
            (&[], rawdoc! { "compression": ["zstd"] }, None),
        ];
        for (ours, reply, want) in table {
            assert_eq!(choose(ours, reply), *want, "{ours:?} {reply:?}");
        }
    }
}
