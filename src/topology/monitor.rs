//! One monitor per member: a dedicated connection sending hello every
//! heartbeatFrequencyMS, or sooner when asked (at most every 500 ms).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::rawdoc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{ServerInfo, Topology};
use crate::address::ServerAddress;
use crate::upstream::UpstreamConn;
use crate::wire::{build_msg, OpMsg};

const MIN_INTERVAL: Duration = Duration::from_millis(500);

pub(super) async fn run(
    topology: Topology,
    address: ServerAddress,
    check_now: Arc<Notify>,
    cancel: CancellationToken,
) {
    let cfg = topology.config();
    let mut opts = cfg.connect.clone();
    // The monitor's own reads are bounded by connectTimeoutMS, as drivers do.
    opts.socket_timeout = Some(opts.connect_timeout);
    let heartbeat = cfg.heartbeat_frequency;
    let label = address.to_string();
    let mut conn: Option<UpstreamConn> = None;
    loop {
        let started = Instant::now();
        let had_conn = conn.is_some();
        let mut result = check(&address, &mut conn, &opts).await;
        if result.is_err() && had_conn {
            // SDAM: a network error on an established monitor connection is retried once
            // at once before the server is marked Unknown.
            result = check(&address, &mut conn, &opts).await;
        }
        let info = match result {
            Ok(info) => info,
            Err(e) => {
                topology
                    .metrics()
                    .heartbeat_failures
                    .with_label_values(&[label.as_str()])
                    .inc();
                tracing::warn!(member = %address, error = %e, "heartbeat failed");
                ServerInfo::unknown(address.clone(), Some(e))
            }
        };
        topology.update(info);
        let next = started + heartbeat;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = check_now.notified() => {
                tokio::time::sleep_until((started + MIN_INTERVAL).into()).await;
            }
        }
    }
}

async fn check(
    address: &ServerAddress,
    conn: &mut Option<UpstreamConn>,
    opts: &crate::upstream::ConnectOptions,
) -> Result<ServerInfo, String> {
    let started = Instant::now();
    let Some(c) = conn.as_mut() else {
        // Establishing the connection performs the first hello.
        let c = UpstreamConn::establish(address, 0, 0, opts)
            .await
            .map_err(|e| e.to_string())?;
        let info = ServerInfo::from_hello(address.clone(), &c.hello.reply, started.elapsed());
        *conn = Some(c);
        return Ok(info);
    };
    let body = rawdoc! { "hello": 1, "$db": "admin" };
    let mut req = build_msg(0, 0, 0, body.as_bytes());
    match c.round_trip(&mut req).await {
        Ok(reply) => {
            let rtt = started.elapsed();
            let msg = OpMsg::parse(&reply).map_err(|e| e.to_string())?;
            Ok(ServerInfo::from_hello(address.clone(), msg.body, rtt))
        }
        Err(e) => {
            *conn = None;
            Err(e.to_string())
        }
    }
}
