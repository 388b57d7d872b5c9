use std::collections::BTreeSet;
use std::time::Duration;

use rand::SeedableRng;

use super::*;

fn a(s: &str) -> ServerAddress {
    ServerAddress::parse(s).unwrap()
}

fn set(list: &[&str]) -> BTreeSet<ServerAddress> {
    list.iter().map(|s| a(s)).collect()
}

/// The seedlist spec's rules and its prose tests 1-4, with our own names.
#[test]
fn returned_hosts_must_be_in_the_parent_domain() {
    let table: &[(&str, &str, bool)] = &[
        // Three or more labels: the domain is all but the first.
        ("cluster0.example.net", "db1.example.net", true),
        ("cluster0.example.net", "a.b.example.net", true),
        ("cluster0.example.net", "DB1.Example.NET.", true),
        ("cluster0.example.net", "cluster0.example.net", true),
        ("cluster0.example.net", "example.net", false),
        ("cluster0.example.net", "db1.evil.net", false),
        ("cluster0.example.net", "db1.notexample.net", false),
        ("cluster0.example.net", "db1.example.net.evil.org", false),
        ("c.tests.example.co.uk", "h.tests.example.co.uk", true),
        ("c.tests.example.co.uk", "h.example.co.uk", false),
        // One or two labels: the domain is the whole name, plus one more label.
        ("localhost", "db.localhost", true),
        ("localhost", "localhost", false),
        ("localhost", "localhost.mongodb", false),
        ("localhost", "test_1.cluster_1localhost", false),
        ("mongo.local", "db.mongo.local", true),
        ("mongo.local", "mongo.local", false),
        ("mongo.local", "test_1.evil.local", false),
        ("mongo.local", "test_1.my_hostmongo.local", false),
        ("blogs.mongodb.com", "blogs.evil.com", false),
        ("blogs.mongodb.com", "cluster.testmongodb.com", false),
    ];
    for (srv, host, ok) in table {
        let got = verify_host(srv, host);
        assert_eq!(got.is_ok(), *ok, "{srv} -> {host}: {got:?}");
        if let Err(e) = got {
            let msg = e.to_string();
            assert!(
                msg.contains(&normalize(host)) && msg.contains(&parent_domain(srv)),
                "{msg}"
            );
        }
    }
}

#[test]
fn seeds_are_all_hosts_or_a_random_subset_of_srv_max_hosts() {
    let hosts = [a("h1:1"), a("h2:2"), a("h3:3"), a("h2:2")];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for (max, want) in [(0, 3), (3, 3), (9, 3), (1, 1), (2, 2)] {
        let seeds = choose_seeds(&hosts, max, &mut rng);
        assert_eq!(seeds.len(), want, "srvMaxHosts={max}: {seeds:?}");
        let unique: BTreeSet<_> = seeds.iter().collect();
        assert_eq!(unique.len(), want, "no duplicates: {seeds:?}");
        assert!(seeds.iter().all(|s| hosts.contains(s)));
    }
    // Random, not always the first: over many draws each host is picked.
    let picked: BTreeSet<ServerAddress> = (0..64).flat_map(|_| choose_seeds(&hosts, 1, &mut rng)).collect();
    assert_eq!(picked.len(), 3, "{picked:?}");
}

/// The polling spec's prose tests 1-5, 8, 10-12, as (current, records, srvMaxHosts) to
/// (added, removed).
#[test]
fn rescan_adds_new_hosts_removes_gone_ones_and_keeps_the_rest() {
    type Case<'a> = (&'a [&'a str], &'a [&'a str], usize, &'a [&'a str], &'a [&'a str]);
    let table: &[Case<'_>] = &[
        (&["h:1", "h:2"], &["h:1", "h:2", "h:3"], 0, &["h:3"], &[]),
        (&["h:1", "h:2"], &["h:1"], 0, &[], &["h:2"]),
        (&["h:1", "h:2"], &["h:1", "h:3"], 0, &["h:3"], &["h:2"]),
        (&["h:1", "h:2"], &["h:3"], 0, &["h:3"], &["h:1", "h:2"]),
        (
            &["h:1", "h:2"],
            &["h:3", "h:4"],
            0,
            &["h:3", "h:4"],
            &["h:1", "h:2"],
        ),
        (&["h:1", "h:2"], &[], 0, &[], &[]),
        (&["h:1", "h:2"], &["h:1", "h:2"], 0, &[], &[]),
        (
            &["h:1", "h:2"],
            &["h:1", "h:3", "h:4"],
            0,
            &["h:3", "h:4"],
            &["h:2"],
        ),
        (
            &["h:1", "h:2"],
            &["h:3", "h:4"],
            2,
            &["h:3", "h:4"],
            &["h:1", "h:2"],
        ),
        // srvMaxHosts below the records: kept hosts count against it.
        (&["h:1", "h:2"], &["h:1", "h:2", "h:3"], 2, &[], &[]),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for (current, records, max, add, remove) in table {
        let records: Vec<ServerAddress> = records.iter().map(|s| a(s)).collect();
        let plan = plan_rescan(&set(current), &records, *max, &mut rng);
        let got: (BTreeSet<_>, BTreeSet<_>) =
            (plan.add.into_iter().collect(), plan.remove.into_iter().collect());
        assert_eq!(
            got,
            (set(add), set(remove)),
            "{current:?} + {records:?} (max {max})"
        );
    }
    // Prose test 12: one of two new hosts joins the one kept, at random.
    let records = [a("h:1"), a("h:3"), a("h:4")];
    let plan = plan_rescan(&set(&["h:1", "h:2"]), &records, 2, &mut rng);
    assert_eq!(plan.remove, [a("h:2")]);
    assert_eq!(plan.add.len(), 1);
    assert!(plan.add[0] == a("h:3") || plan.add[0] == a("h:4"), "{plan:?}");
}

#[test]
fn the_rescan_interval_is_the_lowest_ttl_but_not_under_the_floor() {
    let (floor, hb) = (MIN_RESCAN_INTERVAL, Duration::from_secs(10));
    let s = Duration::from_secs;
    assert_eq!(rescan_interval(Some(s(300)), floor, hb), s(300));
    assert_eq!(rescan_interval(Some(s(5)), floor, hb), s(60));
    assert_eq!(rescan_interval(Some(s(0)), floor, hb), s(60));
    assert_eq!(
        rescan_interval(None, floor, hb),
        s(10),
        "after a failure: heartbeatFrequencyMS"
    );
    assert_eq!(
        rescan_interval(Some(s(0)), Duration::from_millis(500), hb),
        Duration::from_millis(500)
    );
}

#[test]
fn srv_name_has_the_service_and_protocol() {
    let spec = SrvSpec {
        hostname: "cluster0.example.net".into(),
        service_name: "customname".into(),
        max_hosts: 0,
        min_rescan_interval: MIN_RESCAN_INTERVAL,
    };
    assert_eq!(spec.srv_name(), "_customname._tcp.cluster0.example.net");
}
