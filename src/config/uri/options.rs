//! Typed connection-string options, one field per URI option.
//!
//! Every field is `None` (or empty) when the connection string did not set
//! it: defaults belong to the component that uses the option, not the parser.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A string that must not reach logs: `Debug` prints a placeholder.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the code that actually needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Mechanism property names the auth spec defines, in their canonical case.
/// Property names are case-insensitive, so input is normalised to these.
const KNOWN_PROPERTIES: &[&str] = &[
    "SERVICE_NAME",
    "CANONICALIZE_HOST_NAME",
    "SERVICE_REALM",
    "SERVICE_HOST",
    "AWS_SESSION_TOKEN",
    "ENVIRONMENT",
    "TOKEN_RESOURCE",
    "ALLOWED_HOSTS",
];

/// Property values that are credentials themselves.
const SECRET_PROPERTIES: &[&str] = &["AWS_SESSION_TOKEN"];

/// `authMechanismProperties`: key/value pairs with case-insensitive keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthMechanismProperties(BTreeMap<String, String>);

impl AuthMechanismProperties {
    /// Inserts a property, normalising a known key to its canonical spelling.
    /// Returns the previous value, if any.
    pub fn insert(&mut self, key: &str, value: impl Into<String>) -> Option<String> {
        let key = KNOWN_PROPERTIES
            .iter()
            .find(|known| known.eq_ignore_ascii_case(key))
            .map_or_else(|| key.to_owned(), |known| (*known).to_owned());
        self.0.insert(key, value.into())
    }

    /// Looks a property up by name, ignoring ASCII case.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for AuthMechanismProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (k, v) in &self.0 {
            if SECRET_PROPERTIES.contains(&k.as_str()) {
                map.entry(k, &"***");
            } else {
                map.entry(k, v);
            }
        }
        map.finish()
    }
}

/// Generates a string-valued enum with case-insensitive parsing and `as_str`.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in the order the spec lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling the specs use.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the spec spelling, ignoring ASCII case.
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str().eq_ignore_ascii_case(s))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// `authMechanism`.
    AuthMechanism {
        ScramSha1 => "SCRAM-SHA-1",
        ScramSha256 => "SCRAM-SHA-256",
        MongoDbX509 => "MONGODB-X509",
        Gssapi => "GSSAPI",
        Plain => "PLAIN",
        MongoDbAws => "MONGODB-AWS",
        MongoDbOidc => "MONGODB-OIDC",
        // Removed from servers in 4.0; still parsed so old strings fail at
        // authentication time with a clear server error rather than here.
        MongoDbCr => "MONGODB-CR",
    }
}

string_enum! {
    /// `readPreference` mode.
    ReadPreferenceMode {
        Primary => "primary",
        PrimaryPreferred => "primaryPreferred",
        Secondary => "secondary",
        SecondaryPreferred => "secondaryPreferred",
        Nearest => "nearest",
    }
}

string_enum! {
    /// An entry of `compressors`.
    Compressor {
        Snappy => "snappy",
        Zlib => "zlib",
        Zstd => "zstd",
    }
}

string_enum! {
    /// `serverMonitoringMode`.
    ServerMonitoringMode {
        Stream => "stream",
        Poll => "poll",
        Auto => "auto",
    }
}

/// One `readPreferenceTags` value: an empty set matches any server.
pub type TagSet = BTreeMap<String, String>;

/// The write concern `w` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acknowledgment {
    /// Acknowledged by this many members; 0 means unacknowledged.
    Nodes(u32),
    Majority,
    /// A custom write concern name defined in the replica set config.
    Custom(String),
}

/// The options of a connection string, typed. Field docs give the URI key.
///
/// For `*MS` timeouts the spec gives 0 a meaning ("no timeout" for most of
/// them, "only the fastest server" for `localThresholdMS`); such values are
/// kept as `Some(Duration::ZERO)` for the consumer to interpret.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UriOptions {
    /// `appName` (at most 128 bytes).
    pub app_name: Option<String>,
    /// `replicaSet`.
    pub replica_set: Option<String>,
    /// `directConnection`.
    pub direct_connection: Option<bool>,
    /// `loadBalanced`.
    pub load_balanced: Option<bool>,
    /// `srvServiceName` (mongodb+srv only).
    pub srv_service_name: Option<String>,
    /// `srvMaxHosts` (mongodb+srv only); 0 means no limit.
    pub srv_max_hosts: Option<u32>,

    /// `maxPoolSize`; 0 means no limit.
    pub max_pool_size: Option<u32>,
    /// `minPoolSize`.
    pub min_pool_size: Option<u32>,
    /// `maxConnecting` (at least 1).
    pub max_connecting: Option<u32>,
    /// `maxIdleTimeMS`; 0 means connections never expire for idleness.
    pub max_idle_time: Option<Duration>,
    /// `waitQueueTimeoutMS` (deprecated in favour of `timeoutMS`; positive).
    pub wait_queue_timeout: Option<Duration>,

    /// `connectTimeoutMS`; 0 means no timeout.
    pub connect_timeout: Option<Duration>,
    /// `socketTimeoutMS` (deprecated in favour of `timeoutMS`); 0 means none.
    pub socket_timeout: Option<Duration>,
    /// `timeoutMS` (client-side operation timeout); 0 means no timeout.
    pub timeout: Option<Duration>,
    /// `serverSelectionTimeoutMS` (positive).
    pub server_selection_timeout: Option<Duration>,
    /// `serverSelectionTryOnce` (single-threaded drivers; kept for fidelity).
    pub server_selection_try_once: Option<bool>,
    /// `heartbeatFrequencyMS` (at least 500 ms).
    pub heartbeat_frequency: Option<Duration>,
    /// `localThresholdMS`.
    pub local_threshold: Option<Duration>,
    /// `serverMonitoringMode`.
    pub server_monitoring_mode: Option<ServerMonitoringMode>,

    /// `readPreference`.
    pub read_preference: Option<ReadPreferenceMode>,
    /// `readPreferenceTags`, one tag set per occurrence, in order.
    pub read_preference_tags: Vec<TagSet>,
    /// `maxStalenessSeconds`; the spec's -1 ("no maximum") is stored as `None`.
    pub max_staleness: Option<Duration>,
    /// `readConcernLevel` (any string, for forward compatibility).
    pub read_concern_level: Option<String>,
    /// `w`.
    pub w: Option<Acknowledgment>,
    /// `journal`.
    pub journal: Option<bool>,
    /// `wTimeoutMS` (or the deprecated `wtimeout`); 0 means no timeout.
    pub wtimeout: Option<Duration>,
    /// `retryReads`.
    pub retry_reads: Option<bool>,
    /// `retryWrites`.
    pub retry_writes: Option<bool>,
    /// `maxAdaptiveRetries` (client backpressure).
    pub max_adaptive_retries: Option<u32>,
    /// `enableOverloadRetargeting` (client backpressure).
    pub enable_overload_retargeting: Option<bool>,

    /// `compressors`, in preference order, unknown names dropped.
    pub compressors: Option<Vec<Compressor>>,
    /// `zlibCompressionLevel`, from -1 (library default) to 9.
    pub zlib_compression_level: Option<i32>,

    /// `authMechanism` as written; see `ConnectionString::credential`.
    pub auth_mechanism: Option<AuthMechanism>,
    /// `authSource` as written; see `ConnectionString::credential`.
    pub auth_source: Option<String>,
    /// `authMechanismProperties` as written; see `ConnectionString::credential`.
    pub auth_mechanism_properties: Option<AuthMechanismProperties>,

    /// `tls`, or its alias `ssl`.
    pub tls: Option<bool>,
    /// `tlsInsecure`.
    pub tls_insecure: Option<bool>,
    /// `tlsAllowInvalidCertificates`.
    pub tls_allow_invalid_certificates: Option<bool>,
    /// `tlsAllowInvalidHostnames`.
    pub tls_allow_invalid_hostnames: Option<bool>,
    /// `tlsCAFile`.
    pub tls_ca_file: Option<PathBuf>,
    /// `tlsCertificateKeyFile`.
    pub tls_certificate_key_file: Option<PathBuf>,
    /// `tlsCertificateKeyFilePassword`.
    pub tls_certificate_key_file_password: Option<Secret>,
    /// `tlsDisableOCSPEndpointCheck`.
    pub tls_disable_ocsp_endpoint_check: Option<bool>,
    /// `tlsDisableCertificateRevocationCheck`.
    pub tls_disable_certificate_revocation_check: Option<bool>,

    /// `proxyHost` (SOCKS5).
    pub proxy_host: Option<String>,
    /// `proxyPort` (SOCKS5; the spec's default is 1080).
    pub proxy_port: Option<u16>,
    /// `proxyUsername` (SOCKS5).
    pub proxy_username: Option<String>,
    /// `proxyPassword` (SOCKS5).
    pub proxy_password: Option<Secret>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let mut props = AuthMechanismProperties::default();
        props.insert("aws_session_token", "tok3n");
        props.insert("service_name", "svc");
        let debug = format!("{props:?} {:?}", Secret::new("hunter2"));
        assert!(!debug.contains("tok3n") && !debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("svc"), "{debug}");
        // Known keys are normalised; lookups ignore case.
        assert_eq!(
            props.keys().collect::<Vec<_>>(),
            ["AWS_SESSION_TOKEN", "SERVICE_NAME"]
        );
        assert_eq!(props.get("Service_Name"), Some("svc"));
    }

    #[test]
    fn string_enums_round_trip() {
        for mode in ReadPreferenceMode::ALL {
            assert_eq!(ReadPreferenceMode::parse(mode.as_str()), Some(*mode));
        }
        assert_eq!(
            AuthMechanism::parse("scram-sha-256"),
            Some(AuthMechanism::ScramSha256)
        );
        assert_eq!(Compressor::parse("jpeg"), None);
    }
}
