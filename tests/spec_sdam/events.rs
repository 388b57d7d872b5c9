//! Comparing published SDAM events with a monitoring test's expected `events` list. Server
//! descriptions in events are compared on the fields the files show (address, type, hosts,
//! passives, arbiters, primary, setName): absent setName/primary mean null, absent lists
//! mean empty.

use std::collections::BTreeSet;

use mongoplex::address::ServerAddress;
use mongoplex::sdam::{SdamEvent, ServerDescription, TopologySnapshot};
use serde_json::{Map, Value};

use crate::outcome::{same, same_type};

pub fn compare_events(actual: &[SdamEvent], expected: &[Value]) -> Result<(), String> {
    if actual.len() != expected.len() {
        let names: Vec<_> = actual.iter().map(name).collect();
        return Err(format!(
            "expected {} events, got {}: {names:?}",
            expected.len(),
            actual.len()
        ));
    }
    for (i, (got, want)) in actual.iter().zip(expected).enumerate() {
        compare_event(got, want).map_err(|e| format!("event {i} ({}): {e}", name(got)))?;
    }
    Ok(())
}

fn name(event: &SdamEvent) -> &'static str {
    match event {
        SdamEvent::TopologyOpening => "topology_opening_event",
        SdamEvent::TopologyDescriptionChanged { .. } => "topology_description_changed_event",
        SdamEvent::ServerOpening { .. } => "server_opening_event",
        SdamEvent::ServerDescriptionChanged { .. } => "server_description_changed_event",
        SdamEvent::ServerClosed { .. } => "server_closed_event",
        SdamEvent::TopologyClosed => "topology_closed_event",
    }
}

fn compare_event(got: &SdamEvent, want: &Value) -> Result<(), String> {
    let want = want.as_object().ok_or("event is not an object")?;
    let (kind, body) = match (want.len(), want.iter().next()) {
        (1, Some((k, v))) => (k.as_str(), v),
        _ => return Err("event must have exactly one key".into()),
    };
    if kind != name(got) {
        return Err(format!("expected {kind}"));
    }
    match got {
        SdamEvent::TopologyOpening | SdamEvent::TopologyClosed => Ok(()),
        SdamEvent::ServerOpening { address } | SdamEvent::ServerClosed { address } => {
            same_address(body.get("address"), address)
        }
        SdamEvent::ServerDescriptionChanged {
            address,
            previous,
            new,
        } => {
            same_address(body.get("address"), address)?;
            compare_server(previous, body.get("previousDescription"))
                .map_err(|e| format!("previous: {e}"))?;
            compare_server(new, body.get("newDescription")).map_err(|e| format!("new: {e}"))
        }
        SdamEvent::TopologyDescriptionChanged { previous, new } => {
            compare_topology(previous, body.get("previousDescription"))
                .map_err(|e| format!("previous: {e}"))?;
            compare_topology(new, body.get("newDescription")).map_err(|e| format!("new: {e}"))
        }
    }
}

fn same_address(want: Option<&Value>, got: &ServerAddress) -> Result<(), String> {
    let want = want.and_then(Value::as_str).ok_or("missing address")?;
    let want = ServerAddress::parse(want).map_err(|e| e.to_string())?;
    same("address", Some(&want), Some(got))
}

fn object(v: Option<&Value>) -> Result<&Map<String, Value>, String> {
    v.and_then(Value::as_object)
        .ok_or_else(|| "missing description".to_owned())
}

fn compare_topology(got: &TopologySnapshot, want: Option<&Value>) -> Result<(), String> {
    let want = object(want)?;
    for key in want.keys() {
        if !matches!(key.as_str(), "topologyType" | "setName" | "servers") {
            return Err(format!("topology field {key:?} is not understood by the runner"));
        }
    }
    let want_type = want.get("topologyType").and_then(Value::as_str);
    same("topologyType", want_type, Some(got.topology_type.as_str()))?;
    let want_set = want.get("setName").and_then(Value::as_str);
    same("setName", want_set, got.set_name.as_deref())?;
    let servers = want
        .get("servers")
        .and_then(Value::as_array)
        .ok_or("servers should be an array")?;
    if servers.len() != got.servers.len() {
        return Err(format!(
            "expected {} servers, got {}",
            servers.len(),
            got.servers.len()
        ));
    }
    for server in servers {
        let address = server
            .get("address")
            .and_then(Value::as_str)
            .ok_or("server without address")?;
        let address = ServerAddress::parse(address).map_err(|e| e.to_string())?;
        let sd = got
            .servers
            .iter()
            .find(|s| s.address == address)
            .ok_or_else(|| format!("no server {address}"))?;
        compare_server(sd, Some(server)).map_err(|e| format!("{address}: {e}"))?;
    }
    Ok(())
}

fn compare_server(got: &ServerDescription, want: Option<&Value>) -> Result<(), String> {
    let want = object(want)?;
    for key in want.keys() {
        let known = [
            "address", "arbiters", "hosts", "passives", "primary", "setName", "type",
        ];
        if !known.contains(&key.as_str()) {
            return Err(format!("server field {key:?} is not understood by the runner"));
        }
    }
    same_address(want.get("address"), &got.address)?;
    same_type(want.get("type").ok_or("missing type")?, got.server_type)?;
    let want_set = want.get("setName").and_then(Value::as_str);
    same("setName", want_set, got.set_name.as_deref())?;
    let want_primary = want
        .get("primary")
        .and_then(Value::as_str)
        .map(ServerAddress::parse)
        .transpose()
        .map_err(|e| e.to_string())?;
    same("primary", want_primary.as_ref(), got.primary.as_ref())?;
    for (key, list) in [
        ("hosts", &got.hosts),
        ("passives", &got.passives),
        ("arbiters", &got.arbiters),
    ] {
        let mut want_list = BTreeSet::new();
        for item in want
            .get(key)
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
        {
            let item = item
                .as_str()
                .ok_or_else(|| format!("{key} entries should be strings"))?;
            want_list.insert(ServerAddress::parse(item).map_err(|e| e.to_string())?);
        }
        same(key, Some(&want_list), Some(list))?;
    }
    Ok(())
}
