//! The implicit abort. A mongos that fails a statement of a transaction itself, because
//! a shard's connection dropped or no shard could be reached in time, aborts the
//! transaction on its participants before it answers. The driver's commit then fails
//! with NoSuchTransaction (labelled TransientTransactionError by the server), and nothing
//! the transaction wrote is kept. The proxy does the same when it answers a statement
//! with an error of its own, so a client that commits after that error cannot commit a
//! transaction whose last statement may or may not have run.
//!
//! Errors the server itself returns are not the proxy's to act on: the server has
//! already decided what they do to the transaction. Neither are fail points fired at the
//! proxy: a mongos evaluates its own before the statement runs, and keeps the
//! transaction.

use std::time::{Duration, Instant};

use bson::{rawdoc, RawDocument};

use super::plan::Plan;
use super::Session;
use crate::command::ReplyInfo;
use crate::retry::Failure;
use crate::router::{Criteria, PinKind, Target};
use crate::wire::{build_msg, OpMsg};

/// How long the proxy spends on an implicit abort before it answers the client anyway.
const ABORT_TIMEOUT: Duration = Duration::from_secs(2);

/// How an implicit abort ended, for the log and the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AbortResult {
    Aborted,
    /// The server no longer had the transaction.
    NoSuchTransaction,
    /// No member could take the abort, or it failed; the server's transaction
    /// lifetime limit ends the transaction instead.
    Failed,
}

impl AbortResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aborted => "aborted",
            Self::NoSuchTransaction => "no_such_transaction",
            Self::Failed => "failed",
        }
    }
}

/// Whether a proxy-made failure of this request aborts its transaction, and which one:
/// a statement inside a transaction (not its commit or abort), unless it is the first
/// statement and never reached a server, so no transaction exists.
pub(super) fn implicit_abort(plan: &Plan, failure: Failure) -> Option<(&[u8], i64)> {
    if !plan.facts.in_transaction || plan.name.ends_transaction() || plan.more_to_come {
        return None;
    }
    let never_sent = matches!(
        failure,
        Failure::NotSent { .. } | Failure::Expired { sent: false }
    );
    if plan.start_transaction && never_sent {
        return None;
    }
    let (lsid, txn_number) = plan.txn_id.as_ref()?;
    Some((lsid.as_slice(), *txn_number))
}

impl Session {
    /// Aborts the session's transaction on the member running it (the primary when no
    /// pin exists yet), within [`ABORT_TIMEOUT`].
    pub(super) async fn abort_implicitly(
        &self,
        target: &Target,
        lsid: &[u8],
        txn_number: i64,
    ) -> AbortResult {
        let deadline = Instant::now() + ABORT_TIMEOUT;
        let result = match tokio::time::timeout_at(
            deadline.into(),
            self.send_abort(target, lsid, txn_number, deadline),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => AbortResult::Failed,
        };
        self.ctx
            .metrics
            .implicit_aborts
            .with_label_values(&[result.as_str()])
            .inc();
        tracing::info!(parent: &self.span, txn_number, result = result.as_str(), "implicit abort of a transaction whose statement the proxy failed");
        result
    }

    async fn send_abort(
        &self,
        target: &Target,
        lsid: &[u8],
        txn_number: i64,
        deadline: Instant,
    ) -> AbortResult {
        let Ok(lsid) = RawDocument::from_bytes(lsid) else {
            return AbortResult::Failed;
        };
        let topology = &self.ctx.topology;
        let pinned = match target {
            Target::Pinned(address, PinKind::Transaction) => Some(address.clone()),
            _ => self.ctx.pins.transaction(lsid.as_bytes()),
        };
        // The failure that caused the abort often paused the member's pool until it is
        // re-checked (a dropped connection does): then wait for the primary, as a commit
        // does, and use it.
        let mut conn = None;
        if let Some(pool) = pinned.and_then(|a| topology.pool(&a)) {
            conn = pool.check_out_by(Some(deadline)).await.ok();
        }
        if conn.is_none() {
            if let Ok(s) = topology
                .select(&Criteria::Primary, true, None, Some(deadline))
                .await
            {
                conn = s.pool.check_out_by(Some(deadline)).await.ok();
            }
        }
        let Some(mut conn) = conn else {
            return AbortResult::Failed;
        };
        let body = rawdoc! {
            "abortTransaction": 1,
            "lsid": lsid.to_owned(),
            "txnNumber": txn_number,
            "autocommit": false,
            "$db": "admin",
        };
        let mut frame = build_msg(0, 0, 0, body.as_bytes());
        if conn.send_by(&mut frame, true, Some(deadline)).await.is_err() {
            return AbortResult::Failed;
        }
        let Ok(reply) = conn.recv_by(Some(deadline)).await else {
            return AbortResult::Failed;
        };
        drop(conn);
        let Ok(msg) = OpMsg::parse(&reply) else {
            return AbortResult::Failed;
        };
        let info = ReplyInfo::parse(msg.body);
        const NO_SUCH_TRANSACTION: i32 = 251;
        match (info.ok, info.code) {
            (true, _) => AbortResult::Aborted,
            (false, Some(NO_SUCH_TRANSACTION)) => AbortResult::NoSuchTransaction,
            _ => AbortResult::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::plan::tests::{pins, plan};
    use super::*;

    #[test]
    fn which_failures_abort_the_transaction() {
        let lsid = rawdoc! { "id": 1 };
        let statement =
            rawdoc! { "insert": "c", "lsid": lsid.clone(), "txnNumber": 3_i64, "autocommit": false };
        let first = rawdoc! { "insert": "c", "lsid": lsid.clone(), "txnNumber": 3_i64, "autocommit": false, "startTransaction": true };
        let commit =
            rawdoc! { "commitTransaction": 1, "lsid": lsid.clone(), "txnNumber": 3_i64, "autocommit": false };
        let retryable = rawdoc! { "insert": "c", "lsid": lsid.clone(), "txnNumber": 3_i64 };
        let plain = rawdoc! { "insert": "c" };
        let network = Failure::Network;
        let not_sent = Failure::NotSent { retryable: true };
        let cases = [
            (
                "a statement that met a dropped connection",
                &statement,
                network,
                true,
            ),
            ("a statement that timed out", &statement, Failure::Timeout, true),
            (
                "a statement that never reached a member",
                &statement,
                not_sent,
                true,
            ),
            (
                "a statement whose maxTimeMS ran out after it was sent",
                &statement,
                Failure::Expired { sent: true },
                true,
            ),
            ("the first statement, sent", &first, network, true),
            (
                "the first statement, never sent: no transaction exists",
                &first,
                not_sent,
                false,
            ),
            (
                "the first statement, expired unsent",
                &first,
                Failure::Expired { sent: false },
                false,
            ),
            ("commit: the driver retries it", &commit, network, false),
            (
                "a retryable write outside a transaction",
                &retryable,
                network,
                false,
            ),
            ("a plain write", &plain, network, false),
        ];
        let pins = pins();
        for (what, body, failure, aborts) in cases {
            let p = plan(body, &pins);
            let got = implicit_abort(&p, failure);
            assert_eq!(got.is_some(), aborts, "{what}");
            if let Some((l, n)) = got {
                assert_eq!((l, n), (lsid.as_bytes(), 3), "{what}");
            }
        }
    }
}
