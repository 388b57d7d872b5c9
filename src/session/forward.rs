//! The forward path: select a member, check out a connection, exchange one request and
//! reply, check the connection back in before writing to the client.

use std::time::Instant;

use super::plan::Plan;
use super::Session;
use crate::address::ServerAddress;
use crate::command::{CommandName, ReplyInfo};
use crate::errors::{ErrorCode, ProxyError};
use crate::metrics::Outcome;
use crate::pool::{CheckoutError, Pool};
use crate::router::{PinKind, Target};
use crate::topology::SelectError;
use crate::upstream::UpstreamError;
use crate::wire::{build_msg, refresh_checksum, set_msg_flags, Frame, OpMsg, MSG_EXHAUST_ALLOWED};

impl Session {
    /// Returns the reply to send (none for moreToCome requests) and the outcome.
    pub(super) async fn forward(
        &mut self,
        plan: &Plan,
        mut frame: Frame,
        request_id: i32,
    ) -> (Option<Frame>, Outcome) {
        match self.exchange(plan, &mut frame).await {
            Ok(Some(mut reply)) => {
                reply.set_response_to(request_id);
                refresh_checksum(&mut reply);
                let outcome = match OpMsg::parse(&reply) {
                    Ok(m) if ReplyInfo::parse(m.body).ok => Outcome::Ok,
                    _ => Outcome::ServerError,
                };
                (Some(reply), outcome)
            }
            Ok(None) => (None, Outcome::Ok),
            Err(err) => {
                let err = err.retry_labels(plan.retryable_write, plan.in_transaction);
                tracing::debug!(command = plan.name.as_str(), error = %err.message, "request failed in the proxy");
                if plan.more_to_come {
                    return (None, Outcome::ProxyError);
                }
                let doc = err.to_document();
                (
                    Some(build_msg(0, request_id, 0, doc.as_bytes())),
                    Outcome::ProxyError,
                )
            }
        }
    }

    async fn target_pool(&self, plan: &Plan) -> Result<(ServerAddress, Pool), ProxyError> {
        match &plan.target {
            Target::Pinned(address, kind) => match self.ctx.topology.pool(address) {
                Some(pool) => Ok((address.clone(), pool)),
                None => Err(match kind {
                    PinKind::Cursor => ProxyError::new(
                        ErrorCode::HostUnreachable,
                        format!("the member {address} holding this cursor is no longer part of the topology"),
                    ),
                    PinKind::Transaction => ProxyError::new(
                        ErrorCode::HostUnreachable,
                        format!(
                            "the member {address} running this transaction is no longer part of the topology"
                        ),
                    ),
                }),
            },
            Target::Select(criteria) => match self.ctx.topology.select(criteria).await {
                Ok(s) => Ok((s.address, s.pool)),
                Err(e @ SelectError::InvalidReadPreference(_)) => {
                    Err(ProxyError::new(ErrorCode::InvalidOptions, e.to_string()))
                }
                Err(e) => Err(ProxyError::new(
                    ErrorCode::FailedToSatisfyReadPreference,
                    e.to_string(),
                )),
            },
        }
    }

    async fn exchange(&mut self, plan: &Plan, frame: &mut Frame) -> Result<Option<Frame>, ProxyError> {
        let (address, pool) = self.target_pool(plan).await?;
        let mut conn = pool.check_out().await.map_err(checkout_error)?;
        if plan.exhaust_allowed {
            // Exhaust replies would tie the connection to this client; ask for one reply.
            set_msg_flags(frame, plan.flags & !MSG_EXHAUST_ALLOWED);
        }
        let generation = conn.generation;
        let sent_at = Instant::now();
        if let Err(e) = conn.send(frame, !plan.more_to_come).await {
            drop(conn);
            return Err(self.network_error(&address, generation, &e));
        }
        if plan.more_to_come {
            return Ok(None);
        }
        let reply = conn.recv().await;
        drop(conn);
        let reply = reply.map_err(|e| self.network_error(&address, generation, &e))?;
        pool_roundtrip(&pool, sent_at);
        self.after_reply(plan, &address, generation, &reply);
        Ok(Some(reply))
    }

    /// Updates pins and reports state changes seen in the reply.
    fn after_reply(&self, plan: &Plan, address: &ServerAddress, generation: u32, reply: &Frame) {
        let Ok(msg) = OpMsg::parse(reply) else { return };
        let info = ReplyInfo::parse(msg.body);
        let pins = &self.ctx.pins;
        match plan.name {
            CommandName::KillCursors => pins.unpin_cursors(&plan.cursor_ids),
            CommandName::GetMore if !info.ok || info.cursor_id == Some(0) => {
                pins.unpin_cursors(&plan.cursor_ids)
            }
            _ => {}
        }
        if let Some(id) = info.cursor_id.filter(|id| *id != 0 && info.ok) {
            pins.pin_cursor(id, address);
        }
        if let Some(lsid) = &plan.lsid {
            if plan.start_transaction {
                pins.pin_transaction(lsid, address);
            } else if info.ok || plan.name == CommandName::AbortTransaction {
                pins.unpin_transaction(lsid);
            }
        }
        if !info.ok || info.write_concern_code.is_some() {
            if let Some(code) = info.code {
                self.ctx
                    .metrics
                    .server_errors
                    .with_label_values(&[code.to_string().as_str()])
                    .inc();
            }
            self.ctx.topology.on_reply_error(address, generation, &info);
        }
    }

    fn network_error(&self, address: &ServerAddress, generation: u32, e: &UpstreamError) -> ProxyError {
        self.ctx.topology.on_network_error(address, generation, e);
        let code = if e.is_timeout() {
            ErrorCode::NetworkTimeout
        } else {
            ErrorCode::HostUnreachable
        };
        ProxyError::new(code, e.to_string())
    }
}

fn pool_roundtrip(pool: &Pool, sent_at: Instant) {
    pool.record_roundtrip(sent_at.elapsed().as_secs_f64());
}

fn checkout_error(e: CheckoutError) -> ProxyError {
    let code = match &e {
        CheckoutError::Timeout { .. } => ErrorCode::NetworkTimeout,
        CheckoutError::Connect(u) if u.is_timeout() => ErrorCode::NetworkTimeout,
        _ => ErrorCode::HostUnreachable,
    };
    ProxyError::new(code, e.to_string())
}
