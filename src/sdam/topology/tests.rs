//! Unit tests for what the spec JSON files do not exercise: settings validation, the
//! caller-facing parts of `TopologyUpdate`, and the error kinds the files lack.

use std::time::Duration;

use bson::{doc, Document};

use super::*;
use crate::sdam::errors::{AppError, AppErrorKind, CommandError, HandshakePhase};

fn addr(s: &str) -> ServerAddress {
    ServerAddress::parse(s).unwrap()
}

fn settings(seeds: &[&str]) -> TopologySettings {
    TopologySettings::new(seeds.iter().map(|s| addr(s)).collect())
}

fn rs_settings(seeds: &[&str]) -> TopologySettings {
    TopologySettings {
        replica_set: Some("rs".into()),
        ..settings(seeds)
    }
}

fn hello(address: &str, reply: Document) -> ServerDescription {
    ServerDescription::from_hello(addr(address), &reply, Duration::from_millis(1), Duration::ZERO)
}

fn primary(address: &str, hosts: &[&str], max_wire: i32) -> ServerDescription {
    hello(
        address,
        doc! {"ok": 1, "isWritablePrimary": true, "setName": "rs", "hosts": hosts,
        "minWireVersion": 0, "maxWireVersion": max_wire},
    )
}

#[test]
fn settings_validation() {
    let lb = |mut s: TopologySettings| {
        s.load_balanced = true;
        s
    };
    let cases = [
        (settings(&[]), Some(SettingsError::NoSeeds)),
        (
            TopologySettings {
                direct_connection: true,
                ..settings(&["a", "b"])
            },
            Some(SettingsError::DirectWithManySeeds),
        ),
        (
            lb(settings(&["a", "b"])),
            Some(SettingsError::LoadBalancedConflict("multiple hosts")),
        ),
        (
            lb(rs_settings(&["a"])),
            Some(SettingsError::LoadBalancedConflict("replicaSet")),
        ),
        (
            TopologySettings {
                heartbeat_frequency: Duration::from_millis(499),
                ..settings(&["a"])
            },
            Some(SettingsError::HeartbeatTooShort(Duration::from_millis(499))),
        ),
        (settings(&["a", "A:27017"]), None),
        (lb(settings(&["a"])), None),
    ];
    for (s, want) in cases {
        assert_eq!(s.clone().validate().err(), want, "{s:?}");
    }
    assert_eq!(settings(&["a", "A"]).validate().unwrap().seeds.len(), 1);
}

#[test]
fn initial_types_and_events() {
    let cases = [
        (settings(&["a", "b"]), TopologyType::Unknown, 2),
        (rs_settings(&["a"]), TopologyType::ReplicaSetNoPrimary, 1),
        (
            TopologySettings {
                direct_connection: true,
                ..rs_settings(&["a"])
            },
            TopologyType::Single,
            1,
        ),
        (
            TopologySettings {
                load_balanced: true,
                ..settings(&["a"])
            },
            TopologyType::LoadBalanced,
            1,
        ),
    ];
    for (s, want, seeds) in cases {
        let (td, update) = TopologyDescription::new(s).unwrap();
        assert_eq!(td.topology_type(), want);
        assert_eq!(update.added.len(), seeds);
        assert_eq!(update.events.first(), Some(&SdamEvent::TopologyOpening));
    }
}

#[test]
fn update_reports_members_primary_and_ready_pools() {
    let (mut td, _) = TopologyDescription::new(rs_settings(&["a"])).unwrap();
    let up = td.update(primary("a", &["a", "b", "c"], 21));
    assert_eq!(up.added, vec![addr("b"), addr("c")]);
    assert_eq!(
        up.primary_changed,
        Some(PrimaryChange {
            old: None,
            new: Some(addr("a"))
        })
    );
    assert_eq!(up.pools_ready, vec![addr("a")]);
    let up = td.update(primary("b", &["a", "b"], 21));
    assert_eq!(up.removed, vec![addr("c")]);
    assert_eq!(up.immediate_checks, vec![addr("a")], "old primary is re-checked");
    assert!(up.pools_to_clear.is_empty(), "4.2+ primaries keep their pools");
    assert_eq!(up.primary_changed.unwrap().new, Some(addr("b")));
    assert!(
        td.update(hello("c", doc! {"ok": 1})).is_empty(),
        "removed servers are ignored"
    );
}

#[test]
fn pre_42_old_primary_pool_is_cleared() {
    let (mut td, _) = TopologyDescription::new(rs_settings(&["a", "b"])).unwrap();
    td.update(primary("a", &["a", "b"], 7));
    let up = td.update(primary("b", &["a", "b"], 7));
    assert_eq!(up.pools_to_clear.len(), 1);
    assert_eq!(up.pools_to_clear[0].address, addr("a"));
    assert_eq!(td.pool_generation(&addr("a")), Some(1));
}

#[test]
fn monitor_error_clears_pool_and_equal_updates_are_silent() {
    let (mut td, _) = TopologyDescription::new(settings(&["a"])).unwrap();
    let standalone = doc! {"ok": 1, "minWireVersion": 0, "maxWireVersion": 21};
    assert!(!td.update(hello("a", standalone.clone())).events.is_empty());
    let again = td.update(hello("a", standalone));
    assert!(again.events.is_empty() && again.pools_ready == vec![addr("a")]);
    let up = td.handle_monitor_error(&addr("a"), "connection refused", true);
    assert_eq!(td.server(&addr("a")).unwrap().server_type, ServerType::Unknown);
    assert_eq!(
        up.pools_to_clear,
        vec![PoolClear {
            address: addr("a"),
            new_generation: 1,
            interrupt_in_use: true
        }]
    );
    assert!(td.handle_monitor_error(&addr("zz"), "x", false).is_empty());
}

fn app_error(kind: AppErrorKind, phase: HandshakePhase) -> AppError {
    AppError {
        generation: 0,
        phase,
        kind,
    }
}

#[test]
fn application_error_kinds() {
    use AppErrorKind as K;
    use HandshakePhase::{AfterHandshake as After, BeforeHandshake as Before};
    let not_primary = K::Command(CommandError {
        code: Some(10107),
        errmsg: "not primary".into(),
        topology_version: None,
    });
    let other = K::Command(CommandError {
        code: Some(2),
        errmsg: "bad value".into(),
        topology_version: None,
    });
    // (kind, phase, max wire, mark unknown, clear pool, immediate check)
    let cases = [
        (K::Network { timeout: false }, After, 21, true, true, false),
        (K::Network { timeout: true }, After, 21, false, false, false),
        (K::Network { timeout: false }, Before, 21, false, false, false),
        (K::Network { timeout: true }, Before, 21, false, false, false),
        (K::Resolve, Before, 21, true, true, false),
        (K::Auth, Before, 21, true, true, false),
        (not_primary.clone(), After, 21, true, false, true),
        (not_primary, After, 7, true, true, true),
        (other, After, 21, false, false, false),
    ];
    for (kind, phase, wire, unknown, clear, check) in cases {
        let (mut td, _) = TopologyDescription::new(rs_settings(&["a"])).unwrap();
        td.update(primary("a", &["a"], 21));
        let action = td.handle_application_error(&addr("a"), &app_error(kind.clone(), phase), Some(wire));
        let got = (
            action.mark_unknown,
            action.clear_pool,
            action.request_immediate_check,
        );
        assert_eq!(got, (unknown, clear, check), "{kind:?} {phase:?} wire {wire}");
        assert!(!action.ignored_as_stale);
        let want_type = if unknown {
            ServerType::Unknown
        } else {
            ServerType::RsPrimary
        };
        assert_eq!(td.server(&addr("a")).unwrap().server_type, want_type, "{kind:?}");
        assert_eq!(td.pool_generation(&addr("a")), Some(u32::from(clear)));
        if unknown {
            assert_eq!(td.topology_type(), TopologyType::ReplicaSetNoPrimary);
            assert!(action.update.primary_changed.is_some());
        }
    }
}

#[test]
fn stale_generations_and_unknown_servers_are_ignored() {
    let (mut td, _) = TopologyDescription::new(rs_settings(&["a"])).unwrap();
    td.update(primary("a", &["a"], 21));
    let mut err = app_error(
        AppErrorKind::Network { timeout: false },
        HandshakePhase::AfterHandshake,
    );
    err.generation = 5;
    assert!(
        td.handle_application_error(&addr("a"), &err, Some(21))
            .ignored_as_stale
    );
    err.generation = 0;
    assert!(
        td.handle_application_error(&addr("zz"), &err, Some(21))
            .ignored_as_stale
    );
    assert_eq!(td.server(&addr("a")).unwrap().server_type, ServerType::RsPrimary);
}

#[test]
fn load_balanced_errors_never_mark_unknown() {
    let lb = TopologySettings {
        load_balanced: true,
        ..settings(&["lb"])
    };
    let (mut td, _) = TopologyDescription::new(lb).unwrap();
    let shutdown = AppErrorKind::Command(CommandError {
        code: Some(91),
        errmsg: "shutting down".into(),
        topology_version: None,
    });
    for (kind, clear) in [
        (shutdown, true),
        (AppErrorKind::Network { timeout: false }, true),
        (AppErrorKind::Resolve, false),
    ] {
        let generation = td.pool_generation(&addr("lb")).unwrap();
        let err = AppError {
            generation,
            phase: HandshakePhase::AfterHandshake,
            kind: kind.clone(),
        };
        let action = td.handle_application_error(&addr("lb"), &err, Some(21));
        assert!(!action.mark_unknown, "{kind:?}");
        assert_eq!(action.clear_pool, clear, "{kind:?}");
        assert_eq!(
            td.server(&addr("lb")).unwrap().server_type,
            ServerType::LoadBalancer
        );
    }
    assert!(
        td.update(hello("lb", doc! {"ok": 1})).is_empty(),
        "LB is never monitored"
    );
}

#[test]
fn ghost_seen_while_unknown_waits_for_its_own_check() {
    // Found by the property test: the table acts only on the server just checked.
    let (mut td, _) = TopologyDescription::new(settings(&["c", "d"])).unwrap();
    td.update(hello("c", doc! {"ok": 1, "isreplicaset": true}));
    td.update(hello("d", doc! {"ok": 1, "msg": "isdbgrid"}));
    assert_eq!(td.topology_type(), TopologyType::Sharded);
    assert_eq!(td.server(&addr("c")).unwrap().server_type, ServerType::RsGhost);
    let up = td.update(hello("c", doc! {"ok": 1, "isreplicaset": true}));
    assert_eq!(up.removed, vec![addr("c")]);
}

#[test]
fn close_removes_everything() {
    let (mut td, _) = TopologyDescription::new(settings(&["a", "b"])).unwrap();
    let up = td.close();
    assert_eq!(up.removed, vec![addr("a"), addr("b")]);
    assert_eq!(up.events.last(), Some(&SdamEvent::TopologyClosed));
    assert_eq!(td.servers().count(), 0);
}

#[test]
fn merge_keeps_first_old_and_last_new_primary() {
    let change = |o: Option<&str>, n: Option<&str>| TopologyUpdate {
        primary_changed: Some(PrimaryChange {
            old: o.map(addr),
            new: n.map(addr),
        }),
        added: vec![addr("x")],
        ..TopologyUpdate::default()
    };
    let mut first = change(Some("a"), None);
    first.merge(change(None, Some("b")));
    assert_eq!(
        first.primary_changed,
        change(Some("a"), Some("b")).primary_changed
    );
    assert_eq!(first.added.len(), 2);
}

#[test]
fn type_names_round_trip() {
    for t in [
        TopologyType::Unknown,
        TopologyType::Single,
        TopologyType::ReplicaSetNoPrimary,
        TopologyType::ReplicaSetWithPrimary,
        TopologyType::Sharded,
        TopologyType::LoadBalanced,
    ] {
        assert_eq!(t.as_str().parse::<TopologyType>().unwrap(), t);
    }
    assert!("single".parse::<TopologyType>().is_err());
}
