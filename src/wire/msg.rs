//! OP_MSG: flag bits, one body section, any number of document sequences, and an
//! optional CRC-32C checksum.

use bson::RawDocument;
use bytes::{BufMut, BytesMut};

use super::{bson_len, cstring, read_u32, Frame, Header, OpCode, WireError, HEADER_LEN};

pub const MSG_CHECKSUM_PRESENT: u32 = 1;
pub const MSG_MORE_TO_COME: u32 = 1 << 1;
pub const MSG_EXHAUST_ALLOWED: u32 = 1 << 16;
/// Bits 0-15 are "required": a receiver must reject ones it does not know.
const REQUIRED_MASK: u32 = 0xffff;
const KNOWN_REQUIRED: u32 = MSG_CHECKSUM_PRESENT | MSG_MORE_TO_COME;

/// A kind-1 section: a named run of documents (e.g. `documents` for insert).
#[derive(Debug, Clone, Copy)]
pub struct DocSequence<'a> {
    pub identifier: &'a str,
    /// The concatenated documents, each already length-checked.
    pub docs: &'a [u8],
    pub count: usize,
}

/// A parsed view of an OP_MSG frame. Borrowing keeps parsing allocation-free unless the
/// message carries document sequences.
#[derive(Debug)]
pub struct OpMsg<'a> {
    pub flags: u32,
    pub body: &'a RawDocument,
    pub sequences: Vec<DocSequence<'a>>,
    /// Where the body starts in the frame's payload.
    body_at: usize,
}

impl<'a> OpMsg<'a> {
    /// Parses and, when present, verifies the checksum.
    pub fn parse(frame: &'a Frame) -> Result<Self, WireError> {
        if frame.op_code() != Some(OpCode::Msg) {
            return Err(WireError::malformed("OP_MSG", "wrong opcode"));
        }
        let p = frame.payload();
        let flags = read_u32(p, 0).ok_or_else(|| WireError::malformed("OP_MSG", "missing flag bits"))?;
        let unknown = flags & REQUIRED_MASK & !KNOWN_REQUIRED;
        if unknown != 0 {
            return Err(WireError::UnknownRequiredFlags(unknown));
        }
        let mut end = p.len();
        if flags & MSG_CHECKSUM_PRESENT != 0 {
            end = end
                .checked_sub(4)
                .filter(|&e| e >= 4)
                .ok_or_else(|| WireError::malformed("OP_MSG", "checksum flag set but no room for it"))?;
            let expected = read_u32(p, end).unwrap_or(0);
            let all = frame.as_bytes();
            let actual = crc32c::crc32c(&all[..all.len() - 4]);
            if expected != actual {
                return Err(WireError::BadChecksum { expected, actual });
            }
        }
        let sections = &p[..end];
        let mut at = 4;
        let mut body = None;
        let mut body_at = 0;
        let mut sequences = Vec::new();
        while at < sections.len() {
            let kind = sections[at];
            at += 1;
            match kind {
                0 => {
                    let len = bson_len(sections, at)?;
                    if body.is_some() {
                        return Err(WireError::malformed("OP_MSG", "more than one body section"));
                    }
                    let doc = RawDocument::from_bytes(&sections[at..at + len])
                        .map_err(|e| WireError::malformed("OP_MSG body", e.to_string()))?;
                    body = Some(doc);
                    body_at = at;
                    at += len;
                }
                1 => {
                    let (seq, next) = parse_sequence(sections, at)?;
                    sequences.push(seq);
                    at = next;
                }
                k => return Err(WireError::UnknownSectionKind(k)),
            }
        }
        let body = body.ok_or_else(|| WireError::malformed("OP_MSG", "no body section"))?;
        Ok(Self {
            flags,
            body,
            sequences,
            body_at,
        })
    }

    pub fn more_to_come(&self) -> bool {
        self.flags & MSG_MORE_TO_COME != 0
    }

    pub fn exhaust_allowed(&self) -> bool {
        self.flags & MSG_EXHAUST_ALLOWED != 0
    }
}

fn parse_sequence(buf: &[u8], at: usize) -> Result<(DocSequence<'_>, usize), WireError> {
    let size =
        read_u32(buf, at).ok_or_else(|| WireError::malformed("document sequence", "truncated size"))?;
    let size = usize::try_from(size).map_err(|_| WireError::malformed("document sequence", "size"))?;
    let end = at
        .checked_add(size)
        .filter(|&e| e <= buf.len() && size >= 5)
        .ok_or_else(|| WireError::malformed("document sequence", "size out of bounds"))?;
    let (identifier, mut pos) = cstring(&buf[..end], at + 4)?;
    let docs_start = pos;
    let mut count = 0;
    while pos < end {
        let len = bson_len(&buf[..end], pos)?;
        pos += len;
        count += 1;
    }
    Ok((
        DocSequence {
            identifier,
            docs: &buf[docs_start..end],
            count,
        },
        end,
    ))
}

impl<'a> DocSequence<'a> {
    /// Iterates the documents of the sequence.
    pub fn iter(&self) -> impl Iterator<Item = &'a RawDocument> + 'a {
        let docs = self.docs;
        let mut at = 0;
        std::iter::from_fn(move || {
            let len = bson_len(docs, at).ok()?;
            let d = RawDocument::from_bytes(&docs[at..at + len]).ok();
            at += len;
            d
        })
    }
}

/// Rewrites flag bits in place (e.g. to clear `exhaustAllowed`) and refreshes the
/// checksum if one is present.
pub fn set_msg_flags(frame: &mut Frame, flags: u32) {
    frame.payload_mut()[..4].copy_from_slice(&flags.to_le_bytes());
    refresh_checksum(frame);
}

/// Recomputes the CRC-32C after a header or flag rewrite; a no-op without a checksum.
pub fn refresh_checksum(frame: &mut Frame) {
    let has = read_u32(frame.payload(), 0).is_some_and(|f| f & MSG_CHECKSUM_PRESENT != 0);
    if frame.op_code() != Some(OpCode::Msg) || !has || frame.len() < HEADER_LEN + 8 {
        return;
    }
    let n = frame.len();
    let crc = crc32c::crc32c(&frame.as_bytes()[..n - 4]);
    frame.payload_mut()[n - HEADER_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
}

/// Overwrites the number in the body's top-level field `key` with `value`, in place and
/// in the field's own BSON type (int32, int64 or double), so no length in the frame
/// changes and every other byte, document sequences included, stays as the client sent
/// it; the checksum is refreshed. Returns false, the frame untouched, when the field is
/// absent, holds something else, or `value` does not fit its type.
pub fn set_body_number(frame: &mut Frame, key: &str, value: i64) -> bool {
    let Some((at, bytes)) = number_slot(frame, key, value) else {
        return false;
    };
    frame.payload_mut()[at..at + bytes.len()].copy_from_slice(&bytes);
    refresh_checksum(frame);
    true
}

/// Where in the payload the value of `key` lies, and its new bytes.
fn number_slot(frame: &Frame, key: &str, value: i64) -> Option<(usize, Vec<u8>)> {
    let msg = OpMsg::parse(frame).ok()?;
    // After the type byte, the key and its NUL: each element of the top level in turn.
    let mut at = 4;
    for el in msg.body.iter_elements() {
        let el = el.ok()?;
        let name = el.key().as_str();
        let value_at = at + 1 + name.len() + 1;
        if name == key {
            let bytes = match el.element_type() {
                bson::spec::ElementType::Int32 => i32::try_from(value).ok()?.to_le_bytes().to_vec(),
                bson::spec::ElementType::Int64 => value.to_le_bytes().to_vec(),
                // Exact for every integer up to 2^53.
                #[allow(clippy::cast_precision_loss)]
                bson::spec::ElementType::Double if value.unsigned_abs() < 1 << 53 => {
                    (value as f64).to_le_bytes().to_vec()
                }
                _ => return None,
            };
            return Some((msg.body_at + value_at, bytes));
        }
        at = value_at + el.size();
    }
    None
}

/// Builds an OP_MSG with a single body section.
pub fn build_msg(request_id: i32, response_to: i32, flags: u32, body: &[u8]) -> Frame {
    let flags = flags & !MSG_CHECKSUM_PRESENT;
    let len = HEADER_LEN + 4 + 1 + body.len();
    let mut buf = BytesMut::with_capacity(len);
    Header {
        length: i32::try_from(len).unwrap_or(i32::MAX),
        request_id,
        response_to,
        op_code: OpCode::Msg.as_i32(),
    }
    .write(&mut buf);
    buf.put_u32_le(flags);
    buf.put_u8(0);
    buf.extend_from_slice(body);
    Frame::from_bytes(buf).expect("build_msg computes a consistent length")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    fn with_checksum(frame: Frame) -> Frame {
        let mut b = frame.into_inner();
        let flags = u32::from_le_bytes([b[16], b[17], b[18], b[19]]) | MSG_CHECKSUM_PRESENT;
        b[16..20].copy_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        let len = i32::try_from(b.len()).unwrap();
        b[0..4].copy_from_slice(&len.to_le_bytes());
        let mut f = Frame::from_bytes(b).unwrap();
        refresh_checksum(&mut f);
        f
    }

    #[test]
    fn parses_body_and_verifies_checksum() {
        let body = rawdoc! { "ping": 1, "$db": "admin" };
        let f = with_checksum(build_msg(1, 0, 0, body.as_bytes()));
        let m = OpMsg::parse(&f).unwrap();
        assert_eq!(m.body.get_i32("ping").unwrap(), 1);
        let mut bad = f.into_inner();
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        let bad = Frame::from_bytes(bad).unwrap();
        assert!(matches!(OpMsg::parse(&bad), Err(WireError::BadChecksum { .. })));
    }

    #[test]
    fn rewriting_ids_keeps_checksum_valid() {
        let body = rawdoc! { "ping": 1 };
        let mut f = with_checksum(build_msg(1, 0, 0, body.as_bytes()));
        f.set_request_id(99);
        refresh_checksum(&mut f);
        OpMsg::parse(&f).unwrap();
    }

    #[test]
    fn parses_document_sequences() {
        let body = rawdoc! { "insert": "c", "$db": "d" };
        let d1 = rawdoc! { "_id": 1 };
        let d2 = rawdoc! { "_id": 2 };
        let mut b = build_msg(1, 0, 0, body.as_bytes()).into_inner();
        b.put_u8(1);
        let size = 4 + "documents".len() + 1 + d1.as_bytes().len() + d2.as_bytes().len();
        b.put_u32_le(u32::try_from(size).unwrap());
        b.extend_from_slice(b"documents\0");
        b.extend_from_slice(d1.as_bytes());
        b.extend_from_slice(d2.as_bytes());
        let len = i32::try_from(b.len()).unwrap();
        b[0..4].copy_from_slice(&len.to_le_bytes());
        let f = Frame::from_bytes(b).unwrap();
        let m = OpMsg::parse(&f).unwrap();
        assert_eq!(m.sequences.len(), 1);
        assert_eq!(m.sequences[0].identifier, "documents");
        assert_eq!(m.sequences[0].count, 2);
        assert_eq!(m.sequences[0].iter().count(), 2);
    }

    #[test]
    fn set_body_number_rewrites_one_field_in_place() {
        let seq = |b: &mut BytesMut| {
            let d1 = rawdoc! { "_id": 1 };
            b.put_u8(1);
            let size = 4 + "documents".len() + 1 + d1.as_bytes().len();
            b.put_u32_le(u32::try_from(size).unwrap());
            b.extend_from_slice(b"documents\0");
            b.extend_from_slice(d1.as_bytes());
            let len = i32::try_from(b.len()).unwrap();
            b[0..4].copy_from_slice(&len.to_le_bytes());
        };
        let bodies = [
            rawdoc! { "insert": "c", "maxTimeMS": 500, "$db": "d" },
            rawdoc! { "insert": "c", "lsid": { "id": 1 }, "maxTimeMS": 500_i64, "$db": "d" },
            rawdoc! { "insert": "c", "$db": "d", "maxTimeMS": 500.0 },
        ];
        for body in bodies {
            let mut b = build_msg(1, 0, 0, body.as_bytes()).into_inner();
            seq(&mut b);
            let mut f = with_checksum(Frame::from_bytes(b).unwrap());
            let len = f.len();
            assert!(set_body_number(&mut f, "maxTimeMS", 123), "{body:?}");
            assert_eq!(f.len(), len);
            let m = OpMsg::parse(&f).expect("checksum refreshed");
            let got = m.body.get("maxTimeMS").unwrap().and_then(crate::command::as_i64);
            assert_eq!(got, Some(123), "{body:?}");
            let before: Vec<_> = body.iter().map(|e| e.unwrap().0.as_str().to_owned()).collect();
            let after: Vec<_> = m.body.iter().map(|e| e.unwrap().0.as_str().to_owned()).collect();
            assert_eq!(before, after);
            assert_eq!(m.body.get_str("$db").unwrap(), "d");
            assert_eq!((m.sequences.len(), m.sequences[0].count), (1, 1));
        }
        let untouched = [
            rawdoc! { "find": "c", "$db": "d" },
            rawdoc! { "find": "c", "maxTimeMS": "500" },
            rawdoc! { "find": "c", "sub": { "maxTimeMS": 5 } },
        ];
        for body in untouched {
            let mut f = build_msg(1, 0, 0, body.as_bytes());
            let copy = f.clone();
            assert!(!set_body_number(&mut f, "maxTimeMS", 1), "{body:?}");
            assert_eq!(f, copy);
        }
        let mut f = build_msg(1, 0, 0, rawdoc! { "find": "c", "maxTimeMS": 5 }.as_bytes());
        assert!(
            !set_body_number(&mut f, "maxTimeMS", i64::MAX),
            "does not fit an int32"
        );
    }

    #[test]
    fn rejects_unknown_section_and_flags() {
        let body = rawdoc! { "ping": 1 };
        let mut b = build_msg(1, 0, 0, body.as_bytes()).into_inner();
        b[20] = 7;
        let f = Frame::from_bytes(b).unwrap();
        assert!(matches!(OpMsg::parse(&f), Err(WireError::UnknownSectionKind(7))));
        let mut b = build_msg(1, 0, 0, body.as_bytes()).into_inner();
        b[16] = 0x04;
        let f = Frame::from_bytes(b).unwrap();
        assert!(matches!(
            OpMsg::parse(&f),
            Err(WireError::UnknownRequiredFlags(4))
        ));
    }
}
