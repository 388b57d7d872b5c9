//! Property tests: bytes and replies from the network never panic the parsers, and random
//! sequences of checks and application errors keep the topology's invariants.

use std::time::Duration;

use bson::oid::ObjectId;
use bson::raw::RawDocument;
use bson::{doc, Bson, Document};
use proptest::prelude::*;

use super::*;
use crate::address::ServerAddress;

const HOSTS: [&str; 4] = ["a:1", "b:1", "c:1", "D:1"];

fn oid(n: u8) -> ObjectId {
    let mut bytes = [0u8; 12];
    bytes[11] = n;
    ObjectId::from_bytes(bytes)
}

/// A field value: usually well typed, sometimes not, sometimes absent (None).
fn value(good: impl Strategy<Value = Bson> + 'static) -> BoxedStrategy<Option<Bson>> {
    prop_oneof![
        4 => good.prop_map(Some),
        1 => Just(None),
        1 => prop_oneof![Just(Bson::Int32(1)), Just(Bson::String("x".into())), Just(Bson::Null)]
            .prop_map(Some),
    ]
    .boxed()
}

fn hosts() -> impl Strategy<Value = Bson> {
    proptest::sample::subsequence(HOSTS.to_vec(), 0..=4)
        .prop_map(|h| Bson::Array(h.into_iter().map(|s| Bson::String(s.into())).collect()))
}

fn host() -> impl Strategy<Value = Bson> {
    proptest::sample::select(HOSTS.to_vec()).prop_map(|s| Bson::String(s.into()))
}

fn hello_reply() -> impl Strategy<Value = Document> {
    let flags = (
        value(prop_oneof![
            Just(Bson::Int32(1)),
            Just(Bson::Int32(0)),
            Just(Bson::Double(1.0))
        ]),
        value(any::<bool>().prop_map(Bson::Boolean)),
        value(any::<bool>().prop_map(Bson::Boolean)),
        value(any::<bool>().prop_map(Bson::Boolean)),
        value(any::<bool>().prop_map(Bson::Boolean)),
        value(Just(Bson::String("isdbgrid".into()))),
        value(prop_oneof![
            Just(Bson::String("rs".into())),
            Just(Bson::String("other".into()))
        ]),
    );
    let members = (value(hosts()), value(hosts()), value(host()), value(host()));
    let versions = (
        value((0i32..4).prop_map(Bson::Int32)),
        value((0u8..4).prop_map(|n| Bson::ObjectId(oid(n)))),
        value(prop_oneof![Just(0), Just(7), Just(16), Just(17), Just(21), Just(100)].prop_map(Bson::Int32)),
        value((1u8..3, 0i64..4).prop_map(|(p, c)| Bson::Document(doc! {"processId": oid(p), "counter": c}))),
        value((0i32..40).prop_map(Bson::Int32)),
    );
    (flags, members, versions).prop_map(|(f, m, v)| {
        let mut d = Document::new();
        let fields = [
            ("ok", f.0),
            ("isWritablePrimary", f.1),
            ("secondary", f.2),
            ("hidden", f.3),
            ("isreplicaset", f.4),
            ("msg", f.5),
            ("setName", f.6),
            ("hosts", m.0),
            ("passives", m.1),
            ("me", m.2),
            ("primary", m.3),
            ("setVersion", v.0),
            ("electionId", v.1),
            ("maxWireVersion", v.2),
            ("topologyVersion", v.3),
            ("logicalSessionTimeoutMinutes", v.4),
        ];
        for (k, val) in fields {
            if let Some(val) = val {
                d.insert(k, val);
            }
        }
        d
    })
}

#[derive(Debug, Clone)]
enum Step {
    Check(usize, Document),
    MonitorError(usize),
    AppError(usize, u32, AppErrorKind, bool),
}

fn step() -> impl Strategy<Value = Step> {
    let kind = prop_oneof![
        any::<bool>().prop_map(|timeout| AppErrorKind::Network { timeout }),
        Just(AppErrorKind::Resolve),
        Just(AppErrorKind::Auth),
        (
            prop_oneof![Just(Some(91)), Just(Some(10107)), Just(Some(2)), Just(None)],
            0i64..4
        )
            .prop_map(|(code, c)| AppErrorKind::Command(CommandError {
                code,
                errmsg: "not master".into(),
                topology_version: Some(TopologyVersion {
                    process_id: oid(1),
                    counter: c
                }),
            })),
    ];
    prop_oneof![
        6 => (0..HOSTS.len(), hello_reply()).prop_map(|(i, d)| Step::Check(i, d)),
        1 => (0..HOSTS.len()).prop_map(Step::MonitorError),
        2 => (0..HOSTS.len(), 0u32..3, kind, any::<bool>()).prop_map(|(i, g, k, b)| Step::AppError(i, g, k, b)),
    ]
}

fn check_invariants(td: &TopologyDescription) {
    let primaries = td
        .servers()
        .filter(|s| s.server_type == ServerType::RsPrimary)
        .count();
    if td.topology_type().is_replica_set() {
        assert!(primaries <= 1, "two primaries in {td:?}");
        let with = td.topology_type() == TopologyType::ReplicaSetWithPrimary;
        assert_eq!(with, primaries == 1, "type disagrees with primaries: {td:?}");
    }
    // Sharded may still hold an RSGhost seen while the type was Unknown: the table acts
    // only on the server just checked, so the ghost goes at its own next check.
    if td.topology_type() == TopologyType::Sharded {
        assert!(td.servers().all(|s| !s.server_type.is_rs_member()), "{td:?}");
    }
    for sd in td.servers() {
        assert!(
            td.pool_generation(&sd.address).is_some(),
            "no generation for {}",
            sd.address
        );
    }
}

proptest! {
    // Failures print their minimal case; no regression files outside src/sdam.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn raw_read_preferences_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(raw) = RawDocument::from_bytes(&bytes) {
            let _ = ReadPreference::from_raw(raw);
        }
    }

    #[test]
    fn decoded_hello_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        if let Ok(doc) = Document::from_reader(bytes.as_slice()) {
            let _ = ServerDescription::from_hello(ServerAddress::new("a", 1), &doc, Duration::ZERO, Duration::ZERO);
            let _ = CommandError::from_reply(&doc);
        }
    }

    #[test]
    fn random_histories_keep_invariants(
        seeds in proptest::sample::subsequence(HOSTS.to_vec(), 1..=4),
        replica_set in any::<bool>(),
        steps in proptest::collection::vec(step(), 0..40),
    ) {
        let mut settings = TopologySettings::new(seeds.iter().map(|s| ServerAddress::parse(s).unwrap()).collect());
        if replica_set {
            settings.replica_set = Some("rs".into());
        }
        let (mut td, _) = TopologyDescription::new(settings).unwrap();
        for (n, step) in steps.into_iter().enumerate() {
            let addr = |i: usize| ServerAddress::parse(HOSTS[i]).unwrap();
            match step {
                Step::Check(i, reply) => {
                    let now = Duration::from_millis(u64::try_from(n).unwrap());
                    let sd = ServerDescription::from_hello(addr(i), &reply, Duration::ZERO, now);
                    td.update(sd);
                }
                Step::MonitorError(i) => drop(td.handle_monitor_error(&addr(i), "down", false)),
                Step::AppError(i, generation, kind, after) => {
                    let phase = if after { HandshakePhase::AfterHandshake } else { HandshakePhase::BeforeHandshake };
                    let error = AppError { generation, phase, kind };
                    td.handle_application_error(&addr(i), &error, Some(21));
                }
            }
            check_invariants(&td);
            let criteria = SelectionCriteria::Read(ReadPreference::with_mode(ReadMode::Nearest));
            let _ = select(&td, &criteria);
            let _ = select(&td, &SelectionCriteria::Write);
        }
    }
}
