//! Why a connection string was rejected.
//!
//! Messages name the option and value at fault, but never echo a password, a
//! proxy password or userinfo text, because these errors end up in logs.

use std::fmt;

use super::options::AuthMechanism;

/// The part of the connection string a percent-decoding error came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriComponent {
    Username,
    Password,
    Host,
    Database,
    OptionKey,
    /// The value of the named option (canonical spelling when known).
    OptionValue(String),
}

impl fmt::Display for UriComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Username => f.write_str("the username"),
            Self::Password => f.write_str("the password"),
            Self::Host => f.write_str("a host"),
            Self::Database => f.write_str("the database name"),
            Self::OptionKey => f.write_str("an option name"),
            Self::OptionValue(key) => write!(f, "the value of option {key:?}"),
        }
    }
}

/// A connection string the Connection String or URI Options specs say to reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    // --- Syntax -------------------------------------------------------------
    #[error("empty connection string")]
    Empty,
    #[error("connection string must start with \"mongodb://\" or \"mongodb+srv://\"{}", found_scheme(.found))]
    InvalidScheme { found: Option<String> },
    #[error("no host given{hint}")]
    MissingHost { hint: &'static str },
    #[error("empty entry at position {position} of the host list")]
    EmptyHost { position: usize },
    #[error("invalid host {host:?}: {reason}")]
    InvalidHost { host: String, reason: &'static str },
    #[error("invalid port {port:?} for host {host:?}: must be an integer from 1 to 65535")]
    InvalidPort { host: String, port: String },
    #[error("invalid percent-encoding in {component}: '%' must be followed by two hex digits")]
    BadPercentEncoding { component: UriComponent },
    #[error("{component} is not valid UTF-8 once percent-decoded")]
    InvalidUtf8 { component: UriComponent },
    #[error("the userinfo contains an unescaped {ch:?}: percent-encode it in the username and password ('@' as %40, ':' as %3A, '/' as %2F, '%' as %25)")]
    UnescapedInUserinfo { ch: char },
    #[error("invalid database name {name:?}: it must not contain {ch:?}")]
    InvalidDatabaseName { name: String, ch: char },
    #[error("option {key:?} has no value: options must be written key=value")]
    OptionWithoutValue { key: String },
    #[error("an option has an empty name (\"=value\")")]
    EmptyOptionName,

    // --- mongodb+srv ------------------------------------------------------
    #[error("a mongodb+srv connection string takes exactly one host name, found {count}")]
    SrvHostCount { count: usize },
    #[error("a mongodb+srv host name must not have a port (found {host:?})")]
    SrvPort { host: String },
    #[error("a mongodb+srv host must be a DNS name, not {kind} {host:?}")]
    SrvNotHostname { host: String, kind: &'static str },
    #[error("option {option} is only allowed with the mongodb+srv scheme")]
    SrvOnlyOption { option: &'static str },
    #[error("srvMaxHosts={max} cannot be combined with {other}")]
    SrvMaxHostsConflict { max: u32, other: &'static str },
    #[error("the TXT record sets option {option:?}: only authSource, replicaSet and loadBalanced may come from TXT")]
    TxtOptionNotAllowed { option: String },
    #[error("the TXT record gives option {option} a value that is not valid")]
    TxtInvalidValue { option: &'static str },

    // --- Topology ---------------------------------------------------------
    #[error("directConnection=true needs exactly one host, found {count}")]
    DirectConnectionMultipleHosts { count: usize },
    #[error("directConnection=true cannot be used with mongodb+srv, which may resolve to several hosts")]
    DirectConnectionSrv,
    #[error("loadBalanced=true cannot be combined with {other}")]
    LoadBalancedConflict { other: &'static str },

    // --- TLS ----------------------------------------------------------------
    #[error("options {first} and {second} cannot both be given: their meanings overlap, so the result would be ambiguous")]
    TlsConflict {
        first: &'static str,
        second: &'static str,
    },
    #[error("the tls and ssl options disagree: every tls and ssl value must be the same")]
    TlsSslMismatch,

    // --- SOCKS5 proxy ---------------------------------------------------------
    #[error("option {option} needs proxyHost")]
    ProxyOptionWithoutHost { option: &'static str },
    #[error("option {given} needs {missing}: a proxy username and password go together")]
    ProxyCredentialIncomplete {
        given: &'static str,
        missing: &'static str,
    },
    #[error("option {option} may be given only once")]
    RepeatedProxyOption { option: &'static str },

    // --- Read and write concerns --------------------------------------------
    #[error(
        "maxStalenessSeconds={seconds} needs a readPreference other than primary (primary is the default)"
    )]
    MaxStalenessWithPrimary { seconds: u64 },
    #[error("readPreferenceTags need a readPreference other than primary (primary is the default)")]
    TagsWithPrimary,
    #[error("w=0 (unacknowledged writes) cannot be combined with journal=true")]
    UnacknowledgedJournal,

    // --- Pool and handshake -------------------------------------------------
    #[error("minPoolSize={min} is larger than maxPoolSize={max}")]
    MinPoolSizeExceedsMax { min: u32, max: u32 },
    #[error("appName is {len} bytes long; the handshake allows at most 128")]
    AppNameTooLong { len: usize },

    // --- Authentication ---------------------------------------------------------
    #[error("authSource must not be empty")]
    EmptyAuthSource,
    #[error("invalid credentials: {0}")]
    Auth(#[from] AuthError),
}

fn found_scheme(found: &Option<String>) -> String {
    match found {
        Some(scheme) => format!(" (found scheme {scheme:?})"),
        None => String::new(),
    }
}

/// A credential that breaks the rules of the authentication spec for its mechanism.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("the username is empty; remove the '@' or give a username")]
    EmptyUsername,
    #[error("{mechanism} needs a username")]
    MissingUsername { mechanism: &'static str },
    #[error("{mechanism} needs a password")]
    MissingPassword { mechanism: &'static str },
    #[error("{mechanism} does not take a password")]
    PasswordNotAllowed { mechanism: AuthMechanism },
    #[error("{mechanism} does not take a username {reason}")]
    UsernameNotAllowed {
        mechanism: AuthMechanism,
        reason: &'static str,
    },
    #[error("authSource for {mechanism} must be \"$external\", not {given:?}")]
    SourceNotExternal { mechanism: AuthMechanism, given: String },
    #[error("{mechanism} does not take authMechanismProperties")]
    PropertiesNotAllowed { mechanism: &'static str },
    #[error("{mechanism} does not support the authMechanismProperties key {property:?}")]
    UnsupportedProperty {
        mechanism: AuthMechanism,
        property: String,
    },
    #[error("authMechanismProperties {property}:{value:?} is invalid: expected {expected}")]
    InvalidProperty {
        property: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{mechanism} needs the authMechanismProperties key {property} {reason}")]
    MissingProperty {
        mechanism: AuthMechanism,
        property: &'static str,
        reason: &'static str,
    },
    #[error("MONGODB-AWS does not take {what} from the connection string: AWS credentials come from the environment (the auth spec dropped URI credentials)")]
    AwsCredentialsInUri { what: &'static str },
}
