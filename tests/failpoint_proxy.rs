//! `failCommand` at the proxy (`enable_test_commands`), as a mongos has it, with the
//! official Rust driver setting the fail point through mongoplex.

mod common;

use common::peers::Secantus;
use common::proxy::TestProxy;
use mongodb::bson::{doc, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::Client;

async fn arm(client: &Client, mode: mongodb::bson::Bson, data: Document) {
    client
        .database("admin")
        .run_command(doc! { "configureFailPoint": "failCommand", "mode": mode, "data": data })
        .await
        .expect("configureFailPoint answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_points_fire_at_the_proxy_and_never_reach_the_server() {
    let upstream = Secantus::start();
    let direct = Client::with_uri_str(upstream.uri()).await.unwrap();
    let proxy = TestProxy::builder(&upstream.seed_uri())
        .settings(|s| s.enable_test_commands = Some(true))
        .start()
        .await;
    let client = Client::with_uri_str(proxy.uri_with("retryWrites=false"))
        .await
        .unwrap();
    let coll = client.database("fp").collection::<Document>("c");
    let stored = || async {
        direct
            .database("fp")
            .collection::<Document>("c")
            .count_documents(doc! {})
            .await
            .unwrap()
    };

    // errorCode: the configured code exactly (a fail point is not a member's error), and
    // the command never reached the server.
    arm(
        &client,
        doc! { "times": 1 }.into(),
        doc! { "failCommands": ["insert"], "errorCode": 10107 },
    )
    .await;
    let err = coll
        .insert_one(doc! { "_id": 1 })
        .await
        .expect_err("fail point fired");
    assert!(
        matches!(*err.kind, ErrorKind::Command(ref c) if c.code == 10107),
        "{err}"
    );
    assert_eq!(stored().await, 0);
    coll.insert_one(doc! { "_id": 1 })
        .await
        .expect("times: 1 is spent");

    // writeConcernError: the command runs, then the error is attached.
    arm(
        &client,
        doc! { "times": 1 }.into(),
        doc! { "failCommands": ["insert"], "writeConcernError": { "code": 91, "errmsg": "shutting down" } },
    )
    .await;
    let err = coll.insert_one(doc! { "_id": 2 }).await.expect_err("wce");
    assert!(
        matches!(*err.kind, ErrorKind::Write(WriteFailure::WriteConcernError(ref w)) if w.code == 91),
        "{err}"
    );
    assert_eq!(stored().await, 2, "the write ran once");

    // closeConnection: the driver sees a network error; appName scoping.
    arm(
        &client,
        "alwaysOn".into(),
        doc! { "failCommands": ["find"], "closeConnection": true, "appName": "mongoplex-test" },
    )
    .await;
    let err = coll.find_one(doc! {}).await.expect_err("connection closed");
    assert!(matches!(*err.kind, ErrorKind::Io(_)), "{err}");
    arm(&client, "off".into(), doc! {}).await;
    assert!(coll.find_one(doc! {}).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_configure_fail_point_goes_to_the_server() {
    let upstream = Secantus::start();
    let proxy = TestProxy::builder(&upstream.seed_uri()).start().await;
    let client = Client::with_uri_str(proxy.uri_with("retryWrites=false&retryReads=false"))
        .await
        .unwrap();
    arm(
        &client,
        doc! { "times": 1 }.into(),
        doc! { "failCommands": ["count"], "errorCode": 2 },
    )
    .await;
    // SecantusDB's fail point fires (BadValue is not retried by anyone).
    let err = client
        .database("fp")
        .run_command(doc! { "count": "c" })
        .await
        .expect_err("the server's fail point fired");
    assert!(
        matches!(*err.kind, ErrorKind::Command(ref c) if c.code == 2),
        "{err}"
    );
}
