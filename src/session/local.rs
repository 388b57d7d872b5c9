//! Commands the proxy answers itself: hello/isMaster (OP_MSG and legacy OP_QUERY,
//! including the awaitable and streaming forms). The authentication commands are
//! [`super::auth`]'s.

use std::time::Duration;

use bson::RawDocument;

use super::{End, Session};
use crate::command::{truthy, Command, CommandName};
use crate::errors::{ErrorCode, ProxyError};
use crate::handshake::{
    hello_reply, negotiate_compression, ClientMetadata, HelloInput, ProxyTopologyVersion,
};
use crate::wire::{build_msg, Compressor, Frame, OpQuery, MSG_EXHAUST_ALLOWED, MSG_MORE_TO_COME};

fn wait_budget(s: &Session) -> Duration {
    s.ctx
        .config
        .server_selection_timeout
        .min(s.ctx.config.connect.connect_timeout)
}

impl Session {
    fn record_metadata(&mut self, body: &RawDocument) {
        if self.meta.is_some() {
            return;
        }
        let Some(meta) = ClientMetadata::from_hello(body) else {
            return;
        };
        let m = &self.ctx.metrics;
        self.gauge(-1);
        self.app = m.apps.label(meta.app_name.as_deref());
        self.app_requests = m.requests_by_app.with_label_values(&[&*self.app]);
        self.driver = m.drivers.label(meta.driver_name.as_deref());
        self.gauge(1);
        m.client_handshakes
            .with_label_values(&[&self.app, &self.driver])
            .inc();
        self.span.record("app", &*self.app);
        tracing::debug!(parent: &self.span, app = ?meta.app_name, driver = ?meta.driver_name, version = ?meta.driver_version, "client handshake");
        self.meta = Some(meta);
    }

    fn hello_doc(
        &self,
        legacy: bool,
        hello_ok: bool,
        limits: &crate::handshake::UpstreamLimits,
        tv: ProxyTopologyVersion,
        extra: &bson::Document,
    ) -> Vec<u8> {
        let input = HelloInput {
            legacy,
            hello_ok,
            limits,
            topology_version: tv,
            connection_id: self.connection_id,
            compression: &self.compressors,
            now_ms: bson::DateTime::now().timestamp_millis(),
        };
        let mut d = hello_reply(&input);
        for (k, v) in extra {
            d.insert(k.clone(), v.clone());
        }
        d.to_vec().unwrap_or_default()
    }

    fn no_upstream_error(&self) -> ProxyError {
        ProxyError::new(
            ErrorCode::HostUnreachable,
            format!(
                "no upstream server is reachable yet: {}",
                self.ctx.topology.snapshot().summary()
            ),
        )
    }

    pub(super) async fn hello(
        &mut self,
        request_id: i32,
        cmd: &Command<'_>,
        body: &RawDocument,
        flags: u32,
        compressor: Option<Compressor>,
    ) -> Result<(), End> {
        self.record_metadata(body);
        if body.get("compression").ok().flatten().is_some() {
            self.compressors = negotiate_compression(body, &self.ctx.config.compressors);
        }
        let legacy = cmd.known != CommandName::Hello;
        let hello_ok = body.get("helloOk").ok().flatten().is_some_and(truthy);
        let Some(limits) = self.ctx.topology.limits(wait_budget(self)).await else {
            let err = self.no_upstream_error();
            return self.reply_error(request_id, &err, None).await;
        };
        let mut client_tv = cmd.await_topology_version.map(RawDocument::to_owned);
        let max_await = cmd
            .max_await_time_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map(Duration::from_millis);
        let streaming = flags & MSG_EXHAUST_ALLOWED != 0 && client_tv.is_some() && max_await.is_some();
        let mut versions = self.ctx.topology.version();
        // Only the first reply answers the handshake's authentication fields.
        let mut auth_fields = self.hello_auth_fields(body);
        loop {
            let mut more_to_come = streaming;
            if let (Some(tv), Some(wait)) = (&client_tv, max_await) {
                let current = *versions.borrow_and_update();
                if current.matches(tv) {
                    tokio::select! {
                        _ = versions.changed() => {}
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.cancel.cancelled() => return Err(End::Shutdown),
                        r = self.io.readable() => {
                            r.map_err(|_| End::Io)?;
                            // The client spoke (or left) mid-wait: stop streaming.
                            let max = self.max_message();
                            match self.reader.next(&mut self.io, max).await {
                                Ok(Some(f)) => self.pending = Some(f),
                                Ok(None) => return Err(End::ClientClosed),
                                Err(_) => return Err(End::Io),
                            }
                            more_to_come = false;
                        }
                    }
                }
            }
            let tv = *versions.borrow();
            let doc = self.hello_doc(legacy, hello_ok, &limits, tv, &std::mem::take(&mut auth_fields));
            let reply = build_msg(
                0,
                request_id,
                if more_to_come { MSG_MORE_TO_COME } else { 0 },
                &doc,
            );
            // hello replies are never compressed (compression spec).
            let _ = compressor;
            self.write(reply, None).await?;
            if !more_to_come {
                return Ok(());
            }
            client_tv = Some(bson::rawdoc! { "processId": tv.process_id, "counter": tv.counter });
        }
    }

    /// OP_QUERY: only the legacy handshake on `<db>.$cmd` is accepted.
    pub(super) async fn handle_query(&mut self, frame: Frame) -> Result<(), End> {
        let request_id = frame.request_id();
        let q = match OpQuery::parse(&frame) {
            Ok(q) => q,
            Err(e) => return Err(self.protocol_error(&e)),
        };
        let cmd = q.command();
        let name = cmd
            .iter()
            .next()
            .and_then(|e| e.ok())
            .map(|(k, _)| k.as_str())
            .unwrap_or("");
        if q.command_db().is_none() || !CommandName::from_name(name).is_hello() {
            self.ctx
                .metrics
                .client_protocol_errors
                .with_label_values(&["op_query"])
                .inc();
            tracing::warn!(
                parent: &self.span,
                namespace = q.full_collection_name,
                command = name,
                "rejecting OP_QUERY"
            );
            let msg = format!(
                "OP_QUERY is only supported for the hello/isMaster handshake, not {name:?} on {:?}; use OP_MSG (MongoDB 3.6+ drivers)",
                q.full_collection_name
            );
            let err = ProxyError::new(ErrorCode::UnsupportedOpQueryCommand, msg);
            let mut d = err.to_document();
            d.append(bson::cstr!("$err"), err.message.clone());
            return self.write_legacy(request_id, d.as_bytes()).await;
        }
        let cmd = cmd.to_owned();
        self.record_metadata(&cmd);
        if cmd.get("compression").ok().flatten().is_some() {
            self.compressors = negotiate_compression(&cmd, &self.ctx.config.compressors);
        }
        let Some(limits) = self.ctx.topology.limits(wait_budget(self)).await else {
            let d = self.no_upstream_error().to_document();
            return self.write_legacy(request_id, d.as_bytes()).await;
        };
        let tv = *self.ctx.topology.version().borrow();
        let hello_ok = cmd.get("helloOk").ok().flatten().is_some_and(truthy);
        // The Node driver and pymongo 3 handshake here, credentials and all.
        let auth_fields = self.hello_auth_fields(&cmd);
        let doc = self.hello_doc(true, hello_ok, &limits, tv, &auth_fields);
        self.write_legacy(request_id, &doc).await
    }
}
