//! MONGODB-X509 upstream authentication, and SCRAM over TLS, against SecantusDB with
//! `--auth` and mutual TLS (its auth module implements X.509: the user named by the
//! client certificate's subject, on `$external`). The proxy presents
//! tlsCertificateKeyFile and logs in as that subject; clients bring no credentials.

mod common;

use std::path::Path;
use std::time::Duration;

use common::auth::AuthSecantus;
use common::pki::Pki;
use common::proxy::TestProxy;
use mongodb::bson::{doc, Document};

/// The subject SecantusDB reads off the client certificate (RFC 4514 form).
const SUBJECT: &str = "CN=mongoplex-svc";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A TLS server requiring client certificates from `pki`'s CA, with `--auth`, whose
/// `$external` holds the X.509 user [`SUBJECT`] (readWrite on `x509test` only) and whose
/// admin holds the SCRAM user `svc` (root).
async fn server(pki: &Pki) -> AuthSecantus {
    let (cert, key, _) = pki.issue("server", &["127.0.0.1"], false);
    let ca = pki.ca_file();
    let x509_user = doc! {
        "createUser": SUBJECT,
        "mechanisms": ["MONGODB-X509"],
        "roles": [{ "role": "readWrite", "db": "x509test" }],
    };
    let tls = [
        "--tls-cert-file",
        s(&cert),
        "--tls-key-file",
        s(&key),
        "--tls-ca-file",
        s(&ca),
        "--tls-require-client-cert",
    ];
    AuthSecantus::start_with(&[("svc", "svc-Pw-1", &[])], &[("$external", x509_user)], &tls).await
}

fn upstream(up: &AuthSecantus, userinfo: &str, options: &str) -> String {
    format!(
        "mongodb://{userinfo}{}/?directConnection=true&tls=true&{options}",
        up.server.addr()
    )
}

/// Who the upstream connection that served `connectionStatus` is logged in as.
async fn upstream_users(client: &mongodb::Client) -> Vec<Document> {
    let status = client
        .database("admin")
        .run_command(doc! { "connectionStatus": 1 })
        .await
        .unwrap();
    let users = status
        .get_document("authInfo")
        .unwrap()
        .get_array("authenticatedUsers")
        .unwrap();
    users.iter().map(|u| u.as_document().unwrap().clone()).collect()
}

/// With the user named or left to the certificate, the proxy logs in as the subject:
/// `connectionStatus` upstream names it, its role allows `x509test` and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_logs_in_as_the_certificate_subject() {
    let pki = Pki::new();
    let up = server(&pki).await;
    let (_, _, client_cert) = pki.issue("mongoplex-svc", &["mongoplex"], false);
    let tls = format!(
        "tlsCAFile={}&tlsCertificateKeyFile={}&authMechanism=MONGODB-X509",
        s(&pki.ca_file()),
        s(&client_cert)
    );
    for userinfo in ["", "CN%3Dmongoplex-svc@"] {
        let proxy = TestProxy::builder(&upstream(&up, userinfo, &tls)).start().await;
        let client = mongodb::Client::with_uri_str(proxy.uri()).await.unwrap();
        let coll = client.database("x509test").collection::<Document>("c");
        coll.insert_one(doc! { "by": userinfo })
            .await
            .unwrap_or_else(|e| panic!("insert as {userinfo:?}: {e}"));
        assert!(coll.find_one(doc! { "by": userinfo }).await.unwrap().is_some());
        assert_eq!(
            upstream_users(&client).await,
            vec![doc! { "user": SUBJECT, "db": "$external" }]
        );
        // The subject's own role applies: nothing outside x509test.
        let err = client
            .database("other")
            .collection::<Document>("c")
            .insert_one(doc! {})
            .await
            .expect_err("the X.509 user has no role on `other`");
        assert!(err.to_string().contains("not authorized"), "{err}");
        proxy.shutdown().await;
    }
}

/// A certificate the server trusts but whose subject is no user: the login is refused,
/// `/ready` says so naming X.509's user, and clients get an authentication error, not
/// a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_with_an_unknown_subject_is_refused_clearly() {
    let pki = Pki::new();
    let up = server(&pki).await;
    let (_, _, stranger) = pki.issue("stranger", &["mongoplex"], false);
    let tls = format!(
        "tlsCAFile={}&tlsCertificateKeyFile={}&authMechanism=MONGODB-X509",
        s(&pki.ca_file()),
        s(&stranger)
    );
    let proxy = TestProxy::builder(&upstream(&up, "", &tls)).start().await;
    let client = mongodb::Client::with_uri_str(proxy.uri_with("serverSelectionTimeoutMS=5000"))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = client
        .database("x509test")
        .collection::<Document>("c")
        .insert_one(doc! {})
        .await
        .expect_err("no user has this certificate's subject");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("authentication"), "{err}");
    let ready = proxy.admin_get("/ready");
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(
        ready.contains("authentication failed") && ready.contains("$external"),
        "{ready}"
    );
    proxy.shutdown().await;
}

/// SCRAM over mutual TLS: the password login and the client certificate together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_over_mutual_tls() {
    let pki = Pki::new();
    let up = server(&pki).await;
    let (_, _, client_cert) = pki.issue("mongoplex-svc", &["mongoplex"], false);
    let tls = format!(
        "tlsCAFile={}&tlsCertificateKeyFile={}",
        s(&pki.ca_file()),
        s(&client_cert)
    );
    let proxy = TestProxy::builder(&upstream(&up, "svc:svc-Pw-1@", &tls))
        .start()
        .await;
    let client = mongodb::Client::with_uri_str(proxy.uri()).await.unwrap();
    client
        .database("anydb")
        .collection::<Document>("c")
        .insert_one(doc! { "x": 1 })
        .await
        .expect("root over TLS may write anywhere");
    assert_eq!(
        upstream_users(&client).await,
        vec![doc! { "user": "svc", "db": "admin" }]
    );
    proxy.shutdown().await;
}
