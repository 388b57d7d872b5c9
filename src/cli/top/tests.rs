use super::*;

#[test]
fn exposition_lines_parse() {
    let text = "# HELP x y\n# TYPE x counter\n\
                mongoplex_primary_changes_total 3\n\
                mongoplex_pool_waiters{member=\"a:1\"} 2\n\
                mongoplex_requests_total{command=\"find\",outcome=\"ok\"} 1.5e3\n\
                weird{app=\"say \\\"hi\\\", ok\",x=\"\\\\\"} 1\n\
                not a sample\n\
                broken{app=\"x} 1\n";
    let got = parse_metrics(text);
    let want = vec![
        Sample {
            name: "mongoplex_primary_changes_total".into(),
            labels: vec![],
            value: 3.0,
        },
        Sample {
            name: "mongoplex_pool_waiters".into(),
            labels: vec![("member".into(), "a:1".into())],
            value: 2.0,
        },
        Sample {
            name: "mongoplex_requests_total".into(),
            labels: vec![("command".into(), "find".into()), ("outcome".into(), "ok".into())],
            value: 1500.0,
        },
        Sample {
            name: "weird".into(),
            labels: vec![("app".into(), "say \"hi\", ok".into()), ("x".into(), "\\".into())],
            value: 1.0,
        },
    ];
    assert_eq!(got, want);
}

fn snapshot(at_s: u64, metrics: &str) -> Snapshot {
    Snapshot {
        at: Duration::from_secs(at_s),
        status: Status {
            version: "0.1.0".into(),
            upstream: "mongodb://svc:***@db/".into(),
            ready: true,
            primary: Some("db:27017".into()),
            members: vec![Member {
                address: "db:27017".into(),
                state: "RSPrimary".into(),
                rtt_ms: Some(0.5),
                error: None,
                pool: Some(Pool {
                    total: 5,
                    idle: 2,
                    in_use: 3,
                    connecting: 0,
                    waiters: 1,
                }),
            }],
            clients: 7,
            pinned_cursors: 1,
            pinned_transactions: 0,
        },
        metrics: parse_metrics(metrics),
    }
}

const BUCKETS: &[&str] = &["0.001", "0.01", "0.1", "+Inf"];

fn tick(requests_ok: u64, errors: u64, app_a: u64, waits: [u64; 4]) -> String {
    let mut m = format!(
        "mongoplex_requests_total{{command=\"find\",outcome=\"ok\"}} {requests_ok}\n\
         mongoplex_requests_total{{command=\"find\",outcome=\"server_error\"}} {errors}\n\
         mongoplex_app_requests_total{{app=\"a\"}} {app_a}\n\
         mongoplex_client_connections{{app=\"a\",driver=\"rust\"}} 4\n\
         mongoplex_client_connections{{app=\"a\",driver=\"node\"}} 2\n\
         mongoplex_client_connections{{app=\"b\",driver=\"node\"}} 1\n\
         mongoplex_client_connections{{app=\"gone\",driver=\"node\"}} 0\n\
         mongoplex_failover_buffer_size 0\n"
    );
    for (le, n) in BUCKETS.iter().zip(waits) {
        m += &format!("mongoplex_pool_checkout_wait_seconds_bucket{{member=\"db:27017\",le=\"{le}\"}} {n}\n");
    }
    m
}

/// Rates come from two ticks; the first has none. p99 is the smallest bucket holding
/// 99 % of the checkouts between the ticks, not since the start.
#[test]
fn the_view_turns_counters_into_rates_and_buckets_into_p99() {
    let first = snapshot(10, &tick(1000, 5, 800, [100, 100, 100, 100]));
    let v = view(None, &first);
    assert_eq!(
        (v.requests_per_s, v.errors_per_s, v.members[0].wait_p99_ms),
        (None, None, None)
    );
    assert_eq!(v.clients, 7);
    // Apps: connections summed over drivers, sorted by clients, empty ones left out.
    let apps: Vec<(&str, f64)> = v.apps.iter().map(|a| (a.app.as_str(), a.clients)).collect();
    assert_eq!(apps, [("a", 6.0), ("b", 1.0)]);

    // 2 s later: 400 more requests (10 of them errors), 300 more for app a, and of 100
    // new checkouts 98 took under 1 ms and 2 under 100 ms: p99 is the 100 ms bucket.
    let second = snapshot(12, &tick(1390, 15, 1100, [198, 198, 200, 200]));
    let v = view(Some(&first), &second);
    assert_eq!(v.requests_per_s, Some(200.0));
    assert_eq!(v.errors_per_s, Some(5.0));
    assert_eq!(v.apps[0].requests_per_s, Some(150.0));
    assert_eq!(v.members[0].wait_p99_ms, Some(100.0));
    // No checkout between two ticks: no p99 rather than a stale one.
    let third = snapshot(13, &tick(1390, 15, 1100, [198, 198, 200, 200]));
    assert_eq!(view(Some(&second), &third).members[0].wait_p99_ms, None);
    assert_eq!(view(Some(&second), &third).requests_per_s, Some(0.0));
}

#[test]
fn screen_and_line_show_the_figures() {
    let first = snapshot(10, &tick(1000, 5, 800, [100, 100, 100, 100]));
    let second = snapshot(12, &tick(1390, 15, 1100, [198, 198, 200, 200]));
    let v = view(Some(&first), &second);
    let screen = render_screen(&v);
    for want in [
        "ready  primary db:27017",
        "clients 7  req/s 200  errors/s 5.0",
        "db:27017",
        "RSPrimary",
        "100.0",
        "mongodb://svc:***@db/",
    ] {
        assert!(screen.contains(want), "{want:?} not in\n{screen}");
    }
    let row = screen.lines().find(|l| l.starts_with("db:27017")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        ["db:27017", "RSPrimary", "0.5", "3", "2", "0", "1", "100.0"]
    );
    let app = screen.lines().find(|l| l.starts_with("a ")).unwrap();
    assert_eq!(app.split_whitespace().collect::<Vec<_>>(), ["a", "6", "150"]);
    let line = render_line(&v);
    for want in [
        "clients=7",
        "req/s=200",
        "in_use=3",
        "idle=2",
        "waiters=1",
        "wait_p99_ms=100.0",
    ] {
        assert!(line.contains(want), "{want:?} not in {line}");
    }
    assert!(!line.contains('\n'));
}
