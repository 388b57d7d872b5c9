//! The pool on its own against a real SecantusDB: a checkout never hands out a perished
//! connection (idle longer than maxIdleTimeMS, or older than its lifetime), and reuses a
//! fresh one.

// Only the peers helper: the rest of tests/common/ is not needed here.
#[path = "common/peers.rs"]
mod peers;

use std::time::Duration;

use mongoplex::address::ServerAddress;
use mongoplex::metrics::Metrics;
use mongoplex::pool::{Pool, PoolOptions};
use mongoplex::upstream::ConnectOptions;
use peers::Secantus;

fn pool(server: &Secantus, opts: PoolOptions) -> Pool {
    let addr = server.addr();
    let address = ServerAddress {
        host: addr.ip().to_string(),
        port: addr.port(),
    };
    let metrics = Metrics::new(&prometheus::Registry::new(), 10);
    let member = address.to_string();
    let pool = Pool::new(address, opts, ConnectOptions::default(), metrics.pool(&member));
    pool.mark_ready();
    pool
}

/// Checks a connection out and back in; returns its id.
async fn use_once(pool: &Pool) -> u64 {
    pool.check_out().await.expect("checkout").id
}

#[tokio::test]
async fn a_connection_idle_past_max_idle_time_is_replaced_at_checkout() {
    let server = Secantus::start();
    let idle = Duration::from_millis(500);
    let pool = pool(
        &server,
        PoolOptions {
            max_idle_time: Some(idle),
            ..PoolOptions::default()
        },
    );
    let first = use_once(&pool).await;
    assert_eq!(
        use_once(&pool).await,
        first,
        "a fresh parked connection is reused"
    );
    tokio::time::sleep(idle * 2).await;
    let later = use_once(&pool).await;
    assert_ne!(
        later, first,
        "a connection idle past maxIdleTimeMS was handed out"
    );
    let snap = pool.snapshot();
    assert_eq!(
        (snap.total, snap.idle),
        (1, 1),
        "the perished connection was closed: {snap:?}"
    );
}

#[tokio::test]
async fn a_connection_past_its_lifetime_is_replaced_at_checkout() {
    let server = Secantus::start();
    let lifetime = Duration::from_millis(200);
    let pool = pool(
        &server,
        PoolOptions {
            max_lifetime: Some(lifetime),
            ..PoolOptions::default()
        },
    );
    let first = use_once(&pool).await;
    tokio::time::sleep(lifetime + Duration::from_millis(100)).await;
    assert_ne!(
        use_once(&pool).await,
        first,
        "a connection past its lifetime was handed out"
    );
    assert_eq!(pool.snapshot().total, 1);
}
