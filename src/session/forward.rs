//! The forward path: select a member, check out a connection, exchange one request and
//! reply, check the connection back in before writing to the client. Failures are
//! classified and, where [`crate::retry`] says a second attempt is safe, retried once on
//! a newly selected member.

use std::time::Instant;

use bson::RawDocument;

use super::plan::Plan;
use super::Session;
use crate::address::ServerAddress;
use crate::command::{CommandName, ReplyInfo};
use crate::errors::{ErrorCode, ProxyError, RETRYABLE_WRITE_ERROR, TRANSIENT_TRANSACTION_ERROR};
use crate::metrics::Outcome;
use crate::pool::{CheckoutError, Pool};
use crate::retry::{self, Failure, ReplyFailure};
use crate::router::{Criteria, PinKind, Target};
use crate::topology::SelectError;
use crate::upstream::UpstreamError;
use crate::wire::{build_msg, refresh_checksum, set_msg_flags, Frame, OpMsg, MSG_EXHAUST_ALLOWED};

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
        let mut avoid: Option<ServerAddress> = None;
        loop {
            let (failure, result) = match self.attempt(plan, &target, &mut frame, &mut avoid).await {
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
            let decision = retry::decide(&plan.facts, failure, attempt).filter(|_| within_cap);
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
                attempt += 1;
                target = match target {
                    // A transaction's commit/abort follows the primary, wherever it is now.
                    Target::Pinned(_, PinKind::Transaction) => Target::Select(Criteria::Primary),
                    other => other,
                };
                continue;
            }
            // A getMore the server failed has killed its cursor, and one whose member
            // cannot be reached has lost it. One the proxy itself gave up on before
            // sending (a wait-queue timeout, no member selectable) leaves the cursor
            // open on the server, so its pin stays for the next getMore or killCursors.
            let proxy_gave_up = failure == Failure::NotSent { retryable: false };
            if plan.name == CommandName::GetMore && !proxy_gave_up {
                self.ctx.pins.unpin_cursors(&plan.cursor_ids);
            }
            return match result {
                Ok((reply, member)) => (
                    Some(finish(reply, request_id, plan, Some((failure, &member)))),
                    Outcome::ServerError,
                ),
                Err(mut err) => {
                    err.labels = retry::proxy_error_labels(&plan.facts, failure);
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
        if matches!(failure, Failure::NotSent { .. }) {
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
    ) -> Result<(ServerAddress, Pool), ProxyError> {
        match target {
            Target::Pinned(address, kind) => {
                let topology = &self.ctx.topology;
                if plan.cursor_kind.long_poll() && plan.name == CommandName::GetMore {
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
                match self.ctx.topology.select(criteria, buffer, avoid).await {
                    Ok(s) => Ok((s.address, s.pool)),
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
    ) -> Attempt {
        let (address, pool) = match self.target_pool(plan, target, avoid.take()).await {
            Ok(t) => t,
            Err(e) => return Attempt::Failed(Failure::NotSent { retryable: false }, e),
        };
        let mut conn = match pool.check_out().await {
            Ok(c) => c,
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
        let generation = conn.generation;
        let server_labels = conn.hello.max_wire_version >= retry::LABELS_RETRYABLE_WRITES_WIRE_VERSION;
        let sent_at = Instant::now();
        if let Err(e) = conn.send(frame, !plan.more_to_come).await {
            drop(conn);
            *avoid = Some(address.clone());
            return Attempt::Failed(Failure::Network, self.network_error(&address, generation, &e));
        }
        if plan.more_to_come {
            self.confirm_after_unacknowledged(&address, &mut conn).await;
            return Attempt::NoReply;
        }
        let interrupt = conn.interrupt.clone();
        let reply = tokio::select! {
            r = conn.recv() => r,
            _ = interrupt.cancelled() => Err(UpstreamError::Interrupted { address: address.clone() }),
        };
        drop(conn);
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                *avoid = Some(address.clone());
                return Attempt::Failed(Failure::Network, self.network_error(&address, generation, &e));
            }
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
        let pins = &self.ctx.pins;
        match plan.name {
            // Only the cursors the server reports gone; cursorsAlive stay pinned.
            CommandName::KillCursors if info.ok => pins.unpin_cursors(&killed_cursors(msg.body)),
            CommandName::GetMore if info.ok && info.cursor_id == Some(0) => {
                pins.unpin_cursors(&plan.cursor_ids)
            }
            _ => {}
        }
        if let Some(id) = info.cursor_id.filter(|id| *id != 0 && info.ok) {
            pins.pin_cursor(id, address, plan.cursor_kind);
        }
        if let Some(lsid) = &plan.lsid {
            if plan.start_transaction {
                // A transaction exists only once its first statement succeeded.
                if info.ok {
                    pins.pin_transaction(lsid, address);
                }
            } else if info.ok || plan.name == CommandName::AbortTransaction {
                pins.unpin_transaction(lsid);
            }
        }
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

    fn network_error(&self, address: &ServerAddress, generation: u32, e: &UpstreamError) -> ProxyError {
        tracing::warn!(parent: &self.span, member = %address, error = %e, "upstream request failed");
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

/// The ids a killCursors reply reports as no longer open on the server.
fn killed_cursors(reply: &RawDocument) -> Vec<i64> {
    ["cursorsKilled", "cursorsNotFound"]
        .iter()
        .filter_map(|k| reply.get_array(k).ok())
        .flat_map(|a| {
            a.into_iter()
                .filter_map(|v| v.ok().and_then(crate::command::as_i64))
        })
        .collect()
}

fn checkout_error(e: CheckoutError) -> ProxyError {
    let code = match &e {
        CheckoutError::Timeout { .. } => ErrorCode::NetworkTimeout,
        CheckoutError::Connect(u) if u.is_timeout() => ErrorCode::NetworkTimeout,
        _ => ErrorCode::HostUnreachable,
    };
    ProxyError::new(code, e.to_string())
}
