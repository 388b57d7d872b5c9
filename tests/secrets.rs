//! Secrets hygiene: a known secret put in every secret-bearing place (the URI's password,
//! `tlsCertificateKeyFilePassword`, `proxyPassword`, `authMechanismProperties` values,
//! `upstream_password`, `upstream_password_file`) never comes out of the binary: not in
//! start-up errors, not in its logs at debug level, not in `/status`, `/ready` or
//! `/metrics` (labels included), not in the error a client gets. The same holds for the
//! users file of `client_auth = "file"`: neither a client's password nor the file's
//! StoredKey, ServerKey or salt comes out of a running proxy or `check-config`.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::binary::Running;
use common::peers::{free_port, unique_temp_dir};

const SECRET: &str = "S3cr3t-Xq7";

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mongoplex"));
    cmd.args(args)
        .env_remove("MONGOPLEX_UPSTREAM_PASSWORD")
        .env_remove("MONGOPLEX_UPSTREAM_PASSWORD_FILE");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mongoplex {args:?} did not exit on a bad configuration");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Upstream URI, extra flags, environment, what the message must name.
type Case<'a> = (String, Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

/// Each refused configuration exits 2 with a message that names the problem, and none
/// of them prints the secret.
#[test]
fn start_up_errors_never_print_a_secret() {
    let dir = unique_temp_dir("secrets");
    let pw_file = dir.join("pw");
    std::fs::write(&pw_file, format!("{SECRET}\n")).unwrap();
    let pw_file = pw_file.to_str().unwrap().to_owned();
    let file_cfg = dir.join("bad.toml");
    std::fs::write(
        &file_cfg,
        format!("upstream = \"mongodb://svc@h:1/\"\nupstream_password = \"{SECRET}\"\nmax_pool_size = -1\n"),
    )
    .unwrap();
    let file_cfg = file_cfg.to_str().unwrap().to_owned();
    let x509 = "tls=true&tlsCertificateKeyFile=/nonexistent.pem&authMechanism=MONGODB-X509";
    let table: Vec<Case> = vec![
        (format!("mongodb://u:{SECRET}@h:1/?tsl=true"), vec![], vec![], "tsl"),
        (format!("mongodb://u:{SECRET}@h:1/?maxPoolSize=lots"), vec![], vec![], "maxPoolSize"),
        (format!("mongodb://u:{SECRET}@h:1/mydb"), vec![], vec![], "/mydb"),
        (format!("mongodb://u:{SECRET}@h:notaport/"), vec![], vec![], "port"),
        (format!("mongodb://u:{SECRET}%zz@h:1/"), vec![], vec![], "mongodb://"),
        (
            format!("mongodb://h:1/?tls=true&tlsCertificateKeyFilePassword={SECRET}"),
            vec![],
            vec![],
            "tlsCertificateKeyFilePassword",
        ),
        (
            format!("mongodb://h:1/?proxyHost=p&proxyUsername=u&proxyPassword={SECRET}"),
            vec![],
            vec![],
            "proxy",
        ),
        (
            format!("mongodb://u:p@h:1/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:{SECRET}"),
            vec![],
            vec![],
            "authMechanism",
        ),
        (
            format!("mongodb://u:p@h:1/?authMechanismProperties={SECRET}"),
            vec![],
            vec![],
            "authMechanismProperties",
        ),
        (
            "mongodb://h:1/".into(),
            vec![],
            vec![("MONGOPLEX_UPSTREAM_PASSWORD", SECRET)],
            "names no user",
        ),
        (
            format!("mongodb://h:1/?{x509}"),
            vec![],
            vec![("MONGOPLEX_UPSTREAM_PASSWORD_FILE", pw_file.as_str())],
            "takes no password",
        ),
        (
            format!("mongodb://u:{SECRET}@h:1/?{x509}"),
            vec![],
            vec![],
            "MONGODB-X509",
        ),
        (String::new(), vec!["--config", &file_cfg], vec![], "max_pool_size"),
    ];
    for (uri, flags, envs, names) in &table {
        let mut args: Vec<&str> = vec![
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "off",
            "--log-level",
            "debug",
        ];
        if !uri.is_empty() {
            args.extend(["--upstream", uri.as_str()]);
        }
        args.extend(flags.iter().copied());
        let out = run(&args, envs);
        let text = printed(&out);
        assert_eq!(out.status.code(), Some(2), "{uri} {flags:?}: {text}");
        assert!(
            text.contains(names),
            "{uri} {flags:?}: the message should name {names:?}: {text}"
        );
        assert!(
            !text.contains(SECRET),
            "{uri} {flags:?}: the secret was printed: {text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// A running proxy holding a password, its upstream unreachable so that every path that
/// reports a failure runs: debug logs, `/status`, `/ready`, `/metrics` and the error a
/// client gets all leave the password out (and still name the user, so the test would
/// see a leak if there were one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_proxy_never_serves_or_logs_the_password() {
    let (listen, admin) = (free_port(), free_port());
    let upstream = format!("mongodb://svc:{SECRET}@127.0.0.1:1/?directConnection=true&appName=sec");
    let mut proxy = Running::spawn(
        &[
            "--upstream",
            &upstream,
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--log-level",
            "debug",
        ],
        &[],
    );
    let client = mongodb::Client::with_uri_str(format!(
        "mongodb://127.0.0.1:{listen}/?serverSelectionTimeoutMS=3000&appName=secret-test"
    ))
    .await
    .unwrap();
    let err = client
        .database("x")
        .collection::<mongodb::bson::Document>("c")
        .insert_one(mongodb::bson::doc! {})
        .await
        .expect_err("the upstream is unreachable");
    let served: Vec<(&str, String)> = ["/status", "/ready", "/metrics"]
        .iter()
        .map(|p| (*p, http_get(admin, p)))
        .collect();
    proxy.signal("TERM");
    assert!(
        proxy.wait_exit(Duration::from_secs(15)).is_some(),
        "mongoplex did not exit"
    );
    let logs = proxy.log();
    assert!(logs.contains("svc"), "the logs name the user: {logs}");
    assert!(
        served[0].1.contains("svc"),
        "/status names the user: {}",
        served[0].1
    );
    for (what, text) in served.iter().map(|(p, t)| (*p, t.as_str())).chain([
        ("the logs", logs.as_str()),
        ("the client's error", &err.to_string()),
    ]) {
        assert!(!text.is_empty(), "{what} is empty");
        assert!(!text.contains(SECRET), "the password reached {what}:\n{text}");
    }
}

/// A proxy with `client_auth = "file"`, clients logging in with a wrong and then the
/// right password at debug log level: the password and the users file's keys appear in
/// no log line, admin page, client error or check-config line (the user name does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_logins_never_show_the_password_or_the_users_files_keys() {
    let upstream = common::peers::Secantus::start();
    let dir = unique_temp_dir("secrets-users");
    let users = dir.join("users.toml");
    mongoplex::auth::users::add(
        &users,
        "appuser",
        "admin",
        SECRET,
        &[
            mongoplex::auth::scram::Mechanism::Sha256,
            mongoplex::auth::scram::Mechanism::Sha1,
        ],
    )
    .unwrap();
    let file = std::fs::read_to_string(&users).unwrap();
    let keys: Vec<String> = file
        .lines()
        .filter_map(|l| l.split_once(" = \""))
        .filter(|(k, _)| ["salt", "storedKey", "serverKey"].contains(&k.trim()))
        .map(|(_, v)| v.trim_end_matches('"').to_owned())
        .collect();
    assert_eq!(keys.len(), 6, "{file}");
    let (listen, admin) = (free_port(), free_port());
    let users_arg = users.to_str().unwrap().to_owned();
    let common_args = [
        "--upstream".to_owned(),
        upstream.seed_uri(),
        "--client-auth".to_owned(),
        "file".to_owned(),
        "--client-users-file".to_owned(),
        users_arg.clone(),
    ];
    let check = Command::new(env!("CARGO_BIN_EXE_mongoplex"))
        .arg("check-config")
        .args(&common_args)
        .output()
        .unwrap();
    let checked = printed(&check);
    assert!(
        check.status.success() && checked.contains("client_users_file"),
        "{checked}"
    );
    let (listen_arg, admin_arg) = (format!("127.0.0.1:{listen}"), format!("127.0.0.1:{admin}"));
    let mut all_args: Vec<&str> = common_args.iter().map(String::as_str).collect();
    all_args.extend([
        "--listen",
        &listen_arg,
        "--admin",
        &admin_arg,
        "--log-level",
        "debug",
    ]);
    let mut proxy = Running::spawn(&all_args, &[]);
    let mut errors = String::new();
    for password in ["wrong-Pw", SECRET] {
        let uri = format!(
            "mongodb://appuser:{password}@127.0.0.1:{listen}/?serverSelectionTimeoutMS=5000&appName=secret-test"
        );
        let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
        let done = client
            .database("x")
            .collection::<mongodb::bson::Document>("c")
            .insert_one(mongodb::bson::doc! {})
            .await;
        match (password, done) {
            (SECRET, Ok(_)) => {}
            ("wrong-Pw", Err(e)) => errors += &e.to_string(),
            (p, r) => panic!("{p}: {r:?}"),
        }
    }
    let served: Vec<(&str, String)> = ["/status", "/ready", "/metrics"]
        .iter()
        .map(|p| (*p, http_get(admin, p)))
        .collect();
    proxy.signal("TERM");
    assert!(
        proxy.wait_exit(Duration::from_secs(15)).is_some(),
        "mongoplex did not exit"
    );
    let logs = proxy.log();
    assert!(logs.contains("appuser"), "the logs name the user: {logs}");
    for (what, text) in served.iter().map(|(p, t)| (*p, t.as_str())).chain([
        ("the logs", logs.as_str()),
        ("the client's error", errors.as_str()),
        ("check-config", checked.as_str()),
    ]) {
        assert!(!text.is_empty(), "{what} is empty");
        assert!(!text.contains(SECRET), "the password reached {what}:\n{text}");
        for key in &keys {
            assert!(
                !text.contains(key.as_str()),
                "a key of the users file reached {what}:\n{text}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
