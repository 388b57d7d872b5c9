//! Framing: splitting a byte stream into whole messages, with the length checked before
//! any allocation.

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio_util::codec::{Decoder, Encoder};

use super::{read_i32, Header, OpCode, WireError, HEADER_LEN};
use crate::memory::{Lease, MemoryBudget, BUDGETED_ABOVE, MAX_WAIT};

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
/// against `max`, and nothing is reserved for the announced length: buffers grow as
/// bytes arrive ([`FrameReader`]), so a hostile length costs nothing.
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

/// The first read of a message goes to the stack, this much at most.
const FIRST_READ: usize = 1024;

/// The most a message's buffer is given before its bytes arrive. A message up to this
/// size costs one allocation; a larger one doubles its buffer as it arrives (never past
/// the announced length), so a peer that announces 48 MB and sends 1 KiB holds 64 KiB,
/// and one that sends it all costs at most twice its size in copies.
pub const GROWTH_STEP: usize = 64 * 1024;

/// How much more room a partly read message gets: the rest of its announced length, at
/// most doubling what it holds and at least [`GROWTH_STEP`]. `None` when the header is
/// not yet read (or invalid): then a small chunk.
fn next_growth(buffered: usize, announced: Option<usize>) -> usize {
    match announced {
        Some(total) if total > buffered => (total - buffered).min(buffered.max(GROWTH_STEP)),
        _ => READ_CHUNK,
    }
}

/// The announced length of the message at the front of `buf`, if valid and within `max`.
fn announced_len(buf: &[u8], max: usize) -> Option<usize> {
    read_i32(buf, 0)
        .and_then(|l| usize::try_from(l).ok())
        .filter(|&l| (HEADER_LEN..=max).contains(&l))
}

/// Reads frames from a stream. Between messages it holds no buffer (a frame that fills
/// the buffer takes it), so an idle peer costs no buffer memory.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: BytesMut,
    /// The budget lease of the large message being read, or just read.
    lease: Option<Lease>,
}

impl FrameReader {
    pub fn new() -> Self {
        Self {
            buf: BytesMut::new(),
            lease: None,
        }
    }

    /// The lease of the frame just returned, to hold while the frame's bytes are.
    pub fn take_lease(&mut self) -> Option<Lease> {
        self.lease.take()
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
        self.next_in(io, max, None).await
    }

    async fn next_in<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        max: usize,
        budget: Option<&MemoryBudget>,
    ) -> Result<Option<Frame>, WireError> {
        loop {
            if let Some(frame) = decode_frame(&mut self.buf, max)? {
                return Ok(Some(frame));
            }
            if !self.fill(io, max, budget).await? {
                return self.at_eof();
            }
        }
    }

    /// One read into the buffer. `false` means EOF. A large message leases its length
    /// from `budget` before its buffer grows past the first step.
    async fn fill<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        max: usize,
        budget: Option<&MemoryBudget>,
    ) -> Result<bool, WireError> {
        if self.buf.is_empty() && self.buf.capacity() < FIRST_READ {
            return Ok(std::future::poll_fn(|cx| self.poll_first_read(io, max, cx)).await?);
        }
        if self.buf.capacity() == self.buf.len() {
            let announced = announced_len(&self.buf, max);
            if let (Some(budget), Some(total), None) = (budget, announced, &self.lease) {
                if total > BUDGETED_ABOVE {
                    // Boxed: an idle reader's future must not carry the wait's timer.
                    self.lease = Some(Box::pin(self.lease_for(budget, total)).await?);
                }
            }
            let step = next_growth(self.buf.len(), announced);
            self.buf.reserve(step);
        }
        Ok(io.read_buf(&mut self.buf).await? != 0)
    }

    /// Waits up to [`MAX_WAIT`] for room for a `total`-byte message; the socket is not
    /// read meanwhile.
    async fn lease_for(&self, budget: &MemoryBudget, total: usize) -> Result<Lease, WireError> {
        let started = std::time::Instant::now();
        budget
            .lease(total, MAX_WAIT)
            .await
            .ok_or_else(|| WireError::OverBudget {
                len: total,
                limit: budget.limit(),
                waited_ms: started.elapsed().as_millis(),
                request_id: read_i32(&self.buf, 4).unwrap_or(0),
            })
    }

    /// After [`WireError::OverBudget`]: reads the rest of the refused message and drops
    /// it as it arrives, holding no more than a small stack buffer, so the connection
    /// can carry on. `Ok(false)` if the client closed first.
    pub async fn discard_message<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        max: usize,
        deadline: std::time::Duration,
    ) -> Result<bool, WireError> {
        let total = announced_len(&self.buf, max).unwrap_or(self.buf.len());
        let mut left = total.saturating_sub(self.buf.len());
        self.buf = BytesMut::new();
        let drain = async {
            // On the heap: a stack array here would be part of every session's future.
            let mut chunk = vec![0u8; READ_CHUNK];
            while left > 0 {
                let want = left.min(chunk.len());
                let n = io.read(&mut chunk[..want]).await?;
                if n == 0 {
                    return Ok::<bool, WireError>(false);
                }
                left -= n;
            }
            Ok(true)
        };
        match tokio::time::timeout(deadline, drain).await {
            Ok(r) => r,
            Err(_) => Err(WireError::Stalled(deadline.as_millis())),
        }
    }

    /// Reads the start of a message onto the stack, then allocates what its header
    /// announces (when that is a valid length), up to [`GROWTH_STEP`], and keeps the bytes.
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
        let first = announced_len(got, max).map_or(0, |l| l.min(GROWTH_STEP));
        let mut buf = BytesMut::with_capacity(first.max(got.len()));
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
        self.next_within_budget(io, max, deadline, None).await
    }

    /// Like [`FrameReader::next_within`], with large messages leased from `budget`
    /// ([`crate::memory`]); the lease is then [`FrameReader::take_lease`]'s.
    pub async fn next_within_budget<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        max: usize,
        deadline: std::time::Duration,
        budget: Option<&MemoryBudget>,
    ) -> Result<Option<Frame>, WireError> {
        self.next_bounded(io, max, deadline, None, budget).await
    }

    /// [`FrameReader::next_within_budget`], and with `idle` set, a reader holding no
    /// partial message gives up ([`WireError::Idle`]) when no byte arrives within it.
    /// Only the wait for a message's first byte is bounded, and it is cancel-safe: no
    /// byte is read and lost.
    pub async fn next_bounded<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        max: usize,
        deadline: std::time::Duration,
        idle: Option<std::time::Duration>,
        budget: Option<&MemoryBudget>,
    ) -> Result<Option<Frame>, WireError> {
        if let Some(frame) = decode_frame(&mut self.buf, max)? {
            return Ok(Some(frame));
        }
        let filled = match idle {
            Some(idle) if self.buf.is_empty() => {
                // Boxed: a session without an idle timeout must not carry the timer.
                match Box::pin(tokio::time::timeout(idle, self.fill(io, max, budget))).await {
                    Ok(r) => r?,
                    Err(_) => return Err(WireError::Idle(idle.as_millis())),
                }
            }
            _ => self.fill(io, max, budget).await?,
        };
        if !filled {
            return self.at_eof();
        }
        if let Some(frame) = decode_frame(&mut self.buf, max)? {
            return Ok(Some(frame));
        }
        // A wait for the budget counts against the same deadline: it is the bound on
        // holding a started message, whatever holds it up.
        let read = self.next_in(io, max, budget);
        match tokio::time::timeout(deadline, read).await {
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

    #[test]
    fn growth_doubles_up_to_the_announced_length() {
        const M: usize = 1 << 20;
        let cases = [
            // (buffered, announced, step)
            (1024, Some(5000), 3976),
            (1024, Some(48 * M), GROWTH_STEP),
            (GROWTH_STEP, Some(48 * M), GROWTH_STEP),
            (M, Some(48 * M), M),
            (40 * M, Some(48 * M), 8 * M),
            (2, None, READ_CHUNK),
            (5000, Some(5000), READ_CHUNK),
        ];
        for (buffered, announced, step) in cases {
            assert_eq!(
                next_growth(buffered, announced),
                step,
                "{buffered} of {announced:?}"
            );
        }
        assert_eq!(
            announced_len(&48_000_000i32.to_le_bytes(), 48 * M),
            Some(48_000_000)
        );
        assert_eq!(announced_len(&48_000_000i32.to_le_bytes(), M), None);
        assert_eq!(announced_len(&8i32.to_le_bytes(), M), None);
    }

    #[tokio::test]
    async fn a_stalled_large_message_holds_only_what_arrived() {
        // 48 MB announced, 1 KiB sent, then nothing: the buffer stays at one step.
        let (mut tx, mut rx) = tokio::io::duplex(4096);
        use tokio::io::AsyncWriteExt;
        let mut start = msg(48_000_000, 2013)[..16].to_vec();
        start.resize(1024, 0);
        tx.write_all(&start).await.unwrap();
        let mut r = FrameReader::new();
        let read =
            tokio::time::timeout(std::time::Duration::from_millis(100), r.next(&mut rx, 48 << 20)).await;
        assert!(read.is_err(), "the message is incomplete");
        assert_eq!(r.buffered(), 1024);
        assert!(r.buf.capacity() <= GROWTH_STEP, "capacity {}", r.buf.capacity());
    }

    #[tokio::test]
    async fn a_large_message_arriving_in_pieces_is_read_whole() {
        let big = msg(3_000_000, 2013);
        let (mut tx, mut rx) = tokio::io::duplex(70_000);
        use tokio::io::AsyncWriteExt;
        let sent = big.clone();
        let writer = tokio::spawn(async move { tx.write_all(&sent).await.unwrap() });
        let mut r = FrameReader::new();
        let f = r.next(&mut rx, 4 << 20).await.unwrap().unwrap();
        writer.await.unwrap();
        assert_eq!(f.as_bytes(), &big[..]);
        assert!(f.into_inner().capacity() < 2 * 3_000_000);
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
