//! Faults a member can suffer: being killed and restarted, partitioned and healed, and
//! the whole set being dropped.

use std::time::Duration;

use bson::{doc, Document};

use crate::common::peers::Secantus;
use crate::common::replset::driver::client as driver;
use crate::common::replset::{RawClient, ReplSet, Role};
use crate::{eventually, EVENTUALLY, HANG};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_drops_its_sockets_and_comes_back_on_the_same_port() {
    let upstream = Secantus::start();
    let rs = ReplSet::start(3, &upstream).await;
    let mut c = RawClient::connect(rs.addr(1)).await.expect("connect");
    let before = c
        .command(doc! { "hello": 1, "$db": "admin" })
        .await
        .expect("hello");
    c.command(doc! { "ping": 1, "$db": "admin" }).await.expect("ping");
    rs.kill(1).await;
    let gone = c.command(doc! { "ping": 1, "$db": "admin" }).await;
    assert!(gone.is_err(), "a killed member answered: {gone:?}");
    assert!(
        RawClient::connect(rs.addr(1)).await.is_err(),
        "a killed member accepted"
    );

    rs.restart(1).await;
    let mut c = RawClient::connect(rs.addr(1))
        .await
        .expect("connect after restart");
    let after = c
        .command(doc! { "hello": 1, "$db": "admin" })
        .await
        .expect("hello");
    let pid = |r: &Document| {
        r.get_document("topologyVersion")
            .unwrap()
            .get_object_id("processId")
            .unwrap()
    };
    assert_ne!(pid(&before), pid(&after), "a restart must bring a new processId");
    assert_eq!(after.get_bool("secondary").ok(), Some(true));
    assert_eq!(rs.role(1), Role::Secondary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_member_keeps_sockets_open_but_answers_nothing() {
    let upstream = Secantus::start();
    let rs = ReplSet::start(3, &upstream).await;
    let mut c = RawClient::connect(rs.addr(2)).await.expect("connect");
    c.command(doc! { "ping": 1, "$db": "admin" }).await.expect("ping");
    rs.partition(2);
    c.send(0, &doc! { "hello": 1, "$db": "admin" })
        .await
        .expect("send");
    assert!(
        c.recv_within(HANG).await.is_none(),
        "a partitioned member answered hello"
    );
    let mut fresh = RawClient::connect(rs.addr(2))
        .await
        .expect("a partitioned member still accepts");
    fresh
        .send(0, &doc! { "ping": 1, "$db": "admin" })
        .await
        .expect("send");
    assert!(
        fresh.recv_within(HANG).await.is_none(),
        "a partitioned member answered ping"
    );

    // The driver, too, gets nothing back.
    let (client, _seen) = driver(&rs.direct_uri(2)).await;
    let admin = client.database("admin");
    let ping = admin.run_command(doc! { "ping": 1 });
    assert!(
        tokio::time::timeout(HANG, ping).await.is_err(),
        "the driver got an answer"
    );

    rs.heal(2);
    let r = c
        .recv_within(EVENTUALLY)
        .await
        .expect("held hello never answered")
        .unwrap();
    assert_eq!(r.body.get_str("setName").ok(), Some("rs0"));
    let r = fresh
        .recv_within(EVENTUALLY)
        .await
        .expect("held ping never answered")
        .unwrap();
    assert_eq!(r.body.get_f64("ok").ok(), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_set_closes_every_socket() {
    let upstream = Secantus::start();
    let rs = ReplSet::start(2, &upstream).await;
    let addr = rs.addr(0);
    let mut c = RawClient::connect(addr).await.expect("connect");
    c.command(doc! { "ping": 1, "$db": "admin" }).await.expect("ping");
    drop(rs);
    let closed = tokio::time::timeout(Duration::from_secs(2), c.recv()).await;
    assert!(
        matches!(closed, Ok(Err(_))),
        "the connection outlived the set: {closed:?}"
    );
    eventually("the listener is closed", || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;
}
