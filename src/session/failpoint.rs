//! The session side of [`crate::failpoint`]: answering `configureFailPoint` and carrying
//! out a fired `failCommand` (block, close, error, or a writeConcernError on the reply).

use bson::{rawdoc, Document, RawDocument};

use super::{End, Session};
use crate::command::Command;
use crate::errors::{ErrorCode, ProxyError};
use crate::failpoint::Target;
use crate::wire::{build_msg, Compressor, Frame};

pub(super) enum FailPointOutcome {
    /// The proxy answered (or closed); nothing goes upstream.
    Answered,
    /// Forward the command; attach this writeConcernError to its reply.
    Forward(Option<Document>),
}

impl Session {
    pub(super) async fn test_fail_point(
        &mut self,
        cmd: &Command<'_>,
        body: &RawDocument,
        request_id: i32,
        compressor: Option<Compressor>,
    ) -> Result<FailPointOutcome, End> {
        let Some(fp) = &self.ctx.failpoints else {
            return Ok(FailPointOutcome::Forward(None));
        };
        if cmd.name == "configureFailPoint" && body.get_str("configureFailPoint").ok() == Some("failCommand")
        {
            let reply = match fp.configure(body) {
                Ok(()) => rawdoc! { "ok": 1.0 },
                Err(why) => ProxyError::new(ErrorCode::BadValue, why).to_document(),
            };
            tracing::info!(parent: &self.span, "failCommand fail point configured at the proxy");
            self.write(build_msg(0, request_id, 0, reply.as_bytes()), compressor)
                .await?;
            return Ok(FailPointOutcome::Answered);
        }
        let target = Target {
            name: cmd.name,
            app_name: self.meta.as_ref().and_then(|m| m.app_name.as_deref()),
            retryable_write: cmd.is_retryable_write(),
            txn_end: cmd.known.ends_transaction(),
            in_transaction: cmd.in_transaction,
        };
        let Some(fire) = fp.fire(&target) else {
            return Ok(FailPointOutcome::Forward(None));
        };
        if let Some(block) = fire.block {
            tokio::time::sleep(block).await;
        }
        if fire.close_connection {
            tracing::info!(parent: &self.span, command = cmd.name, "failCommand: closing the client connection");
            return Err(End::ClientClosed);
        }
        if let Some(err) = fire.error {
            let bytes = err.to_vec().unwrap_or_default();
            self.write(build_msg(0, request_id, 0, &bytes), compressor)
                .await?;
            return Ok(FailPointOutcome::Answered);
        }
        Ok(FailPointOutcome::Forward(fire.write_concern_error))
    }
}

/// The reply with `writeConcernError` set, as a server's failCommand attaches it.
pub(super) fn with_write_concern_error(reply: Frame, wce: Document) -> Frame {
    let attach = |body: &RawDocument| {
        let mut doc = Document::try_from(body).ok()?;
        doc.insert("writeConcernError", wce);
        doc.to_vec().ok()
    };
    super::forward::rewrite_body(&reply, attach).unwrap_or(reply)
}
