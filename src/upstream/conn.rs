//! One established connection to an upstream server.

use std::time::{Duration, Instant};

use bson::{rawdoc, RawDocumentBuf};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::stream::UpstreamStream;
use super::{compression, UpstreamError};
use crate::address::ServerAddress;
use crate::command::as_i64;
use crate::metrics::{Direction, UpstreamWire};
use crate::wire::{
    build_msg, refresh_checksum, Compressor, Frame, FrameReader, OpCode, OpMsg, WireError,
    DEFAULT_MAX_MESSAGE_SIZE, MSG_MORE_TO_COME,
};

/// How to reach and greet a server. TLS settings join this struct.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub connect_timeout: Duration,
    /// Bound on waiting for a reply; `None` waits as long as the server takes.
    pub socket_timeout: Option<Duration>,
    /// appName sent to the server in the handshake's client metadata.
    pub app_name: String,
    /// Who pooled connections log in as; monitors clear it.
    pub credential: Option<std::sync::Arc<crate::auth::UpstreamCredential>>,
    /// TLS for every connection, monitors included.
    pub tls: Option<super::tls::TlsSettings>,
    /// Offered in the hello, in the URI's order of preference; empty offers nothing.
    /// Monitors clear it: they send only hello, which is never compressed.
    pub compressors: Vec<Compressor>,
    /// Byte counters of every upstream socket; `None` records nothing (unit tests).
    pub wire_metrics: Option<UpstreamWire>,
    /// Resolves member host names when the `dns_server` setting is given; `None` uses
    /// the system resolver.
    pub dns: Option<crate::srv::dns::Resolver>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            socket_timeout: None,
            app_name: "mongoplex".into(),
            credential: None,
            tls: None,
            compressors: Vec::new(),
            wire_metrics: None,
            dns: None,
        }
    }
}

/// What the handshake reply told us about the server's limits.
#[derive(Debug, Clone)]
pub struct HelloSummary {
    pub max_wire_version: i32,
    pub max_message_size: usize,
    pub reply: RawDocumentBuf,
    /// What this connection compresses its requests with, negotiated in the hello.
    pub compressor: Option<Compressor>,
}

/// A connection with its pool bookkeeping.
#[derive(Debug)]
pub struct UpstreamConn {
    io: UpstreamStream,
    reader: FrameReader,
    pub id: u64,
    pub generation: u32,
    pub address: ServerAddress,
    pub created: Instant,
    pub last_used: Instant,
    next_request_id: i32,
    socket_timeout: Option<Duration>,
    max_message_size: usize,
    /// Set when an exchange failed midway: the connection must not be reused.
    pub broken: bool,
    /// The requestID whose reply has not been read yet; if the connection is returned in
    /// this state (the client went away mid-request) it cannot be reused. A reply must
    /// echo it as responseTo, or the stream is out of step and the connection is broken.
    awaiting_reply: Option<i32>,
    pub hello: HelloSummary,
    /// Set once the hello has negotiated one; until then nothing is compressed.
    compressor: Option<Compressor>,
    wire_metrics: Option<UpstreamWire>,
}

impl UpstreamConn {
    /// TCP connect, then the hello handshake, then (with a credential) authentication,
    /// begun speculatively in the hello. TLS becomes a stage here.
    pub async fn establish(
        address: &ServerAddress,
        id: u64,
        generation: u32,
        opts: &ConnectOptions,
    ) -> Result<Self, UpstreamError> {
        let dial = super::dial::connect(address, opts.dns.as_ref());
        let tcp = match tokio::time::timeout(opts.connect_timeout, dial).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => {
                return Err(UpstreamError::Connect {
                    address: address.clone(),
                    source,
                })
            }
            Err(_) => {
                return Err(UpstreamError::ConnectTimeout {
                    address: address.clone(),
                    ms: opts.connect_timeout.as_millis(),
                })
            }
        };
        configure_socket(&tcp, address);
        let io = match &opts.tls {
            None => UpstreamStream::Tcp(tcp),
            Some(tls) => {
                match tokio::time::timeout(opts.connect_timeout, tls.connect(&address.host, tcp)).await {
                    Ok(Ok(s)) => UpstreamStream::Tls(Box::new(s)),
                    Ok(Err(why)) => {
                        return Err(UpstreamError::Tls {
                            address: address.clone(),
                            why,
                        })
                    }
                    // A plaintext server reads the ClientHello as the start of a message and
                    // waits for the rest: the usual sign of tls=true against plaintext.
                    Err(_) => {
                        return Err(UpstreamError::Tls {
                            address: address.clone(),
                            why: format!(
                        "no TLS handshake within {} ms (connectTimeoutMS): the server did not answer in TLS \
                             (a plaintext server? tls=true was set)",
                        opts.connect_timeout.as_millis()
                    ),
                        })
                    }
                }
            }
        };
        let now = Instant::now();
        let mut conn = Self {
            io,
            reader: FrameReader::new(),
            id,
            generation,
            address: address.clone(),
            created: now,
            last_used: now,
            next_request_id: 1,
            socket_timeout: Some(opts.connect_timeout),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            broken: false,
            awaiting_reply: None,
            hello: HelloSummary {
                max_wire_version: 0,
                max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
                reply: RawDocumentBuf::new(),
                compressor: None,
            },
            compressor: None,
            wire_metrics: opts.wire_metrics.clone(),
        };
        let auth = opts.credential.as_deref().map(crate::auth::hello_fields);
        conn.hello = conn.handshake(opts, auth.as_ref().map(|a| &a.fields)).await?;
        // From here on requests are compressed; the login's own commands never are
        // ([`compression::may_compress`]).
        conn.compressor = conn.hello.compressor;
        if let (Some(cred), Some(begun)) = (opts.credential.as_deref(), auth) {
            let hello = conn.hello.reply.clone();
            crate::auth::authenticate(&mut conn, cred, begun, &hello).await?;
        }
        conn.max_message_size = conn.hello.max_message_size;
        conn.socket_timeout = opts.socket_timeout;
        Ok(conn)
    }

    async fn handshake(
        &mut self,
        opts: &ConnectOptions,
        auth: Option<&RawDocumentBuf>,
    ) -> Result<HelloSummary, UpstreamError> {
        let mut body = rawdoc! {
            "hello": 1,
            "helloOk": true,
            "client": {
                "driver": { "name": "mongoplex", "version": env!("CARGO_PKG_VERSION") },
                "os": { "type": std::env::consts::OS, "architecture": std::env::consts::ARCH },
                "application": { "name": opts.app_name.as_str() },
            },
            "$db": "admin",
        };
        if !opts.compressors.is_empty() {
            let names: bson::RawArrayBuf = opts.compressors.iter().map(|c| c.name()).collect();
            body.append(bson::cstr!("compression"), names);
        }
        for (key, value) in auth.into_iter().flat_map(|a| a.iter().flatten()) {
            body.append(key, value);
        }
        let mut req = build_msg(0, 0, 0, body.as_bytes());
        let reply = self.round_trip(&mut req).await.map_err(|e| match e {
            UpstreamError::Timeout { address, ms } | UpstreamError::WriteTimeout { address, ms } => {
                UpstreamError::ConnectTimeout { address, ms }
            }
            other => UpstreamError::Handshake {
                address: self.address.clone(),
                why: other.to_string(),
            },
        })?;
        let handshake_err = |why: String| UpstreamError::Handshake {
            address: self.address.clone(),
            why,
        };
        let msg = OpMsg::parse(&reply).map_err(|e| handshake_err(e.to_string()))?;
        let doc = msg.body;
        let ok = doc.get("ok").ok().flatten().is_some_and(crate::command::truthy);
        if !ok {
            let errmsg = doc.get_str("errmsg").unwrap_or("hello failed");
            return Err(handshake_err(errmsg.to_string()));
        }
        let int = |k: &str| doc.get(k).ok().flatten().and_then(as_i64);
        let max_wire_version = int("maxWireVersion")
            .and_then(|v| i32::try_from(v).ok())
            .unwrap_or(0);
        if max_wire_version < 6 {
            return Err(handshake_err(format!(
                "server maxWireVersion {max_wire_version} is below 6 (MongoDB 3.6); OP_MSG is required"
            )));
        }
        let max_message_size = int("maxMessageSizeBytes")
            .and_then(|v| usize::try_from(v).ok())
            .unwrap_or(DEFAULT_MAX_MESSAGE_SIZE);
        let compressor = compression::choose(&opts.compressors, doc);
        if !opts.compressors.is_empty() && compressor.is_none() {
            // The spec: no compressor in common is not an error; say so once per connection.
            tracing::debug!(member = %self.address, "server offers none of the configured compressors; this connection is not compressed");
        }
        Ok(HelloSummary {
            max_wire_version,
            max_message_size,
            reply: doc.to_owned(),
            compressor,
        })
    }

    /// Sends a request, rewriting its requestID to one unique on this connection.
    /// Returns the requestID used, which the reply's responseTo will echo.
    pub async fn send(&mut self, frame: &mut Frame, expect_reply: bool) -> Result<i32, UpstreamError> {
        self.send_by(frame, expect_reply, None).await
    }

    /// [`UpstreamConn::send`], with the write bounded by socketTimeoutMS and by
    /// `deadline` (a client's maxTimeMS), whichever comes first. A server that stops
    /// reading fills the socket buffers and would otherwise hold the write, the client
    /// and the connection forever. A write cut short leaves part of a message on the
    /// stream, so the connection is broken.
    pub async fn send_by(
        &mut self,
        frame: &mut Frame,
        expect_reply: bool,
        deadline: Option<Instant>,
    ) -> Result<i32, UpstreamError> {
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        frame.set_request_id(id);
        refresh_checksum(frame);
        self.awaiting_reply = expect_reply.then_some(id);
        let bound = self.bound(deadline);
        // Only a connection that negotiated compression pays for the check and the copy.
        let compressed = match self.compressor {
            Some(c) if compression::may_compress(frame) => crate::wire::compress(frame, c).ok(),
            _ => None,
        };
        let used = compressed.as_ref().and(self.compressor);
        let bytes = compressed.as_ref().map_or(frame.as_bytes(), Frame::as_bytes);
        let len = bytes.len();
        let write = self.io.write_all(bytes);
        let result = match bound {
            Some((at, _)) => tokio::time::timeout_at(at.into(), write).await,
            None => Ok(write.await),
        };
        match result {
            Ok(Ok(())) => {
                if let Some(m) = &self.wire_metrics {
                    m.record(Direction::Sent, len, used);
                }
                Ok(id)
            }
            Ok(Err(source)) => {
                self.broken = true;
                Err(UpstreamError::Io {
                    address: self.address.clone(),
                    source,
                })
            }
            Err(_) => {
                self.broken = true;
                Err(self.timed_out(bound, true))
            }
        }
    }

    /// Reads the next reply, bounded by socketTimeoutMS when one is set.
    pub async fn recv(&mut self) -> Result<Frame, UpstreamError> {
        self.recv_by(None).await
    }

    /// [`UpstreamConn::recv`], also bounded by `deadline` (a client's maxTimeMS).
    pub async fn recv_by(&mut self, deadline: Option<Instant>) -> Result<Frame, UpstreamError> {
        let bound = self.bound(deadline);
        let limit = self.reply_limit();
        let read = self.reader.next(&mut self.io, limit);
        let result = match bound {
            Some((at, _)) => match tokio::time::timeout_at(at.into(), read).await {
                Ok(r) => r,
                Err(_) => {
                    self.broken = true;
                    return Err(self.timed_out(bound, false));
                }
            },
            None => read.await,
        };
        match result {
            Ok(Some(frame)) => {
                let frame = self.inflate(frame)?;
                self.check_response_to(frame)
            }
            Ok(None) => {
                self.broken = true;
                Err(UpstreamError::Closed {
                    address: self.address.clone(),
                })
            }
            Err(crate::wire::WireError::Io(source)) => {
                self.broken = true;
                Err(UpstreamError::Io {
                    address: self.address.clone(),
                    source,
                })
            }
            Err(source) => Err(self.protocol_error(source)),
        }
    }

    /// Counts a reply as it came off the wire and unwraps it when it is OP_COMPRESSED (a
    /// server may compress any reply once compression is negotiated, the hello's
    /// included). The size it announces is checked against the largest reply this
    /// connection accepts before anything is allocated.
    fn inflate(&mut self, frame: Frame) -> Result<Frame, UpstreamError> {
        if frame.op_code() != Some(OpCode::Compressed) {
            if let Some(m) = &self.wire_metrics {
                m.record(Direction::Received, frame.len(), None);
            }
            return Ok(frame);
        }
        let len = frame.len();
        match crate::wire::decompress(&frame, self.reply_limit()) {
            Ok((plain, used)) => {
                if let Some(m) = &self.wire_metrics {
                    m.record(Direction::Received, len, used);
                }
                Ok(plain)
            }
            Err(source) => {
                if let Some(m) = &self.wire_metrics {
                    m.record(Direction::Received, len, None);
                }
                Err(self.protocol_error(source))
            }
        }
    }

    /// A reply that cannot be understood: nothing after it on this stream can be trusted.
    fn protocol_error(&mut self, source: WireError) -> UpstreamError {
        self.broken = true;
        self.awaiting_reply = None;
        if let Some(m) = &self.wire_metrics {
            m.protocol_error(source.kind());
        }
        UpstreamError::Protocol {
            address: self.address.clone(),
            source,
        }
    }

    /// The largest reply accepted: the server's maxMessageSizeBytes, with room for the
    /// reply's own overhead beyond a message of that size.
    fn reply_limit(&self) -> usize {
        self.max_message_size.saturating_add(16 * 1024)
    }

    /// Accepts a reply only if it answers the request awaited on this connection. Anything
    /// else (a late reply to an earlier request, or bytes nobody asked for) means the
    /// stream is out of step: the connection is broken and the frame is not handed out.
    fn check_response_to(&mut self, frame: Frame) -> Result<Frame, UpstreamError> {
        let got = frame.response_to();
        match self.awaiting_reply {
            Some(expected) if expected == got => {
                // A reply in step that is not a well-formed OP_MSG (garbage under a valid
                // header, a bad checksum) is no reply: nothing on this stream can be
                // trusted after it, and it must never reach a client.
                if frame.op_code() == Some(crate::wire::OpCode::Msg) {
                    if let Err(source) = crate::wire::OpMsg::parse(&frame) {
                        return Err(self.protocol_error(source));
                    }
                }
                // An exhaust reply (moreToCome) is followed by another, answering this one.
                self.awaiting_reply = more_to_come(&frame).then(|| frame.request_id());
                Ok(frame)
            }
            expected => {
                self.broken = true;
                self.awaiting_reply = None;
                Err(UpstreamError::ResponseMismatch {
                    address: self.address.clone(),
                    expected,
                    got,
                })
            }
        }
    }

    /// The earlier of socketTimeoutMS from now and `deadline`, and which one it is.
    fn bound(&self, deadline: Option<Instant>) -> Option<(Instant, Bound)> {
        let socket = self
            .socket_timeout
            .and_then(|t| Instant::now().checked_add(t))
            .map(|at| (at, Bound::SocketTimeout));
        let client = deadline.map(|at| (at, Bound::Deadline));
        match (socket, client) {
            (Some(s), Some(c)) => Some(if c.0 < s.0 { c } else { s }),
            (s, c) => s.or(c),
        }
    }

    fn timed_out(&self, bound: Option<(Instant, Bound)>, writing: bool) -> UpstreamError {
        let address = self.address.clone();
        let ms = self.socket_timeout.unwrap_or_default().as_millis();
        match (bound, writing) {
            (Some((_, Bound::Deadline)), true) => UpstreamError::DeadlineExceeded {
                address,
                doing: "writing a request",
            },
            (Some((_, Bound::Deadline)), false) => UpstreamError::DeadlineExceeded {
                address,
                doing: "waiting for a reply",
            },
            (_, true) => UpstreamError::WriteTimeout { address, ms },
            (_, false) => UpstreamError::Timeout { address, ms },
        }
    }

    /// Runs one command (`body` with its `$db`) and returns the reply's body.
    pub async fn command(&mut self, body: &bson::RawDocument) -> Result<RawDocumentBuf, UpstreamError> {
        let mut req = build_msg(0, 0, 0, body.as_bytes());
        let reply = self.round_trip(&mut req).await?;
        let msg = OpMsg::parse(&reply).map_err(|source| UpstreamError::Protocol {
            address: self.address.clone(),
            source,
        })?;
        Ok(msg.body.to_owned())
    }

    /// Sends a request and waits for its reply.
    pub async fn round_trip(&mut self, frame: &mut Frame) -> Result<Frame, UpstreamError> {
        self.send(frame, true).await?;
        self.recv().await
    }

    pub fn looks_alive(&self) -> bool {
        !self.broken && self.awaiting_reply.is_none() && self.reader.is_idle() && self.io.looks_alive()
    }

    /// Changes the bound on waiting for a reply (e.g. an awaitable hello waits at the
    /// server for up to maxAwaitTimeMS, so its connection needs more than connectTimeoutMS).
    pub fn set_socket_timeout(&mut self, timeout: Option<Duration>) {
        self.socket_timeout = timeout;
    }

    /// Whether the connection can go back to the pool.
    pub fn reusable(&self) -> bool {
        !self.broken && self.awaiting_reply.is_none()
    }

    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }
}

/// Which limit ended a wait on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    SocketTimeout,
    /// The client's maxTimeMS, passed in by the caller.
    Deadline,
}

/// How long a connection sits idle before the kernel probes it, as the drivers set it:
/// below the idle timeouts of load balancers, NAT and firewalls (Azure's 4 minutes is
/// the shortest common one), so a parked pooled connection is neither cut silently nor
/// kept after its peer vanished.
pub const KEEPALIVE_TIME: Duration = Duration::from_secs(120);
/// Between unanswered probes; with the kernel's 9 probes a dead peer is found within
/// about 3.5 minutes of silence.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// TCP_NODELAY (requests are single writes; Nagle would only delay them) and TCP
/// keepalive. Neither is essential to a working exchange, so a failure is logged only.
fn configure_socket(tcp: &TcpStream, address: &ServerAddress) {
    let sock = socket2::SockRef::from(tcp);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL);
    for (what, result) in [
        ("TCP_NODELAY", sock.set_tcp_nodelay(true)),
        ("TCP keepalive", sock.set_tcp_keepalive(&keepalive)),
    ] {
        if let Err(error) = result {
            tracing::debug!(member = %address, %error, "cannot set {what} on an upstream socket");
        }
    }
}

/// Whether an OP_MSG reply says another reply follows it.
fn more_to_come(frame: &Frame) -> bool {
    frame.op_code() == Some(OpCode::Msg)
        && frame
            .payload()
            .get(..4)
            .is_some_and(|f| u32::from_le_bytes([f[0], f[1], f[2], f[3]]) & MSG_MORE_TO_COME != 0)
}
