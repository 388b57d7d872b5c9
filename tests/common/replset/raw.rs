//! A bare wire client for talking to one member exactly as a test needs: no driver
//! between, so nothing adds `$readPreference`, retries or hides a reply.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bson::Document;
use bytes::{BufMut, BytesMut};
use mongoplex::wire::{build_msg, Frame, FrameReader, OpCode, OpMsg, DEFAULT_MAX_MESSAGE_SIZE, HEADER_LEN};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// One reply, decoded.
#[derive(Debug, Clone)]
pub struct RawReply {
    pub request_id: i32,
    pub response_to: i32,
    /// OP_MSG flag bits (0 for OP_REPLY).
    pub flags: u32,
    pub op_code: Option<OpCode>,
    pub body: Document,
}

pub struct RawClient {
    stream: TcpStream,
    reader: FrameReader,
    last_id: i32,
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            reader: FrameReader::new(),
            last_id: 0,
        })
    }

    fn next_id(&mut self) -> i32 {
        self.last_id = self.last_id.checked_add(1).unwrap_or(1);
        self.last_id
    }

    /// Sends `body` as an OP_MSG with `flags`; returns its requestID.
    pub async fn send(&mut self, flags: u32, body: &Document) -> io::Result<i32> {
        let id = self.next_id();
        let bytes = body.to_vec().map_err(|e| bad(e.to_string()))?;
        self.stream
            .write_all(build_msg(id, 0, flags, &bytes).as_bytes())
            .await?;
        Ok(id)
    }

    /// Sends a legacy OP_QUERY on `admin.$cmd` (what pymongo 3 does for isMaster).
    pub async fn send_legacy(&mut self, query: &Document) -> io::Result<i32> {
        let id = self.next_id();
        let doc = query.to_vec().map_err(|e| bad(e.to_string()))?;
        let ns = b"admin.$cmd\0";
        let len = HEADER_LEN + 4 + ns.len() + 8 + doc.len();
        let mut buf = BytesMut::with_capacity(len);
        buf.put_i32_le(i32::try_from(len).map_err(|_| bad("query too large"))?);
        buf.put_i32_le(id);
        buf.put_i32_le(0);
        buf.put_i32_le(OpCode::Query.as_i32());
        buf.put_i32_le(0); // flags
        buf.extend_from_slice(ns);
        buf.put_i32_le(0); // numberToSkip
        buf.put_i32_le(-1); // numberToReturn
        buf.extend_from_slice(&doc);
        self.stream.write_all(&buf).await?;
        Ok(id)
    }

    /// The next reply; an error on EOF.
    pub async fn recv(&mut self) -> io::Result<RawReply> {
        let frame = self
            .reader
            .next(&mut self.stream, DEFAULT_MAX_MESSAGE_SIZE)
            .await
            .map_err(io::Error::other)?
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::UnexpectedEof, "the member closed the connection")
            })?;
        decode(&frame)
    }

    /// The next reply, or `None` when none arrives within `limit`.
    pub async fn recv_within(&mut self, limit: Duration) -> Option<io::Result<RawReply>> {
        tokio::time::timeout(limit, self.recv()).await.ok()
    }

    /// Sends a command and returns its reply body.
    pub async fn command(&mut self, body: Document) -> io::Result<Document> {
        let id = self.send(0, &body).await?;
        let reply = self.recv().await?;
        if reply.response_to != id {
            return Err(bad(format!("reply to {} for request {id}", reply.response_to)));
        }
        Ok(reply.body)
    }
}

fn decode(frame: &Frame) -> io::Result<RawReply> {
    let (flags, body) = match frame.op_code() {
        Some(OpCode::Msg) => {
            let msg = OpMsg::parse(frame).map_err(io::Error::other)?;
            (
                msg.flags,
                Document::try_from(msg.body).map_err(|e| bad(e.to_string()))?,
            )
        }
        // OP_REPLY: flags, cursorID, startingFrom, numberReturned, then the documents.
        Some(OpCode::Reply) => {
            let doc = frame.payload().get(20..).ok_or_else(|| bad("short OP_REPLY"))?;
            (0, Document::from_reader(doc).map_err(|e| bad(e.to_string()))?)
        }
        other => return Err(bad(format!("unexpected reply opcode {other:?}"))),
    };
    Ok(RawReply {
        request_id: frame.request_id(),
        response_to: frame.response_to(),
        flags,
        op_code: frame.op_code(),
        body,
    })
}
