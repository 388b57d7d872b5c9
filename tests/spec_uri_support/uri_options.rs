//! Checks one case of the connection-string and uri-options spec files: validity,
//! warnings, hosts, `auth` and `options`.

use std::net::Ipv4Addr;

use mongoplex::config::uri::{ConnectionString, Host};
use serde_json::{Map, Value};

use crate::spec_view::{loose_eq, normalize, spec_view};
use crate::Outcome;

/// Option names mongoplex deliberately does not implement, with the reason;
/// a case using one is skipped and named. Empty: every spec option parses.
const UNSUPPORTED_OPTIONS: &[(&str, &str)] = &[];

pub fn check_uri_case(case: &Value) -> Outcome {
    let (Some(uri), Some(valid)) = (
        case.get("uri").and_then(Value::as_str),
        case.get("valid").and_then(Value::as_bool),
    ) else {
        return Outcome::Fail(vec![
            "malformed case: needs string \"uri\" and bool \"valid\"".into()
        ]);
    };
    if let Some(reason) = unsupported_reason(uri, case.get("options")) {
        return Outcome::Skip(reason);
    }
    let cs = match (ConnectionString::parse(uri), valid) {
        (Err(_), false) => return Outcome::Pass,
        (Ok(cs), false) => {
            return Outcome::Fail(vec![format!(
                "{uri:?} should be rejected, parsed with warnings {:?}",
                cs.warnings
            )])
        }
        (Err(e), true) => return Outcome::Fail(vec![format!("{uri:?} rejected: {e}")]),
        (Ok(cs), true) => cs,
    };
    let mut errors = Vec::new();
    match case.get("warning") {
        Some(Value::Bool(true)) if cs.warnings.is_empty() => {
            errors.push(format!("{uri:?}: expected a warning, got none"));
        }
        Some(Value::Bool(false)) if !cs.warnings.is_empty() => {
            errors.push(format!("{uri:?}: expected no warning, got {:?}", cs.warnings));
        }
        _ => {}
    }
    if let Some(Value::Array(hosts)) = case.get("hosts") {
        check_hosts(hosts, &cs, &mut errors);
    }
    if let Some(Value::Object(auth)) = case.get("auth") {
        check_auth(auth, &cs, &mut errors);
    }
    if let Some(Value::Object(expected)) = case.get("options") {
        let actual = spec_view(&cs);
        for (key, want) in expected {
            let key = key.to_ascii_lowercase();
            match (want, actual.get(&key)) {
                (Value::Null, _) => {}
                (_, None) => errors.push(format!("option {key}: expected {want}, not set")),
                (_, Some(got)) if !loose_eq(&normalize(&key, want), got) => {
                    errors.push(format!("option {key}: expected {want}, got {got}"));
                }
                _ => {}
            }
        }
    }
    if errors.is_empty() {
        Outcome::Pass
    } else {
        Outcome::Fail(errors)
    }
}

/// A reason to skip when the case uses an option mongoplex does not implement.
fn unsupported_reason(uri: &str, options: Option<&Value>) -> Option<String> {
    let mut keys: Vec<String> = uri
        .split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .filter_map(|p| p.split('=').next())
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default();
    if let Some(Value::Object(map)) = options {
        keys.extend(map.keys().map(|k| k.to_ascii_lowercase()));
    }
    UNSUPPORTED_OPTIONS
        .iter()
        .find(|(name, _)| keys.iter().any(|k| k.eq_ignore_ascii_case(name)))
        .map(|(name, why)| format!("option {name} is not supported: {why}"))
}

fn check_hosts(expected: &[Value], cs: &ConnectionString, errors: &mut Vec<String>) {
    if expected.len() != cs.hosts.len() {
        errors.push(format!("expected {} hosts, got {:?}", expected.len(), cs.hosts));
        return;
    }
    for (want, got) in expected.iter().zip(&cs.hosts) {
        let (kind, host, port) = match got {
            Host::Unix(path) => ("unix", path.display().to_string(), None),
            Host::Tcp(a) if a.host.parse::<Ipv4Addr>().is_ok() => ("ipv4", a.host.clone(), Some(a.port)),
            Host::Tcp(a) if a.host.contains(':') => ("ip_literal", a.host.clone(), Some(a.port)),
            Host::Tcp(a) => ("hostname", a.host.clone(), Some(a.port)),
        };
        let field = |name: &str| want.get(name).filter(|v| !v.is_null());
        if let Some(t) = field("type").and_then(Value::as_str) {
            if t != kind {
                errors.push(format!("host {got}: expected type {t}, got {kind}"));
            }
        }
        if let Some(h) = field("host").and_then(Value::as_str) {
            // Host names are case-insensitive and stored lowercased (SDAM);
            // socket paths are case-sensitive.
            let same = if kind == "unix" {
                h == host
            } else {
                h.eq_ignore_ascii_case(&host)
            };
            if !same {
                errors.push(format!("expected host {h:?}, got {host:?}"));
            }
        }
        if let Some(p) = field("port") {
            if p.as_u64() != port.map(u64::from) {
                errors.push(format!("host {got}: expected port {p}, got {port:?}"));
            }
        }
    }
}

fn check_auth(expected: &Map<String, Value>, cs: &ConnectionString, errors: &mut Vec<String>) {
    let cred = cs.credential.as_ref();
    let actual = [
        ("username", cred.and_then(|c| c.username.clone())),
        (
            "password",
            cred.and_then(|c| c.password.as_ref())
                .map(|p| p.expose().to_owned()),
        ),
        ("db", cs.default_database.clone()),
    ];
    for (field, got) in actual {
        match expected.get(field) {
            None | Some(Value::Null) => {}
            Some(want) if want.as_str() == got.as_deref() => {}
            Some(want) => errors.push(format!("auth {field}: expected {want}, got {got:?}")),
        }
    }
}
