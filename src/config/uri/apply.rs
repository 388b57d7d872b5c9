//! Decoding the query string into [`UriOptions`].
//!
//! Per the Connection String spec, an unknown option or an invalid value is
//! ignored with a warning, not an error; the errors here are the few the
//! specs single out (a pair without '=', repeated SOCKS5 options, tls/ssl
//! disagreeing). For repeated options the last valid value wins.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::error::{UriComponent, UriError};
use super::options::{AuthMechanism, ReadPreferenceMode, Secret, ServerMonitoringMode, TagSet, UriOptions};
use super::syntax::percent_decode;
use super::values::{
    acknowledgment, compressors, mechanism_properties, parse_bool, srv_service_name, tag_set, OptionValue,
};
use super::GivenOptions;

/// The options mongoplex understands, in the URI Options spec's spelling.
pub(crate) const KNOWN: &[&str] = &[
    "appName",
    "authMechanism",
    "authMechanismProperties",
    "authSource",
    "compressors",
    "connectTimeoutMS",
    "directConnection",
    "enableOverloadRetargeting",
    "heartbeatFrequencyMS",
    "journal",
    "loadBalanced",
    "localThresholdMS",
    "maxAdaptiveRetries",
    "maxConnecting",
    "maxIdleTimeMS",
    "maxPoolSize",
    "maxStalenessSeconds",
    "minPoolSize",
    "proxyHost",
    "proxyPassword",
    "proxyPort",
    "proxyUsername",
    "readConcernLevel",
    "readPreference",
    "readPreferenceTags",
    "replicaSet",
    "retryReads",
    "retryWrites",
    "serverMonitoringMode",
    "serverSelectionTimeoutMS",
    "serverSelectionTryOnce",
    "socketTimeoutMS",
    "srvMaxHosts",
    "srvServiceName",
    "ssl",
    "timeoutMS",
    "tls",
    "tlsAllowInvalidCertificates",
    "tlsAllowInvalidHostnames",
    "tlsCAFile",
    "tlsCertificateKeyFile",
    "tlsCertificateKeyFilePassword",
    "tlsDisableCertificateRevocationCheck",
    "tlsDisableOCSPEndpointCheck",
    "tlsInsecure",
    "w",
    "waitQueueTimeoutMS",
    "wTimeoutMS",
    "wtimeout",
    "zlibCompressionLevel",
];

/// Options that may appear many times, each occurrence adding to a list.
const LIST_OPTIONS: &[&str] = &["readPreferenceTags"];

/// One `key=value` pair, decoded.
struct Pair {
    /// The canonical name, or `None` for an option mongoplex does not know.
    name: Option<&'static str>,
    /// The key as written (decoded), for messages about unknown options.
    key: String,
    value: String,
}

pub(super) fn parse_options(
    query: Option<&str>,
    warnings: &mut Vec<String>,
    given: &mut GivenOptions,
) -> Result<UriOptions, UriError> {
    let pairs = split_pairs(query.unwrap_or(""))?;
    check_repeats(&pairs, warnings)?;
    check_tls_ssl(&pairs)?;
    let wtimeout_ms_given = pairs.iter().any(|p| p.name == Some("wTimeoutMS"));
    let mut options = UriOptions::default();
    for pair in &pairs {
        let Some(name) = pair.name else {
            warnings.push(format!("unsupported option {:?} ignored", pair.key));
            given.unknown.push(pair.key.clone());
            continue;
        };
        if !given.names.contains(&name) {
            given.names.push(name);
        }
        let dropped = match name {
            "wtimeout" if wtimeout_ms_given => {
                warnings.push(
                    "deprecated option \"wtimeout\" ignored because \"wTimeoutMS\" is also given".to_owned(),
                );
                false
            }
            "wtimeout" => {
                warnings.push("option \"wtimeout\" is deprecated: use \"wTimeoutMS\"".to_owned());
                apply(&mut options, "wTimeoutMS", &pair.value, warnings)
            }
            name => apply(&mut options, name, &pair.value, warnings),
        };
        if dropped && !given.dropped.contains(&name) {
            given.dropped.push(name);
        }
    }
    Ok(options)
}

fn split_pairs(query: &str) -> Result<Vec<Pair>, UriError> {
    let mut pairs = Vec::new();
    // Empty segments ("a=1&&b=2", a trailing '&') carry nothing.
    for segment in query.split('&').filter(|s| !s.is_empty()) {
        let (raw_key, raw_value) = segment
            .split_once('=')
            .ok_or_else(|| UriError::OptionWithoutValue {
                key: segment.to_owned(),
            })?;
        if raw_key.is_empty() {
            return Err(UriError::EmptyOptionName);
        }
        let key = percent_decode(raw_key, UriComponent::OptionKey)?;
        let name = KNOWN.iter().copied().find(|k| k.eq_ignore_ascii_case(&key));
        let label = name.map_or_else(|| key.clone(), str::to_owned);
        let value = percent_decode(raw_value, UriComponent::OptionValue(label))?;
        pairs.push(Pair { name, key, value });
    }
    Ok(pairs)
}

/// Repeated SOCKS5 options are errors (SOCKS5 spec tests); other repeated
/// single-valued options are allowed with a warning (Connection String spec).
fn check_repeats(pairs: &[Pair], warnings: &mut Vec<String>) -> Result<(), UriError> {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for name in pairs.iter().filter_map(|p| p.name) {
        *counts.entry(name).or_default() += 1;
    }
    for (name, count) in counts {
        if count < 2 || LIST_OPTIONS.contains(&name) {
            continue;
        }
        if name.starts_with("proxy") {
            return Err(UriError::RepeatedProxyOption { option: name });
        }
        warnings.push(format!(
            "option {name:?} given {count} times; the last valid value is used"
        ));
    }
    Ok(())
}

/// `ssl` is an alias of `tls`; the URI Options spec requires an error unless
/// every occurrence of either agrees.
fn check_tls_ssl(pairs: &[Pair]) -> Result<(), UriError> {
    let mut seen = None;
    for pair in pairs {
        if !matches!(pair.name, Some("tls" | "ssl")) {
            continue;
        }
        let Some((value, _)) = parse_bool(&pair.value) else {
            continue; // invalid values are ignored (with a warning) later
        };
        match seen {
            Some(previous) if previous != value => return Err(UriError::TlsSslMismatch),
            _ => seen = Some(value),
        }
    }
    Ok(())
}

/// Keeps the previous value when the new one was invalid.
fn set<T>(slot: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *slot = value;
    }
}

/// Applies one option; `true` if some or all of its value was ignored.
fn apply(o: &mut UriOptions, name: &'static str, text: &str, warnings: &mut Vec<String>) -> bool {
    if text.is_empty() {
        match name {
            // An empty tag set is meaningful: it matches any server.
            "readPreferenceTags" => o.read_preference_tags.push(TagSet::new()),
            // The auth spec makes an empty authSource an error (see validate).
            "authSource" => o.auth_source = Some(String::new()),
            _ => {
                warnings.push(format!("option {name:?}: empty value ignored"));
                return true;
            }
        }
        return false;
    }
    let mut v = OptionValue {
        name,
        text,
        warnings,
        dropped: false,
    };
    if !(apply_connection(o, &mut v) || apply_tls_and_proxy(o, &mut v) || apply_auth(o, &mut v)) {
        apply_read_write(o, &mut v);
    }
    v.dropped
}

/// Topology, pool, timeout and compression options.
fn apply_connection(o: &mut UriOptions, v: &mut OptionValue<'_>) -> bool {
    match v.name {
        "appName" => set(&mut o.app_name, v.string()),
        "replicaSet" => set(&mut o.replica_set, v.string()),
        "directConnection" => set(&mut o.direct_connection, v.boolean()),
        "loadBalanced" => set(&mut o.load_balanced, v.boolean()),
        "srvServiceName" => set(
            &mut o.srv_service_name,
            v.parsed(srv_service_name, "an RFC 6335 service name"),
        ),
        "srvMaxHosts" => set(&mut o.srv_max_hosts, v.count(0)),
        "maxPoolSize" => set(&mut o.max_pool_size, v.count(0)),
        "minPoolSize" => set(&mut o.min_pool_size, v.count(0)),
        "maxConnecting" => set(&mut o.max_connecting, v.count(1)),
        "maxIdleTimeMS" => set(&mut o.max_idle_time, v.millis(0)),
        "waitQueueTimeoutMS" => set(&mut o.wait_queue_timeout, v.millis(1)),
        "connectTimeoutMS" => set(&mut o.connect_timeout, v.millis(0)),
        "socketTimeoutMS" => set(&mut o.socket_timeout, v.millis(0)),
        "timeoutMS" => set(&mut o.timeout, v.millis(0)),
        "serverSelectionTimeoutMS" => set(&mut o.server_selection_timeout, v.millis(1)),
        "serverSelectionTryOnce" => set(&mut o.server_selection_try_once, v.boolean()),
        "heartbeatFrequencyMS" => set(&mut o.heartbeat_frequency, v.millis(500)),
        "localThresholdMS" => set(&mut o.local_threshold, v.millis(0)),
        "serverMonitoringMode" => set(
            &mut o.server_monitoring_mode,
            v.parsed(ServerMonitoringMode::parse, "stream, poll or auto"),
        ),
        "compressors" => set(&mut o.compressors, compressors(v)),
        "zlibCompressionLevel" => set(
            &mut o.zlib_compression_level,
            v.integer(-1, 9, "an integer from -1 to 9")
                .and_then(|n| i32::try_from(n).ok()),
        ),
        _ => return false,
    }
    true
}

fn apply_tls_and_proxy(o: &mut UriOptions, v: &mut OptionValue<'_>) -> bool {
    match v.name {
        "tls" | "ssl" => set(&mut o.tls, v.boolean()),
        "tlsInsecure" => set(&mut o.tls_insecure, v.boolean()),
        "tlsAllowInvalidCertificates" => set(&mut o.tls_allow_invalid_certificates, v.boolean()),
        "tlsAllowInvalidHostnames" => set(&mut o.tls_allow_invalid_hostnames, v.boolean()),
        "tlsCAFile" => set(&mut o.tls_ca_file, Some(PathBuf::from(v.text))),
        "tlsCertificateKeyFile" => {
            set(&mut o.tls_certificate_key_file, Some(PathBuf::from(v.text)));
        }
        "tlsCertificateKeyFilePassword" => {
            set(
                &mut o.tls_certificate_key_file_password,
                Some(Secret::new(v.text)),
            );
        }
        "tlsDisableOCSPEndpointCheck" => set(&mut o.tls_disable_ocsp_endpoint_check, v.boolean()),
        "tlsDisableCertificateRevocationCheck" => {
            set(&mut o.tls_disable_certificate_revocation_check, v.boolean());
        }
        "proxyHost" => set(&mut o.proxy_host, v.string()),
        "proxyPort" => set(
            &mut o.proxy_port,
            v.integer(1, 65535, "a port from 1 to 65535")
                .and_then(|n| u16::try_from(n).ok()),
        ),
        "proxyUsername" => set(&mut o.proxy_username, v.string()),
        "proxyPassword" => set(&mut o.proxy_password, Some(Secret::new(v.text))),
        _ => return false,
    }
    true
}

fn apply_auth(o: &mut UriOptions, v: &mut OptionValue<'_>) -> bool {
    match v.name {
        "authSource" => set(&mut o.auth_source, v.string()),
        "authMechanism" => set(
            &mut o.auth_mechanism,
            v.parsed(AuthMechanism::parse, "a mechanism from the auth spec"),
        ),
        "authMechanismProperties" => {
            set(&mut o.auth_mechanism_properties, mechanism_properties(v));
        }
        _ => return false,
    }
    true
}

fn apply_read_write(o: &mut UriOptions, v: &mut OptionValue<'_>) {
    match v.name {
        "readPreference" => set(
            &mut o.read_preference,
            v.parsed(
                ReadPreferenceMode::parse,
                "primary, primaryPreferred, secondary, secondaryPreferred or nearest",
            ),
        ),
        "readPreferenceTags" => {
            if let Some(tags) = v.parsed(tag_set, "comma-separated key:value pairs") {
                o.read_preference_tags.push(tags);
            }
        }
        "maxStalenessSeconds" => match v.integer(-1, i64::from(i32::MAX), "-1 or a positive integer") {
            Some(-1) => o.max_staleness = None,
            Some(0) => v.reject("-1 or a positive integer"),
            Some(secs) => set(
                &mut o.max_staleness,
                u64::try_from(secs).ok().map(Duration::from_secs),
            ),
            None => {}
        },
        "readConcernLevel" => set(&mut o.read_concern_level, v.string()),
        "w" => set(&mut o.w, acknowledgment(v)),
        "journal" => set(&mut o.journal, v.boolean()),
        "wTimeoutMS" => set(
            &mut o.wtimeout,
            v.integer(0, i64::MAX, "a non-negative integer")
                .and_then(|ms| u64::try_from(ms).ok())
                .map(Duration::from_millis),
        ),
        "retryReads" => set(&mut o.retry_reads, v.boolean()),
        "retryWrites" => set(&mut o.retry_writes, v.boolean()),
        "maxAdaptiveRetries" => set(&mut o.max_adaptive_retries, v.count(0)),
        "enableOverloadRetargeting" => set(&mut o.enable_overload_retargeting, v.boolean()),
        // Every name in KNOWN is handled by one of the apply_* functions.
        other => v.reject(&format!("an option mongoplex handles ({other:?} is not)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::uri::options::{Acknowledgment, Compressor};

    fn parse(query: &str) -> (Result<UriOptions, UriError>, Vec<String>) {
        let mut warnings = Vec::new();
        let mut given = GivenOptions::default();
        (parse_options(Some(query), &mut warnings, &mut given), warnings)
    }

    fn ok(query: &str) -> (UriOptions, Vec<String>) {
        let (result, warnings) = parse(query);
        (result.unwrap(), warnings)
    }

    #[test]
    fn names_are_case_insensitive_and_values_decoded() {
        let (o, w) = ok("APPNAME=my%20app&ReplicaSet=rs0&CONNECTTIMEOUTMS=1500");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(o.app_name.as_deref(), Some("my app"));
        assert_eq!(o.replica_set.as_deref(), Some("rs0"));
        assert_eq!(o.connect_timeout, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn invalid_values_warn_and_keep_earlier_valid_value() {
        let (o, w) = ok("maxPoolSize=7&maxPoolSize=lots");
        assert_eq!(o.max_pool_size, Some(7));
        assert_eq!(w.len(), 2, "{w:?}"); // repeated + invalid
        let (o, w) = ok("heartbeatFrequencyMS=499");
        assert_eq!((o.heartbeat_frequency, w.len()), (None, 1));
        let (o, w) = ok("connectTimeoutMS=2147483648"); // beyond 32 bits
        assert_eq!((o.connect_timeout, w.len()), (None, 1));
        let (o, w) = ok("waitQueueTimeoutMS=0");
        assert_eq!((o.wait_queue_timeout, w.len()), (None, 1));
    }

    #[test]
    fn booleans_accept_legacy_spellings_with_a_warning() {
        let (o, w) = ok("journal=TRUE&retryWrites=y&retryReads=-1");
        assert_eq!(
            (o.journal, o.retry_writes, o.retry_reads),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!(w.len(), 2, "{w:?}");
    }

    #[test]
    fn tls_and_ssl_must_agree() {
        assert!(ok("tls=true&ssl=true").1.is_empty());
        assert_eq!(parse("ssl=true&tls=false").0, Err(UriError::TlsSslMismatch));
        assert_eq!(parse("tls=true&tls=false").0, Err(UriError::TlsSslMismatch));
        // An invalid value is ignored, so it cannot disagree.
        assert_eq!(ok("tls=true&ssl=maybe").0.tls, Some(true));
    }

    #[test]
    fn wtimeout_alias() {
        let (o, w) = ok("wtimeout=5&wTimeoutMS=10");
        assert_eq!((o.wtimeout, w.len()), (Some(Duration::from_millis(10)), 1));
        let (o, w) = ok("wtimeout=5");
        assert_eq!((o.wtimeout, w.len()), (Some(Duration::from_millis(5)), 1));
    }

    #[test]
    fn lists_and_key_value_options() {
        let (o, w) = ok("readPreferenceTags=dc:ny,rack:1&readPreferenceTags=&readPreferenceTags=x");
        assert_eq!(o.read_preference_tags.len(), 2);
        assert!(o.read_preference_tags[1].is_empty());
        assert_eq!(w.len(), 1, "{w:?}");

        let (o, w) = ok("authMechanismProperties=TOKEN_RESOURCE:mongodb://a%2Cb,ENVIRONMENT:azure");
        let props = o.auth_mechanism_properties.unwrap();
        assert_eq!(props.get("TOKEN_RESOURCE"), Some("mongodb://a"));
        assert_eq!(props.get("ENVIRONMENT"), Some("azure"));
        assert_eq!(w.len(), 1, "{w:?}");

        let (o, w) = ok("compressors=zstd,jpeg,zlib,zstd");
        assert_eq!(o.compressors, Some(vec![Compressor::Zstd, Compressor::Zlib]));
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn write_concern_and_staleness() {
        assert_eq!(ok("w=majority").0.w, Some(Acknowledgment::Majority));
        assert_eq!(ok("w=0").0.w, Some(Acknowledgment::Nodes(0)));
        assert_eq!(ok("w=dc1").0.w, Some(Acknowledgment::Custom("dc1".into())));
        assert_eq!(ok("w=-1").1.len(), 1);
        assert_eq!(ok("maxStalenessSeconds=-1").0.max_staleness, None);
        assert_eq!(
            ok("maxStalenessSeconds=120").0.max_staleness,
            Some(Duration::from_secs(120))
        );
        assert_eq!(ok("maxStalenessSeconds=0").1.len(), 1);
    }

    #[test]
    fn malformed_pairs() {
        assert!(matches!(parse("w").0, Err(UriError::OptionWithoutValue { .. })));
        assert_eq!(parse("=1").0, Err(UriError::EmptyOptionName));
        assert!(matches!(
            parse("appName=%zz").0,
            Err(UriError::BadPercentEncoding { .. })
        ));
        assert_eq!(
            parse("proxyHost=a&proxyHost=b").0,
            Err(UriError::RepeatedProxyOption { option: "proxyHost" })
        );
        // Empty segments are harmless.
        assert!(ok("&w=1&&").1.is_empty());
    }
}
