//! `mongoplex top` against a live proxy: run under tmux (a real terminal), its captured
//! screen is compared with the proxy's own numbers (`/status`, `/metrics`); piped, it
//! prints one line per tick.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::peers::Secantus;
use common::proxy::TestProxy;
use mongodb::bson::{doc, Document};

const APP: &str = "top-test";

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("tmux is needed (tests/peers/install.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "tmux {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

fn status(proxy: &TestProxy) -> serde_json::Value {
    let raw = proxy.admin_get("/status");
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("/status: {e}: {raw}"))
}

/// The cells of the screen line that starts with `first`.
fn row(screen: &str, first: &str) -> Option<Vec<String>> {
    screen
        .lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
}

/// `clients N` from the second line of the screen.
fn screen_clients(screen: &str) -> Option<u64> {
    let line = screen.lines().find(|l| l.starts_with("clients "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Captures the pane until `check` accepts it (the screen and the proxy move; a tick
/// and a read of `/status` are not taken at the same instant), or fails with the last.
fn until(session: &str, what: &str, mut check: impl FnMut(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let screen = tmux(&["capture-pane", "-p", "-t", session]);
        if check(&screen) {
            return screen;
        }
        assert!(Instant::now() < deadline, "{what}; the last screen:\n{screen}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_what_the_proxy_reports() {
    let server = Secantus::start();
    let proxy = TestProxy::builder(&server.seed_uri()).start().await;
    let admin = proxy.admin.unwrap().to_string();
    let client =
        mongodb::Client::with_uri_str(format!("mongodb://{}/?appName={APP}&maxPoolSize=2", proxy.addr))
            .await
            .unwrap();
    let coll = client.database("toptest").collection::<Document>("c");
    coll.insert_one(doc! { "x": 1 }).await.unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let load = {
        let (coll, running) = (coll.clone(), running.clone());
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                let _ = coll.find_one(doc! {}).await;
            }
        })
    };

    let name = format!("mongoplex-top-{}", std::process::id());
    let session = Session(name.clone());
    let cmd = format!(
        "{} top --admin {admin} --interval-ms 500",
        env!("CARGO_BIN_EXE_mongoplex")
    );
    tmux(&["new-session", "-d", "-s", &name, "-x", "160", "-y", "50", &cmd]);

    // Under load: the app's row shows its clients and a request rate near the proxy's.
    let member = status(&proxy)["members"][0]["address"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = (
        Instant::now(),
        proxy.metric_sum("mongoplex_app_requests_total", &[APP]),
    );
    let screen = until(&name, "a request rate for the app", |s| {
        row(s, APP).is_some_and(|r| {
            r.get(2)
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
        })
    });
    let measured = (proxy.metric_sum("mongoplex_app_requests_total", &[APP]) - before.1)
        / before.0.elapsed().as_secs_f64();
    let app = row(&screen, APP).unwrap();
    let shown: f64 = app[2].parse().unwrap();
    let app_clients = proxy.metric_sum("mongoplex_client_connections", &[APP]);
    println!("FIGURE top: {APP} {shown} req/s on screen, {measured:.0} req/s from the metrics\n{screen}");
    assert!(
        shown > measured * 0.3 && shown < measured * 3.0,
        "the screen says {shown} req/s, the metrics {measured:.0}"
    );
    assert_eq!(app[1].parse::<f64>().unwrap(), app_clients, "{screen}");
    assert!(row(&screen, &member).is_some(), "no row for {member}:\n{screen}");

    // Load off: the pool's numbers settle and must equal /status's, on a screen drawn
    // after the load stopped (no requests since the tick before).
    running.store(false, Ordering::Relaxed);
    load.await.unwrap();
    let screen = until(&name, "the pool and clients of /status", |s| {
        let st = status(&proxy);
        let pool = &st["members"][0]["pool"];
        let Some(r) = row(s, &member) else { return false };
        let want = [
            st["members"][0]["state"].as_str().unwrap_or("").to_owned(),
            pool["in_use"].to_string(),
            pool["idle"].to_string(),
            pool["connecting"].to_string(),
            pool["waiters"].to_string(),
        ];
        let got = [
            r[1].clone(),
            r[3].clone(),
            r[4].clone(),
            r[5].clone(),
            r[6].clone(),
        ];
        let quiet = s
            .lines()
            .any(|l| l.starts_with("clients ") && l.contains(" req/s 0 "));
        quiet && got == want && screen_clients(s) == st["clients"].as_u64() && pool["idle"].as_u64() > Some(0)
    });
    assert!(screen.contains("ready  primary"), "{screen}");
    drop(session);

    // Piped: one line per tick, and --count ends it.
    let out = Command::new(env!("CARGO_BIN_EXE_mongoplex"))
        .args(["top", "--admin", &admin, "--interval-ms", "200", "--count", "3"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let clients = status(&proxy)["clients"].as_u64().unwrap();
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("t=") && l.contains("ready=true")),
        "{text}"
    );
    assert!(lines[2].contains(&format!("clients={clients}")), "{text}");
    assert!(
        lines[0].contains("req/s=-") && !lines[2].contains("req/s=-"),
        "{text}"
    );
    proxy.shutdown().await;
}
