//! Checks of the admin endpoint's answers (`/ready`, `/live`, `/status`, `/metrics`)
//! before and after the upstream is known.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{http, member_state, parse_exposition};

/// 503 across several failed heartbeats, 200 from /live all along; /status and the
/// metrics show the member as unknown with its error.
pub async fn assert_not_ready(admin: SocketAddr, member: &str) {
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert_eq!(http::status(admin, "/ready").await, 503, "ready with no upstream");
        assert_eq!(http::status(admin, "/live").await, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = http::get(admin, "/ready").await.unwrap().body;
    assert!(body.starts_with("not ready"), "503 body: {body:?}");
    let s = http::json(admin, "/status").await;
    assert_eq!(s["ready"], false, "{s}");
    assert_eq!(s["primary"], Value::Null, "{s}");
    assert_eq!(s["members"][0]["address"], member, "{s}");
    assert_eq!(s["members"][0]["state"], "unknown", "{s}");
    assert!(
        s["members"][0]["error"].is_string(),
        "the failed heartbeat's error: {s}"
    );
    let f = parse_exposition(&http::get(admin, "/metrics").await.unwrap().body);
    let failures: f64 = f["mongoplex_heartbeat_failures_total"]
        .samples
        .iter()
        .map(|s| s.1)
        .sum();
    assert!(failures >= 1.0, "heartbeat failures: {failures}");
    assert_eq!(member_state(&f, member, "unknown"), Some(1.0));
}

/// /status shows the member as primary with its pool; the metrics agree.
pub async fn assert_ready(admin: SocketAddr, member: &str) {
    let s = http::json(admin, "/status").await;
    assert_eq!(s["ready"], true, "{s}");
    assert_eq!(s["primary"], member, "{s}");
    let m = &s["members"][0];
    assert_eq!(m["state"], "primary", "{s}");
    assert_eq!(m["error"], Value::Null, "{s}");
    assert!(m["rtt_ms"].as_f64().is_some(), "{s}");
    let pool = &m["pool"];
    assert_eq!(pool["ready"], true, "{s}");
    assert!(pool["total"].as_u64().is_some_and(|n| n >= 1), "{s}");
    for field in ["idle", "in_use", "connecting", "waiters", "generation"] {
        assert!(pool[field].is_u64(), "pool.{field}: {s}");
    }
    let f = parse_exposition(&http::get(admin, "/metrics").await.unwrap().body);
    assert_eq!(member_state(&f, member, "primary"), Some(1.0));
    assert_eq!(member_state(&f, member, "unknown"), Some(0.0));
    assert_eq!(f["mongoplex_primary_changes_total"].samples[0].1, 1.0);
}
