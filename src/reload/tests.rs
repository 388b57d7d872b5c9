use super::*;

/// Settings every case starts from: a user in the URI, so that password settings are valid.
fn base() -> Settings {
    Settings::from_toml(
        "upstream = \"mongodb://alice@127.0.0.1:27017/?maxPoolSize=7\"\nupstream_password = \"old\"\n",
        "base.toml".as_ref(),
    )
    .unwrap()
}

/// One changed setting per row, with how it must apply, written out here rather than
/// read from [`apply_of`], so that a change of class is a deliberate edit of this table.
/// `validate: false` marks a value that is valid only with another upstream, or only
/// together with other settings (client auth and TLS need their files).
struct Case {
    key: &'static str,
    toml: String,
    apply: Apply,
    validate: bool,
}

fn cases(dir: &std::path::Path) -> Vec<Case> {
    use Apply::{Live, Restart};
    let pw = dir.join("pw");
    std::fs::write(&pw, "from-file\n").unwrap();
    let rows: Vec<(&str, String, Apply)> = vec![
        ("listen", "\"127.0.0.1:1\"".into(), Restart),
        ("unix_socket", "\"/tmp/m.sock\"".into(), Restart),
        ("admin", "\"127.0.0.1:2\"".into(), Restart),
        ("upstream", "\"mongodb://alice@127.0.0.1:27018/\"".into(), Restart),
        (
            "upstream_password_file",
            format!("{:?}", pw.display().to_string()),
            Restart,
        ),
        ("upstream_password", "\"new\"".into(), Restart),
        ("dns_server", "\"127.0.0.1:5353\"".into(), Restart),
        ("srv_min_rescan_interval_ms", "1000".into(), Restart),
        ("max_pool_size", "9".into(), Live),
        ("min_pool_size", "1".into(), Live),
        ("max_connecting", "4".into(), Live),
        ("max_idle_time_ms", "1000".into(), Live),
        ("max_lifetime_ms", "1000".into(), Live),
        ("wait_queue_timeout_ms", "1000".into(), Live),
        ("long_poll_pool_size", "3".into(), Restart),
        ("connect_timeout_ms", "1000".into(), Restart),
        ("socket_timeout_ms", "1000".into(), Restart),
        ("server_selection_timeout_ms", "1000".into(), Live),
        ("heartbeat_frequency_ms", "1000".into(), Restart),
        ("local_threshold_ms", "1".into(), Restart),
        ("app_name", "\"x\"".into(), Restart),
        ("max_client_connections", "5".into(), Restart),
        ("client_read_timeout_ms", "1000".into(), Live),
        ("client_write_timeout_ms", "1000".into(), Live),
        ("client_idle_timeout_ms", "1000".into(), Live),
        ("max_buffered_bytes", "1000000".into(), Restart),
        ("compressors", "[\"zstd\"]".into(), Restart),
        ("shutdown_timeout_ms", "1000".into(), Live),
        ("shutdown_delay_ms", "1000".into(), Live),
        ("allow_remote_reload", "true".into(), Live),
        ("max_app_labels", "5".into(), Restart),
        ("failover_buffer_window_ms", "1000".into(), Live),
        ("failover_max_duration_ms", "20000".into(), Live),
        ("failover_max_buffered", "5".into(), Live),
        ("log_format", "\"json\"".into(), Restart),
        ("log_level", "\"debug\"".into(), Live),
        ("enable_test_commands", "true".into(), Restart),
        // Client authentication and TLS are read at start-up (the users file too).
        ("client_auth", "\"file\"".into(), Restart),
        (
            "client_users_file",
            "\"/etc/mongoplex/users.toml\"".into(),
            Restart,
        ),
        ("command_allow", "[\"createUser\"]".into(), Restart),
        ("command_deny", "[\"dropDatabase\"]".into(), Restart),
        ("tls_cert_file", "\"/etc/mongoplex/tls.pem\"".into(), Restart),
        ("tls_key_file", "\"/etc/mongoplex/tls.key\"".into(), Restart),
        ("tls_ca_file", "\"/etc/mongoplex/ca.pem\"".into(), Restart),
    ];
    rows.into_iter()
        .map(|(key, value, apply)| Case {
            key,
            toml: format!("{key} = {value}\n"),
            apply,
            validate: !matches!(
                key,
                "srv_min_rescan_interval_ms"
                    | "client_auth"
                    | "client_users_file"
                    | "tls_cert_file"
                    | "tls_key_file"
                    | "tls_ca_file"
            ),
        })
        .collect()
}

#[test]
fn every_setting_is_classified_and_applies_as_classified() {
    let dir = std::env::temp_dir().join(format!("mongoplex-reload-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = cases(&dir);
    for key in Settings::keys() {
        assert!(
            cases.iter().any(|c| c.key == key),
            "{key}: add it to this table, saying whether it reloads live"
        );
    }
    let old = base();
    let running = Config::validate(old.clone()).unwrap();
    for c in &cases {
        assert_eq!(apply_of(c.key), c.apply, "{}", c.key);
        let new = old
            .clone()
            .overlay(Settings::from_toml(&c.toml, "new.toml".as_ref()).unwrap());
        let p = plan(&old, &new);
        let (want_live, want_restart): (&[&str], &[&str]) = match c.apply {
            Apply::Live => (&[c.key], &[]),
            Apply::Restart => (&[], &[c.key]),
        };
        assert_eq!(
            (&p.live[..], &p.restart[..]),
            (want_live, want_restart),
            "{}",
            c.key
        );
        if !c.validate {
            assert_eq!(p.in_force, old, "{}: pinned to its running value", c.key);
            continue;
        }
        Config::validate(new.clone()).unwrap_or_else(|e| panic!("{}: {e}", c.key));
        let after = in_force(&running, Config::validate(p.in_force.clone()).unwrap());
        let (before, after) = (format!("{running:?}"), format!("{after:?}"));
        match c.apply {
            Apply::Live => assert_ne!(
                before, after,
                "{}: a live setting must reach the config in force",
                c.key
            ),
            Apply::Restart => assert_eq!(before, after, "{}: must keep its running value", c.key),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_pinned_upstream_keeps_its_uri_options_and_unchanged_settings_are_no_change() {
    let old = base();
    assert_eq!(
        plan(&old, &old),
        Plan {
            live: vec![],
            restart: vec![],
            in_force: old.clone()
        }
    );
    // The new URI would bring maxPoolSize=50; it needs a restart, so the pool keeps the
    // running URI's 7 rather than half-applying the new one.
    let mut new = old.clone();
    new.upstream = Some("mongodb://alice@127.0.0.1:27018/?maxPoolSize=50".into());
    let p = plan(&old, &new);
    assert_eq!(p.restart, vec!["upstream"]);
    assert_eq!(Config::validate(p.in_force).unwrap().pool.max_size, 7);
    // An explicit setting still wins over the URI, live.
    new.max_pool_size = Some(3);
    let p = plan(&old, &new);
    assert_eq!((p.live, p.restart), (vec!["max_pool_size"], vec!["upstream"]));
    assert_eq!(Config::validate(p.in_force).unwrap().pool.max_size, 3);
}
