//! Clients authenticating to the proxy with `client_auth = "file"`: real drivers (the
//! Rust driver, pymongo, the Node driver, mongosh) with ordinary `user:password@` URIs
//! through mongoplex in front of SecantusDB, a raw OP_MSG client that takes the
//! explicit saslStart path without `skipEmptyExchange`, the failures (wrong password
//! 18, no credentials 13), logout and re-authentication, connectionStatus, the command
//! policy for shared identities, `mongoplex user add`, and the error of `off`.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bson::{rawdoc, RawDocument, RawDocumentBuf};
use common::peers::{self, unique_temp_dir, Secantus};
use common::proxy::TestProxy;
use mongodb::bson::{doc, Document};
use mongoplex::auth::scram::{ClientFirst, Keys, Mechanism};
use mongoplex::wire::{build_msg, decode_frame, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PASSWORD: &str = "pw-Secret1";

/// A users file with `app` (both mechanisms), `old` (SCRAM-SHA-1 only) and `new`
/// (SCRAM-SHA-256 only), all on admin, each with [`PASSWORD`].
fn users_file() -> PathBuf {
    let path = unique_temp_dir("client-users").join("users.toml");
    use Mechanism::{Sha1, Sha256};
    let users: [(&str, &[Mechanism]); 3] = [("app", &[Sha256, Sha1]), ("old", &[Sha1]), ("new", &[Sha256])];
    for (user, mechanisms) in users {
        mongoplex::auth::users::add(&path, user, "admin", PASSWORD, mechanisms).unwrap();
    }
    path
}

async fn file_proxy(upstream: &Secantus, users: &std::path::Path, allow: &[&str]) -> TestProxy {
    let users = users.to_path_buf();
    let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
    TestProxy::builder(&upstream.seed_uri())
        .max_pool_size(8)
        .settings(move |s| {
            s.client_auth = Some("file".into());
            s.client_users_file = Some(users);
            if !allow.is_empty() {
                s.command_allow = Some(allow);
            }
        })
        .start()
        .await
}

/// `mongodb://USER:PASSWORD@PROXY/?appName=...&OPTIONS`.
fn uri_as(proxy: &TestProxy, user: &str, password: &str, options: &str) -> String {
    let sep = if options.is_empty() { "" } else { "&" };
    format!(
        "mongodb://{user}:{password}@{}/?appName=client-auth-test{sep}{options}",
        proxy.addr
    )
}

fn requests(proxy: &TestProxy, command: &str) -> f64 {
    proxy.metric_sum("mongoplex_requests_total", &[&format!("command=\"{command}\"")])
}

fn code(e: &mongodb::error::Error) -> Option<i32> {
    // The driver wraps a failed login's server error in an Authentication error; the
    // code is the server's (here the proxy's), never one the driver made up.
    match &*e.kind {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => {
            let source = std::error::Error::source(e)?;
            match source.downcast_ref::<mongodb::error::Error>() {
                Some(inner) => code(inner),
                None => source
                    .downcast_ref::<Box<mongodb::error::Error>>()
                    .and_then(|b| code(b)),
            }
        }
    }
}

async fn crud(uri: &str) -> Result<u64, mongodb::error::Error> {
    let client = mongodb::Client::with_uri_str(uri).await?;
    let coll = client.database("authcrud").collection::<Document>("c");
    coll.insert_one(doc! { "k": 1 }).await?;
    coll.update_one(doc! { "k": 1 }, doc! { "$set": { "v": 2 } })
        .await?;
    let found = coll.find_one(doc! { "k": 1 }).await?.expect("inserted");
    assert_eq!(found.get_i32("v").unwrap(), 2);
    coll.delete_one(doc! { "k": 1 }).await?;
    let n = coll.count_documents(doc! {}).await?;
    client.shutdown().await;
    Ok(n)
}

/// The Rust driver, each user and mechanism: a user with SCRAM-SHA-256 logs in inside
/// hello (speculativeAuthenticate, no saslStart reaches the proxy); a SHA-1-only user
/// gets no speculative answer to the driver's SHA-256 guess and logs in with an explicit
/// saslStart of the mechanism hello listed for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_driver_logs_in_speculatively_and_explicitly() {
    let upstream = Secantus::start();
    let users = users_file();
    let proxy = file_proxy(&upstream, &users, &[]).await;
    for (user, options, explicit) in [
        ("app", "", false),
        ("new", "", false),
        ("app", "authMechanism=SCRAM-SHA-1", false),
        ("old", "", true),
        ("old", "authMechanism=SCRAM-SHA-1", false),
    ] {
        let starts = requests(&proxy, "saslStart");
        let continues = requests(&proxy, "saslContinue");
        crud(&uri_as(&proxy, user, PASSWORD, options))
            .await
            .unwrap_or_else(|e| panic!("{user} {options}: {e}"));
        assert!(
            requests(&proxy, "saslContinue") > continues,
            "{user} {options}: no proof"
        );
        assert_eq!(
            requests(&proxy, "saslStart") > starts,
            explicit,
            "{user} {options}: explicit saslStart expected {explicit}"
        );
    }
    proxy.shutdown().await;
}

/// A wrong password, an unknown user and a mechanism the user lacks fail alike, with
/// AuthenticationFailed (18) after the constant delay; no credentials get Unauthorized
/// (13) on find, while ping and buildInfo work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_18_and_unauthenticated_commands_13() {
    let upstream = Secantus::start();
    let users = users_file();
    let proxy = file_proxy(&upstream, &users, &[]).await;
    for (user, password, options) in [
        ("app", "wrong", ""),
        ("nobody", PASSWORD, ""),
        ("old", PASSWORD, "authMechanism=SCRAM-SHA-256"),
    ] {
        let started = Instant::now();
        let e = crud(&uri_as(
            &proxy,
            user,
            password,
            &format!(
                "serverSelectionTimeoutMS=5000{}",
                if options.is_empty() {
                    String::new()
                } else {
                    format!("&{options}")
                }
            ),
        ))
        .await
        .expect_err("a bad login must fail");
        assert_eq!(code(&e), Some(18), "{user}/{password} {options}: {e}");
        assert!(!e.to_string().contains(PASSWORD), "{e}");
        assert!(
            started.elapsed() >= mongoplex_failure_delay(),
            "no delay before the failure"
        );
    }
    let anon = mongodb::Client::with_uri_str(proxy.uri()).await.unwrap();
    let admin = anon.database("admin");
    admin
        .run_command(doc! { "ping": 1 })
        .await
        .expect("ping needs no login");
    admin
        .run_command(doc! { "buildInfo": 1 })
        .await
        .expect("buildInfo needs no login");
    let e = anon
        .database("authcrud")
        .collection::<Document>("c")
        .find_one(doc! {})
        .await
        .expect_err("find without a login");
    assert_eq!(code(&e), Some(13), "{e}");
    assert!(
        e.to_string().contains("command find requires authentication"),
        "{e}"
    );
    proxy.shutdown().await;
}

fn mongoplex_failure_delay() -> Duration {
    Duration::from_millis(100)
}

/// pymongo, the Node driver and mongosh log in with `user:password@` and run their CRUD
/// scripts; pymongo also as the SHA-1 user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymongo_node_and_mongosh_log_in_and_run_crud() {
    let upstream = Secantus::start();
    let users = users_file();
    let proxy = file_proxy(&upstream, &users, &[]).await;
    let cases = [
        (
            "crud_pymongo.py",
            uri_as(&proxy, "app", PASSWORD, ""),
            "crud_pymongo: OK",
        ),
        (
            "crud_pymongo.py",
            uri_as(&proxy, "old", PASSWORD, "authMechanism=SCRAM-SHA-1"),
            "crud_pymongo: OK",
        ),
        // No speculative answer for a SHA-1-only user: an explicit saslStart.
        (
            "crud_pymongo.py",
            uri_as(&proxy, "old", PASSWORD, ""),
            "crud_pymongo: OK",
        ),
        (
            "crud_node.js",
            uri_as(&proxy, "app", PASSWORD, ""),
            "crud_node: OK",
        ),
        (
            "crud_node.js",
            uri_as(&proxy, "old", PASSWORD, ""),
            "crud_node: OK",
        ),
        (
            "crud_mongosh.js",
            uri_as(&proxy, "new", PASSWORD, ""),
            "crud_mongosh: OK",
        ),
    ];
    let starts = requests(&proxy, "saslStart");
    for (script, uri, summary) in cases {
        let path = peers::client_script(script);
        let out = if script.ends_with(".py") {
            peers::run_python(&path, &[&uri]).await
        } else if script.contains("mongosh") {
            peers::run_mongosh(&uri, &path).await
        } else {
            peers::run_node(&path, &[&uri]).await
        };
        let stdout = peers::assert_success(&out, &format!("{script} as {uri}"));
        assert!(stdout.contains(summary), "{script}: {stdout}");
    }
    assert!(
        requests(&proxy, "saslStart") >= starts + 2.0,
        "pymongo and node took no explicit saslStart for the SHA-1-only user"
    );
    // And the same script without credentials is refused.
    let out = peers::run_python(&peers::client_script("crud_pymongo.py"), &[&proxy.uri()]).await;
    assert!(!out.status.success(), "pymongo without credentials ran CRUD");
    proxy.shutdown().await;
}

/// A raw OP_MSG client.
struct Raw {
    s: TcpStream,
    buf: bytes::BytesMut,
}

impl Raw {
    async fn connect(proxy: &TestProxy) -> Self {
        Self {
            s: TcpStream::connect(proxy.addr).await.unwrap(),
            buf: bytes::BytesMut::new(),
        }
    }

    async fn cmd(&mut self, body: RawDocumentBuf) -> RawDocumentBuf {
        let frame = build_msg(1, 0, 0, body.as_bytes());
        self.s.write_all(frame.as_bytes()).await.unwrap();
        loop {
            if let Some(f) = decode_frame(&mut self.buf, 64 << 20).unwrap() {
                return reply_body(&f).to_owned();
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.s.read_buf(&mut self.buf))
                .await
                .expect("a reply")
                .unwrap();
            assert!(n > 0, "the proxy closed the connection");
        }
    }
}

fn reply_body(f: &Frame) -> &RawDocument {
    RawDocument::from_bytes(&f.payload()[5..]).unwrap()
}

fn payload(reply: &RawDocument) -> String {
    String::from_utf8(reply.get_binary("payload").unwrap().bytes.to_vec()).unwrap()
}

fn bin(s: &str) -> bson::Binary {
    bson::Binary {
        subtype: bson::spec::BinarySubtype::Generic,
        bytes: s.as_bytes().to_vec(),
    }
}

fn ok(reply: &RawDocument) -> bool {
    reply.get("ok").ok().flatten().and_then(|v| v.as_f64()) == Some(1.0)
}

/// The explicit exchange without skipEmptyExchange: saslStart, the proof, the empty
/// last round; returns whether the login worked.
async fn explicit_login(raw: &mut Raw, m: Mechanism, user: &str, password: &str) -> bool {
    let first = ClientFirst::new(m, user, "rawclientnonce");
    let reply = raw
        .cmd(rawdoc! { "saslStart": 1, "mechanism": m.name(), "payload": bin(&first.message()), "$db": "admin" })
        .await;
    assert!(ok(&reply), "{reply:?}");
    assert!(!reply.get_bool("done").unwrap());
    let id = reply.get_i32("conversationId").unwrap();
    let challenge = first.server_first(&payload(&reply)).unwrap();
    let prepared = m.prepare_password(user, password).unwrap();
    let keys = Keys::derive(m, &prepared, &challenge.salt, challenge.iterations);
    let (client_final, signature) = challenge.client_final(&keys);
    let reply = raw
        .cmd(rawdoc! { "saslContinue": 1, "conversationId": id, "payload": bin(&client_final), "$db": "admin" })
        .await;
    if !ok(&reply) {
        assert_eq!(reply.get_i32("code").unwrap(), 18, "{reply:?}");
        return false;
    }
    signature.verify(&payload(&reply)).unwrap();
    assert!(
        !reply.get_bool("done").unwrap(),
        "done before the empty round: {reply:?}"
    );
    let reply = raw
        .cmd(rawdoc! { "saslContinue": 1, "conversationId": id, "payload": bin(""), "$db": "admin" })
        .await;
    assert!(ok(&reply) && reply.get_bool("done").unwrap(), "{reply:?}");
    true
}

async fn find_code(raw: &mut Raw) -> Option<i32> {
    let reply = raw.cmd(rawdoc! { "find": "c", "$db": "authcrud" }).await;
    reply.get_i32("code").ok()
}

/// saslSupportedMechs, the explicit path of both mechanisms, connectionStatus with the
/// client's own identity, logout, and logging in again on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_sasl_logout_and_connection_status() {
    let upstream = Secantus::start();
    let users = users_file();
    let proxy = file_proxy(&upstream, &users, &[]).await;
    let mut raw = Raw::connect(&proxy).await;
    let hello = raw
        .cmd(rawdoc! { "hello": 1, "saslSupportedMechs": "admin.old", "$db": "admin" })
        .await;
    let mechs: Vec<&str> = hello
        .get_array("saslSupportedMechs")
        .unwrap()
        .into_iter()
        .map(|v| v.unwrap().as_str().unwrap())
        .collect();
    assert_eq!(mechs, ["SCRAM-SHA-1"]);
    assert_eq!(find_code(&mut raw).await, Some(13));
    assert!(!explicit_login(&mut raw, Mechanism::Sha1, "old", "wrong").await);
    assert_eq!(
        find_code(&mut raw).await,
        Some(13),
        "a failed login let find through"
    );
    assert!(explicit_login(&mut raw, Mechanism::Sha1, "old", PASSWORD).await);
    assert_eq!(find_code(&mut raw).await, None, "find after the login");
    let status = raw.cmd(rawdoc! { "connectionStatus": 1, "$db": "admin" }).await;
    let who = status
        .get_document("authInfo")
        .unwrap()
        .get_array("authenticatedUsers")
        .unwrap();
    let who: Vec<RawDocumentBuf> = who
        .into_iter()
        .map(|v| v.unwrap().as_document().unwrap().to_owned())
        .collect();
    assert_eq!(who, [rawdoc! { "user": "old", "db": "admin" }]);
    let out = raw.cmd(rawdoc! { "logout": 1, "$db": "admin" }).await;
    assert!(ok(&out));
    assert_eq!(find_code(&mut raw).await, Some(13), "find after logout");
    assert!(explicit_login(&mut raw, Mechanism::Sha256, "app", PASSWORD).await);
    assert_eq!(find_code(&mut raw).await, None, "find after logging in again");
    // An unsupported mechanism is MechanismUnavailable, as from mongod.
    let reply = raw
        .cmd(rawdoc! { "saslStart": 1, "mechanism": "PLAIN", "payload": bin("x"), "$db": "admin" })
        .await;
    assert_eq!(reply.get_i32("code").unwrap(), 334, "{reply:?}");
    proxy.shutdown().await;
}

/// Under `file` every client acts upstream as the proxy's login: shutdown and createUser
/// are refused with a clear error; an allow-list entry lets createUser through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_refuses_server_commands_unless_allowed() {
    let upstream = Secantus::start();
    let users = users_file();
    let proxy = file_proxy(&upstream, &users, &[]).await;
    let client = mongodb::Client::with_uri_str(uri_as(&proxy, "app", PASSWORD, ""))
        .await
        .unwrap();
    let admin = client.database("admin");
    for cmd in [
        doc! { "shutdown": 1 },
        doc! { "createUser": "x", "pwd": "y", "roles": [] },
        doc! { "fsync": 1, "lock": true },
    ] {
        let e = admin.run_command(cmd.clone()).await.expect_err("refused");
        assert_eq!(code(&e), Some(13), "{cmd}: {e}");
        assert!(e.to_string().contains("command_allow"), "{e}");
    }
    admin.run_command(doc! { "ping": 1 }).await.unwrap();
    client.shutdown().await;
    proxy.shutdown().await;

    let proxy = file_proxy(&upstream, &users, &["createUser"]).await;
    let client = mongodb::Client::with_uri_str(uri_as(&proxy, "app", PASSWORD, ""))
        .await
        .unwrap();
    let admin = client.database("admin");
    admin
        .run_command(doc! { "createUser": "made", "pwd": "y", "roles": [] })
        .await
        .expect("command_allow lets createUser through");
    let e = admin
        .run_command(doc! { "shutdown": 1 })
        .await
        .expect_err("still refused");
    assert_eq!(code(&e), Some(13), "{e}");
    client.shutdown().await;
    proxy.shutdown().await;
}

/// `mongoplex user add` with the password on standard input, then a driver logs in as
/// that user; the file holds no password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_add_then_a_driver_logs_in() {
    let upstream = Secantus::start();
    let path = unique_temp_dir("user-add").join("users.toml");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mongoplex"))
        .args(["user", "add", "carol", "--db", "admin", "--file"])
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(b"carol-Pw9\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("carol-Pw9") && text.contains("storedKey"),
        "{text}"
    );
    let proxy = file_proxy(&upstream, &path, &[]).await;
    crud(&uri_as(&proxy, "carol", "carol-Pw9", ""))
        .await
        .expect("carol logs in");
    let e = crud(&uri_as(&proxy, "carol", "carol-Pw8", ""))
        .await
        .expect_err("wrong password");
    assert_eq!(code(&e), Some(18), "{e}");
    proxy.shutdown().await;
}

/// With `client_auth = "off"` (the default) a driver with credentials is told which
/// setting to turn on, not that the proxy logs in for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_names_the_setting() {
    let upstream = Secantus::start();
    let proxy = TestProxy::builder(&upstream.seed_uri()).start().await;
    let e = crud(&uri_as(&proxy, "app", PASSWORD, "serverSelectionTimeoutMS=5000"))
        .await
        .expect_err("no client login under off");
    let text = e.to_string();
    assert!(text.contains("client_auth"), "{text}");
    assert!(!text.contains("authenticates to the upstream itself"), "{text}");
    // Without credentials everything works, as before.
    crud(&proxy.uri()).await.expect("no credentials, no login");
    proxy.shutdown().await;
}
