//! Just enough connection-string parsing for the SDAM test files: hosts and the options that
//! shape the initial topology. The real URI parser lives in the config layer.

use std::time::Duration;

use mongoplex::address::ServerAddress;
use mongoplex::sdam::TopologySettings;

/// Why a file's URI is not run: `Err(Skip)` for forms the SDAM layer deliberately does not
/// model, `Err(Fail)` for URIs that are simply broken.
pub enum UriProblem {
    Skip(String),
    Fail(String),
}

pub fn parse(uri: &str) -> Result<TopologySettings, UriProblem> {
    if uri.starts_with("mongodb+srv://") {
        return Err(UriProblem::Skip(
            "mongodb+srv:// seed lists come from DNS in the config layer; SDAM starts from hosts".into(),
        ));
    }
    let rest = uri
        .strip_prefix("mongodb://")
        .ok_or_else(|| UriProblem::Fail(format!("not a mongodb:// URI: {uri}")))?;
    let (hosts, query) = match rest.split_once('/') {
        Some((h, tail)) => (h, tail.split_once('?').map_or("", |(_, q)| q)),
        None => match rest.split_once('?') {
            Some((h, q)) => (h, q),
            None => (rest, ""),
        },
    };
    let hosts = hosts.rsplit_once('@').map_or(hosts, |(_, h)| h);
    let seeds = hosts
        .split(',')
        .map(|h| ServerAddress::parse(h).map_err(|e| UriProblem::Fail(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut settings = TopologySettings::new(seeds);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        apply_option(&mut settings, &key.to_ascii_lowercase(), value)?;
    }
    Ok(settings)
}

fn apply_option(s: &mut TopologySettings, key: &str, value: &str) -> Result<(), UriProblem> {
    let boolean = || match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(UriProblem::Fail(format!("{key}={value} is not a boolean"))),
    };
    let millis = || {
        value
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|e| UriProblem::Fail(format!("{key}={value}: {e}")))
    };
    match key {
        "replicaset" => s.replica_set = Some(value.to_owned()),
        "directconnection" => s.direct_connection = boolean()?,
        "loadbalanced" => s.load_balanced = boolean()?,
        "heartbeatfrequencyms" => s.heartbeat_frequency = millis()?,
        "localthresholdms" => s.local_threshold = millis()?,
        // Options that do not change SDAM's state machine.
        "serverselectiontimeoutms"
        | "connecttimeoutms"
        | "sockettimeoutms"
        | "appname"
        | "retrywrites"
        | "retryreads"
        | "w"
        | "readpreference"
        | "maxpoolsize" => {}
        other => {
            return Err(UriProblem::Fail(format!(
                "URI option {other:?} is not understood by the runner"
            )))
        }
    }
    Ok(())
}
