//! Parsing a hello (or legacy hello) reply into a [`ServerDescription`].
//!
//! A reply comes from the network, so every field is type-checked: a reply with a wrong type
//! or an unparsable address yields an Unknown description whose `error` says what was wrong.
//! `null` counts as absent.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bson::oid::ObjectId;
use bson::{Bson, Document};

use super::description::{ServerDescription, ServerType, TopologyVersion};
use crate::address::{AddressError, ServerAddress};

/// Why a hello reply could not be turned into a known server description.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HelloError {
    #[error("hello failed: {errmsg} (code {code:?})")]
    NotOk { code: Option<i64>, errmsg: String },
    #[error("hello reply field {field:?} should be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("hello reply field {field:?} is out of range")]
    OutOfRange { field: &'static str },
    #[error("hello reply field {field:?} holds a bad address: {source}")]
    BadAddress {
        field: &'static str,
        source: AddressError,
    },
}

impl ServerDescription {
    /// Builds the description for a completed check of `address`.
    ///
    /// `average_rtt` is the monitor's moving average after adding this check's sample (see
    /// [`super::RttEstimator`]); `now` is monotonic time since the caller's epoch. A reply that
    /// is not `ok: 1`, or that has fields of the wrong type, gives an Unknown description with
    /// `error` set: report those through `TopologyDescription::handle_monitor_error`.
    pub fn from_hello(
        address: ServerAddress,
        reply: &Document,
        average_rtt: Duration,
        now: Duration,
    ) -> Self {
        match parse(address.clone(), reply, average_rtt, now) {
            Ok(sd) => sd,
            Err(e) => Self {
                last_update_time: Some(now),
                ..Self::unknown(address, Some(e.to_string()))
            },
        }
    }
}

fn parse(
    address: ServerAddress,
    reply: &Document,
    rtt: Duration,
    now: Duration,
) -> Result<ServerDescription, HelloError> {
    if !is_ok(reply) {
        return Err(HelloError::NotOk {
            code: get_int(reply, "code").ok().flatten(),
            errmsg: get_str(reply, "errmsg")
                .ok()
                .flatten()
                .unwrap_or("ok was not 1")
                .to_owned(),
        });
    }
    let mut sd = ServerDescription::unknown(address, None);
    sd.server_type = server_type(reply)?;
    sd.round_trip_time = Some(rtt);
    sd.last_update_time = Some(now);
    sd.min_wire_version = Some(get_i32(reply, "minWireVersion")?.unwrap_or(0));
    sd.max_wire_version = Some(get_i32(reply, "maxWireVersion")?.unwrap_or(0));
    sd.me = get_address(reply, "me")?;
    sd.hosts = get_address_set(reply, "hosts")?;
    sd.passives = get_address_set(reply, "passives")?;
    sd.arbiters = get_address_set(reply, "arbiters")?;
    sd.primary = get_address(reply, "primary")?;
    sd.tags = get_tags(reply)?;
    sd.set_name = get_str(reply, "setName")?.map(str::to_owned);
    sd.set_version = get_int(reply, "setVersion")?;
    sd.election_id = get_oid(reply, "electionId")?;
    sd.logical_session_timeout_minutes = get_u32(reply, "logicalSessionTimeoutMinutes")?;
    sd.topology_version = get_topology_version(reply, "topologyVersion")?;
    sd.last_write_date = get_last_write_date(reply)?;
    parse_limits(&mut sd, reply)?;
    sd.service_id = get_oid(reply, "serviceId")?;
    Ok(sd)
}

fn parse_limits(sd: &mut ServerDescription, reply: &Document) -> Result<(), HelloError> {
    if let Some(v) = get_u32(reply, "maxMessageSizeBytes")? {
        sd.max_message_size_bytes = v;
    }
    if let Some(v) = get_u32(reply, "maxBsonObjectSize")? {
        sd.max_bson_object_size = v;
    }
    if let Some(v) = get_u32(reply, "maxWriteBatchSize")? {
        sd.max_write_batch_size = v;
    }
    sd.compression = match present(reply, "compression") {
        None => Vec::new(),
        Some(Bson::Array(items)) => items
            .iter()
            .map(|b| match b {
                Bson::String(s) => Ok(s.clone()),
                _ => Err(wrong("compression", "an array of strings")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(wrong("compression", "an array of strings")),
    };
    Ok(())
}

/// The ServerType table of the SDAM spec. `isreplicaset: true` always means RSGhost. Every
/// flag is read (and type-checked) whether or not it decides the type.
fn server_type(reply: &Document) -> Result<ServerType, HelloError> {
    let mongos = get_str(reply, "msg")? == Some("isdbgrid");
    let ghost = get_bool(reply, "isreplicaset")? == Some(true);
    let member = get_str(reply, "setName")?.is_some();
    let writable = match get_bool(reply, "isWritablePrimary")? {
        Some(v) => v,
        None => get_bool(reply, "ismaster")?.unwrap_or(false),
    };
    let hidden = get_bool(reply, "hidden")? == Some(true);
    let secondary = get_bool(reply, "secondary")? == Some(true);
    let arbiter = get_bool(reply, "arbiterOnly")? == Some(true);
    let t = match () {
        _ if mongos => ServerType::Mongos,
        _ if ghost => ServerType::RsGhost,
        _ if !member => ServerType::Standalone,
        _ if hidden => ServerType::RsOther,
        _ if writable => ServerType::RsPrimary,
        _ if secondary => ServerType::RsSecondary,
        _ if arbiter => ServerType::RsArbiter,
        _ => ServerType::RsOther,
    };
    Ok(t)
}

/// `ok` may arrive as a double, an integer or a boolean.
fn is_ok(reply: &Document) -> bool {
    match reply.get("ok") {
        Some(Bson::Double(d)) => *d == 1.0,
        Some(Bson::Int32(i)) => *i == 1,
        Some(Bson::Int64(i)) => *i == 1,
        Some(Bson::Boolean(b)) => *b,
        _ => false,
    }
}

fn wrong(field: &'static str, expected: &'static str) -> HelloError {
    HelloError::WrongType { field, expected }
}

fn present<'a>(doc: &'a Document, key: &str) -> Option<&'a Bson> {
    match doc.get(key) {
        None | Some(Bson::Null) => None,
        Some(b) => Some(b),
    }
}

fn get_bool(doc: &Document, key: &'static str) -> Result<Option<bool>, HelloError> {
    match present(doc, key) {
        None => Ok(None),
        Some(Bson::Boolean(b)) => Ok(Some(*b)),
        Some(_) => Err(wrong(key, "a boolean")),
    }
}

fn get_str<'a>(doc: &'a Document, key: &'static str) -> Result<Option<&'a str>, HelloError> {
    match present(doc, key) {
        None => Ok(None),
        Some(Bson::String(s)) => Ok(Some(s)),
        Some(_) => Err(wrong(key, "a string")),
    }
}

/// An integer field; integral doubles are accepted since some tools send numbers as doubles.
pub(crate) fn int_value(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        Bson::Double(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => format!("{d:.0}").parse().ok(),
        _ => None,
    }
}

fn get_int(doc: &Document, key: &'static str) -> Result<Option<i64>, HelloError> {
    present(doc, key)
        .map(|b| int_value(b).ok_or_else(|| wrong(key, "an integer")))
        .transpose()
}

fn get_i32(doc: &Document, key: &'static str) -> Result<Option<i32>, HelloError> {
    get_int(doc, key)?
        .map(|v| i32::try_from(v).map_err(|_| HelloError::OutOfRange { field: key }))
        .transpose()
}

fn get_u32(doc: &Document, key: &'static str) -> Result<Option<u32>, HelloError> {
    get_int(doc, key)?
        .map(|v| u32::try_from(v).map_err(|_| HelloError::OutOfRange { field: key }))
        .transpose()
}

fn get_oid(doc: &Document, key: &'static str) -> Result<Option<ObjectId>, HelloError> {
    match present(doc, key) {
        None => Ok(None),
        Some(Bson::ObjectId(oid)) => Ok(Some(*oid)),
        Some(_) => Err(wrong(key, "an ObjectId")),
    }
}

fn parse_address(key: &'static str, s: &str) -> Result<ServerAddress, HelloError> {
    ServerAddress::parse(s).map_err(|source| HelloError::BadAddress { field: key, source })
}

fn get_address(doc: &Document, key: &'static str) -> Result<Option<ServerAddress>, HelloError> {
    get_str(doc, key)?.map(|s| parse_address(key, s)).transpose()
}

fn get_address_set(doc: &Document, key: &'static str) -> Result<BTreeSet<ServerAddress>, HelloError> {
    match present(doc, key) {
        None => Ok(BTreeSet::new()),
        Some(Bson::Array(items)) => items
            .iter()
            .map(|b| match b {
                Bson::String(s) => parse_address(key, s),
                _ => Err(wrong(key, "an array of strings")),
            })
            .collect(),
        Some(_) => Err(wrong(key, "an array of strings")),
    }
}

fn get_tags(doc: &Document) -> Result<BTreeMap<String, String>, HelloError> {
    match present(doc, "tags") {
        None => Ok(BTreeMap::new()),
        Some(Bson::Document(tags)) => tags
            .iter()
            .map(|(k, v)| match v {
                Bson::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(wrong("tags", "a document of strings")),
            })
            .collect(),
        Some(_) => Err(wrong("tags", "a document of strings")),
    }
}

/// Parses a `{processId: ObjectId, counter: integer}` document.
pub(crate) fn topology_version_from(value: &Bson) -> Option<TopologyVersion> {
    let Bson::Document(doc) = value else {
        return None;
    };
    let process_id = match doc.get("processId") {
        Some(Bson::ObjectId(oid)) => *oid,
        _ => return None,
    };
    let counter = doc.get("counter").and_then(int_value)?;
    Some(TopologyVersion { process_id, counter })
}

fn get_topology_version(doc: &Document, key: &'static str) -> Result<Option<TopologyVersion>, HelloError> {
    present(doc, key)
        .map(|b| topology_version_from(b).ok_or_else(|| wrong(key, "{processId, counter}")))
        .transpose()
}

fn get_last_write_date(doc: &Document) -> Result<Option<i64>, HelloError> {
    let last_write = match present(doc, "lastWrite") {
        None => return Ok(None),
        Some(Bson::Document(d)) => d,
        Some(_) => return Err(wrong("lastWrite", "a document")),
    };
    match present(last_write, "lastWriteDate") {
        None => Ok(None),
        Some(Bson::DateTime(dt)) => Ok(Some(dt.timestamp_millis())),
        Some(other) => int_value(other)
            .map(Some)
            .ok_or_else(|| wrong("lastWriteDate", "a date")),
    }
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    fn parse_type(reply: Document) -> (ServerType, Option<String>) {
        let sd = ServerDescription::from_hello(
            ServerAddress::new("a", 27017),
            &reply,
            Duration::from_millis(5),
            Duration::from_secs(1),
        );
        (sd.server_type, sd.error)
    }

    #[test]
    fn server_types_from_replies() {
        use ServerType::*;
        let cases = [
            (doc! {"ok": 1}, Standalone),
            (doc! {"ok": 1.0, "msg": "isdbgrid"}, Mongos),
            (doc! {"ok": true, "isreplicaset": true, "setName": "rs"}, RsGhost),
            (
                doc! {"ok": 1, "setName": "rs", "isWritablePrimary": true},
                RsPrimary,
            ),
            (doc! {"ok": 1, "setName": "rs", "ismaster": true}, RsPrimary),
            (
                doc! {"ok": 1, "setName": "rs", "isWritablePrimary": false, "ismaster": true},
                RsOther,
            ),
            (doc! {"ok": 1, "setName": "rs", "secondary": true}, RsSecondary),
            (
                doc! {"ok": 1, "setName": "rs", "secondary": true, "hidden": true},
                RsOther,
            ),
            (doc! {"ok": 1, "setName": "rs", "arbiterOnly": true}, RsArbiter),
            (doc! {"ok": 1, "setName": "rs"}, RsOther),
            (doc! {"ok": 0, "errmsg": "boom", "code": 1}, Unknown),
            (doc! {"isWritablePrimary": true}, Unknown),
        ];
        for (reply, want) in cases {
            assert_eq!(parse_type(reply.clone()).0, want, "{reply}");
        }
    }

    #[test]
    fn wrong_types_give_unknown_with_error() {
        let cases = [
            doc! {"ok": 1, "setName": 5},
            doc! {"ok": 1, "hosts": "a:1"},
            doc! {"ok": 1, "hosts": [1]},
            doc! {"ok": 1, "hosts": ["a:0"]},
            doc! {"ok": 1, "me": ":1"},
            doc! {"ok": 1, "secondary": "yes"},
            doc! {"ok": 1, "maxWireVersion": "21"},
            doc! {"ok": 1, "maxWireVersion": 1.5},
            doc! {"ok": 1, "maxWireVersion": i64::MAX},
            doc! {"ok": 1, "logicalSessionTimeoutMinutes": -1},
            doc! {"ok": 1, "tags": {"dc": 1}},
            doc! {"ok": 1, "electionId": "x"},
            doc! {"ok": 1, "topologyVersion": {"processId": 1, "counter": 1}},
            doc! {"ok": 1, "lastWrite": {"lastWriteDate": "today"}},
            doc! {"ok": 1, "compression": [1]},
            doc! {"ok": 1, "maxMessageSizeBytes": -5},
        ];
        for reply in cases {
            let (t, err) = parse_type(reply.clone());
            assert_eq!(t, ServerType::Unknown, "{reply}");
            assert!(err.is_some(), "{reply}");
        }
    }

    #[test]
    fn fields_are_parsed_and_normalised() {
        let oid = ObjectId::from_bytes([1; 12]);
        let reply = doc! {
            "ok": 1, "setName": "rs", "isWritablePrimary": true, "setVersion": 3_i64,
            "electionId": oid, "hosts": ["A:1", "b:2"], "passives": ["C:3"],
            "arbiters": ["d:4"], "primary": "A:1", "me": "A:1", "tags": {"dc": "ny"},
            "minWireVersion": 0, "maxWireVersion": 21, "logicalSessionTimeoutMinutes": 30,
            "topologyVersion": {"processId": oid, "counter": 4_i64},
            "lastWrite": {"lastWriteDate": bson::DateTime::from_millis(1234)},
            "maxMessageSizeBytes": 100, "maxBsonObjectSize": 10.0, "maxWriteBatchSize": 7,
            "compression": ["zstd"], "setNameX": null,
        };
        let sd = ServerDescription::from_hello(
            ServerAddress::new("a", 1),
            &reply,
            Duration::from_millis(2),
            Duration::from_secs(3),
        );
        assert_eq!(sd.error, None);
        assert_eq!(sd.server_type, ServerType::RsPrimary);
        assert!(sd.hosts.contains(&ServerAddress::new("a", 1)));
        assert!(sd.passives.contains(&ServerAddress::new("c", 3)));
        assert_eq!(sd.members().count(), 4);
        assert_eq!(sd.me, Some(ServerAddress::new("a", 1)));
        assert_eq!(sd.set_version, Some(3));
        assert_eq!(sd.election_id, Some(oid));
        assert_eq!(sd.tags.get("dc").map(String::as_str), Some("ny"));
        assert_eq!(sd.logical_session_timeout_minutes, Some(30));
        assert_eq!(sd.topology_version.map(|t| t.counter), Some(4));
        assert_eq!(sd.last_write_date, Some(1234));
        assert_eq!(
            (
                sd.max_message_size_bytes,
                sd.max_bson_object_size,
                sd.max_write_batch_size
            ),
            (100, 10, 7)
        );
        assert_eq!(sd.compression, vec!["zstd".to_owned()]);
        assert_eq!(sd.round_trip_time, Some(Duration::from_millis(2)));
        assert_eq!(sd.last_update_time, Some(Duration::from_secs(3)));
    }

    #[test]
    fn missing_wire_versions_default_to_zero() {
        let sd = ServerDescription::from_hello(
            ServerAddress::new("a", 1),
            &doc! {"ok": 1, "isWritablePrimary": true},
            Duration::ZERO,
            Duration::ZERO,
        );
        assert_eq!((sd.min_wire_version, sd.max_wire_version), (Some(0), Some(0)));
    }
}
