//! Fault scenarios through mongoplex, with pymongo 4 and SecantusDB fail points.
//!
//! Each test starts its own SecantusDB (test commands on) and a proxy in front of it,
//! then runs `tests/clients/faults_pymongo.py PROXY DIRECT SCENARIO`. The script arms
//! `failCommand` (mode `{times: 1}`) through the DIRECT uri, runs the scenario directly
//! first (so a broken scenario fails loudly, not as a proxy bug), then through the proxy.

mod common;

use common::peers::{self, Secantus};
use common::proxy::TestProxy;

async fn run_scenario(scenario: &str, heartbeat_ms: Option<u64>) {
    let upstream = Secantus::start();
    let mut builder = TestProxy::builder(&upstream.seed_uri()).max_pool_size(8);
    if let Some(ms) = heartbeat_ms {
        builder = builder.settings(|s| s.heartbeat_frequency_ms = Some(ms));
    }
    let proxy = builder.start().await;
    let script = peers::client_script("faults_pymongo.py");
    let out = peers::run_python(&script, &[&proxy.uri(), &upstream.uri(), scenario]).await;
    let stdout = peers::assert_success(&out, &format!("faults_pymongo.py {scenario}"));
    let line = format!("faults_pymongo {scenario}: OK");
    assert!(stdout.contains(&line), "no {line:?} line: {stdout}");
    proxy.shutdown().await;
}

/// An update whose reply carries a writeConcernError was applied: the proxy must not
/// send it again (n would be 2), and the client must see the writeConcernError.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wce_inc_applies_once() {
    run_scenario("wce_inc", None).await;
}

/// The upstream connection drops under a change stream's getMore: the stream resumes
/// and every event arrives exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_stream_blip_resumes_exactly_once() {
    run_scenario("change_stream_blip", None).await;
}

/// The upstream connection drops under commitTransaction: the commit retry succeeds
/// within 5 s, and the next transactions commit without waiting for a heartbeat (10 s
/// here, so a proxy that marks its primary unknown answers 262 meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_blip_recovers_without_heartbeat() {
    run_scenario("commit_blip", Some(10_000)).await;
}

/// A commitTransaction writeConcernError reply must reach the client without a
/// TransientTransactionError label the server never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_wce_reply_has_no_transient_label() {
    run_scenario("txn_wce_label", None).await;
}

/// A statement's upstream connection drops inside a transaction, and the app commits
/// anyway. Directly the server keeps the transaction and commits half of it; through
/// mongoplex, as through a mongos, the proxy's error aborts the transaction, so the
/// commit fails with NoSuchTransaction and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_statement_blip_aborts_the_transaction() {
    run_scenario("txn_statement_blip", None).await;
}
