//! One client connection: read a frame, decide, answer locally or forward, write the
//! reply. Upstream connections are held only for the duration of one request.

mod abort;
mod auth;
mod failpoint;
mod forward;
mod io;
mod local;
mod plan;
pub mod refuse;

pub use io::ClientStream;

use failpoint::{with_write_concern_error, FailPointOutcome};

use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::command::{Command, CommandName, Local, Route};
use crate::context::Context;
use crate::errors::{ErrorCode, ProxyError};
use crate::handshake::ClientMetadata;
use crate::metrics::Outcome;
use crate::wire::{
    build_msg, build_reply, compress, decompress, Compressor, Frame, FrameReader, OpCode, OpMsg, WireError,
    DEFAULT_MAX_MESSAGE_SIZE,
};

/// Why a session ended; the label of `mongoplex_client_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    ClientClosed,
    Shutdown,
    Protocol(&'static str),
    Io,
    /// The client took no reply bytes within `client_write_timeout`.
    WriteTimeout,
    /// The client began no message within `client_idle_timeout`.
    IdleTimeout,
}

impl End {
    fn reason(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::Shutdown => "shutdown",
            Self::Protocol(_) => "protocol_error",
            Self::Io => "io_error",
            Self::WriteTimeout => "write_timeout",
            Self::IdleTimeout => "idle_timeout",
        }
    }
}

pub struct Session {
    ctx: Arc<Context>,
    io: ClientStream,
    reader: FrameReader,
    connection_id: i64,
    meta: Option<ClientMetadata>,
    app: Arc<str>,
    driver: Arc<str>,
    compressors: Vec<Compressor>,
    /// `mongoplex_app_requests_total` for this client's app, resolved at handshake.
    app_requests: prometheus::IntCounter,
    /// A frame read while waiting on something else (e.g. during an awaitable hello).
    pending: Option<Frame>,
    cancel: CancellationToken,
    /// The client's own login to the proxy (`client_auth`).
    auth: auth::AuthState,
    /// This client's span (peer, id, app). Events name it as their parent explicitly
    /// instead of the session future entering it on every poll, which cost about 3 % of
    /// the instructions of a proxied ping.
    span: tracing::Span,
}

/// Serves one client until it disconnects or shutdown begins between requests.
pub async fn serve(ctx: Arc<Context>, io: ClientStream, peer: String, cancel: CancellationToken) {
    let Some(io) = tls_handshake(&ctx, io, &peer).await else {
        return;
    };
    let connection_id = ctx.next_connection_id();
    let span = tracing::info_span!("client", peer = %peer, id = connection_id, app = tracing::field::Empty);
    let unknown: Arc<str> = Arc::from(crate::metrics::apps::UNKNOWN);
    let app_requests = ctx.metrics.requests_by_app.with_label_values(&[&*unknown]);
    let session = Session {
        ctx,
        io,
        reader: FrameReader::new(),
        connection_id,
        meta: None,
        app: unknown.clone(),
        driver: unknown,
        compressors: Vec::new(),
        app_requests,
        pending: None,
        cancel,
        auth: auth::AuthState::default(),
        span,
    };
    session.run().await;
}

/// With `tls_cert_file`, a TCP client must open with a TLS handshake, within
/// `client_read_timeout`; a plaintext client or a failed handshake is closed.
async fn tls_handshake(ctx: &Context, io: ClientStream, peer: &str) -> Option<ClientStream> {
    let Some(tls) = &ctx.config.client_tls else {
        return Some(io);
    };
    let tcp = match io {
        ClientStream::Tcp(tcp) => tcp,
        other => return Some(other),
    };
    match tokio::time::timeout(ctx.config.client_read_timeout, tls.acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(ClientStream::Tls(Box::new(stream))),
        Ok(Err(e)) => {
            if let Some(held_back) = ctx.throttles.client_protocol.admit() {
                tracing::warn!(%peer, error = %e, held_back, "closing client: TLS handshake failed (plaintext clients are refused when tls_cert_file is set)");
            }
            None
        }
        Err(_) => None,
    }
}

impl Session {
    fn max_message(&self) -> usize {
        DEFAULT_MAX_MESSAGE_SIZE
    }

    async fn run(mut self) {
        self.ctx.metrics.client_opened.inc();
        self.gauge(1);
        // Created once: registering a cancellation waiter per request costs a lock.
        let cancel = self.cancel.clone();
        let mut cancelled = std::pin::pin!(cancel.cancelled_owned());
        let end = loop {
            let frame = match self.next_frame(cancelled.as_mut()).await {
                Ok(f) => f,
                Err(end) => break end,
            };
            self.ctx.metrics.client_bytes_in.inc_by(frame.len() as u64);
            // A large message's budget lease is held until its request is done.
            let lease = self.reader.take_lease();
            // Boxed so that an idle session keeps only its small read state, not the
            // request path's (measured: 3.4 KB of future per client otherwise).
            let handled = Box::pin(self.handle(frame)).await;
            drop(lease);
            if let Err(end) = handled {
                break end;
            }
        };
        match end {
            End::Protocol(kind) => {
                self.ctx
                    .metrics
                    .client_protocol_errors
                    .with_label_values(&[kind])
                    .inc();
            }
            End::Io => tracing::debug!(parent: &self.span, "client connection failed"),
            _ => {}
        }
        tracing::debug!(parent: &self.span, reason = end.reason(), "client disconnected");
        self.ctx
            .metrics
            .client_closed
            .with_label_values(&[&self.app, &self.driver, end.reason()])
            .inc();
        self.gauge(-1);
        let _ = self.io.shutdown().await;
    }

    fn gauge(&self, delta: i64) {
        self.ctx
            .metrics
            .client_connections
            .with_label_values(&[&self.app, &self.driver])
            .add(delta);
    }

    async fn next_frame(
        &mut self,
        cancelled: std::pin::Pin<&mut tokio_util::sync::WaitForCancellationFutureOwned>,
    ) -> Result<Frame, End> {
        if let Some(f) = self.pending.take() {
            return Ok(f);
        }
        let max = self.max_message();
        // Read per message: a reload may change them ([`crate::reload`]).
        let (deadline, idle) = {
            let c = self.ctx.current();
            (c.client_read_timeout, c.client_idle_timeout)
        };
        // The reader holds no buffer between messages (the first read of one goes to the
        // stack), so a parked client costs only its socket and this session. Once a
        // message has begun, a stalled sender must not hold its buffer forever; the timer
        // is armed only if the message did not arrive in one read.
        let mut cancelled = cancelled;
        loop {
            let budget = Some(&self.ctx.memory);
            let read = self
                .reader
                .next_bounded(&mut self.io, max, deadline, idle, budget);
            let result = tokio::select! {
                biased;
                _ = cancelled.as_mut() => return Err(End::Shutdown),
                r = read => r,
            };
            return match result {
                Ok(Some(f)) => Ok(f),
                Ok(None) => Err(End::ClientClosed),
                Err(WireError::Io(_)) => Err(End::Io),
                Err(WireError::Truncated(_)) => Err(End::ClientClosed),
                Err(WireError::Idle(ms)) => {
                    tracing::debug!(parent: &self.span, idle_ms = ms, "closing idle client");
                    Err(End::IdleTimeout)
                }
                Err(e @ WireError::OverBudget { request_id, .. }) => {
                    // Boxed so that an idle session's future stays small.
                    Box::pin(self.refuse_over_budget(&e, request_id, max, deadline)).await?;
                    continue;
                }
                Err(e) => Err(self.protocol_error(&e)),
            };
        }
    }

    /// A large message that found no room in the buffer budget: read off and dropped as
    /// it arrives, then answered with an error; the connection carries on.
    async fn refuse_over_budget(
        &mut self,
        e: &WireError,
        request_id: i32,
        max: usize,
        deadline: std::time::Duration,
    ) -> Result<(), End> {
        let err = self.budget_refusal(e, "refusing a large message: buffer budget spent");
        match self.reader.discard_message(&mut self.io, max, deadline).await {
            Ok(true) => {}
            Ok(false) => return Err(End::ClientClosed),
            Err(WireError::Io(_)) => return Err(End::Io),
            Err(e) => return Err(self.protocol_error(&e)),
        }
        self.reply_error(request_id, &err, None).await
    }

    /// A compressed message whose inflated size found no room in the buffer budget after
    /// waiting `waited`: an error, and the connection carries on (the compressed bytes
    /// were read whole).
    async fn refuse_inflation(
        &mut self,
        frame: &Frame,
        len: usize,
        waited: std::time::Duration,
    ) -> Result<(), End> {
        let e = WireError::OverBudget {
            len,
            limit: self.ctx.memory.limit(),
            waited_ms: waited.as_millis(),
            request_id: frame.request_id(),
        };
        let err = self.budget_refusal(&e, "refusing a compressed message: buffer budget spent");
        self.reply_error(frame.request_id(), &err, None).await
    }

    /// Counts and logs a refusal for the buffer budget; the error document for it.
    fn budget_refusal(&self, e: &WireError, what: &'static str) -> ProxyError {
        self.ctx.metrics.buffer_budget_refusals.inc();
        tracing::warn!(parent: &self.span, error = %e, "{what}");
        ProxyError::new(ErrorCode::ExceededTimeLimit, e.to_string())
    }

    fn protocol_error(&self, e: &WireError) -> End {
        if let Some(held_back) = self.ctx.throttles.client_protocol.admit() {
            tracing::warn!(parent: &self.span, error = %e, held_back, "closing client: bad message");
        }
        End::Protocol(e.kind())
    }

    async fn handle(&mut self, frame: Frame) -> Result<(), End> {
        let started = Instant::now();
        // A few compressed bytes may announce a message of many megabytes: its size is
        // leased from the buffer budget before it is inflated, held while it is handled.
        let mut _inflated = None;
        let (frame, compressor) = if frame.op_code() == Some(OpCode::Compressed) {
            let len = crate::wire::decompressed_len(&frame).unwrap_or(0);
            if len > crate::memory::BUDGETED_ABOVE && len <= self.max_message() {
                let waiting = Instant::now();
                match self.ctx.memory.lease(len, crate::memory::MAX_WAIT).await {
                    Some(lease) => _inflated = Some(lease),
                    None => return Box::pin(self.refuse_inflation(&frame, len, waiting.elapsed())).await,
                }
            }
            decompress(&frame, self.max_message()).map_err(|e| self.protocol_error(&e))?
        } else {
            (frame, None)
        };
        match frame.op_code() {
            Some(OpCode::Msg) => self.handle_msg(frame, compressor, started).await,
            Some(OpCode::Query) => self.handle_query(frame).await,
            _ => Err(self.protocol_error(&WireError::malformed("request", "clients may not send OP_REPLY"))),
        }
    }

    async fn handle_msg(
        &mut self,
        frame: Frame,
        compressor: Option<Compressor>,
        started: Instant,
    ) -> Result<(), End> {
        let request_id = frame.request_id();
        let mut write_concern_error = None;
        let plan = {
            let msg = match OpMsg::parse(&frame) {
                Ok(m) => m,
                Err(e @ (WireError::BadChecksum { .. } | WireError::Malformed { .. })) => {
                    // The frame boundary is intact, so the stream stays usable: answer
                    // with an error and carry on.
                    self.ctx
                        .metrics
                        .client_protocol_errors
                        .with_label_values(&[e.kind()])
                        .inc();
                    if let Some(held_back) = self.ctx.throttles.client_protocol.admit() {
                        tracing::warn!(parent: &self.span, error = %e, held_back, "rejecting malformed OP_MSG");
                    }
                    let err = ProxyError::new(ErrorCode::ProtocolError, e.to_string());
                    return self.reply_error(request_id, &err, compressor).await;
                }
                Err(e) => return Err(self.protocol_error(&e)),
            };
            let cmd = Command::parse(msg.body);
            if self.ctx.failpoints.is_some() {
                match self
                    .test_fail_point(&cmd, msg.body, request_id, compressor)
                    .await?
                {
                    FailPointOutcome::Answered => return Ok(()),
                    FailPointOutcome::Forward(wce) => write_concern_error = wce,
                }
            }
            if cmd.known.is_hello() {
                let known = cmd.known;
                self.hello(request_id, &cmd, msg.body, msg.flags, compressor)
                    .await?;
                self.ctx
                    .requests
                    .record(known, Outcome::Ok, started.elapsed().as_secs_f64());
                return Ok(());
            }
            self.app_requests.inc();
            let known = cmd.known;
            match known.spec().route {
                Route::Local(Local::Auth) => {
                    let done = Box::pin(self.sasl(request_id, &cmd, msg.body)).await;
                    self.ctx
                        .requests
                        .record(known, Outcome::Ok, started.elapsed().as_secs_f64());
                    return done;
                }
                Route::Local(Local::Logout) => return self.logout(request_id).await,
                _ => {}
            }
            if let Some(err) = self.refusal(&cmd, msg.body) {
                self.ctx.requests.record(known, Outcome::ProxyError, 0.0);
                return self.reply_error(request_id, &err, compressor).await;
            }
            if known == CommandName::ConnectionStatus {
                if let Some(done) = self.connection_status(request_id).await {
                    return done;
                }
            }
            plan::Plan::new(&cmd, &msg, &self.ctx.pins)
        };
        let (reply, outcome) = self.forward(&plan, frame, request_id).await;
        let reply = match (reply, write_concern_error) {
            (Some(r), Some(wce)) => Some(with_write_concern_error(r, wce)),
            (r, _) => r,
        };
        if let Some(reply) = reply {
            self.write(reply, compressor.filter(|_| plan.compressible))
                .await?;
        }
        self.ctx
            .requests
            .record(plan.name, outcome, started.elapsed().as_secs_f64());
        Ok(())
    }

    async fn reply_error(
        &mut self,
        request_id: i32,
        err: &ProxyError,
        compressor: Option<Compressor>,
    ) -> Result<(), End> {
        let doc = err.to_document();
        let reply = build_msg(0, request_id, 0, doc.as_bytes());
        self.write(reply, compressor).await
    }

    /// Writes a reply, compressed with the client's compressor when it used one.
    async fn write(&mut self, reply: Frame, compressor: Option<Compressor>) -> Result<(), End> {
        let reply = match compressor {
            Some(c) => compress(&reply, c).unwrap_or(reply),
            None => reply,
        };
        self.ctx.metrics.client_bytes_out.inc_by(reply.len() as u64);
        let bytes = reply.as_bytes();
        // Most replies fit the socket's buffer at once: no timer for them.
        let sent = match self.io.try_write(bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(_) => return Err(End::Io),
        };
        if sent == bytes.len() {
            return Ok(());
        }
        // A large reply waiting on a slow client counts against the buffer budget, so
        // that new large requests wait instead of adding to it.
        let _held =
            (bytes.len() > crate::memory::BUDGETED_ABOVE).then(|| self.ctx.memory.charge(bytes.len()));
        // A client that stops reading must not hold its reply (and this session) forever.
        // The bound is on the whole rest of the reply, as a client that reads a trickle
        // holds it just the same.
        let limit = self.ctx.current().client_write_timeout;
        let buffered = self.io.buffered();
        let io = &mut self.io;
        let rest = &bytes[sent..];
        let send = async move {
            io.write_all(rest).await?;
            if buffered {
                io.flush().await?;
            }
            Ok::<(), std::io::Error>(())
        };
        match tokio::time::timeout(limit, send).await {
            Ok(r) => r.map_err(|_| End::Io),
            Err(_) => {
                tracing::warn!(parent: &self.span, unsent = bytes.len() - sent, timeout_ms = limit.as_millis(), "closing client: it stopped reading its reply");
                Err(End::WriteTimeout)
            }
        }
    }

    async fn write_legacy(&mut self, request_id: i32, doc: &[u8]) -> Result<(), End> {
        let reply = build_reply(0, request_id, doc);
        self.write(reply, None).await
    }
}
