use std::collections::HashMap;

use super::*;

fn cfg(s: Settings) -> Result<Config, ConfigError> {
    Config::validate(s)
}

fn with_upstream(uri: &str) -> Settings {
    Settings {
        upstream: Some(uri.into()),
        ..Default::default()
    }
}

#[test]
fn defaults_work_with_no_settings() {
    let c = cfg(Settings::default()).unwrap();
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.seeds, vec![ServerAddress::new("127.0.0.1", 27017)]);
    assert_eq!(c.pool.max_size, 100);
    assert_eq!(c.admin.map(|a| a.to_string()).as_deref(), Some(DEFAULT_ADMIN));
}

#[test]
fn uri_options_apply_and_settings_win() {
    let c = cfg(with_upstream(
        "mongodb://h1:1,h2:2/?replicaSet=rs0&maxPoolSize=8&waitQueueTimeoutMS=200",
    ))
    .unwrap();
    assert_eq!(c.pool.max_size, 8);
    assert_eq!(c.pool.wait_queue_timeout, Duration::from_millis(200));
    assert_eq!(c.replica_set.as_deref(), Some("rs0"));
    assert_eq!(c.seeds.len(), 2);
    let s = Settings {
        max_pool_size: Some(3),
        ..with_upstream("mongodb://h/?maxPoolSize=8")
    };
    assert_eq!(cfg(s).unwrap().pool.max_size, 3);
}

#[test]
fn precise_errors() {
    let cases: Vec<(Settings, &str)> = vec![
        (
            Settings {
                listen: Some("nope".into()),
                ..Default::default()
            },
            "listen",
        ),
        (
            Settings {
                min_pool_size: Some(5),
                max_pool_size: Some(2),
                ..Default::default()
            },
            "min_pool_size",
        ),
        (
            Settings {
                heartbeat_frequency_ms: Some(10),
                ..Default::default()
            },
            "heartbeat_frequency_ms",
        ),
        (
            Settings {
                compressors: Some(vec!["lz4".into()]),
                ..Default::default()
            },
            "lz4",
        ),
        (
            Settings {
                log_format: Some("xml".into()),
                ..Default::default()
            },
            "log_format",
        ),
        (
            Settings {
                max_connecting: Some(0),
                ..Default::default()
            },
            "max_connecting",
        ),
        (with_upstream("http://x"), "upstream"),
        (
            Settings {
                dns_server: Some("dns.local:53".into()),
                ..Default::default()
            },
            "dns_server",
        ),
        (
            Settings {
                srv_min_rescan_interval_ms: Some(1000),
                ..Default::default()
            },
            "srv_min_rescan_interval_ms",
        ),
        (
            Settings {
                srv_min_rescan_interval_ms: Some(0),
                ..with_upstream("mongodb+srv://cluster.example.com/")
            },
            "srv_min_rescan_interval_ms",
        ),
    ];
    for (s, needle) in cases {
        let e = cfg(s).unwrap_err().to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    }
}

#[test]
fn layers_file_env_cli() {
    let dir = std::env::temp_dir().join(format!("mongoplex-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("m.toml");
    std::fs::write(
        &file,
        "max_pool_size = 4\nmin_pool_size = 1\nlisten = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let env: HashMap<String, String> = [("MONGOPLEX_MIN_POOL_SIZE".to_string(), "2".to_string())].into();
    let cli = Settings {
        listen: Some("127.0.0.1:2".into()),
        ..Default::default()
    };
    let c = Config::load(Some(&file), &env, cli).unwrap();
    assert_eq!((c.pool.max_size, c.pool.min_size, c.listen.port()), (4, 2, 2));
    assert!(Config::load(Some(&dir.join("missing.toml")), &env, Settings::default()).is_err());
}

#[test]
fn redacts_passwords() {
    assert_eq!(redact("mongodb://u:secret@h:1/db"), "mongodb://u:***@h:1/db");
    assert_eq!(redact("mongodb://h:1/db"), "mongodb://h:1/db");
    let table = [
        (
            "mongodb://h/?proxyPassword=s&w=1",
            "mongodb://h/?proxyPassword=***&w=1",
        ),
        (
            "mongodb://u:p@h/?tlsCertificateKeyFilePassword=s",
            "mongodb://u:***@h/?tlsCertificateKeyFilePassword=***",
        ),
        (
            "mongodb://h/?authmechanismproperties=AWS_SESSION_TOKEN:s",
            "mongodb://h/?authmechanismproperties=***",
        ),
        (
            "mongodb+srv://c.example.net/?tls=true",
            "mongodb+srv://c.example.net/?tls=true",
        ),
    ];
    for (uri, want) in table {
        assert_eq!(redact(uri), want, "{uri}");
    }
}

#[test]
fn shipped_example_config_is_valid_and_matches_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/mongoplex.toml");
    let example = Config::validate(Settings::from_file(&path).unwrap()).unwrap();
    let defaults = cfg(Settings::default()).unwrap();
    assert_eq!(example.listen, defaults.listen);
    assert_eq!(example.admin, defaults.admin);
    assert_eq!(example.seeds, defaults.seeds);
    assert_eq!(example.pool.max_size, defaults.pool.max_size);
    assert_eq!(example.pool.wait_queue_timeout, defaults.pool.wait_queue_timeout);
    assert_eq!(example.long_poll_pool_size, defaults.long_poll_pool_size);
    assert_eq!(
        example.server_selection_timeout,
        defaults.server_selection_timeout
    );
    assert_eq!(example.failover.buffer_window, defaults.failover.buffer_window);
    assert_eq!(example.compressors, defaults.compressors);
}

/// The upstream's compressors keep the URI's order, zlib takes zlibCompressionLevel
/// (-1 meaning the library default), and the client-side `compressors` setting is a
/// separate list.
#[test]
fn upstream_compressors_come_from_the_uri() {
    let table: &[(&str, &[Compressor])] = &[
        ("mongodb://h/", &[]),
        (
            "mongodb://h/?compressors=zlib,zstd&zlibCompressionLevel=9",
            &[Compressor::Zlib { level: Some(9) }, Compressor::Zstd],
        ),
        (
            "mongodb://h/?compressors=snappy,zlib&zlibCompressionLevel=-1",
            &[Compressor::Snappy, Compressor::Zlib { level: None }],
        ),
        ("mongodb://h/?zlibCompressionLevel=3", &[]),
    ];
    for (uri, want) in table {
        let c = cfg(with_upstream(uri)).unwrap_or_else(|e| panic!("{uri}: {e}"));
        assert_eq!(c.connect.compressors, *want, "{uri}");
        assert_eq!(c.compressors.len(), 3, "{uri}: the client-side default changed");
    }
}

/// A mongodb+srv upstream: no seeds until looked up, TLS on unless tls=false, then the
/// SRV hosts as seeds and the TXT options where the URI gives none.
#[test]
fn srv_upstream_before_and_after_its_lookups() {
    use crate::srv::dns::Seedlist;
    let s = Settings {
        upstream: Some("mongodb+srv://svc@cluster0.example.net/?srvServiceName=db&srvMaxHosts=0".into()),
        upstream_password: Some(uri::Secret::new("pw")),
        ..Default::default()
    };
    let c = cfg(s.clone()).unwrap();
    assert!(c.seeds.is_empty());
    let spec = c.srv.clone().unwrap();
    assert_eq!(spec.srv_name(), "_db._tcp.cluster0.example.net");
    assert_eq!(spec.min_rescan_interval, crate::srv::MIN_RESCAN_INTERVAL);
    assert!(c.connect.tls.is_some(), "mongodb+srv turns TLS on");
    assert!(
        c.dns.is_some() && c.connect.dns.is_none(),
        "system resolver for host names"
    );
    let seedlist = Seedlist {
        hosts: vec![ServerAddress::new("db1.example.net", 27017)],
        txt: Some("replicaSet=rs0&authSource=users".into()),
        min_ttl: Duration::from_secs(300),
    };
    let c = Config::validate_with(s.clone(), Some(&seedlist)).unwrap();
    assert_eq!(c.seeds, seedlist.hosts);
    assert_eq!(c.replica_set.as_deref(), Some("rs0"));
    assert_eq!(c.connect.credential.as_ref().unwrap().source, "users");
    assert_eq!(c.srv_initial_ttl, Some(Duration::from_secs(300)));
    let refused = Seedlist {
        txt: Some("loadBalanced=true".into()),
        ..seedlist.clone()
    };
    let e = Config::validate_with(s, Some(&refused)).unwrap_err().to_string();
    assert!(e.contains("loadBalanced"), "{e}");

    let off = cfg(with_upstream("mongodb+srv://c.example.net/?tls=false")).unwrap();
    assert!(off.connect.tls.is_none());
}

#[test]
fn dns_server_from_each_layer() {
    let env: HashMap<String, String> =
        [("MONGOPLEX_DNS_SERVER".to_string(), "127.0.0.1:5353".to_string())].into();
    let c = Config::load(None, &env, Settings::default()).unwrap();
    assert_eq!(
        c.dns
            .as_ref()
            .and_then(|d| d.server)
            .map(|a| a.to_string())
            .as_deref(),
        Some("127.0.0.1:5353")
    );
    assert!(c.connect.dns.is_some(), "member host names go through it too");
    let cli = Settings {
        dns_server: Some("10.0.0.2".into()),
        ..Default::default()
    };
    let c = Config::load(None, &env, cli).unwrap();
    assert_eq!(
        c.dns.and_then(|d| d.server).map(|a| a.to_string()).as_deref(),
        Some("10.0.0.2:53")
    );
    assert!(cfg(Settings::default()).unwrap().dns.is_none());
}

/// A change to the settings, the setting the error names, and what it says.
type Refusal<'a> = (&'a dyn Fn(&mut Settings), &'a str, &'a str);

/// `client_auth` and its companions: every combination mongoplex does not honour stops
/// start-up naming the setting; `upstream` is refused until it is built.
#[test]
fn client_auth_settings_are_honoured_or_refused() {
    let dir = std::env::temp_dir().join(format!("mongoplex-cfg-users-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let users = dir.join("users.toml");
    crate::auth::users::add(
        &users,
        "app",
        "admin",
        "pw",
        &[crate::auth::scram::Mechanism::Sha256],
    )
    .unwrap();
    let with = |f: &dyn Fn(&mut Settings)| {
        let mut s = Settings::default();
        f(&mut s);
        cfg(s)
    };
    let c = with(&|_| {}).unwrap();
    assert_eq!(c.client_auth.name(), "off");
    assert!(!c.command_policy.require_auth && !c.command_policy.shared_identity);
    let c = with(&|s| {
        s.client_auth = Some("file".into());
        s.client_users_file = Some(users.clone());
        s.command_allow = Some(vec!["shutdown".into()]);
    })
    .unwrap();
    assert_eq!(c.client_auth.users().unwrap().len(), 1);
    assert!(c.command_policy.require_auth && c.command_policy.shared_identity);
    assert_eq!(c.command_policy.allow, ["shutdown"]);
    let refused: [Refusal; 7] = [
        (
            &|s| s.client_auth = Some("upstream".into()),
            "client_auth",
            "not built yet",
        ),
        (&|s| s.client_auth = Some("on".into()), "client_auth", "\"on\""),
        (
            &|s| s.client_auth = Some("file".into()),
            "client_users_file",
            "user add",
        ),
        (
            &|s| s.client_users_file = Some("/x".into()),
            "client_users_file",
            "applies only with client_auth",
        ),
        (
            &|s| {
                s.client_auth = Some("file".into());
                s.client_users_file = Some("/nonexistent/users.toml".into());
            },
            "client_users_file",
            "/nonexistent/users.toml",
        ),
        (
            &|s| {
                s.command_allow = Some(vec!["drop".into()]);
                s.command_deny = Some(vec!["drop".into()]);
            },
            "command_deny",
            "command_allow too",
        ),
        (
            &|s| s.command_allow = Some(vec!["".into()]),
            "command_allow",
            "not a command name",
        ),
    ];
    for (f, field, why) in refused {
        let e = with(f).unwrap_err().to_string();
        assert!(e.starts_with(field) && e.contains(why), "{field} {why}: {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Client TLS: a certificate needs its key and the reverse, a CA needs both, and a file
/// that cannot be read stops start-up naming the setting.
#[test]
fn client_tls_settings_are_checked() {
    let p = |v: &str| Some(std::path::PathBuf::from(v));
    assert!(cfg(Settings::default()).unwrap().client_tls.is_none());
    let cases = [
        (p("/c.pem"), None, None, "tls_key_file"),
        (None, p("/k.pem"), None, "tls_cert_file"),
        (None, None, p("/ca.pem"), "tls_ca_file"),
        (
            p("/nonexistent/c.pem"),
            p("/nonexistent/k.pem"),
            None,
            "tls_cert_file",
        ),
    ];
    for (cert, key, ca, field) in cases {
        let s = Settings {
            tls_cert_file: cert,
            tls_key_file: key,
            tls_ca_file: ca,
            ..Settings::default()
        };
        let e = cfg(s).unwrap_err().to_string();
        assert!(e.starts_with(field), "{field}: {e}");
    }
}
