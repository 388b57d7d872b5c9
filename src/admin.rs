//! The admin HTTP listener: `/metrics` (Prometheus text), `/live`, `/ready` and
//! `/status` (JSON for humans and scripts).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::{Encoder, Registry, TextEncoder};
use serde::Serialize;

use crate::context::Context;
use crate::pool::PoolSnapshot;

#[derive(Clone)]
struct AdminState {
    ctx: Arc<Context>,
    registry: Registry,
}

pub fn router(ctx: Arc<Context>, registry: Registry) -> Router {
    // Limits from the config are only worth exposing where metrics are served: here.
    ctx.metrics.publish_limits(ctx.client_capacity.clients());
    Router::new()
        .route("/metrics", get(metrics))
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(ready))
        .route("/status", get(status))
        .with_state(AdminState { ctx, registry })
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
/// server has not refused the proxy's credential since its last successful login.
pub fn is_ready(ctx: &Context) -> bool {
    ctx.topology.snapshot().primary.is_some() && auth_failure(ctx).is_none()
}

fn auth_failure(ctx: &Context) -> Option<String> {
    ctx.topology.pools().iter().find_map(|p| p.auth_failure())
}

async fn ready(State(s): State<AdminState>) -> Response {
    if is_ready(&s.ctx) {
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
