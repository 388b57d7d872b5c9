//! The admin HTTP listener: `/metrics` (Prometheus text), `/live`, `/ready`, `/status`
//! (JSON for humans and scripts), and `POST /reload` ([`crate::reload`]), which answers
//! only loopback peers unless `allow_remote_reload` is set.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus::{Encoder, Registry, TextEncoder};
use serde::Serialize;

use crate::context::Context;
use crate::pool::PoolSnapshot;
use crate::reload::Reloader;

#[derive(Clone)]
struct AdminState {
    ctx: Arc<Context>,
    registry: Registry,
    reloader: Option<Arc<Reloader>>,
}

/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()`: `/reload`
/// checks the peer's address.
pub fn router(ctx: Arc<Context>, registry: Registry, reloader: Option<Arc<Reloader>>) -> Router {
    // Limits from the config are only worth exposing where metrics are served: here.
    ctx.metrics.publish_limits(ctx.client_capacity.clients());
    Router::new()
        .route("/metrics", get(metrics))
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(ready))
        .route("/status", get(status))
        .route("/reload", post(reload))
        .with_state(AdminState {
            ctx,
            registry,
            reloader,
        })
}

async fn metrics(State(s): State<AdminState>) -> Response {
    let encoder = TextEncoder::new();
    let mut buf = Vec::new();
    match encoder.encode(&s.registry.gather(), &mut buf) {
        Ok(()) => ([(header::CONTENT_TYPE, encoder.format_type().to_string())], buf).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Ready when writes can be routed: a primary (or standalone/mongos) is known, and the
/// server has not refused the proxy's credential since its last successful login; never
/// once a drain has begun.
pub fn is_ready(ctx: &Context) -> bool {
    !ctx.draining.is_cancelled() && ctx.topology.snapshot().primary.is_some() && auth_failure(ctx).is_none()
}

fn auth_failure(ctx: &Context) -> Option<String> {
    ctx.topology.pools().iter().find_map(|p| p.auth_failure())
}

async fn ready(State(s): State<AdminState>) -> Response {
    if s.ctx.draining.is_cancelled() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: draining for shutdown\n",
        )
            .into_response()
    } else if is_ready(&s.ctx) {
        (StatusCode::OK, "ready\n").into_response()
    } else if let Some(why) = auth_failure(&s.ctx) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: upstream authentication failed: {why}\n"),
        )
            .into_response()
    } else {
        let summary = s.ctx.topology.snapshot().summary();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: no primary known ({summary})\n"),
        )
            .into_response()
    }
}

/// `POST /reload`: 200 with the outcome when applied, 422 when rejected (the old
/// configuration stays), 403 for a non-loopback peer without `allow_remote_reload`.
async fn reload(State(s): State<AdminState>, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Response {
    let error = |status, why: String| {
        (
            status,
            Json(serde_json::json!({ "result": "error", "error": why })),
        )
            .into_response()
    };
    if !reload_allowed(peer.ip(), s.ctx.current().allow_remote_reload) {
        tracing::warn!(%peer, "refused POST /reload from a non-loopback address (allow_remote_reload is off)");
        return error(
            StatusCode::FORBIDDEN,
            "POST /reload is accepted from loopback only; set allow_remote_reload to allow other addresses"
                .into(),
        );
    }
    let Some(reloader) = s.reloader.clone() else {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "this proxy was started without a configuration source to reload from".into(),
        );
    };
    match tokio::task::spawn_blocking(move || reloader.reload("POST /reload")).await {
        Ok(outcome) => {
            let status = if outcome.error.is_none() {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            (status, Json(outcome)).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Whether `POST /reload` from `peer` is accepted: loopback always (an IPv4 peer on a
/// dual-stack listener arrives as `::ffff:127.0.0.1`), others only when allowed.
fn reload_allowed(peer: std::net::IpAddr, allow_remote: bool) -> bool {
    allow_remote || peer.to_canonical().is_loopback()
}

#[derive(Serialize)]
struct Member {
    address: String,
    state: &'static str,
    rtt_ms: Option<f64>,
    error: Option<String>,
    pool: Option<PoolSnapshot>,
}

#[derive(Serialize)]
struct Status {
    version: &'static str,
    upstream: String,
    ready: bool,
    primary: Option<String>,
    members: Vec<Member>,
    clients: usize,
    pinned_cursors: usize,
    pinned_transactions: usize,
}

async fn status(State(s): State<AdminState>) -> Json<Status> {
    let ctx = &s.ctx;
    let snap = ctx.topology.snapshot();
    let members = snap
        .servers
        .iter()
        .map(|m| Member {
            address: m.address.to_string(),
            state: m.kind.as_str(),
            rtt_ms: m.rtt.map(|r| r.as_secs_f64() * 1000.0),
            error: m.error.clone(),
            pool: ctx.topology.pool(&m.address).map(|p| p.snapshot()),
        })
        .collect();
    let (pinned_cursors, pinned_transactions) = ctx.pins.counts();
    Json(Status {
        version: env!("CARGO_PKG_VERSION"),
        upstream: ctx.config.upstream_redacted.clone(),
        ready: is_ready(ctx),
        primary: snap.primary.as_ref().map(ToString::to_string),
        members,
        clients: ctx.clients.load(std::sync::atomic::Ordering::Relaxed),
        pinned_cursors,
        pinned_transactions,
    })
}

#[cfg(test)]
mod tests {
    use super::reload_allowed;

    #[test]
    fn reload_is_loopback_only_unless_allowed() {
        let cases = [
            ("127.0.0.1", false, true),
            ("127.8.9.1", false, true),
            ("::1", false, true),
            ("::ffff:127.0.0.1", false, true),
            ("10.1.2.3", false, false),
            ("::ffff:10.1.2.3", false, false),
            ("fe80::1", false, false),
            ("10.1.2.3", true, true),
            ("2001:db8::1", true, true),
        ];
        for (ip, allow, want) in cases {
            assert_eq!(
                reload_allowed(ip.parse().unwrap(), allow),
                want,
                "{ip} allow={allow}"
            );
        }
    }
}
