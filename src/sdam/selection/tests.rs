//! Unit tests for selection details the spec files leave implicit.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::sdam::topology::TopologySettings;

fn server(name: &str, t: ServerType, rtt_ms: u64) -> ServerDescription {
    let mut sd = ServerDescription::unknown(ServerAddress::new(name, 27017), None);
    sd.server_type = t;
    sd.round_trip_time = Some(Duration::from_millis(rtt_ms));
    sd
}

fn topology(t: TopologyType, servers: Vec<ServerDescription>) -> TopologyDescription {
    let settings = TopologySettings::new(vec![ServerAddress::new("a", 27017)]);
    TopologyDescription::from_servers(settings, t, servers)
}

fn names(servers: &[&ServerDescription]) -> Vec<String> {
    servers.iter().map(|s| s.address.host.clone()).collect()
}

fn read(mode: ReadMode) -> SelectionCriteria {
    SelectionCriteria::Read(ReadPreference::with_mode(mode))
}

#[test]
fn suitability_per_topology_type() {
    use ServerType as S;
    use TopologyType as T;
    let rs = || {
        vec![
            server("p", S::RsPrimary, 5),
            server("s", S::RsSecondary, 5),
            server("x", S::RsArbiter, 5),
            server("u", S::Unknown, 5),
        ]
    };
    let cases: Vec<(T, Vec<ServerDescription>, SelectionCriteria, Vec<&str>)> = vec![
        (
            T::Unknown,
            vec![server("m", S::Mongos, 1)],
            SelectionCriteria::Write,
            vec![],
        ),
        (
            T::Single,
            vec![server("s", S::RsSecondary, 1)],
            SelectionCriteria::Write,
            vec!["s"],
        ),
        (
            T::Single,
            vec![server("u", S::Unknown, 1)],
            read(ReadMode::Nearest),
            vec![],
        ),
        (
            T::Sharded,
            vec![server("m", S::Mongos, 1), server("u", S::Unknown, 1)],
            read(ReadMode::Secondary),
            vec!["m"],
        ),
        (
            T::LoadBalanced,
            vec![ServerDescription::load_balancer(ServerAddress::new("lb", 27017))],
            SelectionCriteria::Write,
            vec!["lb"],
        ),
        (
            T::ReplicaSetWithPrimary,
            rs(),
            SelectionCriteria::Write,
            vec!["p"],
        ),
        (T::ReplicaSetWithPrimary, rs(), read(ReadMode::Primary), vec!["p"]),
        (
            T::ReplicaSetWithPrimary,
            rs(),
            read(ReadMode::PrimaryPreferred),
            vec!["p"],
        ),
        (
            T::ReplicaSetWithPrimary,
            rs(),
            read(ReadMode::Secondary),
            vec!["s"],
        ),
        (
            T::ReplicaSetWithPrimary,
            rs(),
            read(ReadMode::SecondaryPreferred),
            vec!["s"],
        ),
        (
            T::ReplicaSetWithPrimary,
            rs(),
            read(ReadMode::Nearest),
            vec!["p", "s"],
        ),
        (
            T::ReplicaSetNoPrimary,
            vec![server("s", S::RsSecondary, 1)],
            SelectionCriteria::Write,
            vec![],
        ),
        (
            T::ReplicaSetNoPrimary,
            vec![server("s", S::RsSecondary, 1)],
            read(ReadMode::PrimaryPreferred),
            vec!["s"],
        ),
    ];
    for (t, servers, criteria, want) in cases {
        let td = topology(t, servers);
        let got = suitable_servers(&td, &criteria, &[]).unwrap();
        assert_eq!(names(&got), want, "{t:?} {criteria:?}");
    }
}

#[test]
fn latency_window_is_inclusive() {
    let a = server("a", ServerType::Mongos, 5);
    let b = server("b", ServerType::Mongos, 20);
    let c = server("c", ServerType::Mongos, 21);
    let got = in_latency_window(vec![&a, &b, &c], Duration::from_millis(15));
    assert_eq!(names(&got), vec!["a", "b"]);
    assert!(in_latency_window(Vec::new(), Duration::ZERO).is_empty());
}

#[test]
fn incompatible_topology_fails_selection() {
    let mut old = server("a", ServerType::Standalone, 1);
    old.max_wire_version = Some(2);
    let td = topology(TopologyType::Single, vec![old]);
    assert!(matches!(
        select(&td, &SelectionCriteria::Write),
        Err(SelectionError::Incompatible(_))
    ));
}

#[test]
fn max_staleness_is_validated_only_for_replica_sets() {
    let rp = ReadPreference {
        max_staleness: Some(Duration::from_secs(1)),
        ..ReadPreference::with_mode(ReadMode::Nearest)
    };
    let criteria = SelectionCriteria::Read(rp);
    let sharded = topology(TopologyType::Sharded, vec![server("m", ServerType::Mongos, 1)]);
    assert_eq!(select(&sharded, &criteria).unwrap().len(), 1);
    let rs = topology(TopologyType::ReplicaSetNoPrimary, vec![]);
    assert!(matches!(
        select(&rs, &criteria),
        Err(SelectionError::ReadPreference(_))
    ));
}

#[test]
fn staleness_filters_lagging_secondaries() {
    let mut p = server("p", ServerType::RsPrimary, 1);
    p.last_update_time = Some(Duration::from_secs(100));
    p.last_write_date = Some(100_000);
    let mut fresh = server("f", ServerType::RsSecondary, 1);
    fresh.last_update_time = Some(Duration::from_secs(100));
    fresh.last_write_date = Some(99_000);
    let mut lagging = server("l", ServerType::RsSecondary, 1);
    lagging.last_update_time = Some(Duration::from_secs(100));
    lagging.last_write_date = Some(0);
    let rp = ReadPreference {
        max_staleness: Some(Duration::from_secs(90)),
        ..ReadPreference::with_mode(ReadMode::Secondary)
    };
    let criteria = SelectionCriteria::Read(rp);
    let with = topology(
        TopologyType::ReplicaSetWithPrimary,
        vec![p, fresh.clone(), lagging.clone()],
    );
    assert_eq!(
        names(&suitable_servers(&with, &criteria, &[]).unwrap()),
        vec!["f"]
    );
    let without = topology(TopologyType::ReplicaSetNoPrimary, vec![fresh, lagging]);
    assert_eq!(
        names(&suitable_servers(&without, &criteria, &[]).unwrap()),
        vec!["f"]
    );
}

#[test]
fn tag_sets_are_tried_in_order() {
    let mut ny = server("ny", ServerType::RsSecondary, 1);
    ny.tags = BTreeMap::from([("dc".to_owned(), "ny".to_owned())]);
    let mut sf = server("sf", ServerType::RsSecondary, 1);
    sf.tags = BTreeMap::from([
        ("dc".to_owned(), "sf".to_owned()),
        ("r".to_owned(), "1".to_owned()),
    ]);
    let td = topology(TopologyType::ReplicaSetNoPrimary, vec![ny, sf]);
    let tag = |pairs: &[(&str, &str)]| -> TagSet {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let cases = [
        (vec![tag(&[("dc", "la")]), tag(&[("dc", "sf")])], vec!["sf"]),
        (vec![tag(&[("dc", "sf"), ("r", "2")])], vec![]),
        (vec![tag(&[("dc", "la")]), tag(&[])], vec!["ny", "sf"]),
        (vec![], vec!["ny", "sf"]),
    ];
    for (tag_sets, want) in cases {
        let rp = ReadPreference {
            tag_sets: tag_sets.clone(),
            ..ReadPreference::with_mode(ReadMode::Secondary)
        };
        let got = suitable_servers(&td, &SelectionCriteria::Read(rp), &[]).unwrap();
        assert_eq!(names(&got), want, "{tag_sets:?}");
    }
}

#[test]
fn two_choices_prefers_fewer_operations() {
    let a = server("a", ServerType::Mongos, 1);
    let b = server("b", ServerType::Mongos, 1);
    let mut rng = StdRng::seed_from_u64(7);
    let busy = |addr: &ServerAddress| if addr.host == "a" { 10 } else { 0 };
    for _ in 0..100 {
        let chosen = choose_in_window(&[&a, &b], busy, &mut rng).unwrap();
        assert_eq!(chosen.address.host, "b");
    }
    assert!(choose_in_window(&[], busy, &mut rng).is_none());
    assert_eq!(choose_in_window(&[&a], busy, &mut rng).unwrap().address.host, "a");
}
