//! Runner for the SDAM files (sdam/{rs,single,sharded,errors,load-balanced,monitoring}):
//! feeds each phase's hello responses and application errors to the topology, then checks the
//! outcome, either a topology description or the SDAM events published in the phase.

use std::time::Duration;

use mongoplex::address::ServerAddress;
use mongoplex::sdam::{
    AppError, AppErrorKind, CommandError, HandshakePhase, SdamEvent, ServerDescription, ServerType,
    TopologyDescription,
};
use serde_json::Value;

use crate::events::compare_events;
use crate::report::Outcome;
use crate::{ejson, uri};

pub fn run(file: &Value) -> Outcome {
    let settings = match uri::parse(str_field(file, "uri").unwrap_or_default()) {
        Ok(s) => s,
        Err(uri::UriProblem::Skip(reason)) => return Outcome::Skipped(reason),
        Err(uri::UriProblem::Fail(reason)) => return Outcome::Failed(reason),
    };
    let (mut topology, opening) = match TopologyDescription::new(settings) {
        Ok(t) => t,
        Err(e) => return Outcome::Failed(format!("settings rejected: {e}")),
    };
    let mut events = opening.events;
    let Some(phases) = file.get("phases").and_then(Value::as_array) else {
        return Outcome::Failed("no phases".into());
    };
    let mut clock = Clock::default();
    for (i, phase) in phases.iter().enumerate() {
        let name = str_field(phase, "description")
            .map_or_else(|| format!("phase {i}"), |d| format!("phase {i} ({d})"));
        if let Err(e) = run_phase(&mut topology, phase, &mut events, &mut clock) {
            return Outcome::Failed(format!("{name}: {e}"));
        }
    }
    Outcome::Passed
}

/// Monotonic time handed to `from_hello`, advancing one millisecond per response.
#[derive(Default)]
struct Clock(Duration);

fn run_phase(
    topology: &mut TopologyDescription,
    phase: &Value,
    events: &mut Vec<SdamEvent>,
    clock: &mut Clock,
) -> Result<(), String> {
    for response in array_field(phase, "responses") {
        clock.0 += Duration::from_millis(1);
        events.extend(apply_response(topology, response, clock.0)?);
    }
    for error in array_field(phase, "applicationErrors") {
        events.extend(apply_app_error(topology, error)?);
    }
    let outcome = phase.get("outcome").ok_or("phase has no outcome")?;
    if let Some(expected) = outcome.get("events") {
        let expected = expected.as_array().ok_or("outcome.events is not an array")?;
        let result = compare_events(events, expected);
        events.clear();
        result
    } else {
        crate::outcome::compare_topology(topology, outcome)
    }
}

fn apply_response(
    topology: &mut TopologyDescription,
    response: &Value,
    now: Duration,
) -> Result<Vec<SdamEvent>, String> {
    let (Some(address), Some(reply)) = (response.get(0).and_then(Value::as_str), response.get(1)) else {
        return Err(format!("malformed response {response}"));
    };
    let address = ServerAddress::parse(address).map_err(|e| e.to_string())?;
    let reply = ejson::to_document(reply)?;
    let update = if reply.is_empty() {
        topology.handle_monitor_error(&address, "network error during hello", false)
    } else {
        let sd = ServerDescription::from_hello(address, &reply, Duration::from_millis(1), now);
        if sd.server_type == ServerType::Unknown {
            let error = sd.error.unwrap_or_default();
            topology.handle_monitor_error(&sd.address, error, false)
        } else {
            topology.update(sd)
        }
    };
    Ok(update.events)
}

fn apply_app_error(topology: &mut TopologyDescription, error: &Value) -> Result<Vec<SdamEvent>, String> {
    let address = str_field(error, "address").ok_or("applicationError without address")?;
    let address = ServerAddress::parse(address).map_err(|e| e.to_string())?;
    let Some(pool_generation) = topology.pool_generation(&address) else {
        return Ok(Vec::new()); // the server is gone; nothing to apply it to
    };
    let generation = match error.get("generation") {
        None => pool_generation,
        Some(g) => ejson::int(g)
            .and_then(|g| u32::try_from(g).ok())
            .ok_or_else(|| format!("bad generation {g}"))?,
    };
    let max_wire_version = error
        .get("maxWireVersion")
        .and_then(ejson::int)
        .and_then(|v| i32::try_from(v).ok());
    let phase = match str_field(error, "when") {
        Some("beforeHandshakeCompletes") => HandshakePhase::BeforeHandshake,
        Some("afterHandshakeCompletes") => HandshakePhase::AfterHandshake,
        other => return Err(format!("unknown applicationError.when {other:?}")),
    };
    let kind = match str_field(error, "type") {
        Some("network") => AppErrorKind::Network { timeout: false },
        Some("timeout") => AppErrorKind::Network { timeout: true },
        Some("command") => {
            let response = error.get("response").ok_or("command error without response")?;
            match CommandError::from_reply(&ejson::to_document(response)?) {
                Some(cmd) => AppErrorKind::Command(cmd),
                None => return Ok(Vec::new()), // e.g. only writeErrors: never inspected
            }
        }
        other => return Err(format!("unknown applicationError.type {other:?}")),
    };
    let app_error = AppError {
        generation,
        phase,
        kind,
    };
    let action = topology.handle_application_error(&address, &app_error, max_wire_version);
    Ok(action.update.events)
}

pub fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

pub fn array_field<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}
