//! The forward path: select a member, check out a connection, exchange one request and
//! reply, check the connection back in before writing to the client. Failures are
//! classified and, where [`crate::retry`] says a second attempt is safe, retried once on
//! a newly selected member. A client's maxTimeMS ([`crate::budget`]) bounds all of it.

use std::time::Instant;

use bson::RawDocument;

use super::abort;
use super::plan::Plan;
use super::Session;
use crate::address::ServerAddress;
use crate::budget::{self, Budget};
use crate::command::ReplyInfo;
use crate::errors::{ErrorCode, ProxyError, RETRYABLE_WRITE_ERROR, TRANSIENT_TRANSACTION_ERROR};
use crate::metrics::Outcome;
use crate::pool::{CheckoutError, Pool};
use crate::retry::{self, Failure, ReplyFailure};
use crate::router::{Criteria, PinKind, Target};
use crate::topology::SelectError;
use crate::upstream::UpstreamError;
use crate::wire::{
    build_msg, refresh_checksum, set_body_number, set_msg_flags, Frame, OpMsg, MSG_EXHAUST_ALLOWED,
};

/// The result of one attempt.
enum Attempt {
    /// A moreToCome request was sent; no reply will come.
    NoReply,
    /// A reply, how it failed if it is an error that retry rules consider, and the
    /// member that sent it.
    Reply(Frame, Option<Failure>, ServerAddress),
    /// The proxy could not get a reply.
    Failed(Failure, ProxyError),
}

impl Session {
    /// Returns the reply to send (none for moreToCome requests) and the outcome.
    pub(super) async fn forward(
        &mut self,
        plan: &Plan,
        mut frame: Frame,
        request_id: i32,
    ) -> (Option<Frame>, Outcome) {
        let mut target = plan.target.clone();
        let mut attempt = 0;
        let mut unsent_retries = 0;
        let mut avoid: Option<ServerAddress> = None;
        let budget = Budget::of(plan.name, plan.max_time_ms, Instant::now());
        loop {
            let (mut failure, mut result) = match self
                .attempt(plan, &target, &mut frame, &mut avoid, budget.as_ref())
                .await
            {
                Attempt::NoReply => return (None, Outcome::Ok),
                Attempt::Reply(reply, None, _) => {
                    return (Some(finish(reply, request_id, plan, None)), Outcome::Ok)
                }
                Attempt::Reply(reply, Some(failure), member) => (failure, Ok((reply, member))),
                Attempt::Failed(failure, err) => (failure, Err(err)),
            };
            // Every failed attempt is recorded, retried or not, so the driver's own retry
            // finds the count.
            let within_cap = self.within_cap(plan, failure);
            let mut decision = retry::decide(&plan.facts, failure, attempt).filter(|_| within_cap);
            if let (Some(reason), Some(b)) = (decision, &budget) {
                let now = Instant::now();
                if b.expired(now) {
                    // A retry would be cut short: the client hears that its time is up.
                    decision = None;
                    let sent = !matches!(failure, Failure::NotSent { .. });
                    failure = Failure::Expired { sent };
                    let what = format!("no time left to retry ({})", reason.as_str());
                    result = Err(b.error(now, &what));
                }
            }
            if let Some(reason) = decision {
                self.ctx
                    .metrics
                    .retries
                    .with_label_values(&[reason.as_str()])
                    .inc();
                tracing::info!(
                    parent: &self.span,
                    command = plan.name.as_str(),
                    reason = reason.as_str(),
                    "retrying on a newly selected member"
                );
                if retry::spends_retry(failure, unsent_retries) {
                    attempt += 1;
                } else {
                    unsent_retries += 1;
                }
                target = match target {
                    // A transaction's commit/abort follows the primary, wherever it is now.
                    Target::Pinned(_, PinKind::Transaction) => Target::Select(Criteria::Primary),
                    other => other,
                };
                continue;
            }
            self.ctx.pins.unpin_cursors(plan.cursors_lost(failure));
            return match result {
                Ok((reply, member)) => (
                    Some(finish(reply, request_id, plan, Some((failure, &member)))),
                    Outcome::ServerError,
                ),
                Err(mut err) => {
                    err.labels = retry::proxy_error_labels(&plan.facts, failure);
                    if let Some((lsid, txn_number)) = abort::implicit_abort(plan, failure) {
                        self.abort_implicitly(&plan.target, lsid, txn_number).await;
                    }
                    tracing::debug!(parent: &self.span, command = plan.name.as_str(), error = %err.message, "request failed in the proxy");
                    if plan.more_to_come {
                        return (None, Outcome::ProxyError);
                    }
                    let doc = err.to_document();
                    (
                        Some(build_msg(0, request_id, 0, doc.as_bytes())),
                        Outcome::ProxyError,
                    )
                }
            };
        }
    }

    /// Records a failed server attempt of a retryable write and says whether one more
    /// stays within [`crate::attempts::MAX_WRITE_ATTEMPTS`], the driver's retry included.
    fn within_cap(&self, plan: &Plan, failure: Failure) -> bool {
        let Some((lsid, txn_number)) = &plan.write_id else {
            return true;
        };
        if matches!(
            failure,
            Failure::NotSent { .. } | Failure::Expired { sent: false }
        ) {
            return true;
        }
        let total = self.ctx.attempts.record(lsid, *txn_number, Instant::now());
        crate::attempts::AttemptLedger::may_retry(total)
    }

    async fn target_pool(
        &self,
        plan: &Plan,
        target: &Target,
        avoid: Option<ServerAddress>,
        budget: Option<&Budget>,
    ) -> Result<(ServerAddress, Pool), ProxyError> {
        match target {
            Target::Pinned(address, kind) => {
                let topology = &self.ctx.topology;
                if plan.long_polls() {
                    topology.long_poll_pool(address)
                } else {
                    topology.pool(address)
                }
            }
            .map(|p| (address.clone(), p))
            .ok_or_else(|| {
                let what = match kind {
                    PinKind::Cursor => "holding this cursor",
                    PinKind::Transaction => "running this transaction",
                };
                ProxyError::new(
                    ErrorCode::HostUnreachable,
                    format!("the member {address} {what} is no longer part of the topology"),
                )
            }),
            Target::Select(criteria) => {
                // Inside a transaction a missing primary is reported at once, never
                // buffered; commit and abort wait for one (the driver retries them once,
                // and after a dropped connection the member is re-checked at once).
                let buffer = !plan.facts.in_transaction || plan.name.ends_transaction();
                let deadline = budget.map(Budget::deadline);
                match self.ctx.topology.select(criteria, buffer, avoid, deadline).await {
                    Ok(s) => Ok((s.address, s.pool)),
                    Err(e @ SelectError::Expired { .. }) => Err(expired(budget, &e.to_string())),
                    Err(e @ SelectError::InvalidReadPreference(_)) => {
                        Err(ProxyError::new(ErrorCode::InvalidOptions, e.to_string()))
                    }
                    Err(e @ SelectError::NoPrimary { .. }) => {
                        Err(ProxyError::new(ErrorCode::ExceededTimeLimit, e.to_string()))
                    }
                    Err(e @ SelectError::ShuttingDown) => {
                        Err(ProxyError::new(ErrorCode::HostUnreachable, e.to_string()))
                    }
                    Err(e) => Err(ProxyError::new(
                        ErrorCode::FailedToSatisfyReadPreference,
                        e.to_string(),
                    )),
                }
            }
        }
    }

    /// One attempt. `avoid` carries a member that failed at the connection level from one
    /// attempt to the next, so a retry waits for the topology to react to it.
    async fn attempt(
        &mut self,
        plan: &Plan,
        target: &Target,
        frame: &mut Frame,
        avoid: &mut Option<ServerAddress>,
        budget: Option<&Budget>,
    ) -> Attempt {
        let (address, pool) = match self.target_pool(plan, target, avoid.take(), budget).await {
            Ok(t) => t,
            Err(e) if e.code == ErrorCode::MaxTimeMSExpired => {
                return Attempt::Failed(Failure::Expired { sent: false }, e)
            }
            Err(e) => return Attempt::Failed(Failure::NotSent { retryable: false }, e),
        };
        let mut conn = match pool.check_out_by(budget.map(Budget::deadline)).await {
            Ok(c) => c,
            Err(e @ CheckoutError::Expired { .. }) => {
                return Attempt::Failed(Failure::Expired { sent: false }, expired(budget, &e.to_string()))
            }
            Err(e) => {
                let retryable = matches!(e, CheckoutError::Cleared { .. } | CheckoutError::Connect(_));
                if let CheckoutError::Connect(u) = &e {
                    *avoid = Some(address.clone());
                    self.ctx.topology.request_check(Some(&address));
                    let generation = pool.generation();
                    self.ctx
                        .topology
                        .on_network_error(&address, generation, true, u.is_timeout());
                }
                let mut err = checkout_error(e);
                if let Target::Pinned(_, PinKind::Cursor) = target {
                    err.message = format!(
                        "the cursor lives on member {address}, which is unavailable: {}",
                        err.message
                    );
                }
                return Attempt::Failed(Failure::NotSent { retryable }, err);
            }
        };
        if plan.exhaust_allowed {
            // Exhaust replies would tie the connection to this client; ask for one reply.
            set_msg_flags(frame, plan.flags & !MSG_EXHAUST_ALLOWED);
        }
        if let Some(b) = budget {
            // The server gets what is left of the client's time, as a mongos passes it on.
            match b.send(Instant::now()) {
                budget::Send::AsIs => {}
                budget::Send::MaxTimeMs(ms) => {
                    set_body_number(frame, "maxTimeMS", ms);
                }
                budget::Send::Expired => {
                    let e = expired(budget, &format!("nothing was sent to {address}"));
                    return Attempt::Failed(Failure::Expired { sent: false }, e);
                }
            }
        }
        let exchange = budget.map(Budget::exchange_deadline);
        let generation = conn.generation;
        let server_labels = conn.hello.max_wire_version >= retry::LABELS_RETRYABLE_WRITES_WIRE_VERSION;
        let sent_at = Instant::now();
        if let Err(e) = conn.send_by(frame, !plan.more_to_come, exchange).await {
            drop(conn);
            return self.exchange_failed(&address, generation, &e, avoid, budget);
        }
        if plan.more_to_come {
            self.confirm_after_unacknowledged(&address, &mut conn).await;
            return Attempt::NoReply;
        }
        let interrupt = conn.interrupt.clone();
        let reply = tokio::select! {
            r = conn.recv_by(exchange) => r,
            _ = interrupt.cancelled() => Err(UpstreamError::Interrupted { address: address.clone() }),
        };
        drop(conn);
        let reply = match reply {
            Ok(r) => r,
            Err(e) => return self.exchange_failed(&address, generation, &e, avoid, budget),
        };
        pool.record_roundtrip(sent_at.elapsed().as_secs_f64());
        let failure = self.after_reply(plan, &address, generation, server_labels, &reply);
        Attempt::Reply(reply, failure, address)
    }

    /// Updates pins, reports state changes, and classifies an error reply.
    fn after_reply(
        &self,
        plan: &Plan,
        address: &ServerAddress,
        generation: u32,
        server_labels: bool,
        reply: &Frame,
    ) -> Option<Failure> {
        let Ok(msg) = OpMsg::parse(reply) else { return None };
        let info = ReplyInfo::parse(msg.body);
        plan.pin_changes(&info, msg.body).apply(&self.ctx.pins, address);
        if info.ok && info.write_concern_code.is_none() {
            return None;
        }
        if let Some(code) = info.code.or(info.write_concern_code) {
            self.ctx
                .metrics
                .server_errors
                .with_label_values(&[code.to_string().as_str()])
                .inc();
        }
        self.ctx.topology.on_reply_error(address, generation, msg.body);
        let code = if info.ok {
            info.write_concern_code
        } else {
            info.code
        };
        Some(Failure::Reply(ReplyFailure {
            code,
            write_concern: info.ok,
            no_writes_performed: ReplyInfo::has_label(msg.body, "NoWritesPerformed"),
            retryable_write_label: ReplyInfo::has_label(msg.body, RETRYABLE_WRITE_ERROR),
            server_labels,
        }))
    }

    /// A mongod that refuses an unacknowledged (moreToCome) write, because it is no
    /// longer primary, closes the connection. A ping on the same connection proves it
    /// survived before it goes back to the pool: the server answers in order, so a reply
    /// means the write was taken. Otherwise the connection is dropped here, and the next
    /// client never meets the close. The member is re-checked, not marked Unknown: the
    /// close says only that this one write was refused.
    async fn confirm_after_unacknowledged(
        &self,
        address: &ServerAddress,
        conn: &mut crate::pool::PooledConn,
    ) {
        let body = bson::rawdoc! { "ping": 1, "$db": "admin" };
        let mut ping = build_msg(0, 0, 0, body.as_bytes());
        if let Err(e) = conn.round_trip(&mut ping).await {
            tracing::info!(parent: &self.span, member = %address, error = %e, "connection closed after an unacknowledged write; dropped, member re-checked");
            self.ctx.topology.request_check(Some(address));
        }
    }

    /// A failed write or read of a request that may have reached the server. When the
    /// client's own limit ended it, the member is not to blame: no SDAM report, and the
    /// member is not avoided.
    fn exchange_failed(
        &self,
        address: &ServerAddress,
        generation: u32,
        e: &UpstreamError,
        avoid: &mut Option<ServerAddress>,
        budget: Option<&Budget>,
    ) -> Attempt {
        if let UpstreamError::DeadlineExceeded { .. } = e {
            tracing::info!(parent: &self.span, member = %address, error = %e, "request cut at its maxTimeMS; connection discarded");
            return Attempt::Failed(Failure::Expired { sent: true }, expired(budget, &e.to_string()));
        }
        *avoid = Some(address.clone());
        let failure = if e.is_timeout() {
            Failure::Timeout
        } else {
            Failure::Network
        };
        Attempt::Failed(failure, self.network_error(address, generation, e))
    }

    fn network_error(&self, address: &ServerAddress, generation: u32, e: &UpstreamError) -> ProxyError {
        if let Some(held_back) = self.ctx.throttles.upstream_request.admit() {
            tracing::warn!(parent: &self.span, member = %address, error = %e, held_back, "upstream request failed");
        }
        self.ctx
            .topology
            .on_network_error(address, generation, false, e.is_timeout());
        let code = if e.is_timeout() {
            ErrorCode::NetworkTimeout
        } else {
            ErrorCode::HostUnreachable
        };
        ProxyError::new(code, e.to_string())
    }
}

/// Readies a reply for the client: its responseTo and a fresh checksum; for an error
/// reply (`failure`, with the member that sent it, from `after_reply`, so successful
/// replies are not parsed again), the error as a mongos reports it
/// ([`crate::command::translate`]) and TransientTransactionError where an election hit a
/// transaction statement.
fn finish(
    mut reply: Frame,
    request_id: i32,
    plan: &Plan,
    failure: Option<(Failure, &ServerAddress)>,
) -> Frame {
    if let Some((Failure::Reply(r), member)) = failure {
        let label = retry::needs_transient_label(&plan.facts, &r).then_some(TRANSIENT_TRANSACTION_ERROR);
        let member = member.to_string();
        let as_mongos = |body: &RawDocument| crate::command::translate::as_mongos(body, &member, label);
        if let Some(rewritten) = rewrite_body(&reply, as_mongos) {
            reply = rewritten;
        }
    }
    reply.set_response_to(request_id);
    refresh_checksum(&mut reply);
    reply
}

/// The reply with its body replaced by what `f` makes of it, or `None` when `f` leaves
/// it as it is. Flags and responseTo are kept; the checksum is dropped (the body
/// changed), so a caller that wants one refreshes it.
pub(super) fn rewrite_body(reply: &Frame, f: impl FnOnce(&RawDocument) -> Option<Vec<u8>>) -> Option<Frame> {
    let msg = OpMsg::parse(reply).ok()?;
    let body = f(msg.body)?;
    let flags = msg.flags & !crate::wire::MSG_CHECKSUM_PRESENT;
    Some(build_msg(0, reply.response_to(), flags, &body))
}

/// MaxTimeMSExpired, saying what the proxy was doing when the client's time ran out.
fn expired(budget: Option<&Budget>, what: &str) -> ProxyError {
    match budget {
        Some(b) => b.error(Instant::now(), what),
        None => ProxyError::new(
            ErrorCode::MaxTimeMSExpired,
            format!("operation exceeded time limit: {what}"),
        ),
    }
}

fn checkout_error(e: CheckoutError) -> ProxyError {
    let code = match &e {
        CheckoutError::Timeout { .. } => ErrorCode::NetworkTimeout,
        CheckoutError::Connect(u) if u.is_timeout() => ErrorCode::NetworkTimeout,
        _ => ErrorCode::HostUnreachable,
    };
    ProxyError::new(code, e.to_string())
}
