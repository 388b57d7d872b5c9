//! The hello parses over one BSON document: the client's handshake as the proxy reads
//! it (`ClientMetadata`, compression negotiation, an awaitable hello's topologyVersion),
//! and a member's reply as the monitor reads it (`UpstreamLimits` and SDAM's
//! `ServerDescription::from_hello`), and that description fed to the SDAM state machine
//! as the monitor feeds it.
#![no_main]

use std::time::Duration;

use bson::{oid::ObjectId, Document, RawDocument};
use libfuzzer_sys::fuzz_target;
use mongoplex::address::ServerAddress;
use mongoplex::handshake::{negotiate_compression, ClientMetadata, ProxyTopologyVersion, UpstreamLimits};
use mongoplex::sdam::{ServerDescription, ServerType, TopologyDescription, TopologySettings};
use mongoplex::wire::Compressor;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = RawDocument::from_bytes(data) else {
        return;
    };
    // Client side.
    let _ = ClientMetadata::from_hello(doc);
    let all = [
        Compressor::Snappy,
        Compressor::Zlib { level: None },
        Compressor::Zstd,
    ];
    let chosen = negotiate_compression(doc, &all);
    assert!(chosen.len() <= all.len());
    if let Ok(tv) = doc.get_document("topologyVersion") {
        let ours = ProxyTopologyVersion {
            process_id: ObjectId::from_bytes([7; 12]),
            counter: 3,
        };
        let _ = ours.matches(tv);
    }
    // Member side, as the monitor does it: the raw body becomes a Document first.
    let _ = UpstreamLimits::from_hello(doc);
    let Ok(reply) = Document::try_from(doc) else {
        return;
    };
    let seed = ServerAddress::new("db1.example.test", 27017);
    let sd = ServerDescription::from_hello(
        seed.clone(),
        &reply,
        Duration::from_millis(3),
        Duration::from_secs(60),
    );
    if sd.server_type == ServerType::Unknown {
        return;
    }
    let Ok((mut topology, _)) = TopologyDescription::new(TopologySettings::new(vec![seed])) else {
        return;
    };
    let _ = topology.update(sd);
    let _ = topology.compatibility_error();
});
