//! Authentication to the upstream with SCRAM, against SecantusDB with `--auth`
//! (../shared/PEERS.md). mongoplex holds the service credential; clients connect
//! without credentials of their own. Before, a URI with `user:password@` started and
//! then talked to the server unauthenticated.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::auth::AuthSecantus;
use common::proxy::TestProxy;
use mongodb::bson::{doc, Document};
use mongoplex::config::uri::Secret;

const PASSWORD: &str = "s3cret-Pw";

/// 20 tasks insert and read back through the proxy, so that the pool opens several
/// connections; returns how many documents the tasks stored.
async fn crud_through(proxy: &TestProxy) -> u64 {
    let client = mongodb::Client::with_uri_str(proxy.uri()).await.unwrap();
    let coll = client.database("authtest").collection::<Document>("c");
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let coll = coll.clone();
            tokio::spawn(async move {
                coll.insert_one(doc! { "task": i })
                    .await
                    .expect("insert through the proxy");
                coll.find_one(doc! { "task": i })
                    .await
                    .expect("find through the proxy")
                    .expect("found");
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    coll.count_documents(doc! {}).await.unwrap()
}

fn derivations(proxy: &TestProxy) -> usize {
    let cred = proxy.proxy().ctx.config.connect.credential.clone();
    cred.expect("the proxy holds a credential").derivations()
}

/// The password from the URI, from `upstream_password_file`, and from
/// `upstream_password` (what `MONGOPLEX_UPSTREAM_PASSWORD` sets): each lets clients
/// without credentials run CRUD, and PBKDF2 runs once however many connections open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_credentials_use_the_proxys_upstream_login() {
    let up = AuthSecantus::start(&[("svc", PASSWORD, &[])]).await;
    // The server enforces authentication: without the proxy's login nothing works.
    let anon = mongodb::Client::with_uri_str(up.server.uri()).await.unwrap();
    let refused = anon
        .database("authtest")
        .collection::<Document>("c")
        .find_one(doc! {})
        .await
        .expect_err("the server requires authentication");
    assert!(
        refused.to_string().contains("requires authentication"),
        "{refused}"
    );

    let file = std::env::temp_dir().join(format!("mongoplex-pw-{}", std::process::id()));
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let user_only = format!("mongodb://svc@{}/", up.server.addr());
    let ways: Vec<(&str, TestProxy)> = vec![
        (
            "uri",
            TestProxy::builder(&up.uri_as("svc", PASSWORD, "")).start().await,
        ),
        (
            "file",
            TestProxy::builder(&user_only)
                .settings(|s| s.upstream_password_file = Some(file.clone()))
                .start()
                .await,
        ),
        (
            "env",
            TestProxy::builder(&user_only)
                .settings(|s| s.upstream_password = Some(Secret::new(PASSWORD)))
                .start()
                .await,
        ),
    ];
    let mut stored = 0;
    for (how, proxy) in ways {
        let count = crud_through(&proxy).await;
        stored += 20;
        assert_eq!(count, stored, "password from {how}: every insert stored");
        let opened = proxy.metric_sum("mongoplex_pool_connections_created_total", &[]);
        println!(
            "FIGURE password from {how}: {opened} pooled connections, {} key derivations",
            derivations(&proxy)
        );
        assert!(
            opened >= 2.0,
            "{how}: the load opened several connections ({opened})"
        );
        assert_eq!(
            derivations(&proxy),
            1,
            "{how}: PBKDF2 ran once for {opened} connections"
        );
        proxy.shutdown().await;
    }
    let _ = std::fs::remove_file(&file);
}

/// SCRAM-SHA-1 and SCRAM-SHA-256, negotiated with saslSupportedMechs or named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_scram_mechanisms_negotiated_or_named() {
    let up = AuthSecantus::start(&[
        ("sha1only", "pw-one", &["SCRAM-SHA-1"]),
        ("both", "pw-both", &["SCRAM-SHA-1", "SCRAM-SHA-256"]),
    ])
    .await;
    let cases = [
        ("sha1only", "pw-one", ""),
        ("sha1only", "pw-one", "?authMechanism=SCRAM-SHA-1"),
        ("both", "pw-both", ""),
        ("both", "pw-both", "?authMechanism=SCRAM-SHA-256"),
        ("both", "pw-both", "?authMechanism=SCRAM-SHA-1&authSource=admin"),
    ];
    for (user, pwd, options) in cases {
        let proxy = TestProxy::builder(&up.uri_as(user, pwd, options)).start().await;
        let client = mongodb::Client::with_uri_str(proxy.uri()).await.unwrap();
        client
            .database("authtest")
            .collection::<Document>("m")
            .insert_one(doc! { "user": user })
            .await
            .unwrap_or_else(|e| panic!("{user} {options:?}: {e}"));
        proxy.shutdown().await;
    }
    // A user asked to log in with a mechanism it does not have is refused by the server.
    let proxy = TestProxy::builder(&up.uri_as("sha1only", "pw-one", "?authMechanism=SCRAM-SHA-256"))
        .settings(|s| s.server_selection_timeout_ms = Some(2000))
        .start()
        .await;
    let client = mongodb::Client::with_uri_str(proxy.uri_with("serverSelectionTimeoutMS=3000"))
        .await
        .unwrap();
    let err = client
        .database("authtest")
        .collection::<Document>("m")
        .insert_one(doc! {})
        .await
        .expect_err("SCRAM-SHA-256 for a SHA-1-only user");
    assert!(err.to_string().contains("authentication"), "{err}");
    proxy.shutdown().await;
}

/// Counts the TCP connections made through it to `target`.
async fn counting_relay(target: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    (addr, count)
}

/// A wrong password: clients get an error naming authentication and the user at once
/// (not after serverSelectionTimeoutMS), `/ready` says why, the password appears
/// nowhere, and over 10 s of clients retrying the server sees a handful of logins, not
/// one per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_fast_says_why_and_backs_off() {
    const WRONG: &str = "not-the-Pw";
    let up = AuthSecantus::start(&[("svc", PASSWORD, &[])]).await;
    let (relay, connections) = counting_relay(up.server.addr()).await;
    // directConnection: the set's hello names the server's own address, which the proxy
    // would otherwise discover and use instead of the relay.
    let proxy = TestProxy::builder(&format!("mongodb://svc:{WRONG}@{relay}/?directConnection=true"))
        .settings(|s| s.heartbeat_frequency_ms = Some(10_000))
        .start()
        .await;
    let monitor_connections = connections.load(Ordering::Relaxed);
    let client =
        mongodb::Client::with_uri_str(proxy.uri_with("serverSelectionTimeoutMS=5000&retryWrites=false"))
            .await
            .unwrap();
    let coll = client.database("authtest").collection::<Document>("c");
    let started = Instant::now();
    let (mut attempts, mut slowest) = (0u32, Duration::ZERO);
    while started.elapsed() < Duration::from_secs(10) {
        let t = Instant::now();
        let err = coll
            .insert_one(doc! {})
            .await
            .expect_err("a wrong password cannot write");
        slowest = slowest.max(t.elapsed());
        attempts += 1;
        let text = err.to_string();
        assert!(
            text.contains("authentication") && text.contains("admin.svc"),
            "{text}"
        );
        assert!(
            !text.contains(WRONG),
            "the password leaked into a client error: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logins = connections.load(Ordering::Relaxed) - monitor_connections;
    let ready = proxy.admin_get("/ready");
    let status = proxy.admin_get("/status");
    let metrics = proxy.metrics_text();
    println!("FIGURE wrong password: {attempts} client attempts in 10 s, slowest {slowest:?}, {logins} login connections");
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(
        ready.contains("authentication failed") && ready.contains("admin.svc"),
        "{ready}"
    );
    for (what, text) in [("/ready", &ready), ("/status", &status), ("/metrics", &metrics)] {
        assert!(!text.contains(WRONG), "the password leaked into {what}");
    }
    assert!(
        slowest < Duration::from_secs(5),
        "an attempt took {slowest:?}: the error must not wait for selection"
    );
    assert!(attempts > 50, "clients kept trying ({attempts} attempts)");
    assert!(
        (1..=8).contains(&logins),
        "{logins} login attempts reached the server in 10 s; the backoff allows about 5"
    );
    proxy.shutdown().await;
}

/// pymongo, the Node driver and mongosh run their CRUD scripts (tests/clients/) through
/// a proxy that logs in upstream, with no credentials of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_node_and_mongosh_run_crud_through_an_authenticated_upstream() {
    use common::peers;
    let up = AuthSecantus::start(&[("svc", PASSWORD, &[])]).await;
    let proxy = TestProxy::builder(&up.uri_as("svc", PASSWORD, "")).start().await;
    let uri = proxy.uri();
    let out = peers::run_python(&peers::client_script("crud_pymongo.py"), &[&uri]).await;
    let stdout = peers::assert_success(&out, "crud_pymongo.py through an authenticated upstream");
    assert!(stdout.contains("crud_pymongo: OK"), "{stdout}");
    let out = peers::run_node(&peers::client_script("crud_node.js"), &[&uri]).await;
    let stdout = peers::assert_success(&out, "crud_node.js through an authenticated upstream");
    assert!(stdout.contains("crud_node: OK"), "{stdout}");
    let out = peers::run_mongosh(&uri, &peers::client_script("crud_mongosh.js")).await;
    let stdout = peers::assert_success(&out, "crud_mongosh.js through an authenticated upstream");
    assert!(stdout.contains("crud_mongosh: OK"), "{stdout}");
    proxy.shutdown().await;
}

/// The binary's own logs at debug level, with the password given in the URI: a right
/// one (logins succeed) and then a wrong one (logins fail, errors logged). Neither
/// password appears anywhere in what the process printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_reach_the_logs() {
    const WRONG: &str = "wr0ng-Pw-xyz";
    let up = AuthSecantus::start(&[("svc", PASSWORD, &[])]).await;
    for (password, should_work) in [(PASSWORD, true), (WRONG, false)] {
        let listen = common::peers::free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_mongoplex"))
            .args([
                "--upstream",
                &up.uri_as("svc", password, "?directConnection=true"),
                "--listen",
                &format!("127.0.0.1:{listen}"),
                "--admin",
                "off",
                "--log-level",
                "debug",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let client = mongodb::Client::with_uri_str(format!(
            "mongodb://127.0.0.1:{listen}/?serverSelectionTimeoutMS=5000&retryWrites=false"
        ))
        .await
        .unwrap();
        let coll = client.database("authtest").collection::<Document>("logs");
        let mut worked = false;
        for _ in 0..50 {
            match coll.insert_one(doc! {}).await {
                Ok(_) => {
                    worked = true;
                    break;
                }
                Err(e) if e.to_string().contains("authentication") => break,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        assert_eq!(
            worked,
            should_work,
            "login with the {} password",
            if should_work { "right" } else { "wrong" }
        );
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let out = child.wait_with_output().unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(printed.contains("svc"), "the logs name the user: {printed}");
        assert!(
            !printed.contains(password),
            "the password reached the logs:\n{printed}"
        );
    }
}
