//! Bytes → frames: the MongoDB wire protocol.
//!
//! A [`Frame`] owns one whole message (header included) in a single `BytesMut`, so the
//! proxy can patch `requestID`/`responseTo` in place and forward the same allocation.
//! Views ([`OpMsg`], [`OpQuery`]) borrow from a frame and parse only what routing needs.
//! Nothing here knows about pools, servers or commands.

mod compressed;
mod frame;
mod header;
mod msg;
mod query;
mod reply;

pub use compressed::{compress, decompress, decompressed_len, Compressor};
pub use frame::{decode_frame, Frame, FrameCodec, FrameReader, GROWTH_STEP};
pub use header::{Header, OpCode, HEADER_LEN};
pub use msg::{
    build_msg, refresh_checksum, set_body_number, set_msg_flags, DocSequence, OpMsg, MSG_CHECKSUM_PRESENT,
    MSG_EXHAUST_ALLOWED, MSG_MORE_TO_COME,
};
pub use query::OpQuery;
pub use reply::build_reply;

/// The largest message a MongoDB server accepts by default; the proxy checks lengths
/// against this (or the upstream's advertised value) before allocating.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 48_000_000;

/// Why bytes from a peer could not be understood. Every variant is the peer's fault.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("message length {0} is below the 16-byte header size")]
    LengthTooSmall(i32),
    #[error("message length {len} exceeds the maximum of {max} bytes")]
    LengthTooLarge { len: i64, max: usize },
    #[error("unknown opcode {0}")]
    UnknownOpCode(i32),
    #[error("unknown OP_MSG section kind {0}")]
    UnknownSectionKind(u8),
    #[error("OP_MSG checksum mismatch: message says {expected:#010x}, computed {actual:#010x}")]
    BadChecksum { expected: u32, actual: u32 },
    #[error("OP_MSG has unknown required flag bits {0:#x}")]
    UnknownRequiredFlags(u32),
    #[error("malformed {what}: {why}")]
    Malformed { what: &'static str, why: String },
    #[error("unsupported compressor id {0}")]
    UnknownCompressor(u8),
    #[error("decompression failed: {0}")]
    Decompress(String),
    #[error("connection closed in the middle of a message ({0} bytes buffered)")]
    Truncated(usize),
    #[error("message not completed within {0} ms")]
    Stalled(u128),
    #[error("no message began within the idle timeout ({0} ms)")]
    Idle(u128),
    #[error("message of {len} bytes refused: the proxy's buffer budget ({limit} bytes) stayed full for {waited_ms} ms")]
    OverBudget {
        len: usize,
        limit: usize,
        waited_ms: u128,
        request_id: i32,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl WireError {
    pub(crate) fn malformed(what: &'static str, why: impl Into<String>) -> Self {
        Self::Malformed {
            what,
            why: why.into(),
        }
    }

    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::LengthTooSmall(_) => "length_too_small",
            Self::LengthTooLarge { .. } => "length_too_large",
            Self::UnknownOpCode(_) => "unknown_opcode",
            Self::UnknownSectionKind(_) => "unknown_section_kind",
            Self::BadChecksum { .. } => "bad_checksum",
            Self::UnknownRequiredFlags(_) => "unknown_flags",
            Self::Malformed { .. } => "malformed",
            Self::UnknownCompressor(_) => "unknown_compressor",
            Self::Decompress(_) => "decompress",
            Self::Truncated(_) => "truncated",
            Self::Stalled(_) => "stalled",
            Self::Idle(_) => "idle",
            Self::OverBudget { .. } => "over_budget",
            Self::Io(_) => "io",
        }
    }
}

/// Reads a little-endian i32 at `at`; callers have checked bounds.
pub(crate) fn read_i32(buf: &[u8], at: usize) -> Option<i32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

pub(crate) fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads the length prefix of a BSON document starting at `at` and checks it fits.
pub(crate) fn bson_len(buf: &[u8], at: usize) -> Result<usize, WireError> {
    let len = read_i32(buf, at).ok_or_else(|| WireError::malformed("document", "truncated length"))?;
    let len = usize::try_from(len).map_err(|_| WireError::malformed("document", "negative length"))?;
    if len < 5 || at.checked_add(len).is_none_or(|end| end > buf.len()) {
        return Err(WireError::malformed(
            "document",
            format!("length {len} out of bounds"),
        ));
    }
    Ok(len)
}

/// Finds the NUL terminator of a C string starting at `at`; returns the string and the
/// offset after the NUL.
pub(crate) fn cstring(buf: &[u8], at: usize) -> Result<(&str, usize), WireError> {
    let rest = buf
        .get(at..)
        .ok_or_else(|| WireError::malformed("cstring", "out of bounds"))?;
    let nul = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| WireError::malformed("cstring", "missing terminator"))?;
    let s = std::str::from_utf8(&rest[..nul]).map_err(|_| WireError::malformed("cstring", "not UTF-8"))?;
    Ok((s, at + nul + 1))
}
