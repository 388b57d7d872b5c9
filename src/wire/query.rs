//! OP_QUERY, accepted only for the legacy `isMaster` handshake on `<db>.$cmd`.

use bson::RawDocument;

use super::{bson_len, cstring, read_i32, Frame, OpCode, WireError};

#[derive(Debug)]
pub struct OpQuery<'a> {
    pub flags: i32,
    pub full_collection_name: &'a str,
    pub number_to_skip: i32,
    pub number_to_return: i32,
    pub query: &'a RawDocument,
}

impl<'a> OpQuery<'a> {
    pub fn parse(frame: &'a Frame) -> Result<Self, WireError> {
        if frame.op_code() != Some(OpCode::Query) {
            return Err(WireError::malformed("OP_QUERY", "wrong opcode"));
        }
        let p = frame.payload();
        let flags = read_i32(p, 0).ok_or_else(|| WireError::malformed("OP_QUERY", "truncated"))?;
        let (full_collection_name, at) = cstring(p, 4)?;
        let number_to_skip = read_i32(p, at).ok_or_else(|| WireError::malformed("OP_QUERY", "truncated"))?;
        let number_to_return =
            read_i32(p, at + 4).ok_or_else(|| WireError::malformed("OP_QUERY", "truncated"))?;
        let doc_at = at + 8;
        let len = bson_len(p, doc_at)?;
        let query = RawDocument::from_bytes(&p[doc_at..doc_at + len])
            .map_err(|e| WireError::malformed("OP_QUERY query", e.to_string()))?;
        Ok(Self {
            flags,
            full_collection_name,
            number_to_skip,
            number_to_return,
            query,
        })
    }

    /// The database of a `<db>.$cmd` namespace, if that is what this query targets.
    pub fn command_db(&self) -> Option<&'a str> {
        self.full_collection_name.strip_suffix(".$cmd")
    }

    /// The command document: legacy drivers may wrap it as `{$query: {...}, ...}`.
    pub fn command(&self) -> &'a RawDocument {
        match self.query.get_document("$query") {
            Ok(inner) => inner,
            Err(_) => self.query,
        }
    }
}
