//! Starting mongoplex in-process for integration tests, builder-style:
//!
//! ```ignore
//! let upstream = Secantus::start();
//! let proxy = TestProxy::builder(&upstream.seed_uri()).max_pool_size(8).start().await;
//! let client = mongodb::Client::with_uri_str(proxy.uri()).await?;
//! ```
//!
//! The proxy runs on the test's tokio runtime, so use
//! `#[tokio::test(flavor = "multi_thread")]` when a blocking client shares it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mongoplex::config::{Config, Settings};
use mongoplex::server::Proxy;

pub struct TestProxy {
    proxy: Option<Proxy>,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
}

pub struct Builder {
    settings: Settings,
}

impl TestProxy {
    /// A builder for a proxy in front of `upstream`, listening on 127.0.0.1:0.
    pub fn builder(upstream: &str) -> Builder {
        Builder {
            settings: Settings {
                upstream: Some(upstream.to_string()),
                listen: Some("127.0.0.1:0".into()),
                admin: Some("127.0.0.1:0".into()),
                heartbeat_frequency_ms: Some(500),
                ..Settings::default()
            },
        }
    }

    /// A client connection string for the proxy, with extra URI options appended.
    pub fn uri_with(&self, options: &str) -> String {
        let sep = if options.is_empty() { "" } else { "&" };
        format!("mongodb://{}/?appName=mongoplex-test{sep}{options}", self.addr)
    }

    pub fn uri(&self) -> String {
        self.uri_with("")
    }

    pub fn proxy(&self) -> &Proxy {
        self.proxy.as_ref().expect("running")
    }

    /// The Prometheus exposition text, gathered directly from the registry.
    pub fn metrics_text(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.proxy().registry.gather(), &mut buf)
            .expect("encode");
        String::from_utf8(buf).expect("utf8")
    }

    /// The whole HTTP response (status line, headers, body) to `GET path` on the admin port.
    pub fn admin_get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let admin = self.admin.expect("the admin listener is on");
        let mut s = std::net::TcpStream::connect(admin).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// Sum of a metric's samples whose line contains every one of `matchers`.
    pub fn metric_sum(&self, name: &str, matchers: &[&str]) -> f64 {
        metric_sum(&self.metrics_text(), name, matchers)
    }

    pub async fn shutdown(mut self) {
        if let Some(p) = self.proxy.take() {
            p.shutdown(Duration::from_secs(5)).await;
        }
    }
}

impl Builder {
    pub fn settings(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(&mut self.settings);
        self
    }

    pub fn max_pool_size(self, n: u64) -> Self {
        self.settings(|s| s.max_pool_size = Some(n))
    }

    pub fn wait_queue_timeout_ms(self, n: u64) -> Self {
        self.settings(|s| s.wait_queue_timeout_ms = Some(n))
    }

    pub async fn start(self) -> TestProxy {
        // MONGOPLEX_TEST_LOG=debug (any filter) shows the proxy's logs in test output.
        if let Ok(filter) = std::env::var("MONGOPLEX_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        // discover: a mongodb+srv upstream is looked up first, as the binary does.
        let config = Config::discover(self.settings)
            .await
            .expect("valid test configuration");
        let proxy = Proxy::start(Arc::new(config)).await.expect("proxy starts");
        let proxy_addr = proxy.client_addr;
        let admin = proxy.admin_addr;
        let t = TestProxy {
            proxy: Some(proxy),
            addr: proxy_addr,
            admin,
        };
        // Wait until the upstream is known, so tests start from a ready proxy.
        let ready = t.proxy().ctx.topology.limits(Duration::from_secs(20)).await;
        assert!(
            ready.is_some(),
            "proxy never learned its upstream: {}",
            t.proxy().ctx.topology.snapshot().summary()
        );
        t
    }
}

/// Sum of a metric's samples in exposition `text` whose line contains every one of
/// `matchers`.
pub fn metric_sum(text: &str, name: &str, matchers: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| matchers.iter().all(|m| l.contains(m)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
