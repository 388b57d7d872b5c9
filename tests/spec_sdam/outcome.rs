//! Comparing a topology description with a non-monitoring "outcome" object. Fields absent
//! from the outcome are not checked (the README says later-added fields may be missing);
//! fields the runner does not know fail the file rather than pass silently.

use bson::oid::ObjectId;
use mongoplex::address::ServerAddress;
use mongoplex::sdam::{ServerDescription, ServerType, TopologyDescription, TopologyVersion};
use serde_json::{Map, Value};

use crate::ejson;

pub fn compare_topology(td: &TopologyDescription, outcome: &Value) -> Result<(), String> {
    let outcome = outcome.as_object().ok_or("outcome is not an object")?;
    for (key, want) in outcome {
        match key.as_str() {
            "topologyType" => same("topologyType", want.as_str(), Some(td.topology_type().as_str()))?,
            "setName" => same("setName", want.as_str(), td.set_name())?,
            "logicalSessionTimeoutMinutes" => {
                same_int(key, want, td.logical_session_timeout_minutes().map(i64::from))?
            }
            "maxSetVersion" => same_int(key, want, td.max_set_version())?,
            "maxElectionId" => same_oid(key, want, td.max_election_id())?,
            "compatible" => same("compatible", want.as_bool(), Some(td.compatible()))?,
            "servers" => compare_servers(td, want)?,
            other => return Err(format!("outcome field {other:?} is not understood by the runner")),
        }
    }
    Ok(())
}

fn compare_servers(td: &TopologyDescription, want: &Value) -> Result<(), String> {
    let want = want.as_object().ok_or("outcome.servers is not an object")?;
    let mut expected = Vec::new();
    for address in want.keys() {
        expected.push(ServerAddress::parse(address).map_err(|e| e.to_string())?);
    }
    expected.sort();
    let actual: Vec<_> = td.servers().map(|s| s.address.clone()).collect();
    if actual != expected {
        return Err(format!("servers: expected {expected:?}, got {actual:?}"));
    }
    for (address, server) in want {
        let parsed = ServerAddress::parse(address).map_err(|e| e.to_string())?;
        let sd = td.server(&parsed).ok_or("server vanished")?;
        let server = server.as_object().ok_or("server outcome is not an object")?;
        compare_server(td, sd, server).map_err(|e| format!("server {address}: {e}"))?;
    }
    Ok(())
}

fn compare_server(
    td: &TopologyDescription,
    sd: &ServerDescription,
    want: &Map<String, Value>,
) -> Result<(), String> {
    for (key, value) in want {
        match key.as_str() {
            "type" => same_type(value, sd.server_type)?,
            "setName" => same("setName", value.as_str(), sd.set_name.as_deref())?,
            "setVersion" => same_int(key, value, sd.set_version)?,
            "electionId" => same_oid(key, value, sd.election_id)?,
            "logicalSessionTimeoutMinutes" => {
                same_int(key, value, sd.logical_session_timeout_minutes.map(i64::from))?
            }
            "minWireVersion" => same_int(key, value, sd.min_wire_version.map(i64::from))?,
            "maxWireVersion" => same_int(key, value, sd.max_wire_version.map(i64::from))?,
            "topologyVersion" => same_topology_version(value, sd.topology_version)?,
            "error" => {
                let want = value.as_str().ok_or("error should be a string")?;
                let got = sd.error.as_deref().unwrap_or("");
                if !got.contains(want) {
                    return Err(format!("error {got:?} does not contain {want:?}"));
                }
            }
            "pool" => {
                let want = value.get("generation").and_then(ejson::int);
                let got = td.pool_generation(&sd.address).map(i64::from);
                same("pool.generation", want, got)?;
            }
            other => return Err(format!("server field {other:?} is not understood by the runner")),
        }
    }
    Ok(())
}

/// PossiblePrimary is a synonym of Unknown for multi-threaded clients (SDAM spec).
pub fn same_type(want: &Value, got: ServerType) -> Result<(), String> {
    let want = want.as_str().ok_or("type should be a string")?;
    let want: ServerType = want.parse().map_err(|e| format!("{e}"))?;
    let normalise = |t: ServerType| match t {
        ServerType::PossiblePrimary => ServerType::Unknown,
        t => t,
    };
    if normalise(want) != normalise(got) {
        return Err(format!("type: expected {want}, got {got}"));
    }
    Ok(())
}

pub fn same<T: PartialEq + std::fmt::Debug>(
    what: &str,
    want: Option<T>,
    got: Option<T>,
) -> Result<(), String> {
    if want != got {
        return Err(format!("{what}: expected {want:?}, got {got:?}"));
    }
    Ok(())
}

fn same_int(what: &str, want: &Value, got: Option<i64>) -> Result<(), String> {
    let want = match want {
        Value::Null => None,
        v => Some(ejson::int(v).ok_or_else(|| format!("{what} should be an integer"))?),
    };
    same(what, want, got)
}

fn same_oid(what: &str, want: &Value, got: Option<ObjectId>) -> Result<(), String> {
    let want = match ejson::to_bson(want)? {
        bson::Bson::Null => None,
        bson::Bson::ObjectId(oid) => Some(oid),
        other => return Err(format!("{what} should be an ObjectId, got {other}")),
    };
    same(what, want, got)
}

fn same_topology_version(want: &Value, got: Option<TopologyVersion>) -> Result<(), String> {
    let want = match want {
        Value::Null => None,
        v => {
            let process_id = match v.get("processId").map(ejson::to_bson).transpose()? {
                Some(bson::Bson::ObjectId(oid)) => oid,
                _ => return Err("topologyVersion.processId should be an ObjectId".into()),
            };
            let counter = v
                .get("counter")
                .and_then(ejson::int)
                .ok_or("topologyVersion.counter should be an integer")?;
            Some(TopologyVersion { process_id, counter })
        }
    };
    same("topologyVersion", want, got)
}
