//! Shared by the Rust-driver tests (`drivers_rust*.rs`): SecantusDB plus an in-process
//! proxy, a driver client with test-friendly options, and polling.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::time::Duration;

use mongodb::bson::{Bson, Document};
use mongodb::options::ClientOptions;
use mongodb::Client;

use crate::common::peers::Secantus;
use crate::common::proxy::{Builder, TestProxy};

/// How long the polling checks wait for something the proxy or server does later.
pub const EVENTUALLY: Duration = Duration::from_secs(10);

/// SecantusDB plus a proxy in front of it. Dropping it kills the server.
pub struct Setup {
    pub proxy: TestProxy,
    pub upstream: Secantus,
}

impl Setup {
    pub async fn start() -> Self {
        Self::start_with(|b| b).await
    }

    /// Like [`Setup::start`], with the proxy's builder adjusted by `tune`.
    pub async fn start_with(tune: impl FnOnce(Builder) -> Builder) -> Self {
        let upstream = Secantus::start();
        let builder = TestProxy::builder(&upstream.seed_uri()).max_pool_size(8);
        let proxy = tune(builder).start().await;
        Self { proxy, upstream }
    }

    /// A driver connected through the proxy.
    pub async fn client(&self) -> Client {
        client(&self.proxy.uri(), |_| {}).await
    }

    /// Requests the proxy counted for `command`, all outcomes.
    pub fn requests(&self, command: &str) -> f64 {
        let label = format!("command=\"{command}\"");
        self.proxy.metric_sum("mongoplex_requests_total", &[&label])
    }

    /// The proxy's gauge of cursors pinned to a member.
    pub fn pinned_cursors(&self) -> f64 {
        self.proxy.metric_sum("mongoplex_pinned_cursors", &[])
    }

    pub async fn finish(self) {
        self.proxy.shutdown().await;
        drop(self.upstream);
    }
}

/// A client for `uri` with a short server-selection timeout; `tune` adjusts the options.
pub async fn client(uri: &str, tune: impl FnOnce(&mut ClientOptions)) -> Client {
    let mut opts = ClientOptions::parse(uri).await.expect("valid URI");
    opts.server_selection_timeout = Some(Duration::from_secs(10));
    tune(&mut opts);
    Client::with_options(opts).expect("client options")
}

/// Polls `check` until it holds, panicking with `what` after [`EVENTUALLY`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {EVENTUALLY:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A numeric field as f64, whichever BSON number type the server chose.
pub fn number(d: &Document, key: &str) -> Option<f64> {
    match d.get(key)? {
        Bson::Double(v) => Some(*v),
        Bson::Int32(v) => Some(f64::from(*v)),
        Bson::Int64(v) => Some(*v as f64),
        _ => None,
    }
}
