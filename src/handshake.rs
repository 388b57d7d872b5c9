//! The proxy's own hello: mongoplex presents itself to drivers as a mongos
//! (`msg: "isdbgrid"`), so drivers send `$readPreference`, keep sessions and retryable
//! writes, and never learn the replica set's members (they would go around the proxy).

use bson::{doc, oid::ObjectId, Document, RawDocument};

use crate::command::as_i64;
use crate::wire::Compressor;

/// Limits the proxy advertises; taken from the upstream so drivers never exceed them.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamLimits {
    pub min_wire_version: i32,
    pub max_wire_version: i32,
    pub max_bson_object_size: i64,
    pub max_message_size_bytes: i64,
    pub max_write_batch_size: i64,
    pub logical_session_timeout_minutes: Option<i64>,
}

impl UpstreamLimits {
    /// Reads limits from an upstream hello reply; missing fields take server defaults.
    pub fn from_hello(hello: &RawDocument) -> Self {
        let int = |k: &str, d: i64| hello.get(k).ok().flatten().and_then(as_i64).unwrap_or(d);
        let wire = |k: &str| i32::try_from(int(k, 0)).unwrap_or(0);
        Self {
            min_wire_version: wire("minWireVersion"),
            max_wire_version: wire("maxWireVersion"),
            max_bson_object_size: int("maxBsonObjectSize", 16 * 1024 * 1024),
            max_message_size_bytes: int("maxMessageSizeBytes", 48_000_000),
            max_write_batch_size: int("maxWriteBatchSize", 100_000),
            logical_session_timeout_minutes: hello
                .get("logicalSessionTimeoutMinutes")
                .ok()
                .flatten()
                .and_then(as_i64),
        }
    }
}

/// The proxy's topologyVersion: a process id fixed for the process's life and a counter
/// bumped whenever what the proxy advertises changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyTopologyVersion {
    pub process_id: ObjectId,
    pub counter: i64,
}

impl ProxyTopologyVersion {
    /// Whether a client's awaitable hello names this exact version (so it should wait).
    pub fn matches(&self, client: &RawDocument) -> bool {
        client.get_object_id("processId").ok() == Some(self.process_id)
            && client.get("counter").ok().flatten().and_then(as_i64) == Some(self.counter)
    }
}

/// What the client announced in its handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientMetadata {
    pub app_name: Option<String>,
    pub driver_name: Option<String>,
    pub driver_version: Option<String>,
}

impl ClientMetadata {
    pub fn from_hello(cmd: &RawDocument) -> Option<Self> {
        let client = cmd.get_document("client").ok()?;
        let s = |d: Option<&RawDocument>, k: &str| d.and_then(|d| d.get_str(k).ok()).map(str::to_owned);
        let app = client.get_document("application").ok();
        let driver = client.get_document("driver").ok();
        Some(Self {
            app_name: s(app, "name"),
            driver_name: s(driver, "name"),
            driver_version: s(driver, "version"),
        })
    }
}

/// Picks the compressors both sides support, in the client's order of preference.
pub fn negotiate_compression(cmd: &RawDocument, enabled: &[Compressor]) -> Vec<Compressor> {
    let Ok(list) = cmd.get_array("compression") else {
        return Vec::new();
    };
    let mut out: Vec<Compressor> = Vec::new();
    for name in list.into_iter().filter_map(|v| v.ok().and_then(|v| v.as_str())) {
        if let Some(c) = enabled.iter().find(|c| c.name() == name) {
            if !out.iter().any(|o| o.id() == c.id()) {
                out.push(*c);
            }
        }
    }
    out
}

/// Everything that shapes one hello reply.
pub struct HelloInput<'a> {
    /// `hello` uses `isWritablePrimary`; `isMaster`/`ismaster` use `ismaster`.
    pub legacy: bool,
    pub hello_ok: bool,
    pub limits: &'a UpstreamLimits,
    pub topology_version: ProxyTopologyVersion,
    pub connection_id: i64,
    pub compression: &'a [Compressor],
    pub now_ms: i64,
}

pub fn hello_reply(input: &HelloInput<'_>) -> Document {
    let l = input.limits;
    let mut d = Document::new();
    d.insert(
        if input.legacy {
            "ismaster"
        } else {
            "isWritablePrimary"
        },
        true,
    );
    if input.hello_ok {
        d.insert("helloOk", true);
    }
    d.insert("msg", "isdbgrid");
    d.insert(
        "topologyVersion",
        doc! { "processId": input.topology_version.process_id, "counter": input.topology_version.counter },
    );
    d.insert("maxBsonObjectSize", clamp_i32(l.max_bson_object_size));
    d.insert("maxMessageSizeBytes", clamp_i32(l.max_message_size_bytes));
    d.insert("maxWriteBatchSize", clamp_i32(l.max_write_batch_size));
    d.insert("localTime", bson::DateTime::from_millis(input.now_ms));
    if let Some(m) = l.logical_session_timeout_minutes {
        d.insert("logicalSessionTimeoutMinutes", clamp_i32(m));
    }
    d.insert("connectionId", input.connection_id);
    d.insert("minWireVersion", l.min_wire_version);
    d.insert("maxWireVersion", l.max_wire_version);
    d.insert("readOnly", false);
    if !input.compression.is_empty() {
        let names: Vec<&str> = input.compression.iter().map(|c| c.name()).collect();
        d.insert("compression", names);
    }
    d.insert("ok", 1.0);
    d
}

fn clamp_i32(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    fn limits() -> UpstreamLimits {
        UpstreamLimits::from_hello(&rawdoc! {
            "maxWireVersion": 27, "minWireVersion": 0, "maxBsonObjectSize": 16777216,
            "logicalSessionTimeoutMinutes": 30,
        })
    }

    #[test]
    fn replies_as_mongos_with_upstream_limits() {
        let tv = ProxyTopologyVersion {
            process_id: ObjectId::new(),
            counter: 3,
        };
        let l = limits();
        let input = HelloInput {
            legacy: false,
            hello_ok: true,
            limits: &l,
            topology_version: tv,
            connection_id: 9,
            compression: &[Compressor::Zstd],
            now_ms: 0,
        };
        let d = hello_reply(&input);
        assert_eq!(d.get_str("msg").unwrap(), "isdbgrid");
        assert!(d.get_bool("isWritablePrimary").unwrap());
        assert!(!d.contains_key("ismaster"));
        assert_eq!(d.get_i32("maxWireVersion").unwrap(), 27);
        assert_eq!(d.get_i32("maxMessageSizeBytes").unwrap(), 48_000_000);
        assert_eq!(d.get_i64("connectionId").unwrap(), 9);
        assert_eq!(d.get_i32("logicalSessionTimeoutMinutes").unwrap(), 30);
        assert_eq!(d.get_array("compression").unwrap().len(), 1);
        let legacy = hello_reply(&HelloInput {
            legacy: true,
            hello_ok: false,
            ..input
        });
        assert!(legacy.get_bool("ismaster").unwrap());
        assert!(!legacy.contains_key("helloOk"));
    }

    #[test]
    fn compression_follows_client_order_and_enabled_set() {
        let cmd = rawdoc! { "hello": 1, "compression": ["zlib", "bogus", "snappy", "zlib"] };
        let enabled = [Compressor::Snappy, Compressor::Zlib { level: None }];
        let got: Vec<&str> = negotiate_compression(&cmd, &enabled)
            .iter()
            .map(|c| c.name())
            .collect();
        assert_eq!(got, ["zlib", "snappy"]);
        assert!(negotiate_compression(&rawdoc! { "hello": 1 }, &enabled).is_empty());
    }

    #[test]
    fn metadata_and_topology_version_matching() {
        let cmd = rawdoc! { "hello": 1, "client": { "application": { "name": "shop" }, "driver": { "name": "pymongo", "version": "4.20" } } };
        let m = ClientMetadata::from_hello(&cmd).unwrap();
        assert_eq!(m.app_name.as_deref(), Some("shop"));
        assert_eq!(m.driver_name.as_deref(), Some("pymongo"));
        let tv = ProxyTopologyVersion {
            process_id: ObjectId::new(),
            counter: 1,
        };
        assert!(tv.matches(&rawdoc! { "processId": tv.process_id, "counter": 1_i64 }));
        assert!(!tv.matches(&rawdoc! { "processId": tv.process_id, "counter": 2_i64 }));
        assert!(!tv.matches(&rawdoc! { "processId": ObjectId::new(), "counter": 1_i64 }));
    }
}
