//! TLS on the client listener (`tls_cert_file`, `tls_key_file`, `tls_ca_file`): pymongo
//! with `tls=true&tlsCAFile=...` runs its CRUD script through the proxy; a plaintext
//! client is refused; with `tls_ca_file` a client without a certificate signed by that
//! CA is refused and one with it gets through.

mod common;

use std::path::Path;

use common::peers::{self, Secantus};
use common::pki::Pki;
use common::proxy::TestProxy;
use mongodb::bson::doc;

async fn tls_proxy(upstream: &Secantus, cert: &Path, key: &Path, ca: Option<&Path>) -> TestProxy {
    let (cert, key, ca) = (cert.to_path_buf(), key.to_path_buf(), ca.map(Path::to_path_buf));
    TestProxy::builder(&upstream.seed_uri())
        .max_pool_size(4)
        .settings(move |s| {
            s.tls_cert_file = Some(cert);
            s.tls_key_file = Some(key);
            s.tls_ca_file = ca;
        })
        .start()
        .await
}

async fn ping(uri: &str) -> Result<(), mongodb::error::Error> {
    let client = mongodb::Client::with_uri_str(uri).await?;
    client.database("admin").run_command(doc! { "ping": 1 }).await?;
    client.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymongo_over_tls_and_plaintext_refused() {
    let upstream = Secantus::start();
    let pki = Pki::new();
    let (cert, key, _) = pki.issue("proxy", &["localhost", "127.0.0.1"], false);
    let ca = pki.ca_file();
    let proxy = tls_proxy(&upstream, &cert, &key, None).await;
    let tls_uri = proxy.uri_with(&format!("tls=true&tlsCAFile={}", ca.display()));
    let out = peers::run_python(&peers::client_script("crud_pymongo.py"), &[&tls_uri]).await;
    let stdout = peers::assert_success(&out, "crud_pymongo.py over TLS");
    assert!(stdout.contains("crud_pymongo: OK"), "{stdout}");
    ping(&tls_uri).await.expect("the Rust driver over TLS");
    let plain = proxy.uri_with("serverSelectionTimeoutMS=2000");
    ping(&plain).await.expect_err("a plaintext client is refused");
    // A CA that did not sign the proxy's certificate: the client refuses the proxy.
    let other = Pki::new();
    let wrong = proxy.uri_with(&format!(
        "tls=true&tlsCAFile={}&serverSelectionTimeoutMS=2000",
        other.ca_file().display()
    ));
    ping(&wrong).await.expect_err("an untrusted proxy certificate");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_with_tls_ca_file() {
    let upstream = Secantus::start();
    let pki = Pki::new();
    let (cert, key, _) = pki.issue("proxy", &["localhost", "127.0.0.1"], false);
    let (_, _, client_both) = pki.issue("app", &["app"], false);
    let stranger = Pki::new();
    let (_, _, stranger_both) = stranger.issue("stranger", &["stranger"], false);
    let ca = pki.ca_file();
    let proxy = tls_proxy(&upstream, &cert, &key, Some(&ca)).await;
    let base = format!(
        "tls=true&tlsCAFile={}&serverSelectionTimeoutMS=3000",
        ca.display()
    );
    ping(&proxy.uri_with(&base))
        .await
        .expect_err("no client certificate");
    ping(&proxy.uri_with(&format!(
        "{base}&tlsCertificateKeyFile={}",
        stranger_both.display()
    )))
    .await
    .expect_err("a certificate from another CA");
    let with_cert = proxy.uri_with(&format!("{base}&tlsCertificateKeyFile={}", client_both.display()));
    ping(&with_cert)
        .await
        .expect("a certificate signed by tls_ca_file");
    let out = peers::run_python(&peers::client_script("crud_pymongo.py"), &[&with_cert]).await;
    let stdout = peers::assert_success(&out, "crud_pymongo.py with a client certificate");
    assert!(stdout.contains("crud_pymongo: OK"), "{stdout}");
    proxy.shutdown().await;
}
