//! The parsed options in the spec files' own shape, and the comparison helpers that
//! forgive the older files' string forms and 5 versus 5.0.

use std::path::PathBuf;

use mongoplex::config::uri::{Acknowledgment, ConnectionString};
use serde_json::{Map, Value};

/// The parsed options as the spec files write them: lowercase keys, ms as
/// integers, lists as arrays, key/value options as objects.
pub fn spec_view(cs: &ConnectionString) -> Map<String, Value> {
    let o = &cs.options;
    let mut m = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            m.insert(key.to_owned(), v);
        }
    };
    let ms = |d: Option<std::time::Duration>| {
        d.map(|d| Value::from(u64::try_from(d.as_millis()).expect("ms fit u64")))
    };
    let string = |s: &Option<String>| s.clone().map(Value::from);
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| Value::from(p.display().to_string()));
    let flag = |b: Option<bool>| b.map(Value::from);
    let count = |n: Option<u32>| n.map(Value::from);
    put("appname", string(&o.app_name));
    put("replicaset", string(&o.replica_set));
    put("directconnection", flag(o.direct_connection));
    put("loadbalanced", flag(o.load_balanced));
    put("srvservicename", string(&o.srv_service_name));
    put("srvmaxhosts", count(o.srv_max_hosts));
    put("maxpoolsize", count(o.max_pool_size));
    put("minpoolsize", count(o.min_pool_size));
    put("maxconnecting", count(o.max_connecting));
    put("maxidletimems", ms(o.max_idle_time));
    put("waitqueuetimeoutms", ms(o.wait_queue_timeout));
    put("connecttimeoutms", ms(o.connect_timeout));
    put("sockettimeoutms", ms(o.socket_timeout));
    put("timeoutms", ms(o.timeout));
    put("serverselectiontimeoutms", ms(o.server_selection_timeout));
    put("serverselectiontryonce", flag(o.server_selection_try_once));
    put("heartbeatfrequencyms", ms(o.heartbeat_frequency));
    put("localthresholdms", ms(o.local_threshold));
    put(
        "servermonitoringmode",
        o.server_monitoring_mode.map(|v| v.as_str().into()),
    );
    put("readpreference", o.read_preference.map(|v| v.as_str().into()));
    if !o.read_preference_tags.is_empty() {
        let sets = o
            .read_preference_tags
            .iter()
            .map(|t| Value::Object(t.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect()));
        put("readpreferencetags", Some(Value::Array(sets.collect())));
    }
    put("maxstalenessseconds", o.max_staleness.map(|d| d.as_secs().into()));
    put("readconcernlevel", string(&o.read_concern_level));
    put(
        "w",
        o.w.as_ref().map(|w| match w {
            Acknowledgment::Nodes(n) => Value::from(*n),
            Acknowledgment::Majority => Value::from("majority"),
            Acknowledgment::Custom(name) => Value::from(name.as_str()),
        }),
    );
    put("journal", flag(o.journal));
    put("wtimeoutms", ms(o.wtimeout));
    put("retryreads", flag(o.retry_reads));
    put("retrywrites", flag(o.retry_writes));
    put("maxadaptiveretries", count(o.max_adaptive_retries));
    put("enableoverloadretargeting", flag(o.enable_overload_retargeting));
    put(
        "compressors",
        o.compressors
            .as_ref()
            .map(|c| c.iter().map(|c| c.as_str()).collect()),
    );
    put("zlibcompressionlevel", o.zlib_compression_level.map(Value::from));
    put("authmechanism", o.auth_mechanism.map(|m| m.as_str().into()));
    put("authsource", string(&o.auth_source));
    put(
        "authmechanismproperties",
        o.auth_mechanism_properties
            .as_ref()
            .map(|p| Value::Object(p.iter().map(|(k, v)| (k.to_owned(), v.into())).collect())),
    );
    put("tls", flag(o.tls));
    put("ssl", flag(o.tls));
    put("tlsinsecure", flag(o.tls_insecure));
    put(
        "tlsallowinvalidcertificates",
        flag(o.tls_allow_invalid_certificates),
    );
    put("tlsallowinvalidhostnames", flag(o.tls_allow_invalid_hostnames));
    put("tlscafile", path(&o.tls_ca_file));
    put("tlscertificatekeyfile", path(&o.tls_certificate_key_file));
    put(
        "tlscertificatekeyfilepassword",
        o.tls_certificate_key_file_password
            .as_ref()
            .map(|s| s.expose().into()),
    );
    put(
        "tlsdisableocspendpointcheck",
        flag(o.tls_disable_ocsp_endpoint_check),
    );
    put(
        "tlsdisablecertificaterevocationcheck",
        flag(o.tls_disable_certificate_revocation_check),
    );
    put("proxyhost", string(&o.proxy_host));
    put("proxyport", o.proxy_port.map(Value::from));
    put("proxyusername", string(&o.proxy_username));
    put(
        "proxypassword",
        o.proxy_password.as_ref().map(|s| s.expose().into()),
    );
    m
}

/// Older spec files wrote some values in string form: `compressors` as
/// "a,b", tag sets as "k:v,k2:v2", mechanism property values unquoted.
pub fn normalize(key: &str, value: &Value) -> Value {
    match (key, value) {
        ("compressors", Value::String(s)) => Value::Array(s.split(',').map(Value::from).collect()),
        ("readpreferencetags", Value::Array(sets)) => Value::Array(
            sets.iter()
                .map(|set| match set.as_str() {
                    Some(text) => Value::Object(
                        text.split(',')
                            .filter_map(|kv| kv.split_once(':'))
                            .map(|(k, v)| (k.to_owned(), v.into()))
                            .collect(),
                    ),
                    None => set.clone(),
                })
                .collect(),
        ),
        ("authmechanismproperties", Value::Object(props)) => {
            Value::Object(props.iter().map(|(k, v)| (k.clone(), scalar_string(v))).collect())
        }
        _ => value.clone(),
    }
}

pub fn scalar_string(v: &Value) -> Value {
    match v {
        Value::Bool(_) | Value::Number(_) => Value::String(v.to_string()),
        _ => v.clone(),
    }
}

/// JSON equality where 5 and 5.0 are the same number.
pub fn loose_eq(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(e), Value::Number(a)) => match (e.as_i64(), a.as_i64(), e.as_u64(), a.as_u64()) {
            (Some(x), Some(y), _, _) => x == y,
            (_, _, Some(x), Some(y)) => x == y,
            _ => e
                .as_f64()
                .zip(a.as_f64())
                .is_some_and(|(x, y)| x.total_cmp(&y).is_eq()),
        },
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(x, y)| loose_eq(x, y))
        }
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len() && e.iter().all(|(k, x)| a.get(k).is_some_and(|y| loose_eq(x, y)))
        }
        _ => expected == actual,
    }
}
