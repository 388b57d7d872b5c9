//! Runners for server-selection/{server_selection/**, rtt, in_window} and max-staleness/**.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mongoplex::address::ServerAddress;
use mongoplex::sdam::{
    choose_in_window, in_latency_window, select, suitable_servers, ReadMode, ReadPreference, RttEstimator,
    SelectionCriteria, ServerDescription, TopologyDescription, TopologySettings, TopologyType,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;

use crate::ejson;
use crate::report::Outcome;

fn outcome(result: Result<(), String>) -> Outcome {
    match result {
        Ok(()) => Outcome::Passed,
        Err(e) => Outcome::Failed(e),
    }
}

/// server_selection and max-staleness files: suitable servers and the latency window.
pub fn run_selection(file: &Value) -> Outcome {
    outcome(selection(file))
}

fn selection(file: &Value) -> Result<(), String> {
    let topology = topology(file)?;
    let expect_error = file.get("error").and_then(Value::as_bool).unwrap_or(false);
    let criteria = match criteria(file) {
        Ok(c) => c,
        Err(_) if expect_error => return Ok(()),
        Err(e) => return Err(format!("read preference rejected: {e}")),
    };
    let deprioritized = file
        .get("deprioritized_servers")
        .and_then(Value::as_array)
        .map_or(Ok(Vec::new()), |list| addresses(list))?;
    let suitable = match suitable_servers(&topology, &criteria, &deprioritized) {
        Ok(s) => s,
        Err(_) if expect_error => return Ok(()),
        Err(e) => return Err(format!("selection failed: {e}")),
    };
    if expect_error {
        return Err("expected an error, selection succeeded".into());
    }
    let got: BTreeSet<_> = suitable.iter().map(|s| s.address.clone()).collect();
    if let Some(want) = file.get("suitable_servers").and_then(Value::as_array) {
        compare_sets("suitable_servers", want, &got)?;
    }
    let window = in_latency_window(suitable, topology.settings().local_threshold);
    let got: BTreeSet<_> = window.iter().map(|s| s.address.clone()).collect();
    let want = file
        .get("in_latency_window")
        .and_then(Value::as_array)
        .ok_or("no in_latency_window")?;
    compare_sets("in_latency_window", want, &got)
}

fn compare_sets(what: &str, want: &[Value], got: &BTreeSet<ServerAddress>) -> Result<(), String> {
    let want: BTreeSet<_> = addresses(want)?.into_iter().collect();
    if want != *got {
        return Err(format!("{what}: expected {want:?}, got {got:?}"));
    }
    Ok(())
}

fn addresses(list: &[Value]) -> Result<Vec<ServerAddress>, String> {
    list.iter()
        .map(|s| {
            let a = s
                .get("address")
                .and_then(Value::as_str)
                .ok_or("server without address")?;
            ServerAddress::parse(a).map_err(|e| e.to_string())
        })
        .collect()
}

/// The file's read preference as the `$readPreference` document a client would send: the
/// files spell modes capitalised and tags as `tag_sets`, and omit mode for primary.
fn criteria(file: &Value) -> Result<SelectionCriteria, String> {
    if file.get("operation").and_then(Value::as_str) == Some("write") {
        return Ok(SelectionCriteria::Write);
    }
    let mut doc = bson::Document::new();
    let rp = file.get("read_preference").and_then(Value::as_object);
    let mode = rp
        .and_then(|rp| rp.get("mode"))
        .and_then(Value::as_str)
        .unwrap_or("primary");
    let mut chars = mode.chars();
    let mode: String = chars
        .next()
        .map(|c| c.to_ascii_lowercase())
        .into_iter()
        .chain(chars)
        .collect();
    doc.insert("mode", mode);
    for (key, value) in rp.into_iter().flatten() {
        match key.as_str() {
            "mode" => {}
            "tag_sets" => drop(doc.insert("tags", ejson::to_bson(value)?)),
            "maxStalenessSeconds" => drop(doc.insert(key.as_str(), ejson::to_bson(value)?)),
            "hedge" => drop(doc.insert("hedge", ejson::to_bson(value)?)),
            other => return Err(format!("read_preference field {other:?} is not understood")),
        }
    }
    ReadPreference::from_document(&doc)
        .map(SelectionCriteria::Read)
        .map_err(|e| e.to_string())
}

fn topology(file: &Value) -> Result<TopologyDescription, String> {
    let td = file
        .get("topology_description")
        .ok_or("no topology_description")?;
    let t: TopologyType = td
        .get("type")
        .and_then(Value::as_str)
        .ok_or("no topology type")?
        .parse()
        .map_err(|e| format!("{e}"))?;
    let servers = td
        .get("servers")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(server)
        .collect::<Result<Vec<_>, _>>()?;
    let mut settings = TopologySettings::new(servers.iter().map(|s| s.address.clone()).collect());
    if let Some(hb) = file.get("heartbeatFrequencyMS") {
        let ms = ejson::int(hb)
            .and_then(|v| u64::try_from(v).ok())
            .ok_or("bad heartbeatFrequencyMS")?;
        settings.heartbeat_frequency = Duration::from_millis(ms);
    }
    Ok(TopologyDescription::from_servers(settings, t, servers))
}

fn millis(v: &Value) -> Result<Duration, String> {
    if let Some(ms) = v.as_u64() {
        return Ok(Duration::from_millis(ms));
    }
    let ms = v
        .as_f64()
        .ok_or_else(|| format!("{v} is not a number of milliseconds"))?;
    Duration::try_from_secs_f64(ms / 1000.0).map_err(|e| e.to_string())
}

fn server(v: &Value) -> Result<ServerDescription, String> {
    let address = v
        .get("address")
        .and_then(Value::as_str)
        .ok_or("server without address")?;
    let mut sd = ServerDescription::unknown(ServerAddress::parse(address).map_err(|e| e.to_string())?, None);
    for (key, value) in v.as_object().ok_or("server is not an object")? {
        match key.as_str() {
            "address" => {}
            "type" => sd.server_type = value.as_str().unwrap_or("").parse().map_err(|e| format!("{e}"))?,
            "avg_rtt_ms" => sd.round_trip_time = Some(millis(value)?),
            "lastUpdateTime" => sd.last_update_time = Some(millis(value)?),
            "lastWrite" => sd.last_write_date = value.get("lastWriteDate").and_then(ejson::int),
            "maxWireVersion" => {
                let wire = ejson::int(value).and_then(|w| i32::try_from(w).ok());
                sd.max_wire_version = Some(wire.ok_or("bad maxWireVersion")?);
                sd.min_wire_version = Some(0);
            }
            "tags" => {
                let tags = value.as_object().ok_or("tags should be an object")?;
                sd.tags = tags
                    .iter()
                    .map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect::<Option<BTreeMap<_, _>>>()
                    .ok_or("tag values should be strings")?;
            }
            other => return Err(format!("server field {other:?} is not understood")),
        }
    }
    Ok(sd)
}

/// rtt files: one step of the moving average.
pub fn run_rtt(file: &Value) -> Outcome {
    outcome((|| {
        let old = match file.get("avg_rtt_ms") {
            Some(Value::String(s)) if s == "NULL" => None,
            Some(v) => Some(millis(v)?),
            None => return Err("no avg_rtt_ms".into()),
        };
        let sample = millis(file.get("new_rtt_ms").ok_or("no new_rtt_ms")?)?;
        let want = file
            .get("new_avg_rtt")
            .and_then(Value::as_f64)
            .ok_or("no new_avg_rtt")?;
        let got = RttEstimator::with_average(old).add_sample(sample).as_secs_f64() * 1000.0;
        if (got - want).abs() > 1e-4 {
            return Err(format!("new average: expected {want} ms, got {got} ms"));
        }
        Ok(())
    })())
}

/// in_window files: selection frequencies under fixed operation counts, with a seeded RNG
/// so the run is deterministic.
pub fn run_in_window(file: &Value) -> Outcome {
    outcome(in_window(file))
}

fn in_window(file: &Value) -> Result<(), String> {
    let topology = topology(file)?;
    let mut counts = BTreeMap::new();
    for entry in file
        .get("mocked_topology_state")
        .and_then(Value::as_array)
        .ok_or("no mocked_topology_state")?
    {
        let address = entry
            .get("address")
            .and_then(Value::as_str)
            .ok_or("state without address")?;
        let count = entry
            .get("operation_count")
            .and_then(Value::as_u64)
            .ok_or("bad operation_count")?;
        counts.insert(ServerAddress::parse(address).map_err(|e| e.to_string())?, count);
    }
    let iterations = file
        .get("iterations")
        .and_then(Value::as_u64)
        .ok_or("no iterations")?;
    let iterations = u32::try_from(iterations).map_err(|e| e.to_string())?;
    let expected = file.get("outcome").ok_or("no outcome")?;
    let tolerance = expected
        .get("tolerance")
        .and_then(Value::as_f64)
        .ok_or("no tolerance")?;
    let criteria = SelectionCriteria::Read(ReadPreference::with_mode(ReadMode::Nearest));
    let window = select(&topology, &criteria).map_err(|e| e.to_string())?;
    let mut rng = StdRng::seed_from_u64(0x5eed_cafe);
    let mut chosen: BTreeMap<ServerAddress, u32> = BTreeMap::new();
    for _ in 0..iterations {
        let count = |a: &ServerAddress| counts.get(a).copied().unwrap_or(0);
        let sd = choose_in_window(&window, count, &mut rng).ok_or("nothing selected")?;
        *chosen.entry(sd.address.clone()).or_default() += 1;
    }
    let freqs = expected
        .get("expected_frequencies")
        .and_then(Value::as_object)
        .ok_or("no expected_frequencies")?;
    for (address, want) in freqs {
        let want = want.as_f64().ok_or("frequency should be a number")?;
        let address = ServerAddress::parse(address).map_err(|e| e.to_string())?;
        let hits = chosen.get(&address).copied().unwrap_or(0);
        let got = f64::from(hits) / f64::from(iterations);
        let exact = want == 0.0 || want == 1.0;
        if (exact && got != want) || (got - want).abs() > tolerance {
            return Err(format!(
                "{address}: expected frequency {want} (±{tolerance}), got {got}"
            ));
        }
    }
    let unexpected: Vec<_> = chosen
        .keys()
        .filter(|a| {
            !freqs
                .keys()
                .any(|k| ServerAddress::parse(k).ok().as_ref() == Some(*a))
        })
        .collect();
    if !unexpected.is_empty() {
        return Err(format!(
            "selected servers outside expected_frequencies: {unexpected:?}"
        ));
    }
    Ok(())
}
