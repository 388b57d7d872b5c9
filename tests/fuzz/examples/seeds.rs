//! Turns the messages `capture.py` recorded into the seed corpus of each fuzz target:
//!
//! - `frame`: whole messages, and a few connections' first messages back to back as a
//!   socket delivers them (one cut short);
//! - `msg`: the OP_MSG and OP_QUERY messages, and some OP_MSGs given a CRC-32C checksum;
//! - `command`: every command and reply body;
//! - `hello`: the hello/isMaster commands and the replies that carry a server's limits;
//! - `decompress`: small messages wrapped in OP_COMPRESSED by `wire::compress` with
//!   snappy, zlib and zstd, and with the noop compressor. SecantusDB offers no
//!   compression, so no driver sends OP_COMPRESSED to it.
//!
//! At most a few messages of each (direction, opcode, command) are kept, so the corpus
//! stays small and varied. Usage:
//!
//!     cargo run --manifest-path tests/fuzz/Cargo.toml --example seeds -- CAPTURED SEEDS

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use bson::RawDocument;
use bytes::{BufMut, BytesMut};
use mongoplex::wire::{compress, refresh_checksum, Compressor, Frame, OpCode, OpMsg, OpQuery, HEADER_LEN};

/// Messages of each kind kept, and the largest message kept.
const PER_KIND: usize = 3;
const LARGEST: usize = 16 * 1024;
/// Only messages this small are compressed (the compressed seeds stay small too).
const LARGEST_COMPRESSED: usize = 4 * 1024;

struct Captured {
    connection: String,
    client: bool,
    frame: Frame,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, captured, seeds] = &args[..] else {
        eprintln!("usage: seeds CAPTURED_DIR SEEDS_DIR");
        std::process::exit(2);
    };
    let all = read_captured(Path::new(captured));
    let mut out = Seeds::new(PathBuf::from(seeds));
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for c in &all {
        let body = body_of(&c.frame);
        let name = body.and_then(first_key).unwrap_or_default();
        let kind = format!("{} {:?} {name}", c.client, c.frame.op_code());
        let n = kinds.entry(kind).or_default();
        *n += 1;
        if let Some(doc) = body {
            out.add("command", doc.as_bytes());
            if is_hello(doc, c.client) {
                out.add("hello", doc.as_bytes());
            }
        }
        if *n > PER_KIND || c.frame.len() > LARGEST {
            continue;
        }
        out.add("frame", c.frame.as_bytes());
        if matches!(c.frame.op_code(), Some(OpCode::Msg | OpCode::Query)) {
            out.add("msg", c.frame.as_bytes());
        }
        if c.frame.op_code() == Some(OpCode::Msg) && *n == 1 {
            out.add("msg", with_checksum(&c.frame).as_bytes());
        }
        if c.frame.len() <= LARGEST_COMPRESSED {
            for z in compressed(&c.frame) {
                out.add("decompress", z.as_bytes());
            }
        }
    }
    for (i, stream) in streams(&all).into_iter().enumerate() {
        if i % 2 == 1 {
            out.add("frame", &stream[..stream.len() - 3]);
        }
        out.add("frame", &stream);
    }
    out.report();
}

fn read_captured(dir: &Path) -> Vec<Captured> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    // <connection>-<sequence>-<side>.bin: the sequence orders messages across connections.
    names.sort_by_key(|p| {
        p.file_name()
            .map(|n| n.to_string_lossy().split('-').nth(1).unwrap_or("").to_owned())
    });
    names
        .into_iter()
        .filter_map(|p| {
            let name = p.file_stem()?.to_string_lossy().into_owned();
            let mut parts = name.split('-');
            let connection = parts.next()?.to_owned();
            let client = parts.nth(1)? == "c";
            let frame = Frame::from_bytes(BytesMut::from(&fs::read(&p).ok()?[..])).ok()?;
            Some(Captured {
                connection,
                client,
                frame,
            })
        })
        .collect()
}

/// The command or reply document: an OP_MSG body, an OP_QUERY query, an OP_REPLY's first
/// document.
fn body_of(frame: &Frame) -> Option<&RawDocument> {
    match frame.op_code()? {
        OpCode::Msg => OpMsg::parse(frame).ok().map(|m| m.body),
        OpCode::Query => OpQuery::parse(frame).ok().map(|q| q.query),
        OpCode::Reply => {
            let doc = frame.payload().get(20..)?;
            let len = usize::try_from(i32::from_le_bytes(doc.get(..4)?.try_into().ok()?)).ok()?;
            RawDocument::from_bytes(doc.get(..len)?).ok()
        }
        OpCode::Compressed => None,
    }
}

fn first_key(doc: &RawDocument) -> Option<String> {
    doc.iter().next()?.ok().map(|(k, _)| k.as_str().to_owned())
}

fn is_hello(doc: &RawDocument, client: bool) -> bool {
    if client {
        let inner = doc.get_document("$query").unwrap_or(doc);
        let name = first_key(inner).unwrap_or_default();
        matches!(name.as_str(), "hello" | "isMaster" | "ismaster")
    } else {
        doc.get("maxWireVersion").ok().flatten().is_some()
    }
}

/// The same OP_MSG with the checksum flag and a valid CRC-32C.
fn with_checksum(frame: &Frame) -> Frame {
    let mut b = frame.clone().into_inner();
    b[16] |= 1;
    b.put_u32_le(0);
    let len = i32::try_from(b.len()).expect("a small message");
    b[0..4].copy_from_slice(&len.to_le_bytes());
    let mut f = Frame::from_bytes(b).expect("length set");
    refresh_checksum(&mut f);
    f
}

/// The message in OP_COMPRESSED with each compressor, and with the noop compressor (id 0).
fn compressed(frame: &Frame) -> Vec<Frame> {
    let mut out: Vec<Frame> = [
        Compressor::Snappy,
        Compressor::Zlib { level: None },
        Compressor::Zstd,
    ]
    .into_iter()
    .filter_map(|c| compress(frame, c).ok())
    .collect();
    let h = frame.header();
    let mut b = BytesMut::new();
    let len = i32::try_from(HEADER_LEN + 9 + frame.payload().len()).expect("a small message");
    for v in [
        len,
        h.request_id,
        h.response_to,
        OpCode::Compressed.as_i32(),
        h.op_code,
    ] {
        b.put_i32_le(v);
    }
    b.put_i32_le(i32::try_from(frame.payload().len()).expect("a small message"));
    b.put_u8(0);
    b.extend_from_slice(frame.payload());
    out.extend(Frame::from_bytes(b).ok());
    out
}

/// The first messages of a few connections, each direction back to back.
fn streams(all: &[Captured]) -> Vec<Vec<u8>> {
    let connections: BTreeSet<&str> = all.iter().map(|c| c.connection.as_str()).collect();
    let mut out = Vec::new();
    for conn in connections.into_iter().take(4) {
        for client in [true, false] {
            let s: Vec<u8> = all
                .iter()
                .filter(|c| c.connection == conn && c.client == client && c.frame.len() <= LARGEST)
                .take(6)
                .flat_map(|c| c.frame.as_bytes().to_vec())
                .collect();
            if s.len() > 3 {
                out.push(s);
            }
        }
    }
    out
}

/// Seed files, named by a hash of their content, one directory per target.
struct Seeds {
    root: PathBuf,
    written: BTreeMap<&'static str, BTreeSet<u64>>,
}

impl Seeds {
    fn new(root: PathBuf) -> Self {
        Self {
            root,
            written: BTreeMap::new(),
        }
    }

    fn add(&mut self, target: &'static str, bytes: &[u8]) {
        // FNV-1a: stable across runs, so a re-capture of the same traffic changes nothing.
        let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        if !self.written.entry(target).or_default().insert(h) {
            return;
        }
        let dir = self.root.join(target);
        fs::create_dir_all(&dir).expect("create seed dir");
        fs::write(dir.join(format!("seed-{h:016x}")), bytes).expect("write seed");
    }

    fn report(&self) {
        for (target, seeds) in &self.written {
            println!("{target}: {} seeds", seeds.len());
        }
    }
}
