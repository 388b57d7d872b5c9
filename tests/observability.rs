//! Observability against real tools: promtool lints a scrape taken under load and checks
//! the alert rules; a real Prometheus server scrapes the proxy during a two-app workload
//! and its HTTP API shows what arrived; `/ready` follows the upstream; the pool gauges
//! follow checkouts; the Grafana dashboard and `README.md` only name metrics that
//! exist, and the metrics doc lists every one with its type and labels.
//!
//! Needs `bash tests/peers/install.sh` (SecantusDB, and Debian's `prometheus` + `promtool`).

mod common;
mod observability_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::doc;
use mongodb::Client;
use mongoplex::config::{Config, Settings};
use mongoplex::server::Proxy;
use serde_json::Value;

use common::peers::Secantus;
use common::proxy::TestProxy;
use observability_support::admin_checks;
use observability_support::deploy::{self, alert_exprs, dashboard, dashboard_queries, panels};
use observability_support::prom::{lint_metrics, output_text, promtool, PromServer};
use observability_support::{
    app_client, hold_connections, http, metric_names_in, parse_exposition, provoke_errors,
    registered_metrics, repo_file, run_load, AppLoad,
};

const MAX_POOL: u64 = 4;
const CLIENT_LIMIT: u64 = 500;
/// Eight tasks per app against four upstream connections: checkouts have to queue.
const SHOP: AppLoad = AppLoad {
    app: "shop",
    tasks: 8,
    inserts: 100,
    finds: 60,
};
/// Finds held on the server at once after the load (through `shop`): the pool is full.
const HELD: usize = 4;
const _: () = assert!(HELD as u64 == MAX_POOL);
const BILLING: AppLoad = AppLoad {
    app: "billing",
    tasks: 8,
    inserts: 60,
    finds: 100,
};

async fn start_proxy(upstream: &Secantus) -> TestProxy {
    TestProxy::builder(&upstream.uri())
        .max_pool_size(MAX_POOL)
        .settings(|s| s.max_client_connections = Some(CLIENT_LIMIT))
        .start()
        .await
}

fn admin(proxy: &TestProxy) -> SocketAddr {
    proxy.admin.expect("the test proxy serves the admin endpoint")
}

/// Both apps' workloads at once; returns the clients, still connected.
async fn run_two_apps(proxy: &TestProxy) -> (Client, Client) {
    let shop = app_client(proxy.addr, SHOP.app, 8).await;
    let billing = app_client(proxy.addr, BILLING.app, 8).await;
    tokio::join!(run_load(&shop, SHOP), run_load(&billing, BILLING));
    (shop, billing)
}

/// GET /metrics over HTTP from the admin port; checks the status and content type.
async fn scrape(proxy: &TestProxy) -> String {
    let r = http::get(admin(proxy), "/metrics").await.expect("GET /metrics");
    assert_eq!(r.status, 200, "GET /metrics: {}", r.body);
    let ctype = r.header("content-type").unwrap_or_default();
    assert!(
        ctype.starts_with("text/plain") && ctype.contains("version=0.0.4"),
        "content type {ctype:?}"
    );
    r.body
}

/// Scrapes of a proxy: one taken while the two-app workload runs, one after it and the
/// error paths.
struct Loaded {
    during: String,
    after: String,
    proxy: TestProxy,
    _upstream: Secantus,
}

async fn loaded_scrapes() -> Loaded {
    let upstream = Secantus::start();
    let proxy = start_proxy(&upstream).await;
    let mid_load = async {
        // A few hundred requests in: the load takes seconds, so it is still running.
        while proxy.metric_sum("mongoplex_requests_total", &[]) < 300.0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        scrape(&proxy).await
    };
    let ((shop, _billing), during) = tokio::join!(run_two_apps(&proxy), mid_load);
    provoke_errors(proxy.addr, &shop).await;
    let after = scrape(&proxy).await;
    // README.md is written from this scrape: keep a copy when asked to.
    if let Some(path) = std::env::var_os("MONGOPLEX_SCRAPE_OUT") {
        std::fs::write(&path, &after).expect("write MONGOPLEX_SCRAPE_OUT");
    }
    Loaded {
        during,
        after,
        proxy,
        _upstream: upstream,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_under_load_passes_promtool_lint() {
    let loaded = loaded_scrapes().await;
    let families = parse_exposition(&loaded.after);
    // The scrape must show the load, or the lint proves little.
    for app in [SHOP.app, BILLING.app] {
        let handshakes = &families["mongoplex_client_handshakes_total"];
        assert!(
            handshakes
                .samples
                .iter()
                .any(|(l, v)| l["app"] == app && *v >= 1.0),
            "no handshakes from {app} in the scrape:\n{}",
            loaded.after
        );
    }
    for family in [
        "mongoplex_server_errors_total",
        "mongoplex_client_protocol_errors_total",
        "mongoplex_pool_checkout_wait_seconds",
        "mongoplex_request_duration_seconds",
    ] {
        assert!(families.contains_key(family), "{family} missing from the scrape");
    }
    let mid = parse_exposition(&loaded.during);
    let requests: f64 = mid["mongoplex_requests_total"].samples.iter().map(|s| s.1).sum();
    let all = SHOP.total_inserts() + SHOP.total_finds() + BILLING.total_inserts() + BILLING.total_finds();
    assert!(
        (300.0..all as f64).contains(&requests),
        "the first scrape shows {requests} of {all} requests: not taken during the load"
    );

    for (when, text) in [
        ("during the load", &loaded.during),
        ("after the load", &loaded.after),
    ] {
        let problems = lint_metrics(text).await;
        assert!(
            problems.is_empty(),
            "promtool check metrics, scrape {when}:\n{}",
            problems.join("\n")
        );
    }
    loaded.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_doc_lists_every_metric_as_exposed() {
    let Loaded {
        after: text, proxy, ..
    } = loaded_scrapes().await;
    proxy.shutdown().await;
    let doc = deploy::read("README.md");
    let rows: Vec<Vec<String>> = doc
        .lines()
        .filter(|l| l.starts_with("| `mongoplex_"))
        .map(|l| l.split('|').map(|c| c.trim().to_string()).collect())
        .collect();
    let row = |name: &str| rows.iter().find(|r| r[1] == format!("`{name}`"));
    // Every family the scrape exposes is documented with its type and labels.
    for (name, family) in parse_exposition(&text) {
        let r = row(&name).unwrap_or_else(|| panic!("README.md has no row for {name}"));
        assert_eq!(r[2], family.kind, "{name}: type in README.md");
        let labels: Vec<String> = family.labels.iter().map(|l| format!("`{l}`")).collect();
        let labels = if labels.is_empty() {
            "-".to_string()
        } else {
            labels.join(", ")
        };
        assert_eq!(r[3], labels, "{name}: labels in README.md");
    }
    // So is every metric registered, including those with no samples yet (a labelled
    // family appears in a scrape only once a label set has been used).
    let registered = registered_metrics();
    for name in &registered {
        assert!(
            row(name).is_some(),
            "README.md has no row for {name} (src/metrics.rs)"
        );
    }
    for r in &rows {
        let name = r[1].trim_matches('`');
        assert!(
            registered.contains(name),
            "README.md documents {name}, which src/metrics.rs does not register"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_rules_and_scrape_config_pass_promtool() {
    let alerts = repo_file("deploy/prometheus/alerts.yml");
    let out = promtool(&["check", "rules", alerts.to_str().unwrap()], None).await;
    let text = output_text(&out);
    assert!(out.status.success(), "promtool check rules failed:\n{text}");
    assert!(text.contains("SUCCESS"), "promtool check rules:\n{text}");
    assert!(
        !text.contains("WARNING") && !text.contains("FAILED"),
        "promtool check rules:\n{text}"
    );

    let config = repo_file("deploy/prometheus/prometheus.yml");
    let out = promtool(&["check", "config", config.to_str().unwrap()], None).await;
    let text = output_text(&out);
    assert!(out.status.success(), "promtool check config failed:\n{text}");
    assert!(
        !text.contains("WARNING") && !text.contains("FAILED"),
        "promtool check config:\n{text}"
    );

    // Unit tests for the rules: each alert fires on the synthetic series meant to fire
    // it, and stays quiet on the healthy ones.
    let tests = repo_file("deploy/prometheus/alerts_test.yml");
    let out = promtool(&["test", "rules", tests.to_str().unwrap()], None).await;
    let text = output_text(&out);
    assert!(
        out.status.success() && text.contains("SUCCESS"),
        "promtool test rules:\n{text}"
    );
}

/// The dashboard has a Prometheus datasource variable that every panel uses, and every
/// metric a panel, variable or alert names is one that src/metrics.rs registers.
#[test]
fn dashboard_and_alerts_name_only_registered_metrics() {
    let registered = registered_metrics();
    let dashboard = dashboard();
    let variables = dashboard["templating"]["list"].as_array().expect("templating");
    assert!(
        variables
            .iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus" && v["name"] == "datasource"),
        "the dashboard needs a Prometheus datasource variable named datasource"
    );
    let panels = panels(&dashboard);
    assert!(panels.len() >= 20, "{} panels", panels.len());
    for p in &panels {
        let title = &p["title"];
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "panel {title}");
        }
    }
    let mut used = metric_names_in(&deploy::read("deploy/grafana/mongoplex.json"));
    used.extend(metric_names_in(&deploy::read("deploy/prometheus/alerts.yml")));
    let unknown: Vec<_> = used.difference(&registered).collect();
    assert!(
        unknown.is_empty(),
        "not registered in src/metrics.rs: {unknown:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_two_app_workload() {
    let upstream = Secantus::start();
    let proxy = start_proxy(&upstream).await;
    let alerts = repo_file("deploy/prometheus/alerts.yml");
    let prom = PromServer::start(admin(&proxy), &[&alerts]).await;
    let wait = Duration::from_secs(30);
    prom.wait_for("up{job=\"mongoplex\"}", wait, |s| {
        s.len() == 1 && s[0].value == 1.0
    })
    .await;

    let (shop, _billing) = run_two_apps(&proxy).await;
    // Then the pool is held full for longer than a scrape interval, so that a scrape
    // sees it saturated.
    hold_connections(&upstream.uri(), &shop, HELD, Duration::from_millis(1500)).await;
    let ops =
        (SHOP.total_inserts() + BILLING.total_inserts() + SHOP.total_finds() + BILLING.total_finds() + HELD)
            as f64;
    // Counters only grow: once a scrape shows every insert and find, the workload is in.
    prom.wait_for(
        "sum(mongoplex_requests_total{command=~\"insert|find\"})",
        wait,
        |s| s.first().is_some_and(|x| x.value >= ops),
    )
    .await;
    // ... and two more scrapes let the rules evaluate on it.
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert_workload_counted(&prom).await;
    assert_pool_bounded(&prom, ops).await;
    assert_deploy_files_work(&prom).await;
    drop(prom);
    proxy.shutdown().await;
}

/// Requests by command and by app, client connections and handshakes per app, and the
/// gauges set from the configuration.
async fn assert_workload_counted(prom: &PromServer) {
    let inserts = (SHOP.total_inserts() + BILLING.total_inserts()) as f64;
    let finds = (SHOP.total_finds() + BILLING.total_finds() + HELD) as f64;
    let sum = |q: &str| format!("sum(mongoplex_requests_total{{{q}}})");
    assert_eq!(prom.value(&sum("command=\"insert\"")).await, Some(inserts));
    assert_eq!(prom.value(&sum("command=\"find\"")).await, Some(finds));
    let failed = prom.value(&sum("command=~\"insert|find\",outcome!=\"ok\"")).await;
    assert_eq!(failed, Some(0.0));
    for load in [SHOP, BILLING] {
        let app = load.app;
        let held = if load.app == SHOP.app { HELD } else { 0 };
        let ops = (load.total_inserts() + load.total_finds() + held) as f64;
        let per_app = |metric: &str| format!("sum({metric}{{app=\"{app}\"}})");
        let requests = prom.value(&per_app("mongoplex_app_requests_total")).await;
        assert_eq!(requests, Some(ops), "requests counted for {app}");
        let open = prom.value(&per_app("mongoplex_client_connections")).await;
        assert!(
            open.is_some_and(|n| n >= 1.0),
            "open connections for {app}: {open:?}"
        );
        let shakes = prom.value(&per_app("mongoplex_client_handshakes_total")).await;
        assert!(
            shakes.is_some_and(|n| n >= 1.0),
            "handshakes from {app}: {shakes:?}"
        );
    }
    let build = prom.query("mongoplex_build_info").await;
    assert!(
        build.len() == 1 && build[0].label("version") == env!("CARGO_PKG_VERSION") && build[0].value == 1.0,
        "build_info: {build:?}"
    );
    let limit = prom.value("mongoplex_client_connections_limit").await;
    assert_eq!(limit, Some(CLIENT_LIMIT as f64));
    let primaries = prom.value("sum(mongoplex_member_state{state=\"primary\"})").await;
    assert_eq!(primaries, Some(1.0));
}

/// The pool never passed maxPoolSize, at any scrape, in any state.
async fn assert_pool_bounded(prom: &PromServer, ops: f64) {
    let max = MAX_POOL as f64;
    let in_use = prom
        .query("max_over_time(mongoplex_pool_connections{state=\"in_use\",member!~\".*/long-poll\"}[1m])")
        .await;
    assert_eq!(in_use.len(), 1, "one member, one series: {in_use:?}");
    // At most maxPoolSize. The held finds fill the pool across a scrape, so the peak is
    // maxPoolSize when the gauges are right (pool_gauges_follow_checkouts_of_idle_connections).
    assert!(in_use[0].value <= max, "in_use peaked at {}", in_use[0].value);
    let total = prom
        .value("max(max_over_time(sum by (member) (mongoplex_pool_connections)[1m:1s]))")
        .await;
    assert!(
        total.is_some_and(|n| (1.0..=max).contains(&n)),
        "pool total peaked at {total:?}"
    );
    assert_eq!(
        prom.value("max(mongoplex_pool_max_size{member!~\".*/long-poll\"})")
            .await,
        Some(max)
    );
    let created = prom.value("sum(mongoplex_pool_connections_created_total)").await;
    assert!(
        created.is_some_and(|n| (1.0..=max).contains(&n)),
        "connections created: {created:?}"
    );
    let waited = prom.value("max(max_over_time(mongoplex_pool_waiters[1m]))").await;
    eprintln!(
        "peaks over the scrapes: in_use {}, pool total {total:?}, waiters {waited:?}",
        in_use[0].value
    );
    let checkouts = prom
        .value("sum(mongoplex_pool_checkout_wait_seconds_count)")
        .await;
    assert!(checkouts.is_some_and(|n| n >= ops), "checkouts: {checkouts:?}");
}

/// Every dashboard query and alert expression is valid PromQL over the live data; the
/// rules loaded and evaluate without errors, and none fires on a healthy proxy.
async fn assert_deploy_files_work(prom: &PromServer) {
    for q in dashboard_queries(&dashboard()).iter().chain(alert_exprs().iter()) {
        prom.query(q).await;
    }
    let rules = prom.api("rules").await;
    let rules: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert_eq!(rules.len(), alert_exprs().len(), "alert rules loaded");
    for r in &rules {
        assert_eq!(r["health"], "ok", "rule {} : {}", r["name"], r["lastError"]);
    }
    // Rules with `for:` may be pending from the load (the pool was full); none may fire.
    let alerts = prom.api("alerts").await;
    let firing: Vec<&Value> = alerts["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "firing")
        .collect();
    assert!(firing.is_empty(), "alerts firing on a healthy proxy: {firing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_the_upstream_and_live_stays_up() {
    // Nothing listens on this port until SecantusDB starts on it below.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let member = format!("127.0.0.1:{port}");
    let settings = Settings {
        upstream: Some(format!("mongodb://{member}/?directConnection=true")),
        listen: Some("127.0.0.1:0".into()),
        admin: Some("127.0.0.1:0".into()),
        heartbeat_frequency_ms: Some(500),
        ..Settings::default()
    };
    let config = Config::validate(settings).expect("valid settings");
    let proxy = Proxy::start(Arc::new(config))
        .await
        .expect("the proxy starts without its upstream");
    let admin = proxy.admin_addr.expect("admin endpoint");
    admin_checks::assert_not_ready(admin, &member).await;

    let port_arg = port.to_string();
    let upstream = tokio::task::spawn_blocking(move || Secantus::start_with_args(&["--port", &port_arg]))
        .await
        .unwrap();
    assert_eq!(upstream.port(), port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while http::status(admin, "/ready").await != 200 {
        assert_eq!(http::status(admin, "/live").await, 200);
        assert!(
            Instant::now() < deadline,
            "not ready 20 s after the upstream came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // One request through the proxy, so the pool has a connection to show.
    let client = Client::with_uri_str(format!("mongodb://{}/?appName=ready", proxy.client_addr))
        .await
        .unwrap();
    let db = client.database("admin");
    db.run_command(doc! { "ping": 1 }).await.expect("ping");
    admin_checks::assert_ready(admin, &member).await;
    drop(client);
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// The pool gauges say what the pool holds while its connections are checked out. Idle
/// connections are made first, so the checkouts take them from the idle list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_gauges_follow_checkouts_of_idle_connections() {
    let upstream = Secantus::start();
    let proxy = start_proxy(&upstream).await;
    let client = app_client(proxy.addr, "gauges", 8).await;
    let warm_up = AppLoad {
        app: "gauges",
        tasks: 8,
        inserts: 10,
        finds: 0,
    };
    run_load(&client, warm_up).await;
    let pool = proxy.proxy().ctx.topology.pools().pop().expect("one pool");
    assert_eq!(
        (pool.snapshot().idle, pool.snapshot().in_use),
        (HELD, 0),
        "after the warm-up"
    );

    let gauge =
        |state: &str| proxy.metric_sum("mongoplex_pool_connections", &[&format!("state=\"{state}\"")]);
    let uri = upstream.uri();
    let hold = hold_connections(&uri, &client, HELD, Duration::from_millis(1500));
    let check = async {
        // Once the pool itself has every connection out, the gauges must agree.
        while pool.snapshot().in_use < HELD {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (gauge("in_use"), gauge("idle"))
    };
    let (_, (in_use, idle)) = tokio::join!(hold, check);
    assert_eq!(
        (in_use, idle),
        (HELD as f64, 0.0),
        "mongoplex_pool_connections{{state=in_use / idle}} while the pool has {HELD} of {HELD} checked out"
    );
    proxy.shutdown().await;
}
