//! The `mongoplex` binary: its command-line contract, configuration errors, and graceful
//! shutdown on SIGTERM with a request in flight.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::binary::Running;
use common::failpoint::fail_once;
use common::peers::{free_port, Secantus};
use mongodb::bson::{doc, Document};
use mongodb::Client;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mongoplex"))
}

/// Waits for the exit; fails the test if it takes longer than `limit`.
fn wait_exit(proxy: &mut Running, limit: Duration) -> std::process::ExitStatus {
    proxy
        .wait_exit(limit)
        .unwrap_or_else(|| panic!("mongoplex did not exit within {limit:?}"))
}

#[test]
fn invalid_settings_exit_2_with_a_precise_message() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        (&["--listen", "nope"], &[], "listen"),
        (&["--upstream", "mongodb://h:99999/"], &[], "99999"),
        (&["--upstream", "postgres://x"], &[], "upstream"),
        (
            &[],
            &[("MONGOPLEX_MAX_POOL_SIZE", "lots")],
            "MONGOPLEX_MAX_POOL_SIZE",
        ),
        (
            &["--config", "/nonexistent/mongoplex.toml"],
            &[],
            "/nonexistent/mongoplex.toml",
        ),
    ];
    for (args, envs, needle) in cases {
        let out = bin().args(*args).envs(envs.iter().copied()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: message should name {needle:?}: {stderr}"
        );
    }
    let help = bin().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in ["--config", "--listen", "--upstream", "--admin"] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
}

/// Before, `mongodb://alice:secret@host/?tls=true` started, then talked to the server
/// in plaintext (and, before upstream authentication, unauthenticated), with no warning. Now every option the proxy does
/// not honour stops start-up (exit 2), each named, and the password is never echoed.
#[test]
fn upstream_options_the_proxy_does_not_honour_stop_start_up() {
    let cases: &[(&str, &[&str])] = &[
        (
            "mongodb://alice:secret@127.0.0.1:1/?tls=true&tlsCertificateKeyFilePassword=secret",
            &["\"tlsCertificateKeyFilePassword\""],
        ),
        (
            "mongodb://127.0.0.1:1/?tlsCAFile=/ca.pem",
            &["tlsCAFile", "tls=true"],
        ),
        (
            "mongodb://alice:secret@127.0.0.1:1/?authMechanism=PLAIN",
            &["\"authMechanism\""],
        ),
        (
            "mongodb://127.0.0.1:1/?readPreference=secondary&w=majority",
            &["\"readPreference\"", "\"w\""],
        ),
        ("mongodb://127.0.0.1:1/?tsl=true", &["unknown option \"tsl\""]),
        ("mongodb://127.0.0.1:1/?maxPoolSize=-3", &["\"maxPoolSize\""]),
        // Refused before any DNS lookup (tests/upstream_srv.rs covers the lookups).
        (
            "mongodb+srv://alice:secret@cluster0.example.net/?loadBalanced=true",
            &["\"loadBalanced\""],
        ),
    ];
    for (uri, needles) in cases {
        let out = bin().args(["--upstream", uri]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{uri}: {stderr}");
        for needle in *needles {
            assert!(
                stderr.contains(needle),
                "{uri}: message should name {needle}: {stderr}"
            );
        }
        assert!(
            !stderr.contains("secret"),
            "{uri}: the password was echoed: {stderr}"
        );
    }
    // What the proxy does anyway is accepted: it starts (and is stopped here).
    let mut child = bin()
        .args([
            "--upstream",
            "mongodb://127.0.0.1:1/?tls=false&retryWrites=true&maxPoolSize=5&appName=x",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "honoured options must not stop start-up"
    );
    child.kill().unwrap();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_env_and_flags_layer() {
    let upstream = Secantus::start();
    let dir = std::env::temp_dir().join(format!("mongoplex-life-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (file_port, flag_port) = (free_port(), free_port());
    let file = dir.join("m.toml");
    let toml = format!(
        "listen = \"127.0.0.1:{file_port}\"\nupstream = \"{}\"\nadmin = \"off\"\nmax_pool_size = 3\n",
        upstream.uri()
    );
    std::fs::write(&file, toml).unwrap();
    let sock = dir.join("mongoplex.sock");
    let mut child = Running::spawn(
        &[
            "--config",
            file.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{flag_port}"),
        ],
        &[("MONGOPLEX_UNIX_SOCKET", sock.to_str().unwrap())],
    );
    // The flag beat the file; the file still supplied the upstream.
    assert!(std::net::TcpStream::connect(("127.0.0.1", file_port)).is_err());
    let client = Client::with_uri_str(format!("mongodb://127.0.0.1:{flag_port}/"))
        .await
        .unwrap();
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .unwrap();
    // The environment added a unix socket listener.
    let path = sock.to_str().unwrap().replace('/', "%2F");
    let unix = Client::with_uri_str(format!("mongodb://{path}/")).await.unwrap();
    unix.database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .expect("ping over the unix socket");
    child.signal("TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(15)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_and_exits_0() {
    let upstream = Secantus::start();
    let direct = Client::with_uri_str(upstream.uri()).await.unwrap();
    let port = free_port();
    let mut child = Running::spawn(
        &[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            &upstream.uri(),
            "--admin",
            "off",
        ],
        &[],
    );
    let uri = format!("mongodb://127.0.0.1:{port}/?retryReads=false");
    let client = Client::with_uri_str(&uri).await.unwrap();
    let coll = client.database("life").collection::<Document>("c");
    coll.insert_one(doc! { "_id": 1 }).await.unwrap();
    fail_once(
        &direct,
        doc! { "failCommands": ["find"], "blockConnection": true, "blockTimeMS": 1500 },
    )
    .await;
    let in_flight = tokio::spawn(async move { coll.find_one(doc! { "_id": 1 }).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let t = Instant::now();
    child.signal("TERM");
    let got = in_flight
        .await
        .unwrap()
        .expect("the in-flight find completes during shutdown");
    assert_eq!(got.and_then(|d| d.get_i32("_id").ok()), Some(1));
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(15)))
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "exited before the in-flight request finished"
    );
    // Stopped accepting.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
