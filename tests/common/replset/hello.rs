//! hello / isMaster: what a member says about itself and the set, and when an awaitable
//! hello should answer. Field meanings follow the SDAM spec.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bson::oid::ObjectId;
use bson::{doc, DateTime, Document, RawDocument, Timestamp};
use mongoplex::command::{as_i64, Command};

use super::state::{HelloView, SET_NAME};

/// The wire versions every member reports: MongoDB 7.0's.
pub const MAX_WIRE_VERSION: i32 = 21;
pub const MIN_WIRE_VERSION: i32 = 0;

/// The parts of a hello request that shape the reply.
#[derive(Debug, Clone, PartialEq)]
pub struct HelloRequest {
    /// `hello` replies carry `isWritablePrimary`; `isMaster`/`ismaster` carry `ismaster`.
    pub legacy: bool,
    pub hello_ok: bool,
    /// topologyVersion + maxAwaitTimeMS: the client's last known version and how long to
    /// wait for a newer one.
    pub awaitable: Option<((ObjectId, i64), Duration)>,
}

impl HelloRequest {
    /// `None` unless the command is a hello in one of its spellings.
    pub fn parse(body: &RawDocument) -> Option<Self> {
        let cmd = Command::parse(body);
        if !cmd.known.is_hello() {
            return None;
        }
        let hello_ok = body
            .get("helloOk")
            .ok()
            .flatten()
            .is_some_and(mongoplex::command::truthy);
        let version = cmd.await_topology_version.and_then(|tv| {
            let pid = tv.get_object_id("processId").ok()?;
            let counter = tv.get("counter").ok().flatten().and_then(as_i64)?;
            Some((pid, counter))
        });
        let wait = cmd
            .max_await_time_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map(Duration::from_millis);
        Some(Self {
            legacy: cmd.name != "hello",
            hello_ok,
            awaitable: version.zip(wait),
        })
    }
}

/// The awaitable-hello rule: wait only while the client already knows the member's current
/// topologyVersion; anything else (another processId, another counter) is news.
pub fn is_current(known: (ObjectId, i64), current: (ObjectId, i64)) -> bool {
    known == current
}

pub fn topology_version_doc((process_id, counter): (ObjectId, i64)) -> Document {
    doc! { "processId": process_id, "counter": counter }
}

/// The reply document for one member.
pub fn reply(view: &HelloView, req: &HelloRequest, connection_id: i64) -> Document {
    let now = DateTime::now();
    let lag_ms = i64::try_from(view.lag.as_millis()).unwrap_or(i64::MAX);
    let last_write = DateTime::from_millis(now.timestamp_millis().saturating_sub(lag_ms));
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_sub(view.lag.as_secs());
    let op_time = doc! {
        "ts": Timestamp { time: u32::try_from(secs).unwrap_or(u32::MAX), increment: 1 },
        "t": i64::from(view.term),
    };
    let mut d = Document::new();
    if req.legacy {
        d.insert("ismaster", view.writable);
    } else {
        d.insert("isWritablePrimary", view.writable);
    }
    d.insert("topologyVersion", topology_version_doc(view.topology_version));
    if req.hello_ok {
        d.insert("helloOk", true);
    }
    d.insert("hosts", view.hosts.clone());
    d.insert("setName", SET_NAME);
    d.insert("setVersion", view.set_version);
    d.insert("secondary", view.secondary);
    if let Some(primary) = &view.primary {
        d.insert("primary", primary.clone());
    }
    d.insert("me", view.me.clone());
    if let Some(id) = view.election_id {
        d.insert("electionId", id);
    }
    d.insert(
        "lastWrite",
        doc! {
            "opTime": op_time.clone(),
            "lastWriteDate": last_write,
            "majorityOpTime": op_time,
            "majorityWriteDate": last_write,
        },
    );
    d.insert("maxBsonObjectSize", 16 * 1024 * 1024);
    d.insert("maxMessageSizeBytes", 48_000_000);
    d.insert("maxWriteBatchSize", 100_000);
    d.insert("localTime", now);
    d.insert("logicalSessionTimeoutMinutes", 30);
    d.insert("connectionId", connection_id);
    d.insert("minWireVersion", MIN_WIRE_VERSION);
    d.insert("maxWireVersion", MAX_WIRE_VERSION);
    d.insert("readOnly", false);
    d.insert("ok", 1.0);
    d
}
