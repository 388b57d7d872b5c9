//! The client scripts against SecantusDB directly, with no proxy in between.
//!
//! These check the test peers themselves (install, harness, scripts), so that a failure
//! in the proxy tests that run the same scripts through mongoplex points at mongoplex.

mod common;

use common::peers::{self, Secantus};

#[tokio::test]
async fn pymongo4_crud_direct() {
    let upstream = Secantus::start();
    let script = peers::client_script("crud_pymongo.py");
    let out = peers::run_python(&script, &[&upstream.uri()]).await;
    let stdout = peers::assert_success(&out, "crud_pymongo.py against SecantusDB");
    assert!(stdout.contains("crud_pymongo: OK"), "no summary line: {stdout}");
}

#[tokio::test]
async fn node_driver_crud_direct() {
    let upstream = Secantus::start();
    let script = peers::client_script("crud_node.js");
    let out = peers::run_node(&script, &[&upstream.uri()]).await;
    let stdout = peers::assert_success(&out, "crud_node.js against SecantusDB");
    assert!(stdout.contains("crud_node: OK"), "no summary line: {stdout}");
}

#[tokio::test]
async fn mongosh_crud_direct() {
    let upstream = Secantus::start();
    let script = peers::client_script("crud_mongosh.js");
    let out = peers::run_mongosh(&upstream.uri(), &script).await;
    let stdout = peers::assert_success(&out, "crud_mongosh.js against SecantusDB");
    assert!(stdout.contains("crud_mongosh: OK"), "no summary line: {stdout}");
}

#[tokio::test]
async fn legacy_pymongo3_direct() {
    let upstream = Secantus::start();
    let script = peers::client_script("legacy_pymongo3.py");
    let out = peers::run_legacy_python(&script, &[&upstream.uri()]).await;
    let stdout = peers::assert_success(&out, "legacy_pymongo3.py against SecantusDB");
    assert!(
        stdout.contains("legacy_pymongo3: OK"),
        "no summary line: {stdout}"
    );
}

#[tokio::test]
async fn hung_client_is_killed_at_the_limit() {
    let mut cmd = tokio::process::Command::new(peers::python());
    cmd.args(["-c", "import time; print('started', flush=True); time.sleep(60)"]);
    let began = std::time::Instant::now();
    let out = peers::run_with_timeout(cmd, std::time::Duration::from_secs(1)).await;
    assert!(
        began.elapsed() < std::time::Duration::from_secs(10),
        "not killed at the limit"
    );
    assert!(!out.status.success(), "a killed client reported success");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "started\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("[harness] killed"));
}

#[test]
fn secantus_stops_on_drop() {
    let upstream = Secantus::start();
    let addr = upstream.addr();
    assert!(std::net::TcpStream::connect(addr).is_ok());
    drop(upstream);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "SecantusDB still accepts connections on {addr} after drop"
    );
}
