//! The session side of [`crate::failpoint`]: answering `configureFailPoint` and carrying
//! out a fired `failCommand` (block, close, error, or a writeConcernError on the reply).

use bson::{rawdoc, Bson, Document, RawDocument};

use super::{End, Session};
use crate::command::{Command, ReplyInfo};
use crate::errors::{ErrorCode, ProxyError};
use crate::failpoint::{InjectedWriteConcernError, LabelInputs, Labels, Target};
use crate::wire::{build_msg, Compressor, Frame};

pub(super) enum FailPointOutcome {
    /// The proxy answered (or closed); nothing goes upstream.
    Answered,
    /// Forward the command; attach this writeConcernError to its reply.
    Forward(Option<InjectedWriteConcernError>),
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
            labels: LabelInputs {
                retryable_write: cmd.is_retryable_write(),
                txn_end: cmd.known.ends_transaction(),
                in_transaction: cmd.in_transaction,
            },
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

/// The reply with `writeConcernError` set, as a server's failCommand attaches it, and
/// the labels the server gives the whole reply: the fail point's own, or those computed
/// from the reply's code and the writeConcernError's, added to any the reply carries.
pub(super) fn with_write_concern_error(reply: Frame, wce: InjectedWriteConcernError) -> Frame {
    let attach = |body: &RawDocument| {
        let info = ReplyInfo::parse(body);
        let code = if info.ok { None } else { info.code };
        let mut doc = Document::try_from(body).ok()?;
        let mut labels: Vec<String> = match &wce.labels {
            Labels::Given(_) => Vec::new(),
            Labels::Computed(_) => doc
                .get_array("errorLabels")
                .map(|a| a.iter().filter_map(|l| l.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
        };
        for l in wce.labels.for_reply(code, wce.code) {
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
        doc.insert("writeConcernError", wce.error.clone());
        doc.remove("errorLabels");
        if !labels.is_empty() {
            doc.insert(
                "errorLabels",
                labels.into_iter().map(Bson::from).collect::<Vec<_>>(),
            );
        }
        doc.to_vec().ok()
    };
    super::forward::rewrite_body(&reply, attach).unwrap_or(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::OpMsg;

    fn attach(reply: Document, labels: Labels, wce_code: i32) -> Document {
        let frame = build_msg(0, 7, 0, &reply.to_vec().unwrap());
        let wce = InjectedWriteConcernError {
            error: bson::doc! { "code": wce_code, "errmsg": "injected" },
            code: Some(wce_code),
            labels,
        };
        let out = with_write_concern_error(frame, wce);
        assert_eq!(out.response_to(), 7);
        let msg = OpMsg::parse(&out).unwrap();
        Document::try_from(msg.body).unwrap()
    }

    fn labels(d: &Document) -> Vec<&str> {
        d.get_array("errorLabels")
            .map(|a| a.iter().filter_map(Bson::as_str).collect())
            .unwrap_or_default()
    }

    #[test]
    fn write_concern_errors_carry_the_servers_labels() {
        let retryable = Labels::Computed(LabelInputs {
            retryable_write: true,
            ..LabelInputs::default()
        });
        let statement = Labels::Computed(LabelInputs {
            in_transaction: true,
            ..LabelInputs::default()
        });
        let ok = bson::doc! { "ok": 1.0, "n": 1 };
        let failed = bson::doc! { "ok": 0.0, "code": 112, "errmsg": "conflict",
        "errorLabels": ["TransientTransactionError"] };
        let duplicate = bson::doc! { "ok": 0.0, "code": 11000, "errmsg": "dup" };
        let cases: &[(&Document, &Labels, i32, &[&str])] = &[
            (&ok, &retryable, 91, &["RetryableWriteError"]),
            (&ok, &retryable, 64, &[]),
            (&ok, &statement, 91, &[]),
            (&ok, &Labels::Given(vec![]), 91, &[]),
            (&ok, &Labels::Given(vec!["X".into()]), 64, &["X"]),
            // The reply's own labels stay, computed ones join them.
            (&failed, &statement, 91, &["TransientTransactionError"]),
            (&duplicate, &retryable, 91, &["RetryableWriteError"]),
            (&duplicate, &retryable, 64, &[]),
        ];
        for (reply, l, code, want) in cases {
            let d = attach((*reply).clone(), (*l).clone(), *code);
            assert_eq!(
                d.get_document("writeConcernError")
                    .unwrap()
                    .get_i32("code")
                    .unwrap(),
                *code
            );
            assert_eq!(labels(&d).as_slice(), *want, "{reply:?} {l:?} {code}");
        }
    }
}
