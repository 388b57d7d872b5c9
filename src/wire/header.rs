//! The 16-byte MsgHeader shared by every opcode.

use super::read_i32;

pub const HEADER_LEN: usize = 16;

/// Opcodes mongoplex understands. Anything else is rejected at the frame layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Reply,
    Query,
    Compressed,
    Msg,
}

impl OpCode {
    pub fn from_i32(v: i32) -> Option<Self> {
        match v {
            1 => Some(Self::Reply),
            2004 => Some(Self::Query),
            2012 => Some(Self::Compressed),
            2013 => Some(Self::Msg),
            _ => None,
        }
    }

    pub fn as_i32(self) -> i32 {
        match self {
            Self::Reply => 1,
            Self::Query => 2004,
            Self::Compressed => 2012,
            Self::Msg => 2013,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub length: i32,
    pub request_id: i32,
    pub response_to: i32,
    pub op_code: i32,
}

impl Header {
    /// Parses the header at the start of `buf`, which must hold at least 16 bytes.
    pub fn parse(buf: &[u8]) -> Option<Self> {
        Some(Self {
            length: read_i32(buf, 0)?,
            request_id: read_i32(buf, 4)?,
            response_to: read_i32(buf, 8)?,
            op_code: read_i32(buf, 12)?,
        })
    }

    pub fn write(&self, out: &mut impl bytes::BufMut) {
        out.put_i32_le(self.length);
        out.put_i32_le(self.request_id);
        out.put_i32_le(self.response_to);
        out.put_i32_le(self.op_code);
    }
}
