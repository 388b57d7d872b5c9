//! The client scripts in `tests/clients/` (pymongo 4, the Node driver, mongosh and
//! Debian's pymongo 3.11) THROUGH mongoplex, each against its own SecantusDB and proxy.
//!
//! `peers_direct.rs` runs the same scripts with no proxy, so a failure here that does not
//! happen there is mongoplex's.

mod common;

use common::peers::{self, Secantus};
use common::proxy::TestProxy;

async fn start() -> (Secantus, TestProxy) {
    let upstream = Secantus::start();
    let proxy = TestProxy::builder(&upstream.seed_uri())
        .max_pool_size(8)
        .start()
        .await;
    (upstream, proxy)
}

fn assert_summary(stdout: &str, line: &str) {
    assert!(stdout.contains(line), "no {line:?} summary line: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymongo4_crud_through_proxy() {
    let (_upstream, proxy) = start().await;
    let script = peers::client_script("crud_pymongo.py");
    let out = peers::run_python(&script, &[&proxy.uri()]).await;
    let stdout = peers::assert_success(&out, "crud_pymongo.py through mongoplex");
    assert_summary(&stdout, "crud_pymongo: OK");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_driver_crud_through_proxy() {
    let (_upstream, proxy) = start().await;
    let script = peers::client_script("crud_node.js");
    let out = peers::run_node(&script, &[&proxy.uri()]).await;
    let stdout = peers::assert_success(&out, "crud_node.js through mongoplex");
    assert_summary(&stdout, "crud_node: OK");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongosh_crud_through_proxy() {
    let (_upstream, proxy) = start().await;
    let script = peers::client_script("crud_mongosh.js");
    let out = peers::run_mongosh(&proxy.uri(), &script).await;
    let stdout = peers::assert_success(&out, "crud_mongosh.js through mongoplex");
    assert_summary(&stdout, "crud_mongosh: OK");
    proxy.shutdown().await;
}

/// pymongo 3.11 handshakes with OP_QUERY isMaster; the proxy answers it itself and
/// records the client metadata it carried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_pymongo3_through_proxy() {
    let (_upstream, proxy) = start().await;
    let script = peers::client_script("legacy_pymongo3.py");
    let out = peers::run_legacy_python(&script, &[&proxy.uri()]).await;
    let stdout = peers::assert_success(&out, "legacy_pymongo3.py through mongoplex");
    assert_summary(&stdout, "legacy_pymongo3: OK");

    // The script passes appname="legacy_pymongo3", which overrides the URI's appName.
    // pymongo 3.11 sends its client metadata only in the OP_QUERY isMaster, so this
    // series exists only if that path was taken.
    let handshakes = proxy.metric_sum("mongoplex_client_handshakes_total", &["app=\"legacy_pymongo3\""]);
    assert!(
        handshakes >= 1.0,
        "no handshake recorded for app legacy_pymongo3:\n{}",
        proxy.metrics_text()
    );
    let refused = proxy.metric_sum("mongoplex_client_protocol_errors_total", &[]);
    assert_eq!(refused, 0.0, "the proxy refused some legacy messages");
    proxy.shutdown().await;
}
