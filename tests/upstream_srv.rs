//! `mongodb+srv://` upstreams against a real DNS server (dnsmasq on loopback, records of
//! `example.test`) and real servers: SecantusDB for replica-set upstreams, simulated
//! mongos routers forwarding to one SecantusDB for the polling test (no peer here is a
//! sharded cluster). Every URI has `tls=false`: mongodb+srv turns TLS on by default, and
//! these servers speak plaintext.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::auth::AuthSecantus;
use common::dnsmasq::{Dns, Records};
use common::mongos::Mongos;
use common::peers::{free_port, Secantus};
use common::proxy::TestProxy;
use mongodb::bson::{doc, Document};
use mongoplex::config::uri::Secret;
use mongoplex::config::{Config, Settings};

fn srv_settings(uri: &str, dns: &Dns) -> Settings {
    Settings {
        upstream: Some(uri.to_owned()),
        dns_server: Some(dns.addr()),
        ..Settings::default()
    }
}

async fn crud(proxy: &TestProxy, coll: &str) -> Result<(), mongodb::error::Error> {
    let client = mongodb::Client::with_uri_str(proxy.uri_with("serverSelectionTimeoutMS=5000")).await?;
    let c = client.database("srv").collection::<Document>(coll);
    c.insert_one(doc! { "k": 1 }).await?;
    let found = c.find_one(doc! { "k": 1 }).await?;
    assert!(
        found.is_some(),
        "the document written through the proxy is read back"
    );
    Ok(())
}

fn members(proxy: &TestProxy) -> BTreeSet<String> {
    let snap = proxy.proxy().ctx.topology.snapshot();
    snap.servers.iter().map(|s| s.address.to_string()).collect()
}

async fn wait_members(proxy: &TestProxy, want: &BTreeSet<String>, limit: Duration) {
    let deadline = Instant::now() + limit;
    while &members(proxy) != want {
        assert!(
            Instant::now() < deadline,
            "members never became {want:?}: {}",
            proxy.proxy().ctx.topology.snapshot().summary()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_lookups(proxy: &TestProxy, result: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    let label = format!("result=\"{result}\"");
    while proxy.metric_sum("mongoplex_srv_lookups_total", &[&label]) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no SRV rescan with {label} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The seeds come from SRV (db1.example.test, resolved through dns_server), replicaSet
/// from TXT; SDAM then replaces the seed by the name the member gives itself in hello
/// (127.0.0.1:PORT), as any driver does. A replica set is never rescanned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_seeds_and_txt_replica_set_serve_a_real_driver() {
    let upstream = Secantus::start();
    let records = Records::default()
        .host("db1.example.test")
        .srv(
            "_mongodb._tcp.rs.example.test",
            "db1.example.test",
            upstream.port(),
        )
        .txt("rs.example.test", "replicaSet=secantus")
        .srv(
            "_mongodb._tcp.wrongset.example.test",
            "db1.example.test",
            upstream.port(),
        )
        .txt("wrongset.example.test", "replicaSet=other");
    let dns = Dns::start(&records);

    let settings = srv_settings("mongodb+srv://rs.example.test/?tls=false", &dns);
    let config = Config::discover(settings.clone()).await.expect("discovered");
    assert_eq!(
        config.seeds,
        [mongoplex::address::ServerAddress::new(
            "db1.example.test",
            upstream.port()
        )]
    );
    assert_eq!(config.replica_set.as_deref(), Some("secantus"), "from TXT");
    assert!(
        config.connect.tls.is_none(),
        "tls=false wins over the mongodb+srv default"
    );

    let proxy = TestProxy::builder("unused")
        .settings(|s| {
            s.upstream.clone_from(&settings.upstream);
            s.dns_server.clone_from(&settings.dns_server);
            s.srv_min_rescan_interval_ms = Some(700);
        })
        .start()
        .await;
    crud(&proxy, "rs")
        .await
        .expect("CRUD through a mongodb+srv upstream");
    let snap = proxy.proxy().ctx.topology.snapshot();
    assert_eq!(snap.desc.set_name(), Some("secantus"));
    assert_eq!(
        members(&proxy),
        BTreeSet::from([upstream.addr().to_string()]),
        "the member as its hello names it: {}",
        snap.summary()
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        proxy.metric_sum("mongoplex_srv_lookups_total", &[]),
        0.0,
        "a replica set's SRV records are not rescanned"
    );
    proxy.shutdown().await;

    // The TXT replicaSet is really required: a set of another name is never used.
    let wrong = Config::discover(srv_settings(
        "mongodb+srv://wrongset.example.test/?tls=false",
        &dns,
    ))
    .await
    .unwrap();
    let started = mongoplex::server::Proxy::start(Arc::new(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin: None,
        ..wrong
    }))
    .await
    .unwrap();
    let seen = started.ctx.topology.limits(Duration::from_secs(3)).await;
    assert!(
        seen.is_none(),
        "a member of set \"secantus\" must not serve replicaSet=other: {}",
        started.ctx.topology.snapshot().summary()
    );
    started.shutdown(Duration::from_secs(2)).await;
}

/// TXT authSource is used for the proxy's login, and authSource in the URI wins over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txt_auth_source_is_used_and_the_uri_overrides_it() {
    let server = AuthSecantus::start(&[("svc", "pw-srv-1", &[])]).await;
    let port = server.server.port();
    let records = Records::default()
        .host("db1.example.test")
        .srv("_mongodb._tcp.good.example.test", "db1.example.test", port)
        .txt("good.example.test", "authSource=admin")
        .srv("_mongodb._tcp.bad.example.test", "db1.example.test", port)
        .txt("bad.example.test", "authSource=nowhere");
    let dns = Dns::start(&records);
    let start = |uri: &str| {
        let s = srv_settings(uri, &dns);
        TestProxy::builder("unused").settings(move |t| {
            t.upstream = s.upstream;
            t.dns_server = s.dns_server;
            t.upstream_password = Some(Secret::new("pw-srv-1"));
        })
    };
    let good = start("mongodb+srv://svc@good.example.test/?tls=false")
        .start()
        .await;
    crud(&good, "auth")
        .await
        .expect("login as admin.svc, authSource from TXT");
    good.shutdown().await;

    let bad = start("mongodb+srv://svc@bad.example.test/?tls=false")
        .start()
        .await;
    let e = crud(&bad, "auth")
        .await
        .expect_err("authSource=nowhere from TXT must be used");
    assert!(
        e.to_string().contains("nowhere"),
        "the error names the source: {e}"
    );
    bad.shutdown().await;

    let overridden = start("mongodb+srv://svc@bad.example.test/?tls=false&authSource=admin")
        .start()
        .await;
    crud(&overridden, "auth")
        .await
        .expect("authSource in the URI wins over TXT");
    overridden.shutdown().await;
}

/// srvMaxHosts keeps a random subset (all hosts for 0 or a larger value); srvServiceName
/// changes the name looked up.
#[tokio::test]
async fn srv_max_hosts_and_srv_service_name() {
    let mut records = Records::default();
    for (i, host) in ["h1", "h2", "h3"].iter().enumerate() {
        let port = u16::try_from(27101 + i).unwrap();
        records = records.srv(
            "_mongodb._tcp.many.example.test",
            &format!("{host}.example.test"),
            port,
        );
    }
    let records = records.srv("_custom._tcp.many.example.test", "c1.example.test", 27200);
    let dns = Dns::start(&records);
    let seeds = |options: &'static str| {
        let s = srv_settings(
            &format!("mongodb+srv://many.example.test/?tls=false{options}"),
            &dns,
        );
        async move {
            let c = Config::discover(s).await.expect("discovered");
            c.seeds.iter().map(ToString::to_string).collect::<BTreeSet<_>>()
        }
    };
    let all: BTreeSet<String> = [
        "h1.example.test:27101",
        "h2.example.test:27102",
        "h3.example.test:27103",
    ]
    .map(String::from)
    .into();
    assert_eq!(seeds("").await, all);
    assert_eq!(seeds("&srvMaxHosts=0").await, all);
    assert_eq!(seeds("&srvMaxHosts=5").await, all);
    let mut picked = BTreeSet::new();
    for _ in 0..12 {
        let two = seeds("&srvMaxHosts=2").await;
        assert_eq!(two.len(), 2, "{two:?}");
        assert!(two.is_subset(&all));
        picked.extend(seeds("&srvMaxHosts=1").await);
    }
    assert!(
        picked.len() > 1,
        "srvMaxHosts=1 always picked {picked:?}: not random"
    );
    assert_eq!(
        seeds("&srvServiceName=custom").await,
        BTreeSet::from(["c1.example.test:27200".to_owned()])
    );
}

/// The binary refuses to start (exit 2) when the lookups give nothing usable, naming the
/// DNS name and the cause.
#[test]
fn lookup_failures_stop_start_up_with_exit_2() {
    let records = Records::default()
        .srv("_mongodb._tcp.foreign.example.test", "db1.evil.test", 27017)
        .srv("_mongodb._tcp.foreign.example.test", "db2.example.test", 27017)
        .srv("_mongodb._tcp.twotxt.example.test", "db1.example.test", 27017)
        .txt("twotxt.example.test", "replicaSet=a")
        .txt("twotxt.example.test", "authSource=b")
        .srv("_mongodb._tcp.sslt.example.test", "db1.example.test", 27017)
        .txt("sslt.example.test", "ssl=false")
        .srv("_mongodb._tcp.timeout.example.test", "db1.example.test", 27017)
        .txt("timeout.example.test", "socketTimeoutMS=500")
        .srv("_mongodb._tcp.lb.example.test", "db1.example.test", 27017)
        .txt("lb.example.test", "loadBalanced=true");
    let dns = Dns::start(&records);
    let down = format!("127.0.0.1:{}", free_port());
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "none.example.test",
            &dns.addr(),
            &["_mongodb._tcp.none.example.test", "no SRV records"],
        ),
        (
            "foreign.example.test",
            &dns.addr(),
            &["db1.evil.test", "not in its domain example.test"],
        ),
        (
            "twotxt.example.test",
            &dns.addr(),
            &["2 TXT records for twotxt.example.test"],
        ),
        (
            "sslt.example.test",
            &dns.addr(),
            &["TXT record sets option \"ssl\""],
        ),
        ("timeout.example.test", &dns.addr(), &["\"socketTimeoutMS\""]),
        ("lb.example.test", &dns.addr(), &["\"loadBalanced\""]),
        (
            "rs.example.test",
            &down,
            &["_mongodb._tcp.rs.example.test", "failed"],
        ),
    ];
    for (name, server, needles) in cases {
        let started = Instant::now();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mongoplex"))
            .args([
                "--upstream",
                &format!("mongodb+srv://u:secret-pw@{name}/?tls=false"),
            ])
            .args([
                "--dns-server",
                server,
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "off",
            ])
            .env("RUST_LOG", "off")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A proxy that starts instead of refusing would run forever: stop it and fail.
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{name}: mongoplex started instead of refusing");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        for needle in *needles {
            assert!(stderr.contains(needle), "{name}: should say {needle:?}: {stderr}");
        }
        assert!(
            !stderr.contains("secret-pw"),
            "{name}: the password leaked: {stderr}"
        );
    }
}

/// Polling: a sharded upstream (simulated mongos routers) follows its SRV records under a
/// running proxy, and keeps its members while DNS fails or has no record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_rescans_follow_the_records_of_a_sharded_upstream() {
    let upstream = Secantus::start();
    let routers = [
        Mongos::start(upstream.addr()).await,
        Mongos::start(upstream.addr()).await,
        Mongos::start(upstream.addr()).await,
    ];
    let name = |i: usize| format!("m{}.example.test:{}", i + 1, routers[i].port());
    let with = |list: &[usize]| {
        let mut r = Records::default()
            .host("m1.example.test")
            .host("m2.example.test")
            .host("m3.example.test");
        for &i in list {
            r = r.srv(
                "_mongodb._tcp.shard.example.test",
                &format!("m{}.example.test", i + 1),
                routers[i].port(),
            );
        }
        r
    };
    let mut dns = Dns::start(&with(&[0, 1]));
    let settings = srv_settings("mongodb+srv://shard.example.test/?tls=false", &dns);
    let proxy = TestProxy::builder("unused")
        .settings(|s| {
            s.upstream = settings.upstream;
            s.dns_server = settings.dns_server;
            s.srv_min_rescan_interval_ms = Some(500);
        })
        .start()
        .await;
    let set = |list: &[usize]| list.iter().map(|&i| name(i)).collect::<BTreeSet<_>>();
    wait_members(&proxy, &set(&[0, 1]), Duration::from_secs(5)).await;
    crud(&proxy, "poll").await.expect("CRUD through two mongos");
    assert_eq!(
        proxy
            .proxy()
            .ctx
            .topology
            .snapshot()
            .desc
            .topology_type()
            .as_str(),
        "Sharded"
    );

    // m1 leaves the records and m3 joins: one member removed, one added, m2 untouched.
    dns.restart(&with(&[1, 2]));
    wait_members(&proxy, &set(&[1, 2]), Duration::from_secs(10)).await;
    let m1_before = routers[0].forwarded();
    for i in 0..10 {
        crud(&proxy, &format!("after{i}"))
            .await
            .expect("CRUD after the change");
    }
    assert_eq!(
        routers[0].forwarded(),
        m1_before,
        "nothing goes to a removed mongos"
    );
    assert!(routers[2].forwarded() > 0, "the new mongos serves requests");
    assert!(proxy.metric_sum("mongoplex_srv_lookups_total", &["result=\"ok\""]) >= 1.0);

    // DNS down, then no SRV record at all: the members stay.
    // (A lookup of a server that is gone ends at the resolver's timeout, 2 x 5 s.)
    dns.stop();
    wait_lookups(&proxy, "failed", Duration::from_secs(20)).await;
    assert_eq!(members(&proxy), set(&[1, 2]));
    dns.restart(&with(&[]));
    wait_lookups(&proxy, "no_records", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(members(&proxy), set(&[1, 2]));
    crud(&proxy, "still").await.expect("CRUD with the kept members");
    proxy.shutdown().await;
}

/// TLS is on by default for mongodb+srv and really used: a TLS server (certificate for
/// the SRV target and for the address it gives itself) serves CRUD with only tlsCAFile
/// given, and a plaintext server behind the same kind of URI is never used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_on_by_default_and_really_used() {
    let pki = common::pki::Pki::new();
    let (cert, key, _) = pki.issue("db", &["db1.example.test", "127.0.0.1"], false);
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();

    let tls_server = Secantus::start_tls(&["--tls-cert-file", &path(&cert), "--tls-key-file", &path(&key)]);
    let plain = Secantus::start();
    let records = Records::default()
        .host("db1.example.test")
        .srv(
            "_mongodb._tcp.tls.example.test",
            "db1.example.test",
            tls_server.port(),
        )
        .srv(
            "_mongodb._tcp.plain.example.test",
            "db1.example.test",
            plain.port(),
        );
    let dns = Dns::start(&records);
    let ca_file = path(&pki.ca_file());
    let settings = srv_settings(
        &format!("mongodb+srv://tls.example.test/?tlsCAFile={ca_file}"),
        &dns,
    );
    let proxy = TestProxy::builder("unused")
        .settings(|s| {
            s.upstream = settings.upstream;
            s.dns_server = settings.dns_server;
        })
        .start()
        .await;
    crud(&proxy, "tls").await.expect("CRUD over TLS, on by default");
    proxy.shutdown().await;

    let config = Config::discover(Settings {
        connect_timeout_ms: Some(1000),
        ..srv_settings(
            &format!("mongodb+srv://plain.example.test/?tlsCAFile={ca_file}"),
            &dns,
        )
    })
    .await
    .unwrap();
    let started = mongoplex::server::Proxy::start(Arc::new(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin: None,
        ..config
    }))
    .await
    .unwrap();
    let seen = started.ctx.topology.limits(Duration::from_secs(3)).await;
    let summary = started.ctx.topology.snapshot().summary();
    assert!(seen.is_none(), "a plaintext server must not be used: {summary}");
    assert!(summary.contains("TLS"), "the member's error names TLS: {summary}");
    started.shutdown(Duration::from_secs(2)).await;
}
