//! One monitor per member (SDAM server monitoring).
//!
//! - Servers that report a topologyVersion are watched with awaitable hello: a stream
//!   task keeps one hello waiting at the server, which answers as soon as its state
//!   changes (or after maxAwaitTimeMS). A second "probe" connection measures round-trip
//!   time every heartbeat and, when the proxy asks for an immediate check (after a
//!   state-change error), runs an out-of-band hello at once (at most every 500 ms), so
//!   recovery does not wait for the server to push.
//! - Other servers are polled every heartbeatFrequencyMS, or sooner on request.
//! - A down member checked on request (requests wait for it) backs off from 500 ms to at
//!   most 1 s, with jitter ([`recheck_after`]), so that a fleet of proxies does not
//!   hit a recovering server in step, and a restarted one is still found within a second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{rawdoc, Document, RawDocumentBuf};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::Topology;
use crate::address::ServerAddress;
use crate::upstream::{ConnectOptions, UpstreamConn, UpstreamError};

const MIN_INTERVAL: Duration = Duration::from_millis(500);
/// The longest a waited-for down member goes unchecked, jitter included.
const MAX_RECHECK: Duration = Duration::from_millis(1000);

/// How long after the start of the last check a requested check may run, after
/// `failures` checks in a row failed: 500 ms (SDAM's minHeartbeatFrequencyMS) while the
/// member answers; then doubling from 500 ms up to 800 ms, plus up to a quarter more by
/// `jitter` (0..1), so never above [`MAX_RECHECK`] and never below 500 ms.
pub(super) fn recheck_after(failures: u32, jitter: f64) -> Duration {
    if failures == 0 {
        return MIN_INTERVAL;
    }
    let base = MIN_INTERVAL
        .saturating_mul(1 << (failures - 1).min(4))
        .min(MAX_RECHECK * 4 / 5);
    (base + base.mul_f64(jitter.clamp(0.0, 1.0) / 4.0)).min(MAX_RECHECK)
}

pub(super) async fn run(
    topology: Topology,
    address: ServerAddress,
    check_now: Arc<Notify>,
    cancel: CancellationToken,
) {
    let cfg = topology.config();
    let heartbeat = cfg.heartbeat_frequency;
    let mut opts = topology.connect_options();
    opts.socket_timeout = Some(opts.connect_timeout);
    // Monitoring connections never authenticate (SDAM), and send nothing but hello,
    // which is never compressed: they offer no compressors.
    opts.credential = None;
    opts.compressors.clear();
    let m = Monitor {
        topology: topology.clone(),
        address,
        opts,
        heartbeat,
        check_now,
        cancel,
        failure_log: crate::throttle::Throttle::new(Duration::from_secs(10)),
    };
    m.run().await;
}

struct Monitor {
    topology: Topology,
    address: ServerAddress,
    opts: ConnectOptions,
    heartbeat: Duration,
    check_now: Arc<Notify>,
    cancel: CancellationToken,
    /// While requests wait, a down member is checked every 500 ms: one line per 10 s.
    failure_log: crate::throttle::Throttle,
}

impl Monitor {
    async fn run(&self) {
        let mut conn: Option<UpstreamConn> = None;
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            let had_conn = conn.is_some();
            let mut result = self.poll(&mut conn).await;
            if result.is_err() && had_conn {
                // SDAM: a network error on an established connection is retried once at once.
                result = self.poll(&mut conn).await;
            }
            failures = if result.is_ok() {
                0
            } else {
                failures.saturating_add(1)
            };
            match result {
                Ok((hello, rtt)) => {
                    self.topology.check_succeeded(&self.address, &hello, Some(rtt));
                    let tv = hello
                        .get_document("topologyVersion")
                        .ok()
                        .and_then(|d| RawDocumentBuf::try_from(d).ok());
                    if let (Some(tv), Some(c)) = (tv, conn.take()) {
                        self.stream(c, tv).await;
                        if self.cancel.is_cancelled() {
                            return;
                        }
                        // The stream failed and was reported; reconnect at once.
                        continue;
                    }
                }
                Err(e) => self.failed(&e),
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep_until((started + self.heartbeat).into()) => {}
                _ = self.check_now.notified() => {
                    let wait = recheck_after(failures, rand::random::<f64>());
                    tokio::time::sleep_until((started + wait).into()).await;
                }
            }
        }
    }

    fn failed(&self, e: &UpstreamError) {
        if let Some(held_back) = self.failure_log.admit() {
            tracing::warn!(member = %self.address, error = %e, held_back, "heartbeat failed");
        }
        self.topology
            .check_failed(&self.address, e.to_string(), e.is_timeout());
    }

    /// One plain hello, opening the connection first if needed (its handshake is the check).
    async fn poll(&self, conn: &mut Option<UpstreamConn>) -> Result<(Document, Duration), UpstreamError> {
        let started = Instant::now();
        let result = tokio::select! {
            _ = self.cancel.cancelled() => return Err(UpstreamError::Closed { address: self.address.clone() }),
            r = poll_once(&self.address, conn, &self.opts) => r,
        };
        result.map(|hello| (hello, started.elapsed()))
    }

    /// Streams state changes until the stream fails or the monitor is cancelled.
    async fn stream(&self, conn: UpstreamConn, tv: RawDocumentBuf) {
        let (tx, mut rx) = mpsc::channel(4);
        let token = self.cancel.child_token();
        self.topology.inner.tracker.spawn(stream_task(
            conn,
            tv,
            self.heartbeat,
            self.opts.connect_timeout,
            tx,
            token.clone(),
        ));
        let _stop_stream = token.drop_guard();
        let mut probe: Option<UpstreamConn> = None;
        let mut rtt_tick = tokio::time::interval(self.heartbeat);
        let mut last_probe = Instant::now();
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                msg = rx.recv() => match msg {
                    Some(Ok(hello)) => self.topology.check_succeeded(&self.address, &hello, None),
                    Some(Err(e)) => {
                        self.failed(&e);
                        return;
                    }
                    None => return,
                },
                _ = rtt_tick.tick() => {
                    if let Ok((_, rtt)) = self.poll(&mut probe).await {
                        self.topology.rtt_sample(&self.address, rtt);
                    }
                }
                _ = self.check_now.notified() => {
                    tokio::time::sleep_until((last_probe + MIN_INTERVAL).into()).await;
                    last_probe = Instant::now();
                    match self.poll(&mut probe).await {
                        Ok((hello, rtt)) => self.topology.check_succeeded(&self.address, &hello, Some(rtt)),
                        Err(e) => self.failed(&e),
                    }
                }
            }
        }
    }
}

/// Keeps one awaitable hello outstanding and reports every reply.
async fn stream_task(
    mut conn: UpstreamConn,
    mut tv: RawDocumentBuf,
    heartbeat: Duration,
    connect_timeout: Duration,
    tx: mpsc::Sender<Result<Document, UpstreamError>>,
    cancel: CancellationToken,
) {
    let max_await = i64::try_from(heartbeat.as_millis()).unwrap_or(i64::MAX);
    // The server may hold each hello for maxAwaitTimeMS: the spec's bound is
    // connectTimeoutMS + heartbeatFrequencyMS (a bound of connectTimeoutMS alone raced the
    // server's own answer and declared healthy members dead).
    let limit = connect_timeout + heartbeat;
    conn.set_socket_timeout(Some(limit));
    loop {
        let body = rawdoc! { "hello": 1, "topologyVersion": tv.clone(), "maxAwaitTimeMS": max_await, "$db": "admin" };
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = tokio::time::timeout(limit, hello_on(&mut conn, &body)) => match r {
                Ok(r) => r,
                Err(_) => Err(UpstreamError::Timeout { address: conn.address.clone(), ms: limit.as_millis() }),
            },
        };
        let failed = result.is_err();
        if let Ok(hello) = &result {
            if let Some(next) = hello
                .get_document("topologyVersion")
                .ok()
                .and_then(|d| RawDocumentBuf::try_from(d).ok())
            {
                tv = next;
            }
        }
        if tx.send(result).await.is_err() || failed {
            return;
        }
    }
}

async fn hello_on(conn: &mut UpstreamConn, body: &RawDocumentBuf) -> Result<Document, UpstreamError> {
    let reply = conn.command(body).await?;
    Document::try_from(reply.as_ref()).map_err(|e| UpstreamError::Handshake {
        address: conn.address.clone(),
        why: e.to_string(),
    })
}

async fn poll_once(
    address: &ServerAddress,
    conn: &mut Option<UpstreamConn>,
    opts: &ConnectOptions,
) -> Result<Document, UpstreamError> {
    let Some(c) = conn.as_mut() else {
        let c = UpstreamConn::establish(address, 0, 0, opts).await?;
        let hello = Document::try_from(c.hello.reply.as_ref()).map_err(|e| UpstreamError::Handshake {
            address: address.clone(),
            why: e.to_string(),
        })?;
        *conn = Some(c);
        return Ok(hello);
    };
    let result = hello_on(c, &rawdoc! { "hello": 1, "$db": "admin" }).await;
    if result.is_err() {
        *conn = None;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rechecks_back_off_with_jitter_between_half_a_second_and_a_second() {
        let ms = Duration::from_millis;
        // (failures in a row, jitter, wait)
        let table = [
            (0, 0.0, ms(500)),
            (0, 1.0, ms(500)),
            (1, 0.0, ms(500)),
            (1, 0.5, ms(562) + Duration::from_micros(500)),
            (1, 1.0, ms(625)),
            (2, 0.0, ms(800)),
            (2, 1.0, ms(1000)),
            (9, 0.3, ms(860)),
            (u32::MAX, 1.0, ms(1000)),
            (3, 7.0, ms(1000)),
            (3, -1.0, ms(800)),
        ];
        for (failures, jitter, want) in table {
            assert_eq!(
                recheck_after(failures, jitter),
                want,
                "{failures} failures, jitter {jitter}"
            );
        }
    }
}
