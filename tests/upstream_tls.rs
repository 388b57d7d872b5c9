//! TLS to the upstream against SecantusDB with `--tls-cert-file/--tls-key-file` (and
//! `--tls-ca-file --tls-require-client-cert` for mutual TLS), with certificates made
//! here by rcgen. Before, `tls=true` was accepted and the proxy talked plaintext.

mod common;

use std::path::Path;

use common::peers::Secantus;
use common::pki::Pki;
use common::proxy::TestProxy;
use mongodb::bson::{doc, Document};
use mongoplex::config::{Config, Settings};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn tls_server(cert: &Path, key: &Path, extra: &[&str]) -> Secantus {
    let mut args = vec!["--tls-cert-file", s(cert), "--tls-key-file", s(key)];
    args.extend_from_slice(extra);
    Secantus::start_tls(&args)
}

fn uri(host: &str, server: &Secantus, options: &str) -> String {
    format!(
        "mongodb://{host}:{}/?directConnection=true&tls=true&{options}",
        server.port()
    )
}

async fn insert_through(proxy: &TestProxy) {
    let client = mongodb::Client::with_uri_str(proxy.uri()).await.unwrap();
    client
        .database("tlstest")
        .collection::<Document>("c")
        .insert_one(doc! { "x": 1 })
        .await
        .expect("insert through a TLS upstream");
}

/// The proxy's view after `wait`: the member's last error (from /status-like summary).
async fn member_error(upstream: &str) -> String {
    let settings = Settings {
        upstream: Some(upstream.to_string()),
        listen: Some("127.0.0.1:0".into()),
        admin: Some("off".into()),
        heartbeat_frequency_ms: Some(500),
        ..Settings::default()
    };
    let config = Config::validate(settings).expect("valid configuration");
    let proxy = mongoplex::server::Proxy::start(std::sync::Arc::new(config))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let summary = proxy.ctx.topology.snapshot().summary();
        if summary.contains("TLS") || std::time::Instant::now() > deadline {
            return summary;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_upstream_verifies_the_server_and_refuses_what_does_not_verify() {
    let pki = Pki::new();
    let (cert, key, _) = pki.issue("server", &["localhost", "127.0.0.1"], false);
    let server = tls_server(&cert, &key, &[]);
    let ca = format!("tlsCAFile={}", s(&pki.ca_file()));

    // Verified against the test CA, by IP and by name.
    for host in ["127.0.0.1", "localhost"] {
        let proxy = TestProxy::builder(&uri(host, &server, &ca)).start().await;
        insert_through(&proxy).await;
        proxy.shutdown().await;
    }
    // The system roots do not know the test CA.
    let e = member_error(&uri("127.0.0.1", &server, "")).await;
    assert!(e.contains("not signed by a trusted CA"), "{e}");
    // tlsAllowInvalidCertificates / tlsInsecure accept it anyway.
    let proxy = TestProxy::builder(&uri("127.0.0.1", &server, "tlsInsecure=true"))
        .start()
        .await;
    insert_through(&proxy).await;
    proxy.shutdown().await;
    drop(server);

    // A certificate for another host: refused, unless tlsAllowInvalidHostnames.
    let (cert, key, _) = pki.issue("other", &["db.other.example"], false);
    let server = tls_server(&cert, &key, &[]);
    let e = member_error(&uri("127.0.0.1", &server, &ca)).await;
    assert!(e.contains("does not name this host"), "{e}");
    let proxy = TestProxy::builder(&uri(
        "127.0.0.1",
        &server,
        &format!("{ca}&tlsAllowInvalidHostnames=true"),
    ))
    .start()
    .await;
    insert_through(&proxy).await;
    proxy.shutdown().await;
    drop(server);

    // An expired certificate.
    let (cert, key, _) = pki.issue("expired", &["127.0.0.1"], true);
    let server = tls_server(&cert, &key, &[]);
    let e = member_error(&uri("127.0.0.1", &server, &ca)).await;
    assert!(e.contains("expired"), "{e}");
    drop(server);

    // tls=true against a plaintext server.
    let plain = Secantus::start();
    let e = member_error(&uri("127.0.0.1", &plain, &format!("{ca}&connectTimeoutMS=1500"))).await;
    assert!(e.contains("TLS") && e.contains("plaintext"), "{e}");
}

/// Mutual TLS: the server requires a client certificate signed by its CA; the proxy
/// presents tlsCertificateKeyFile, and without it the handshake fails clearly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_presents_the_client_certificate() {
    let pki = Pki::new();
    let (cert, key, _) = pki.issue("server", &["127.0.0.1"], false);
    let (_, _, client_both) = pki.issue("client", &["mongoplex"], false);
    let ca_path = pki.ca_file();
    let server = tls_server(
        &cert,
        &key,
        &["--tls-ca-file", s(&ca_path), "--tls-require-client-cert"],
    );
    let ca = format!("tlsCAFile={}", s(&ca_path));
    let with_cert = format!("{ca}&tlsCertificateKeyFile={}", s(&client_both));
    let proxy = TestProxy::builder(&uri("127.0.0.1", &server, &with_cert))
        .start()
        .await;
    insert_through(&proxy).await;
    proxy.shutdown().await;
    let e = member_error(&uri("127.0.0.1", &server, &ca)).await;
    // TLS 1.3: the server's refusal arrives as an alert on the first read (the hello).
    assert!(
        e.contains("CertificateRequired"),
        "without a client certificate: {e}"
    );
}
