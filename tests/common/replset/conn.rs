//! One accepted client connection of one member: hello answered here, every other command
//! checked against the role rules and forwarded to SecantusDB.

use std::sync::Arc;

use bson::Document;
use mongoplex::command::{Command, ReplyInfo};
use mongoplex::wire::{
    build_msg, build_reply, decompress, refresh_checksum, Frame, FrameReader, OpCode, OpMsg, OpQuery,
    DEFAULT_MAX_MESSAGE_SIZE, MSG_MORE_TO_COME,
};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::hello::{self, HelloRequest};
use super::rules::{self, Admission, RoleError};
use super::shared::{InFlight, Shared};
use super::state::SetState;
use super::upstream::Upstream;

const MAX: usize = DEFAULT_MAX_MESSAGE_SIZE;

/// The connection ends; who caused it does not matter to a test harness.
struct Closed;

struct Conn {
    member: usize,
    shared: Arc<Shared>,
    connection_id: i64,
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    reader: FrameReader,
    /// Opened on the first forwarded command.
    upstream: Option<Upstream>,
}

/// Serves `stream` until the client leaves or something fails. Kill and shutdown cancel
/// this future from outside, which drops both sockets.
pub async fn serve(member: usize, shared: Arc<Shared>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let connection_id = shared.update(|s| {
        s.member_mut(member).stats.connections += 1;
        let id = s.next_connection_id;
        s.next_connection_id += 1;
        id
    });
    let (rd, wr) = stream.into_split();
    let mut conn = Conn {
        member,
        shared,
        connection_id,
        rd,
        wr,
        reader: FrameReader::new(),
        upstream: None,
    };
    let mut pending = None;
    loop {
        let frame = match pending.take() {
            Some(frame) => frame,
            None => match conn.reader.next(&mut conn.rd, MAX).await {
                Ok(Some(frame)) => frame,
                Ok(None) | Err(_) => return,
            },
        };
        conn.shared.wait_reachable(member).await;
        match conn.handle(frame).await {
            Ok(next) => pending = next,
            Err(Closed) => return,
        }
    }
}

impl Conn {
    /// Answers one request. A streaming hello ends when the client sends something else;
    /// that frame comes back to be handled next.
    async fn handle(&mut self, frame: Frame) -> Result<Option<Frame>, Closed> {
        let frame = match frame.op_code() {
            // Clients compress only when hello offers it, and it never does; unwrap anyway.
            Some(OpCode::Compressed) => decompress(&frame, MAX).map_err(|_| Closed)?.0,
            _ => frame,
        };
        match frame.op_code() {
            Some(OpCode::Msg) => {}
            Some(OpCode::Query) => return self.legacy(&frame).await.map(|()| None),
            _ => return Err(Closed),
        }
        let msg = OpMsg::parse(&frame).map_err(|_| Closed)?;
        if let Some(req) = HelloRequest::parse(msg.body) {
            let exhaust = msg.exhaust_allowed();
            return self.hello(req, frame.request_id(), exhaust).await;
        }
        let flags = msg.flags;
        drop(msg);
        self.command(frame, flags).await.map(|()| None)
    }

    async fn write(&mut self, frame: &Frame) -> Result<(), Closed> {
        self.shared.wait_reachable(self.member).await;
        self.wr.write_all(frame.as_bytes()).await.map_err(|_| Closed)
    }

    fn hello_reply(&self, req: &HelloRequest) -> (Vec<u8>, (bson::oid::ObjectId, i64)) {
        let view = self.shared.lock().hello_view(self.member);
        let doc = hello::reply(&view, req, self.connection_id);
        (to_bytes(&doc), view.topology_version)
    }

    /// hello over OP_MSG: answered at once, or (awaitable) when the member's
    /// topologyVersion moves past the client's or maxAwaitTimeMS passes; with
    /// exhaustAllowed, replies keep coming with moreToCome set.
    async fn hello(
        &mut self,
        req: HelloRequest,
        request_id: i32,
        exhaust: bool,
    ) -> Result<Option<Frame>, Closed> {
        let shared = Arc::clone(&self.shared);
        let member = self.member;
        let mut response_to = request_id;
        let mut awaitable = req.awaitable;
        loop {
            if let Some((known, wait)) = awaitable {
                let deadline = Instant::now() + wait;
                let news = shared.wait_until(
                    |s| !hello::is_current(known, s.member(member).topology_version()),
                    Some(deadline),
                );
                tokio::select! {
                    _ = news => {}
                    // The client hung up, or (against the protocol) sent something else.
                    next = self.reader.next(&mut self.rd, MAX) => {
                        return match next {
                            Ok(Some(frame)) => Ok(Some(frame)),
                            Ok(None) | Err(_) => Err(Closed),
                        };
                    }
                }
            }
            let (doc, version) = self.hello_reply(&req);
            let stream = exhaust && awaitable.is_some();
            let id = shared.reply_id();
            let flags = if stream { MSG_MORE_TO_COME } else { 0 };
            self.write(&build_msg(id, response_to, flags, &doc)).await?;
            shared.update(|s| s.member_mut(member).stats.hellos += 1);
            if !stream {
                return Ok(None);
            }
            // Each streamed reply answers the one before it.
            response_to = id;
            awaitable = awaitable.map(|(_, wait)| (version, wait));
        }
    }

    /// OP_QUERY: only the legacy handshake on `<db>.$cmd`, as mongod 6.0+ does.
    async fn legacy(&mut self, frame: &Frame) -> Result<(), Closed> {
        let query = OpQuery::parse(frame).map_err(|_| Closed)?;
        let command = query.command();
        let reply = match HelloRequest::parse(command) {
            Some(mut req) if query.command_db().is_some() => {
                req.awaitable = None;
                let (doc, _) = self.hello_reply(&req);
                self.shared
                    .update(|s| s.member_mut(self.member).stats.hellos += 1);
                doc
            }
            _ => {
                let name = Command::parse(command).name.to_owned();
                to_bytes(&bson::doc! {
                    "ok": 0.0,
                    "errmsg": format!("Unsupported OP_QUERY command: {name}"),
                    "code": 5_739_101,
                    "codeName": "Location5739101",
                })
            }
        };
        let id = self.shared.reply_id();
        self.write(&build_reply(id, frame.request_id(), &reply)).await
    }

    /// Any command but hello: role rules first, then the shared SecantusDB.
    async fn command(&mut self, frame: Frame, flags: u32) -> Result<(), Closed> {
        let request_id = frame.request_id();
        let more_to_come = flags & MSG_MORE_TO_COME != 0;
        let (name, admission, interrupted, max_time_ms) = {
            let msg = OpMsg::parse(&frame).map_err(|_| Closed)?;
            let cmd = Command::parse(msg.body);
            let (primary, cursor_here) = {
                let s = self.shared.lock();
                let here = cmd
                    .get_more_cursor
                    .is_none_or(|id| s.cursor_here(id, self.member));
                (s.member(self.member).acts_as_primary(), here)
            };
            let admission = match rules::cursor_check(&cmd, cursor_here) {
                Some(err) => Admission::Reject(err),
                None => rules::admit(&cmd, primary),
            };
            let max_time_ms = cmd.max_time_ms;
            (
                cmd.name.to_owned(),
                admission,
                rules::interrupted(&cmd),
                max_time_ms,
            )
        };
        let (epoch, latency) = {
            let s = self.shared.lock();
            let m = s.member(self.member);
            (m.primary_epoch, m.latency)
        };
        let as_primary = match admission {
            Admission::Reject(err) => {
                if more_to_come {
                    // mongod hangs up on an unacknowledged write it cannot run, so that the
                    // client notices.
                    self.reject(&err);
                    return Err(Closed);
                }
                return self.send_error(&err, request_id).await;
            }
            Admission::Forward { as_primary } => as_primary,
        };
        let member = self.member;
        let _in_flight = InFlight::enter(&self.shared, member);
        let stepped_down = move |s: &SetState| s.member(member).primary_epoch != epoch;
        if as_primary {
            // A step-down during the hold interrupts the command at once, as mongod kills
            // the operations it is running.
            let deadline = Some(Instant::now() + latency);
            if self.shared.wait_until(stepped_down, deadline).await {
                if more_to_come {
                    // An unacknowledged write gets no reply: mongod hangs up instead.
                    self.reject(&interrupted);
                    return Err(Closed);
                }
                return self.send_error(&interrupted, request_id).await;
            }
        } else if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        self.shared.update(|s| {
            let stats = &mut s.member_mut(member).stats;
            if let Some(ms) = max_time_ms {
                stats.max_time_ms.insert(name.clone(), ms);
            }
            *stats.forwarded.entry(name).or_default() += 1;
        });
        if self.upstream.is_none() {
            self.upstream = Some(
                Upstream::connect(self.shared.upstream)
                    .await
                    .map_err(|_| Closed)?,
            );
        }
        let shared = self.shared.clone();
        let _storage = shared.storage_gates[member].read().await;
        let upstream = self.upstream.as_mut().ok_or(Closed)?;
        let reply = upstream.round_trip(frame, flags).await.map_err(|_| Closed)?;
        let Some(mut reply) = reply else {
            return Ok(());
        };
        if as_primary && stepped_down(&self.shared.lock()) {
            return self.send_error(&interrupted, request_id).await;
        }
        if let Some(cursor) = reply_cursor(&reply) {
            self.shared.update(|s| s.note_cursor(cursor, member));
        }
        reply.set_request_id(self.shared.reply_id());
        reply.set_response_to(request_id);
        refresh_checksum(&mut reply);
        self.write(&reply).await
    }

    fn reject(&self, err: &RoleError) {
        self.shared.update(|s| {
            *s.member_mut(self.member)
                .stats
                .rejected
                .entry(err.code)
                .or_default() += 1;
        });
    }

    async fn send_error(&mut self, err: &RoleError, request_id: i32) -> Result<(), Closed> {
        self.reject(err);
        let version = self.shared.lock().member(self.member).topology_version();
        let doc = err.to_document(Some(hello::topology_version_doc(version)));
        let id = self.shared.reply_id();
        self.write(&build_msg(id, request_id, 0, &to_bytes(&doc))).await
    }
}

/// The `cursor.id` a reply leaves open, if any.
fn reply_cursor(reply: &Frame) -> Option<i64> {
    let msg = OpMsg::parse(reply).ok()?;
    ReplyInfo::parse(msg.body).cursor_id
}

fn to_bytes(doc: &Document) -> Vec<u8> {
    doc.to_vec().expect("harness documents always serialize")
}
