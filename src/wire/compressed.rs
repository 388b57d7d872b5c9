//! OP_COMPRESSED: snappy, zlib and zstd, with the declared size checked before any
//! allocation.

use std::io::Read;

use bytes::{BufMut, BytesMut};

use super::{read_i32, Frame, Header, OpCode, WireError, HEADER_LEN};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    Snappy,
    Zlib { level: Option<u32> },
    Zstd,
}

impl Compressor {
    pub fn id(self) -> u8 {
        match self {
            Self::Snappy => 1,
            Self::Zlib { .. } => 2,
            Self::Zstd => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Snappy => "snappy",
            Self::Zlib { .. } => "zlib",
            Self::Zstd => "zstd",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "snappy" => Some(Self::Snappy),
            "zlib" => Some(Self::Zlib { level: None }),
            "zstd" => Some(Self::Zstd),
            _ => None,
        }
    }
}

/// Unwraps an OP_COMPRESSED frame into the original message. `max` bounds the
/// uncompressed size. Returns the frame and the compressor the peer used (None for noop).
/// The length an OP_COMPRESSED frame announces for its decompressed message (header
/// included), read before anything is allocated; `None` if the frame is too short.
pub fn decompressed_len(frame: &Frame) -> Option<usize> {
    let size = usize::try_from(read_i32(frame.payload(), 4)?).ok()?;
    Some(size.saturating_add(HEADER_LEN))
}

pub fn decompress(frame: &Frame, max: usize) -> Result<(Frame, Option<Compressor>), WireError> {
    let p = frame.payload();
    let original = read_i32(p, 0).ok_or_else(|| WireError::malformed("OP_COMPRESSED", "truncated"))?;
    let size = read_i32(p, 4).ok_or_else(|| WireError::malformed("OP_COMPRESSED", "truncated"))?;
    let id = *p
        .get(8)
        .ok_or_else(|| WireError::malformed("OP_COMPRESSED", "truncated"))?;
    let data = &p[9..];
    let op = OpCode::from_i32(original).ok_or(WireError::UnknownOpCode(original))?;
    if op == OpCode::Compressed {
        return Err(WireError::malformed("OP_COMPRESSED", "nested compression"));
    }
    let size = usize::try_from(size).map_err(|_| WireError::malformed("OP_COMPRESSED", "negative size"))?;
    let total = size.saturating_add(HEADER_LEN);
    if total > max {
        return Err(WireError::LengthTooLarge {
            len: i64::try_from(total).unwrap_or(i64::MAX),
            max,
        });
    }
    let mut buf = BytesMut::with_capacity(total);
    let h = frame.header();
    Header {
        length: i32::try_from(total).unwrap_or(i32::MAX),
        request_id: h.request_id,
        response_to: h.response_to,
        op_code: original,
    }
    .write(&mut buf);
    let compressor = match id {
        0 => {
            buf.extend_from_slice(data);
            None
        }
        1 => {
            let n = snap::raw::decompress_len(data).map_err(|e| WireError::Decompress(e.to_string()))?;
            if n != size {
                return Err(WireError::Decompress(format!(
                    "snappy size {n} != declared {size}"
                )));
            }
            buf.resize(total, 0);
            snap::raw::Decoder::new()
                .decompress(data, &mut buf[HEADER_LEN..])
                .map_err(|e| WireError::Decompress(e.to_string()))?;
            Some(Compressor::Snappy)
        }
        2 => {
            let mut w = (&mut buf).writer();
            let limit = u64::try_from(size).unwrap_or(u64::MAX).saturating_add(1);
            std::io::copy(&mut flate2::read::ZlibDecoder::new(data).take(limit), &mut w)
                .map_err(|e| WireError::Decompress(e.to_string()))?;
            Some(Compressor::Zlib { level: None })
        }
        3 => {
            let out = zstd::bulk::decompress(data, size).map_err(|e| WireError::Decompress(e.to_string()))?;
            buf.extend_from_slice(&out);
            Some(Compressor::Zstd)
        }
        other => return Err(WireError::UnknownCompressor(other)),
    };
    if buf.len() != total {
        return Err(WireError::Decompress(format!(
            "decompressed {} bytes, header declared {size}",
            buf.len() - HEADER_LEN
        )));
    }
    Ok((Frame::from_bytes(buf)?, compressor))
}

/// Wraps a message in OP_COMPRESSED with the given compressor.
pub fn compress(frame: &Frame, c: Compressor) -> Result<Frame, WireError> {
    let payload = frame.payload();
    let data = match c {
        Compressor::Snappy => snap::raw::Encoder::new()
            .compress_vec(payload)
            .map_err(|e| WireError::Decompress(e.to_string()))?,
        Compressor::Zlib { level } => {
            let level = flate2::Compression::new(level.unwrap_or(6).min(9));
            let mut e = flate2::read::ZlibEncoder::new(payload, level);
            let mut out = Vec::new();
            e.read_to_end(&mut out)
                .map_err(|e| WireError::Decompress(e.to_string()))?;
            out
        }
        Compressor::Zstd => {
            zstd::bulk::compress(payload, 0).map_err(|e| WireError::Decompress(e.to_string()))?
        }
    };
    let h = frame.header();
    let len = HEADER_LEN + 9 + data.len();
    let mut buf = BytesMut::with_capacity(len);
    Header {
        length: i32::try_from(len).map_err(|_| WireError::malformed("OP_COMPRESSED", "too large"))?,
        request_id: h.request_id,
        response_to: h.response_to,
        op_code: OpCode::Compressed.as_i32(),
    }
    .write(&mut buf);
    buf.put_i32_le(h.op_code);
    buf.put_i32_le(
        i32::try_from(payload.len()).map_err(|_| WireError::malformed("OP_COMPRESSED", "too large"))?,
    );
    buf.put_u8(c.id());
    buf.extend_from_slice(&data);
    Frame::from_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{build_msg, OpMsg};
    use bson::rawdoc;

    #[test]
    fn round_trips_every_compressor() {
        let body = rawdoc! { "find": "c", "filter": { "x": "y".repeat(300) }, "$db": "d" };
        let f = build_msg(5, 0, 0, body.as_bytes());
        for c in [
            Compressor::Snappy,
            Compressor::Zlib { level: Some(3) },
            Compressor::Zstd,
        ] {
            let z = compress(&f, c).unwrap();
            assert_eq!(z.op_code(), Some(OpCode::Compressed));
            let (back, used) = decompress(&z, 1 << 20).unwrap();
            assert_eq!(used.map(Compressor::id), Some(c.id()));
            assert_eq!(back, f);
            OpMsg::parse(&back).unwrap();
        }
    }

    #[test]
    fn declared_size_is_bounded() {
        let body = rawdoc! { "ping": 1 };
        let f = build_msg(5, 0, 0, body.as_bytes());
        let z = compress(&f, Compressor::Zstd).unwrap();
        assert!(matches!(
            decompress(&z, 20),
            Err(WireError::LengthTooLarge { .. })
        ));
        let mut lie = z.into_inner();
        lie[20..24].copy_from_slice(&1000i32.to_le_bytes());
        let lie = Frame::from_bytes(lie).unwrap();
        assert!(decompress(&lie, 1 << 20).is_err());
    }
}
