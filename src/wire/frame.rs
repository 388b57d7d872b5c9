//! Framing: splitting a byte stream into whole messages, with the length checked before
//! any allocation.

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio_util::codec::{Decoder, Encoder};

use super::{read_i32, Header, OpCode, WireError, HEADER_LEN};

/// One whole wire message, header included, in a buffer the proxy may patch in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    buf: BytesMut,
}

impl Frame {
    /// Wraps bytes that already hold a complete message whose length field matches.
    pub fn from_bytes(buf: BytesMut) -> Result<Self, WireError> {
        let len = read_i32(&buf, 0).ok_or(WireError::Truncated(buf.len()))?;
        if usize::try_from(len).ok() != Some(buf.len()) || buf.len() < HEADER_LEN {
            return Err(WireError::malformed(
                "frame",
                "length field does not match the buffer",
            ));
        }
        Ok(Self { buf })
    }

    pub fn header(&self) -> Header {
        // The constructor guarantees 16 bytes.
        Header::parse(&self.buf).unwrap_or(Header {
            length: 0,
            request_id: 0,
            response_to: 0,
            op_code: 0,
        })
    }

    pub fn op_code(&self) -> Option<OpCode> {
        read_i32(&self.buf, 12).and_then(OpCode::from_i32)
    }

    pub fn request_id(&self) -> i32 {
        read_i32(&self.buf, 4).unwrap_or(0)
    }

    pub fn response_to(&self) -> i32 {
        read_i32(&self.buf, 8).unwrap_or(0)
    }

    pub fn set_request_id(&mut self, id: i32) {
        self.buf[4..8].copy_from_slice(&id.to_le_bytes());
    }

    pub fn set_response_to(&mut self, id: i32) {
        self.buf[8..12].copy_from_slice(&id.to_le_bytes());
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buf[HEADER_LEN..]
    }

    pub(crate) fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf[HEADER_LEN..]
    }

    /// The whole message, ready to write to a socket.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn into_inner(self) -> BytesMut {
        self.buf
    }
}

/// Takes one frame off the front of `src` if it is complete. Lengths are validated
/// against `max` before anything is reserved, so a hostile length costs nothing.
pub fn decode_frame(src: &mut BytesMut, max: usize) -> Result<Option<Frame>, WireError> {
    let Some(len) = read_i32(src, 0) else {
        return Ok(None);
    };
    let len_usize = usize::try_from(len).map_err(|_| WireError::LengthTooSmall(len))?;
    if len_usize < HEADER_LEN {
        return Err(WireError::LengthTooSmall(len));
    }
    if len_usize > max {
        return Err(WireError::LengthTooLarge {
            len: i64::from(len),
            max,
        });
    }
    if src.len() < len_usize {
        src.reserve(len_usize - src.len());
        return Ok(None);
    }
    if OpCode::from_i32(read_i32(src, 12).unwrap_or(0)).is_none() {
        let op = read_i32(src, 12).unwrap_or(0);
        src.advance(len_usize);
        return Err(WireError::UnknownOpCode(op));
    }
    // A buffer holding exactly one message becomes the frame as it is: splitting it would
    // turn it into a shared buffer, which costs an allocation.
    let buf = if src.len() == len_usize {
        std::mem::take(src)
    } else {
        src.split_to(len_usize)
    };
    Ok(Some(Frame { buf }))
}

/// A tokio-util codec over [`decode_frame`]; encoding writes the frame's bytes.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    pub max_len: usize,
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        decode_frame(src, self.max_len)
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = WireError;

    fn encode(&mut self, item: &Frame, dst: &mut BytesMut) -> Result<(), WireError> {
        dst.extend_from_slice(item.as_bytes());
        Ok(())
    }
}

/// Growth step when a message spans reads and its length is not yet known.
const READ_CHUNK: usize = 8 * 1024;

/// The first read of a message goes to the stack, this much at most. Then the buffer is
/// allocated at the size the header announces, so a small command costs one small
/// allocation and a large one no regrowth.
const FIRST_READ: usize = 1024;

/// Reads frames from a stream. Between messages it holds no buffer (a frame that fills
/// the buffer takes it), so an idle peer costs no buffer memory.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: BytesMut,
}

impl FrameReader {
    pub fn new() -> Self {
        Self { buf: BytesMut::new() }
    }

    /// True when no partial message is buffered.
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty()
    }

    /// Reads until one frame is complete. `Ok(None)` is a clean EOF between messages.
    pub async fn next<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        max: usize,
    ) -> Result<Option<Frame>, WireError> {
        loop {
            if let Some(frame) = decode_frame(&mut self.buf, max)? {
                return Ok(Some(frame));
            }
            if !self.fill(io, max).await? {
                return self.at_eof();
            }
        }
    }

    /// One read into the buffer. `false` means EOF.
    async fn fill<R: AsyncRead + Unpin>(&mut self, io: &mut R, max: usize) -> Result<bool, WireError> {
        if self.buf.is_empty() && self.buf.capacity() < FIRST_READ {
            return Ok(std::future::poll_fn(|cx| self.poll_first_read(io, max, cx)).await?);
        }
        if self.buf.capacity() == self.buf.len() {
            self.buf.reserve(READ_CHUNK);
        }
        Ok(io.read_buf(&mut self.buf).await? != 0)
    }

    /// Reads the start of a message onto the stack, then allocates what its header
    /// announces (when that is a valid length) and keeps the bytes.
    fn poll_first_read<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        max: usize,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<bool>> {
        // Uninitialised: zeroing it would cost more than the read.
        let mut stack = [MaybeUninit::<u8>::uninit(); FIRST_READ];
        let mut rb = ReadBuf::uninit(&mut stack);
        ready!(Pin::new(io).poll_read(cx, &mut rb))?;
        let got = rb.filled();
        if got.is_empty() {
            return Poll::Ready(Ok(false));
        }
        let announced = read_i32(got, 0)
            .and_then(|l| usize::try_from(l).ok())
            .filter(|&l| l <= max)
            .unwrap_or(0);
        let mut buf = BytesMut::with_capacity(announced.max(got.len()));
        buf.extend_from_slice(got);
        self.buf = buf;
        Poll::Ready(Ok(true))
    }

    /// EOF is clean only between messages.
    fn at_eof(&self) -> Result<Option<Frame>, WireError> {
        if self.buf.is_empty() {
            Ok(None)
        } else {
            Err(WireError::Truncated(self.buf.len()))
        }
    }

    /// Like [`FrameReader::next`], but a message that does not complete in the first read
    /// must complete within `deadline` ([`WireError::Stalled`] otherwise). The common case,
    /// a whole message in one read, arms no timer.
    pub async fn next_within<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        max: usize,
        deadline: std::time::Duration,
    ) -> Result<Option<Frame>, WireError> {
        if let Some(frame) = decode_frame(&mut self.buf, max)? {
            return Ok(Some(frame));
        }
        if !self.fill(io, max).await? {
            return self.at_eof();
        }
        if let Some(frame) = decode_frame(&mut self.buf, max)? {
            return Ok(Some(frame));
        }
        match tokio::time::timeout(deadline, self.next(io, max)).await {
            Ok(r) => r,
            Err(_) => Err(WireError::Stalled(deadline.as_millis())),
        }
    }

    /// Buffered bytes not yet part of a frame (for tests and diagnostics).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(len: i32, op: i32) -> BytesMut {
        let mut b = BytesMut::new();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&7i32.to_le_bytes());
        b.extend_from_slice(&0i32.to_le_bytes());
        b.extend_from_slice(&op.to_le_bytes());
        b.resize(usize::try_from(len.max(16)).unwrap(), 0);
        b
    }

    #[test]
    fn lengths_are_checked_before_allocating() {
        let mut b = BytesMut::from(&i32::MAX.to_le_bytes()[..]);
        assert!(matches!(
            decode_frame(&mut b, 1000),
            Err(WireError::LengthTooLarge { .. })
        ));
        assert!(b.capacity() < 1000);
        let mut b = BytesMut::from(&5i32.to_le_bytes()[..]);
        assert!(matches!(
            decode_frame(&mut b, 1000),
            Err(WireError::LengthTooSmall(5))
        ));
        let mut b = BytesMut::from(&(-1i32).to_le_bytes()[..]);
        assert!(decode_frame(&mut b, 1000).is_err());
    }

    #[test]
    fn splits_frames_and_waits_for_more() {
        let mut b = msg(20, 2013);
        b.extend_from_slice(&msg(16, 2013)[..10]);
        let f = decode_frame(&mut b, 100).unwrap().unwrap();
        assert_eq!(f.len(), 20);
        assert_eq!(f.request_id(), 7);
        assert!(decode_frame(&mut b, 100).unwrap().is_none());
        assert_eq!(b.len(), 10);
    }

    #[test]
    fn unknown_opcode_is_consumed_and_reported() {
        let mut b = msg(16, 9999);
        assert!(matches!(
            decode_frame(&mut b, 100),
            Err(WireError::UnknownOpCode(9999))
        ));
        assert!(b.is_empty());
    }

    #[tokio::test]
    async fn reader_allocates_what_the_header_announces_and_keeps_nothing_after() {
        // Larger than the stack read: the rest lands in a buffer sized from the header.
        let big = msg(5000, 2013);
        let mut two = big.to_vec();
        two.extend_from_slice(&msg(20, 2013));
        let mut io: &[u8] = &two;
        let mut r = FrameReader::new();
        let f = r.next(&mut io, 10_000).await.unwrap().unwrap();
        assert_eq!(f.len(), 5000);
        assert_eq!(f.as_bytes(), &big[..]);
        let f = r.next(&mut io, 10_000).await.unwrap().unwrap();
        assert_eq!(f.len(), 20);
        // The last frame took the whole buffer: an idle reader holds no allocation.
        assert!(r.is_idle());
        assert_eq!(r.buf.capacity(), 0);
        assert!(r.next(&mut io, 10_000).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn reader_handles_a_header_split_across_reads_and_rejects_oversize() {
        let (mut tx, mut rx) = tokio::io::duplex(64);
        let whole = msg(40, 2013);
        let mut r = FrameReader::new();
        use tokio::io::AsyncWriteExt;
        tx.write_all(&whole[..2]).await.unwrap();
        let writer = tokio::spawn(async move {
            tokio::task::yield_now().await;
            tx.write_all(&whole[2..]).await.unwrap();
            tx
        });
        let f = r.next(&mut rx, 100).await.unwrap().unwrap();
        assert_eq!(f.len(), 40);
        let mut tx = writer.await.unwrap();
        // A header announcing more than the limit is refused, and nothing is reserved.
        tx.write_all(&1_000_000i32.to_le_bytes()).await.unwrap();
        assert!(matches!(
            r.next(&mut rx, 100).await,
            Err(WireError::LengthTooLarge {
                len: 1_000_000,
                max: 100
            })
        ));
        assert!(r.buf.capacity() < 1000);
    }

    #[test]
    fn patches_ids_in_place() {
        let mut b = msg(16, 2013);
        let mut f = decode_frame(&mut b, 100).unwrap().unwrap();
        f.set_request_id(42);
        f.set_response_to(-3);
        assert_eq!((f.request_id(), f.response_to()), (42, -3));
    }
}
