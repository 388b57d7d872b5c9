//! One client connection's link to the shared SecantusDB: ids rewritten on the way out,
//! exhaust turned off, and the matching reply read back.

use std::io;
use std::net::SocketAddr;

use mongoplex::wire::{
    refresh_checksum, set_msg_flags, Frame, FrameReader, OpCode, DEFAULT_MAX_MESSAGE_SIZE,
    MSG_EXHAUST_ALLOWED,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub struct Upstream {
    stream: TcpStream,
    reader: FrameReader,
    last_id: i32,
}

impl Upstream {
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            reader: FrameReader::new(),
            last_id: 0,
        })
    }

    /// Sends one OP_MSG and, unless it is a moreToCome message, returns the reply with the
    /// upstream's ids still in it.
    pub async fn round_trip(&mut self, mut frame: Frame, flags: u32) -> io::Result<Option<Frame>> {
        self.last_id = self.last_id.checked_add(1).unwrap_or(1);
        let id = self.last_id;
        frame.set_request_id(id);
        frame.set_response_to(0);
        if frame.op_code() == Some(OpCode::Msg) && flags & MSG_EXHAUST_ALLOWED != 0 {
            // One request, one reply: a streamed cursor would outlive this round trip.
            set_msg_flags(&mut frame, flags & !MSG_EXHAUST_ALLOWED);
        }
        refresh_checksum(&mut frame);
        self.stream.write_all(frame.as_bytes()).await?;
        if flags & mongoplex::wire::MSG_MORE_TO_COME != 0 {
            return Ok(None);
        }
        loop {
            let reply = self
                .reader
                .next(&mut self.stream, DEFAULT_MAX_MESSAGE_SIZE)
                .await
                .map_err(io::Error::other)?
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "SecantusDB closed the connection")
                })?;
            // Anything else answers an earlier moreToCome request; nobody waits for it.
            if reply.response_to() == id {
                return Ok(Some(reply));
            }
        }
    }
}
