//! The frame decoder: `decode_frame` over the whole input, and `FrameReader` over the same
//! bytes arriving in small reads, must agree frame for frame and end the same way.
#![no_main]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mongoplex::wire::{decode_frame, Frame, FrameReader, WireError, DEFAULT_MAX_MESSAGE_SIZE, HEADER_LEN};
use tokio::io::{AsyncRead, ReadBuf};

const MAX: usize = DEFAULT_MAX_MESSAGE_SIZE;

/// An in-memory stream handing out at most `chunk` bytes per read, so that headers and
/// messages span reads as they do on a socket.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.chunk.min(self.data.len()).min(buf.remaining());
        let (now, rest) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

/// Polls once: an in-memory stream never makes a read wait.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a read of an in-memory stream pended"),
    }
}

/// How a stream of frames ended.
#[derive(Debug, PartialEq)]
enum End {
    Clean,
    Truncated(usize),
    Error(&'static str),
}

fn check(frame: &Frame) {
    let h = frame.header();
    assert_eq!(usize::try_from(h.length).ok(), Some(frame.len()));
    assert!(frame.len() >= HEADER_LEN && frame.len() <= MAX);
    assert!(frame.op_code().is_some(), "unknown opcodes never become frames");
    assert_eq!(frame.payload().len(), frame.len() - HEADER_LEN);
}

fn by_decoder(data: &[u8]) -> (Vec<Frame>, End) {
    let mut buf = BytesMut::from(data);
    let mut frames = Vec::new();
    loop {
        match decode_frame(&mut buf, MAX) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) if buf.is_empty() => return (frames, End::Clean),
            Ok(None) => return (frames, End::Truncated(buf.len())),
            Err(e) => return (frames, End::Error(e.kind())),
        }
    }
}

fn by_reader(data: &[u8], chunk: usize) -> (Vec<Frame>, End) {
    let mut io = Chunked { data, chunk };
    let mut r = FrameReader::new();
    let mut frames = Vec::new();
    loop {
        match now(r.next(&mut io, MAX)) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return (frames, End::Clean),
            Err(WireError::Truncated(n)) => return (frames, End::Truncated(n)),
            Err(e) => return (frames, End::Error(e.kind())),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (frames, end) = by_decoder(data);
    frames.iter().for_each(check);
    // Read sizes from the input itself, so the seeds stay plain captured frames.
    let h = data
        .iter()
        .fold(0usize, |a, &b| a.wrapping_mul(31).wrapping_add(usize::from(b)));
    for chunk in [1 + h % 23, 1 + h % 1500, usize::MAX] {
        let (read, read_end) = by_reader(data, chunk);
        assert_eq!(read, frames, "reads of {chunk} bytes");
        assert_eq!(read_end, end, "reads of {chunk} bytes");
    }
});
