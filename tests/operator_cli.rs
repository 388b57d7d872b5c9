//! The operator subcommands, run as the binary: `mongoplex check-config` (its report,
//! its sources, its errors, its redaction) and `mongoplex health` (exit 0/1 from /live
//! and /ready of a running mongoplex).

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::binary::Running;
use common::peers::{free_port, unique_temp_dir, Secantus};

/// The binary with no MONGOPLEX_* variable from the test runner's environment.
fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mongoplex"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("MONGOPLEX_")) {
        cmd.env_remove(key);
    }
    cmd
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    bin().args(args).envs(envs.iter().copied()).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `(value, source)` of `key`'s line in a check-config report.
fn setting(report: &str, key: &str) -> (String, String) {
    let line = report
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} line in\n{report}"));
    let (lhs, source) = line.rsplit_once('#').unwrap();
    let value = lhs.trim().strip_prefix(&format!("{key} = ")).unwrap();
    (value.to_string(), source.trim().to_string())
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

#[test]
fn check_config_reports_every_layer_and_hides_every_password() {
    let dir = unique_temp_dir("check-config");
    let pw_file = write(&dir, "pw", "file-hunter2\n");
    let file = write(
        &dir,
        "mongoplex.toml",
        &format!(
            "upstream = \"mongodb://svc:uri-hunter2@db1:27017,db2/?replicaSet=rs0&maxPoolSize=40&appName=orders\"\n\
             listen = \"0.0.0.0:27016\"\n\
             min_pool_size = 2\n\
             max_connecting = 3\n\
             upstream_password_file = \"{pw_file}\"\n"
        ),
    );
    let out = run(
        &["check-config", &file, "--log-level", "debug"],
        &[
            ("MONGOPLEX_MAX_CONNECTING", "5"),
            ("MONGOPLEX_UPSTREAM_PASSWORD", "env-hunter2"),
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let cases = [
        ("listen", "\"0.0.0.0:27016\"", "file"),
        ("min_pool_size", "2", "file"),
        ("max_connecting", "5", "env"),
        ("log_level", "\"debug\"", "flag"),
        ("max_pool_size", "40", "uri"),
        ("app_name", "\"orders\"", "uri"),
        ("admin", "\"127.0.0.1:9317\"", "default"),
        ("wait_queue_timeout_ms", "10000", "default"),
        ("upstream_password", "\"***\"", "env"),
        (
            "upstream",
            "\"mongodb://svc:***@db1:27017,db2/?replicaSet=rs0&maxPoolSize=40&appName=orders\"",
            "file",
        ),
    ];
    for (key, value, source) in cases {
        assert_eq!(
            setting(&stdout, key),
            (value.into(), source.into()),
            "{key} in\n{stdout}"
        );
    }
    assert_eq!(setting(&stdout, "upstream_password_file").1, "file");
    assert!(stdout.contains("replica set rs0"), "{stdout}");
    assert!(stdout.contains(&format!("# file: {file}")), "{stdout}");
    for secret in ["uri-hunter2", "env-hunter2", "file-hunter2", "hunter2"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} leaked:\n{stdout}\n{stderr}"
        );
    }
    // --config is the same as FILE; both at once is refused rather than one ignored.
    let same = run(&["check-config", "-c", &file], &[]);
    assert_eq!(
        setting(&text(&same.stdout), "min_pool_size"),
        ("2".into(), "file".into())
    );
    let both = run(&["check-config", &file, "-c", &file], &[]);
    assert_eq!(both.status.code(), Some(2));
    assert!(text(&both.stderr).contains("not both"), "{}", text(&both.stderr));
}

/// check-config fails exactly as start-up does: exit 2, the same message, no secret.
#[test]
fn check_config_errors_are_start_ups_errors() {
    let dir = unique_temp_dir("check-config-errors");
    let typo = write(&dir, "typo.toml", "max_pool_sise = 5\n");
    let minmax = write(&dir, "minmax.toml", "max_pool_size = 2\nmin_pool_size = 5\n");
    let badport = write(
        &dir,
        "badport.toml",
        "upstream = \"mongodb://u:uri-hunter2@h:notaport/\"\n",
    );
    let nopw = write(
        &dir,
        "nopw.toml",
        "upstream_password_file = \"/nonexistent/pw\"\nupstream = \"mongodb://u@h/\"\n",
    );
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec![typo.as_str()], vec![], "max_pool_sise"),
        (vec![minmax.as_str()], vec![], "min_pool_size"),
        (vec![badport.as_str()], vec![], "notaport"),
        (vec![nopw.as_str()], vec![], "/nonexistent/pw"),
        (
            vec!["/nonexistent/mongoplex.toml"],
            vec![],
            "/nonexistent/mongoplex.toml",
        ),
        (
            vec![],
            vec![("MONGOPLEX_MAX_POOL_SIZE", "-1")],
            "MONGOPLEX_MAX_POOL_SIZE",
        ),
        (vec![], vec![("MONGOPLEX_LOG_FORMAT", "xml")], "log_format"),
        (vec!["--listen", "nope"], vec![], "listen"),
    ];
    for (args, envs, needle) in cases {
        let mut check_args = vec!["check-config"];
        check_args.extend(&args);
        let checked = run(&check_args, &envs);
        // Start-up with the same inputs (a file goes through --config there).
        let start_args: Vec<&str> = match args.first() {
            Some(a) if !a.starts_with("--") => vec!["--config", a],
            _ => args.clone(),
        };
        let started = run(&start_args, &envs);
        let err = text(&checked.stderr);
        assert_eq!(checked.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(
            started.status.code(),
            Some(2),
            "{args:?}: start-up: {}",
            text(&started.stderr)
        );
        assert_eq!(
            err,
            text(&started.stderr),
            "{args:?}: check-config and start-up disagree"
        );
        assert!(
            err.starts_with("mongoplex: invalid configuration: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert!(!err.contains("hunter2"), "{args:?}: the password leaked: {err}");
        assert!(
            checked.stdout.is_empty(),
            "{args:?}: a report was printed for an invalid config"
        );
    }
}

fn health(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let mut all = vec!["health"];
    all.extend(args);
    let out = run(&all, envs);
    let msg = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(msg.trim().lines().count(), 1, "health prints one line: {msg:?}");
    (out.status.code().unwrap(), msg)
}

#[test]
fn health_follows_live_and_ready() {
    // An upstream nobody listens on: live, never ready.
    let admin = format!("127.0.0.1:{}", free_port());
    let dead = format!("mongodb://127.0.0.1:{}/", free_port());
    let listen = format!("127.0.0.1:{}", free_port());
    let proxy = Running::spawn(
        &["--listen", &listen, "--admin", &admin, "--upstream", &dead],
        &[],
    );
    let (code, msg) = health(&["--admin", &admin], &[]);
    assert_eq!((code, msg.contains("live")), (0, true), "{msg}");
    let (code, msg) = health(&["--admin", &admin, "--ready"], &[]);
    assert_eq!(code, 1, "{msg}");
    assert!(msg.contains("HTTP 503") && msg.contains("not ready"), "{msg}");
    // The address may come from MONGOPLEX_ADMIN, as it does in the container image.
    let (code, msg) = health(&[], &[("MONGOPLEX_ADMIN", &admin)]);
    assert_eq!(code, 0, "{msg}");
    drop(proxy);
    let (code, msg) = health(&["--admin", &admin], &[]);
    assert_eq!(code, 1, "{msg}");
    assert!(msg.contains("refused"), "{msg}");

    // A real upstream: ready once a primary is known.
    let upstream = Secantus::start();
    let admin = format!("127.0.0.1:{}", free_port());
    let listen = format!("127.0.0.1:{}", free_port());
    let _proxy = Running::spawn(
        &[
            "--listen",
            &listen,
            "--admin",
            &admin,
            "--upstream",
            &upstream.seed_uri(),
        ],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, msg) = health(&["--admin", &admin, "--ready"], &[]);
        if code == 0 {
            assert!(msg.contains("ready"), "{msg}");
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {msg}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn health_refuses_what_it_cannot_use() {
    let cases: [(&[&str], &str); 3] = [
        (&["--admin", "off"], "off"),
        (&["--admin", "nope"], "not an IP:PORT"),
        (&["--max-pool-size", "3"], "--max-pool-size"),
    ];
    for (args, needle) in cases {
        let (code, msg) = health(args, &[]);
        assert_eq!(code, 1, "{args:?}: {msg}");
        assert!(msg.contains(needle), "{args:?}: {msg}");
    }
}
