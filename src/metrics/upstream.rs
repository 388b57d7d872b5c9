//! Counters of the bytes on upstream sockets, resolved once, so that an upstream
//! connection records a message with an atomic add and no label lookup. They count the
//! messages as written and read (OP_COMPRESSED when compressed), which is what proves
//! that compression shrank the proxy→server leg.

use prometheus::{IntCounter, IntCounterVec, Registry};

use super::counter_vec;
use crate::wire::Compressor;

/// Which way a message went on an upstream socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Sent,
    Received,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Self::Sent => 0,
            Self::Received => 1,
        }
    }
}

const DIRECTIONS: [&str; 2] = ["sent", "received"];
/// In id order (1, 2, 3), so that a compressor's slot is its id less one.
const COMPRESSORS: [Compressor; 3] = [
    Compressor::Snappy,
    Compressor::Zlib { level: None },
    Compressor::Zstd,
];

/// Handles shared by every upstream connection (pooled and monitoring); cheap to clone.
#[derive(Debug, Clone)]
pub struct UpstreamWire {
    bytes: [IntCounter; 2],
    /// By compressor id less one (snappy, zlib, zstd: [`COMPRESSORS`]), then direction.
    compressed: [[IntCounter; 2]; 3],
    protocol_errors: IntCounterVec,
}

impl UpstreamWire {
    pub(super) fn new(r: &Registry) -> Self {
        let bytes = counter_vec(
            r,
            "mongoplex_upstream_bytes_total",
            "Bytes of messages written to and read from upstream sockets, as on the wire (compressed when compressed).",
            &["direction"],
        );
        let compressed = counter_vec(
            r,
            "mongoplex_upstream_compressed_messages_total",
            "OP_COMPRESSED messages on upstream connections, by compressor and direction.",
            &["compressor", "direction"],
        );
        let by_direction = |c: Compressor| DIRECTIONS.map(|d| compressed.with_label_values(&[c.name(), d]));
        Self {
            bytes: DIRECTIONS.map(|d| bytes.with_label_values(&[d])),
            compressed: COMPRESSORS.map(by_direction),
            protocol_errors: counter_vec(
                r,
                "mongoplex_upstream_protocol_errors_total",
                "Replies from upstream servers that could not be understood (the connection is discarded), by kind.",
                &["kind"],
            ),
        }
    }

    /// One message of `len` bytes on the wire; `compressor` when it was OP_COMPRESSED.
    pub fn record(&self, direction: Direction, len: usize, compressor: Option<Compressor>) {
        let d = direction.index();
        self.bytes[d].inc_by(u64::try_from(len).unwrap_or(u64::MAX));
        if let Some(c) = compressor {
            let slot = usize::from(c.id()).checked_sub(1);
            if let Some(per) = slot.and_then(|i| self.compressed.get(i)) {
                per[d].inc();
            }
        }
    }

    /// A reply that was not a message the proxy could use (`kind`: [`crate::wire::WireError::kind`]).
    pub fn protocol_error(&self, kind: &str) {
        self.protocol_errors.with_label_values(&[kind]).inc();
    }
}
