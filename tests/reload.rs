//! Live reload of the binary (SIGHUP and `POST /reload`) under a connected driver, with
//! SecantusDB upstream: pool sizes change without a client error, an invalid config is
//! rejected and the old one stays, a setting that needs a restart is reported.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::binary::{http, metric, Running};
use common::peers::{free_port, unique_temp_dir, Secantus};
use mongodb::bson::{doc, Document};
use mongodb::Client;

struct Setup {
    file: PathBuf,
    port: u16,
    admin: SocketAddr,
    upstream: String,
}

impl Setup {
    fn new(upstream: &Secantus) -> Self {
        let dir = unique_temp_dir("reload");
        Self {
            file: dir.join("mongoplex.toml"),
            port: free_port(),
            admin: SocketAddr::from(([127, 0, 0, 1], free_port())),
            upstream: upstream.uri(),
        }
    }

    /// Writes the config file: the listeners and upstream, then `extra` lines. No
    /// long-poll pool, so that the pool metrics are the one main pool's.
    fn write(&self, extra: &str) {
        let text = format!(
            "listen = \"127.0.0.1:{}\"\nadmin = \"{}\"\nupstream = \"{}\"\nlog_level = \"info\"\nlong_poll_pool_size = 0\n{extra}",
            self.port, self.admin, self.upstream
        );
        std::fs::write(&self.file, text).unwrap();
    }

    fn spawn(&self) -> Running {
        Running::spawn(&["--config", path(&self.file)], &[])
    }

    fn client_uri(&self) -> String {
        format!(
            "mongodb://127.0.0.1:{}/?maxPoolSize=20&retryReads=false",
            self.port
        )
    }

    fn reload(&self) -> (u16, serde_json::Value) {
        let (status, body) = http(self.admin, "POST", "/reload").expect("POST /reload");
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (status, json)
    }

    /// Upstream connections open (idle + in use + connecting).
    fn pool_total(&self) -> f64 {
        metric(self.admin, "mongoplex_pool_connections", &[])
    }

    fn pool_max(&self) -> f64 {
        metric(self.admin, "mongoplex_pool_max_size", &[])
    }

    fn reloads(&self, result: &str) -> f64 {
        metric(
            self.admin,
            "mongoplex_config_reloads_total",
            &[&format!("result=\"{result}\"")],
        )
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Polls `f` until it holds or `limit` passes; the last value it saw.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

fn names(v: &serde_json::Value, field: &str) -> Vec<String> {
    v[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} in {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Eight tasks of finds, each held 150 ms at the server, keep every upstream connection
/// busy: the pool's size shows in its connection count. POST /reload raises
/// max_pool_size from 2 to 6, SIGHUP lowers it to 3; the driver sees no error and no
/// client connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_size_changes_live_under_a_connected_driver() {
    let upstream = Secantus::start();
    let direct = Client::with_uri_str(upstream.uri()).await.unwrap();
    let s = Setup::new(&upstream);
    s.write("max_pool_size = 2\n");
    let proxy = s.spawn();
    let client = Client::with_uri_str(s.client_uri()).await.unwrap();
    let coll = client.database("reload").collection::<Document>("c");
    coll.insert_one(doc! { "_id": 1 }).await.unwrap();
    direct
        .database("admin")
        .run_command(doc! { "configureFailPoint": "failCommand", "mode": "alwaysOn",
        "data": { "failCommands": ["find"], "blockConnection": true, "blockTimeMS": 150 } })
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, errors) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (coll, stop, ok, errors) = (coll.clone(), stop.clone(), ok.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match coll.find_one(doc! { "_id": 1 }).await {
                    Ok(Some(_)) => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        errors.lock().unwrap().push(format!("{other:?}"));
                        0
                    }
                };
            }
        }));
    }
    let sample = |s: &Setup, want: f64, limit: Duration| {
        let mut max_seen = 0.0f64;
        let reached = eventually(limit, || {
            let total = s.pool_total();
            max_seen = max_seen.max(total);
            total == want && s.pool_max() == want
        });
        (reached, max_seen)
    };
    let s = Arc::new(s);
    let s2 = s.clone();
    let (reached, seen) = tokio::task::spawn_blocking(move || sample(&s2, 2.0, Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(reached, "the pool should fill to max_pool_size 2 (saw {seen})");

    // Up, through POST /reload.
    s.write("max_pool_size = 6\n");
    let s2 = s.clone();
    let (status, body) = tokio::task::spawn_blocking(move || s2.reload()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "applied", "{body}");
    assert_eq!(names(&body, "applied"), ["max_pool_size"], "{body}");
    assert_eq!(names(&body, "needs_restart"), Vec::<String>::new(), "{body}");
    let s2 = s.clone();
    let (reached, seen) = tokio::task::spawn_blocking(move || sample(&s2, 6.0, Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(
        reached,
        "after the reload the pool should grow to 6 (saw at most {seen})"
    );

    // Down, through SIGHUP: busy connections are not cut; they close as they come back.
    s.write("max_pool_size = 3\n");
    proxy.signal("HUP");
    let s2 = s.clone();
    let (reached, _) = tokio::task::spawn_blocking(move || {
        let r = sample(&s2, 3.0, Duration::from_secs(10));
        // Once down, it stays down.
        std::thread::sleep(Duration::from_millis(500));
        (r.0 && s2.pool_total() <= 3.0, r.1)
    })
    .await
    .unwrap();
    assert!(
        reached,
        "after SIGHUP the pool should shrink to 3 (now {})",
        s.pool_total()
    );

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "the driver saw errors: {errors:?}");
    assert!(ok.load(Ordering::Relaxed) > 8, "too few finds completed");
    let s2 = s.clone();
    let (applied, closed, resized) = tokio::task::spawn_blocking(move || {
        (
            s2.reloads("applied"),
            metric(s2.admin, "mongoplex_client_connections_closed_total", &[]),
            metric(
                s2.admin,
                "mongoplex_pool_connections_closed_total",
                &["reason=\"resized\""],
            ),
        )
    })
    .await
    .unwrap();
    assert_eq!(applied, 2.0, "two reloads applied");
    assert_eq!(closed, 0.0, "no client connection was closed by the reloads");
    assert!(
        resized >= 3.0,
        "lowering 6 to 3 closes 3 upstream connections as resized ({resized})"
    );
    assert_eq!(proxy.count_log("configuration reloaded"), 2, "{}", proxy.log());
    direct
        .database("admin")
        .run_command(doc! { "configureFailPoint": "failCommand", "mode": "off" })
        .await
        .unwrap();
}

/// A config that does not validate is rejected whole (by POST /reload and by SIGHUP),
/// logged and counted, without a secret in the answer; the old config stays in force
/// and the proxy keeps serving. A changed setting that needs a restart is reported, and
/// its running value stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reload_keeps_the_old_config() {
    let upstream = Secantus::start();
    let s = Setup::new(&upstream);
    s.write("max_pool_size = 4\n");
    let mut proxy = s.spawn();
    let client = Client::with_uri_str(s.client_uri()).await.unwrap();
    let coll = client.database("reload").collection::<Document>("bad");
    coll.insert_one(doc! { "_id": 1 }).await.unwrap();
    let s = Arc::new(s);

    let bad_files = [
        ("max_pool_size = 10\nmin_pool_size = 50\n", "min_pool_size"),
        ("max_pool_size = \"lots\"\n", "max_pool_size"),
        ("max_pool_size = 10\nno_such_setting = 1\n", "no_such_setting"),
        // A syntax error on a line with a password: the position, not the line.
        (
            "upstream = \"mongodb://alice:hunter3@127.0.0.1:1/\" oops\n",
            "line 6",
        ),
    ];
    for (i, (text, needle)) in bad_files.iter().enumerate() {
        s.write(text);
        let s2 = s.clone();
        let (status, body) = tokio::task::spawn_blocking(move || s2.reload()).await.unwrap();
        assert_eq!(status, 422, "{text}: {body}");
        assert_eq!(body["result"], "rejected", "{body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(needle),
            "{text}: the error should name {needle}: {body}"
        );
        assert!(!error.contains("hunter3"), "a password in the answer: {body}");
        let s2 = s.clone();
        let (rejected, max) = tokio::task::spawn_blocking(move || (s2.reloads("rejected"), s2.pool_max()))
            .await
            .unwrap();
        assert_eq!(rejected, (i + 1) as f64);
        assert_eq!(max, 4.0, "{text}: the old max_pool_size stays");
    }
    // A secret in a rejected upstream URI stays out of the answer and the log.
    let bad_uri = format!(
        "listen = \"127.0.0.1:{}\"\nadmin = \"{}\"\nupstream = \"mongodb://alice:hunter2@127.0.0.1:1/?tsl=true\"\nlong_poll_pool_size = 0\n",
        s.port, s.admin
    );
    std::fs::write(&s.file, bad_uri).unwrap();
    let s2 = s.clone();
    let (status, body) = tokio::task::spawn_blocking(move || s2.reload()).await.unwrap();
    assert_eq!(
        (status, body["result"].as_str()),
        (422, Some("rejected")),
        "{body}"
    );
    assert!(body.to_string().contains("tsl"), "{body}");
    assert!(
        !body.to_string().contains("hunter2"),
        "a password in the answer: {body}"
    );
    // SIGHUP with an invalid file: rejected too, and the process lives on.
    s.write("max_pool_size = 10\nmin_pool_size = 50\n");
    proxy.signal("HUP");
    let s2 = s.clone();
    let rejected = tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(5), || s2.reloads("rejected") == 6.0);
        s2.reloads("rejected")
    })
    .await
    .unwrap();
    assert_eq!(rejected, 6.0, "{}", proxy.log());
    assert!(
        proxy.child.try_wait().unwrap().is_none(),
        "SIGHUP stopped the proxy"
    );
    assert_eq!(
        proxy.count_log("configuration reload rejected"),
        6,
        "{}",
        proxy.log()
    );
    assert!(!proxy.log().contains("hunter2"), "a password in the log");
    assert!(!proxy.log().contains("hunter3"), "a password in the log");
    coll.find_one(doc! { "_id": 1 })
        .await
        .expect("the proxy serves on with the old config");

    // A listen address that needs a restart: applied with the rest, reported, and the
    // old listener still serves.
    let moved = free_port();
    let text = format!(
        "listen = \"127.0.0.1:{moved}\"\nadmin = \"{}\"\nupstream = \"{}\"\nlog_level = \"info\"\nlong_poll_pool_size = 0\nmax_pool_size = 5\n",
        s.admin, s.upstream
    );
    std::fs::write(&s.file, text).unwrap();
    let s2 = s.clone();
    let (status, body) = tokio::task::spawn_blocking(move || s2.reload()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body, "applied"), ["max_pool_size"], "{body}");
    assert_eq!(names(&body, "needs_restart"), ["listen"], "{body}");
    assert!(
        proxy.wait_log("needs a restart", Duration::from_secs(2)),
        "{}",
        proxy.log()
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", moved)).is_err());
    coll.find_one(doc! { "_id": 1 })
        .await
        .expect("the running listener still serves");
    let s2 = s.clone();
    assert_eq!(
        tokio::task::spawn_blocking(move || s2.pool_max()).await.unwrap(),
        5.0
    );
}

/// Before this, SIGHUP (what process managers send to reload) terminated mongoplex. Now
/// it reloads: the process lives on, and log_level changes live (a debug line appears).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_instead_of_terminating_and_changes_the_log_level() {
    let upstream = Secantus::start();
    let s = Setup::new(&upstream);
    s.write("");
    let mut proxy = s.spawn();
    let needle = "client disconnected"; // a debug line of every session's end
    let ping = |port: u16| async move {
        let c = Client::with_uri_str(format!("mongodb://127.0.0.1:{port}/"))
            .await
            .unwrap();
        c.database("admin").run_command(doc! { "ping": 1 }).await.unwrap();
        c.shutdown().await;
    };
    ping(s.port).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(proxy.count_log(needle), 0, "log_level info shows no debug lines");
    std::fs::write(
        &s.file,
        std::fs::read_to_string(&s.file)
            .unwrap()
            .replace("\"info\"", "\"debug\""),
    )
    .unwrap();
    proxy.signal("HUP");
    assert!(
        proxy.wait_log("configuration reloaded", Duration::from_secs(5)),
        "{}",
        proxy.log()
    );
    assert!(
        proxy.child.try_wait().unwrap().is_none(),
        "SIGHUP terminated mongoplex"
    );
    ping(s.port).await;
    assert!(
        proxy.wait_log(needle, Duration::from_secs(5)),
        "log_level debug did not apply: {}",
        proxy.log()
    );
}

/// Client timeouts are read per message from the config in force: a
/// client_idle_timeout_ms set by POST /reload closes a client that then stays idle,
/// where none was closed before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_idle_timeout_applies_after_a_reload() {
    let upstream = Secantus::start();
    let s = Arc::new(Setup::new(&upstream));
    s.write("");
    let _proxy = s.spawn();
    let client = Client::with_uri_str(s.client_uri()).await.unwrap();
    let admin_db = client.database("admin");
    let ping = || admin_db.run_command(doc! { "ping": 1 });
    ping().await.unwrap();
    let idle_closed = |s: &Setup| {
        metric(
            s.admin,
            "mongoplex_client_connections_closed_total",
            &["reason=\"idle_timeout\""],
        )
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let s2 = s.clone();
    assert_eq!(
        tokio::task::spawn_blocking(move || idle_closed(&s2))
            .await
            .unwrap(),
        0.0
    );
    s.write("client_idle_timeout_ms = 300\n");
    let s2 = s.clone();
    let (status, body) = tokio::task::spawn_blocking(move || s2.reload()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body, "applied"), ["client_idle_timeout_ms"], "{body}");
    // The next message reads the new timeout; then the client idles past it.
    ping().await.unwrap();
    let s2 = s.clone();
    let closed = tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(3), || idle_closed(&s2) >= 1.0);
        idle_closed(&s2)
    })
    .await
    .unwrap();
    assert!(closed >= 1.0, "no client was closed for idling after the reload");
}
