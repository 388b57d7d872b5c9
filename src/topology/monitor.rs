//! One monitor per member (SDAM server monitoring). Where the server supports it, the
//! monitor uses awaitable hello — the server answers as soon as its state changes, or
//! after maxAwaitTimeMS — and a separate connection measures round-trip time. Otherwise
//! it polls every heartbeatFrequencyMS, or sooner on request (at most every 500 ms).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{rawdoc, Document, RawDocumentBuf};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Topology;
use crate::address::ServerAddress;
use crate::upstream::{ConnectOptions, UpstreamConn, UpstreamError};
use crate::wire::{build_msg, OpMsg};

const MIN_INTERVAL: Duration = Duration::from_millis(500);

struct Check {
    hello: Document,
    rtt: Option<Duration>,
}

pub(super) async fn run(
    topology: Topology,
    address: ServerAddress,
    check_now: Arc<Notify>,
    cancel: CancellationToken,
) {
    let cfg = topology.config();
    let heartbeat = cfg.heartbeat_frequency;
    let mut opts = cfg.connect.clone();
    opts.socket_timeout = Some(opts.connect_timeout);
    let mut conn: Option<UpstreamConn> = None;
    let mut rtt_task: Option<CancellationToken> = None;
    let mut last_tv: Option<RawDocumentBuf> = None;
    loop {
        let started = Instant::now();
        let had_conn = conn.is_some();
        let streaming = last_tv.is_some();
        let mut result = tokio::select! {
            _ = cancel.cancelled() => break,
            r = check(&address, &mut conn, &opts, last_tv.as_deref(), heartbeat) => r,
        };
        if result.is_err() && had_conn && !streaming {
            // SDAM: a network error on an established connection is retried once at once.
            result = tokio::select! {
                _ = cancel.cancelled() => break,
                r = check(&address, &mut conn, &opts, None, heartbeat) => r,
            };
        }
        match result {
            Ok(c) => {
                last_tv = c
                    .hello
                    .get_document("topologyVersion")
                    .ok()
                    .and_then(|d| RawDocumentBuf::try_from(d).ok());
                topology.check_succeeded(&address, &c.hello, c.rtt);
                if last_tv.is_some() && rtt_task.is_none() {
                    let token = cancel.child_token();
                    topology.inner.tracker.spawn(rtt_loop(
                        topology.clone(),
                        address.clone(),
                        opts.clone(),
                        heartbeat,
                        token.clone(),
                    ));
                    rtt_task = Some(token);
                }
            }
            Err(e) => {
                tracing::warn!(member = %address, error = %e, "heartbeat failed");
                conn = None;
                last_tv = None;
                if let Some(t) = rtt_task.take() {
                    t.cancel();
                }
                topology.check_failed(&address, e.to_string(), e.is_timeout());
            }
        }
        if last_tv.is_some() {
            // Awaitable hello: the next check waits at the server; go straight back.
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until((started + heartbeat).into()) => {}
            _ = check_now.notified() => {
                tokio::time::sleep_until((started + MIN_INTERVAL).into()).await;
            }
        }
    }
    if let Some(t) = rtt_task {
        t.cancel();
    }
}

async fn hello_on(conn: &mut UpstreamConn, body: &RawDocumentBuf) -> Result<Document, UpstreamError> {
    let mut req = build_msg(0, 0, 0, body.as_bytes());
    let reply = conn.round_trip(&mut req).await?;
    let msg = OpMsg::parse(&reply).map_err(|source| UpstreamError::Protocol {
        address: conn.address.clone(),
        source,
    })?;
    Document::try_from(msg.body).map_err(|e| UpstreamError::Handshake {
        address: conn.address.clone(),
        why: e.to_string(),
    })
}

async fn check(
    address: &ServerAddress,
    conn: &mut Option<UpstreamConn>,
    opts: &ConnectOptions,
    topology_version: Option<&bson::RawDocument>,
    heartbeat: Duration,
) -> Result<Check, UpstreamError> {
    let started = Instant::now();
    let Some(c) = conn.as_mut() else {
        // Establishing the connection performs the first hello.
        let c = UpstreamConn::establish(address, 0, 0, opts).await?;
        let hello = Document::try_from(c.hello.reply.as_ref()).map_err(|e| UpstreamError::Handshake {
            address: address.clone(),
            why: e.to_string(),
        })?;
        *conn = Some(c);
        return Ok(Check {
            hello,
            rtt: Some(started.elapsed()),
        });
    };
    let result = match topology_version {
        Some(tv) => {
            let max_await = i64::try_from(heartbeat.as_millis()).unwrap_or(i64::MAX);
            let body = rawdoc! { "hello": 1, "topologyVersion": tv.to_owned(), "maxAwaitTimeMS": max_await, "$db": "admin" };
            let limit = opts.connect_timeout + heartbeat;
            match tokio::time::timeout(limit, hello_on(c, &body)).await {
                Ok(r) => r.map(|hello| Check { hello, rtt: None }),
                Err(_) => Err(UpstreamError::Timeout {
                    address: address.clone(),
                    ms: limit.as_millis(),
                }),
            }
        }
        None => hello_on(c, &rawdoc! { "hello": 1, "$db": "admin" })
            .await
            .map(|hello| Check {
                hello,
                rtt: Some(started.elapsed()),
            }),
    };
    if result.is_err() {
        *conn = None;
    }
    result
}

/// Measures round-trip time on its own connection while the monitor streams.
async fn rtt_loop(
    topology: Topology,
    address: ServerAddress,
    opts: ConnectOptions,
    heartbeat: Duration,
    cancel: CancellationToken,
) {
    let mut conn: Option<UpstreamConn> = None;
    loop {
        let started = Instant::now();
        let sample = tokio::select! {
            _ = cancel.cancelled() => return,
            r = check(&address, &mut conn, &opts, None, heartbeat) => r,
        };
        if let Ok(c) = sample {
            if let Some(rtt) = c.rtt {
                topology.rtt_sample(&address, rtt);
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until((started + heartbeat).into()) => {}
        }
    }
}
