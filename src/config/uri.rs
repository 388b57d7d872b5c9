//! MongoDB connection strings: `mongodb://` and `mongodb+srv://`.
//!
//! [`ConnectionString::parse`] runs four steps, one submodule each:
//! - `syntax` cuts the string into scheme, userinfo, hosts, database and
//!   query, and percent-decodes them (Connection String spec);
//! - `apply` turns the query into typed [`UriOptions`] (URI Options spec),
//!   with `values` parsing each option's value;
//! - `auth` builds the [`Credential`] (authentication spec);
//! - `validate` checks the rules that span several options.
//!
//! What the specs say to tolerate (an unknown option, an invalid value, a
//! repeated option) is ignored and reported in [`ConnectionString::warnings`];
//! the rest is a [`UriError`]. SRV and TXT records are not resolved here: a
//! `mongodb+srv` string keeps its single DNS name in `hosts` until
//! [`ConnectionString::with_seedlist`] (`seedlist`) puts the looked-up hosts and TXT
//! options in and validates again ([`crate::srv`] does the lookups).

mod apply;
mod auth;
mod error;
mod options;
mod seedlist;
mod syntax;
mod validate;
mod values;

use std::fmt;
use std::path::PathBuf;

pub use error::{AuthError, UriComponent, UriError};
pub use options::{
    Acknowledgment, AuthMechanism, AuthMechanismProperties, Compressor, ReadPreferenceMode, Secret,
    ServerMonitoringMode, TagSet, UriOptions,
};
pub use seedlist::TXT_ALLOWED;

use crate::address::ServerAddress;

/// Every option name the parser knows, in the URI Options spec's spelling.
pub fn known_options() -> &'static [&'static str] {
    apply::KNOWN
}

/// One entry of the host list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A host name or IP address, lowercased, with the default port filled in.
    Tcp(ServerAddress),
    /// A UNIX domain socket path (percent-encoded in the string, ends in ".sock").
    Unix(PathBuf),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(address) => address.fmt(f),
            Self::Unix(path) => path.display().fmt(f),
        }
    }
}

/// Who to authenticate as, and how (authentication spec's MongoCredential).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Absent only for mechanisms that allow it (X.509, AWS, OIDC).
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The database to authenticate against: `authSource`, else what the
    /// mechanism implies (`$external`, or the database in the path). `None`
    /// means the spec default, "admin"; see [`Credential::source_or_default`].
    pub source: Option<String>,
    /// `None` means negotiate SCRAM-SHA-256 or SCRAM-SHA-1 with the server.
    pub mechanism: Option<AuthMechanism>,
    /// Exactly as given; [`Credential::mechanism_property`] adds defaults.
    pub mechanism_properties: AuthMechanismProperties,
}

impl Credential {
    /// The database the authentication commands go to.
    pub fn source_or_default(&self) -> &str {
        self.source.as_deref().unwrap_or("admin")
    }

    /// A mechanism property, with the spec default when it was not given
    /// (GSSAPI's SERVICE_NAME is "mongodb").
    pub fn mechanism_property(&self, name: &str) -> Option<&str> {
        self.mechanism_properties.get(name).or_else(|| {
            (self.mechanism == Some(AuthMechanism::Gssapi) && name.eq_ignore_ascii_case("SERVICE_NAME"))
                .then_some("mongodb")
        })
    }
}

/// A parsed and validated connection string.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionString {
    /// The seed list; for `mongodb+srv`, the single name to look up.
    pub hosts: Vec<Host>,
    pub is_srv: bool,
    pub credential: Option<Credential>,
    /// The database in the path, decoded. It alone does not ask for auth.
    pub default_database: Option<String>,
    pub options: UriOptions,
    /// What the spec says to log at WARN level: unsupported options, ignored
    /// values, repeated options, deprecated spellings. Never holds secrets.
    pub warnings: Vec<String>,
    /// Which options the string gave, for a consumer that must refuse what it does
    /// not honour rather than warn (mongoplex's own upstream).
    pub given: GivenOptions,
}

/// The options a connection string gave, by the URI Options spec's names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GivenOptions {
    /// Known options present, in first-seen order, each once.
    pub names: Vec<&'static str>,
    /// Keys of options no spec defines, as written.
    pub unknown: Vec<String>,
    /// Known options whose value was ignored, in whole or in part.
    pub dropped: Vec<&'static str>,
}

impl ConnectionString {
    /// Parses and validates a connection string.
    pub fn parse(s: &str) -> Result<Self, UriError> {
        let parts = syntax::split(s)?;
        if parts.is_srv {
            check_srv_host(&parts.hosts)?;
        }
        let mut warnings = Vec::new();
        let mut given = GivenOptions::default();
        let options = apply::parse_options(parts.query, &mut warnings, &mut given)?;
        let credential = auth::build(parts.userinfo, &options, parts.database.as_deref())?;
        Self {
            hosts: parts.hosts.into_iter().map(|h| h.host).collect(),
            is_srv: parts.is_srv,
            credential,
            default_database: parts.database,
            options,
            warnings,
            given,
        }
        .validate()
    }

    /// Checks the rules that span options and hosts. `parse` runs it; run it
    /// again after changing hosts or options (e.g. after SRV/TXT lookup).
    pub fn validate(self) -> Result<Self, UriError> {
        validate::validate(&self)?;
        Ok(self)
    }

    /// Whether connections use TLS: `tls`/`ssl` if given, else on for
    /// `mongodb+srv` (seedlist spec) and off otherwise.
    pub fn tls_enabled(&self) -> bool {
        self.options.tls.unwrap_or(self.is_srv)
    }

    /// The seed list as TCP addresses, for consumers that cannot dial UNIX
    /// sockets; the error names the first socket path.
    pub fn tcp_hosts(&self) -> Result<Vec<ServerAddress>, String> {
        self.hosts
            .iter()
            .map(|host| match host {
                Host::Tcp(address) => Ok(address.clone()),
                Host::Unix(path) => Err(format!(
                    "UNIX socket hosts are not supported here ({})",
                    path.display()
                )),
            })
            .collect()
    }

    /// The DNS name to query for SRV and TXT records, for `mongodb+srv`.
    pub fn srv_hostname(&self) -> Option<&str> {
        match (self.is_srv, self.hosts.first()) {
            (true, Some(Host::Tcp(address))) => Some(&address.host),
            _ => None,
        }
    }
}

/// mongodb+srv names one DNS name without a port (seedlist spec).
fn check_srv_host(hosts: &[syntax::ParsedHost]) -> Result<(), UriError> {
    let [host] = hosts else {
        return Err(UriError::SrvHostCount { count: hosts.len() });
    };
    if host.explicit_port {
        return Err(UriError::SrvPort {
            host: host.host.to_string(),
        });
    }
    match &host.host {
        Host::Tcp(address) if host.ip_literal => Err(UriError::SrvNotHostname {
            host: address.host.clone(),
            kind: "an IP literal",
        }),
        Host::Unix(path) => Err(UriError::SrvNotHostname {
            host: path.display().to_string(),
            kind: "a UNIX socket",
        }),
        Host::Tcp(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(s: &str) -> ConnectionString {
        ConnectionString::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> UriError {
        ConnectionString::parse(s).expect_err(s)
    }

    #[test]
    fn full_string() {
        let cs = parse(
            "mongodb://u%40x:p%3Aw@A.example.com,[::1]:27018,%2Ftmp%2Fm.sock/app\
             ?replicaSet=rs&readPreference=secondary&readPreferenceTags=dc:ny&w=majority",
        );
        assert_eq!(
            cs.hosts,
            [
                Host::Tcp(ServerAddress::new("a.example.com", 27017)),
                Host::Tcp(ServerAddress::new("::1", 27018)),
                Host::Unix(PathBuf::from("/tmp/m.sock")),
            ]
        );
        let cred = cs.credential.unwrap();
        assert_eq!(cred.username.as_deref(), Some("u@x"));
        assert_eq!(cred.password.as_ref().map(Secret::expose), Some("p:w"));
        assert_eq!(cred.source.as_deref(), Some("app"));
        assert_eq!(cs.default_database.as_deref(), Some("app"));
        assert_eq!(cs.options.w, Some(Acknowledgment::Majority));
        assert!(cs.warnings.is_empty(), "{:?}", cs.warnings);
    }

    #[test]
    fn srv_rules() {
        let cs = parse("mongodb+srv://cluster0.example.net/?srvServiceName=mdb&srvMaxHosts=3");
        assert_eq!(cs.srv_hostname(), Some("cluster0.example.net"));
        assert!(cs.tls_enabled());
        assert!(!parse("mongodb+srv://c.example.net/?tls=false").tls_enabled());
        assert_eq!(
            err("mongodb+srv://a.b.c,d.e.f"),
            UriError::SrvHostCount { count: 2 }
        );
        assert!(matches!(
            err("mongodb+srv://a.b.c:27017"),
            UriError::SrvPort { .. }
        ));
        assert!(matches!(
            err("mongodb+srv://[::1]"),
            UriError::SrvNotHostname { .. }
        ));
        assert_eq!(
            err("mongodb+srv://a.b.c/?directConnection=true"),
            UriError::DirectConnectionSrv
        );
        assert_eq!(
            err("mongodb://a/?srvMaxHosts=1"),
            UriError::SrvOnlyOption {
                option: "srvMaxHosts"
            }
        );
        assert!(parse("mongodb+srv://a.b.c/?directConnection=false").is_srv);
    }

    #[test]
    fn cross_option_rules() {
        assert!(matches!(
            err("mongodb://a/?tlsInsecure=false&tlsAllowInvalidHostnames=false"),
            UriError::TlsConflict { .. }
        ));
        assert_eq!(
            err("mongodb://a,b/?directConnection=true"),
            UriError::DirectConnectionMultipleHosts { count: 2 }
        );
        assert_eq!(
            err("mongodb://a/?maxStalenessSeconds=120"),
            UriError::MaxStalenessWithPrimary { seconds: 120 }
        );
        assert!(
            parse("mongodb://a/?readPreference=primary&maxStalenessSeconds=-1")
                .options
                .max_staleness
                .is_none()
        );
        assert_eq!(
            err("mongodb://a/?readPreferenceTags=dc:ny"),
            UriError::TagsWithPrimary
        );
        assert_eq!(
            err("mongodb://a/?w=0&journal=true"),
            UriError::UnacknowledgedJournal
        );
        assert_eq!(
            err("mongodb://a/?minPoolSize=5&maxPoolSize=2"),
            UriError::MinPoolSizeExceedsMax { min: 5, max: 2 }
        );
        assert!(
            parse("mongodb://a/?minPoolSize=5&maxPoolSize=0")
                .options
                .min_pool_size
                == Some(5)
        );
        assert_eq!(err("mongodb://a/?authSource="), UriError::EmptyAuthSource);
        let long = "x".repeat(129);
        assert_eq!(
            err(&format!("mongodb://a/?appName={long}")),
            UriError::AppNameTooLong { len: 129 }
        );
    }

    #[test]
    fn database_and_auth() {
        assert!(parse("mongodb://a/db.coll").credential.is_none());
        assert!(matches!(
            err("mongodb://a/d%24b"),
            UriError::InvalidDatabaseName { ch: '$', .. }
        ));
        assert_eq!(err("mongodb://@a/"), UriError::Auth(AuthError::EmptyUsername));
        let cs = parse("mongodb://u@a/?authMechanism=GSSAPI");
        let cred = cs.credential.unwrap();
        assert_eq!(cred.mechanism_property("service_name"), Some("mongodb"));
        assert_eq!(cred.source_or_default(), "$external");
        // A mechanism with no userinfo still makes a credential.
        assert!(parse("mongodb://a/?authMechanism=MONGODB-X509")
            .credential
            .is_some());
    }

    #[test]
    fn timeouts_are_durations() {
        let cs = parse("mongodb://a/?socketTimeoutMS=0&timeoutMS=250&wTimeoutMS=4294967296");
        assert_eq!(cs.options.socket_timeout, Some(Duration::ZERO));
        assert_eq!(cs.options.timeout, Some(Duration::from_millis(250)));
        assert_eq!(cs.options.wtimeout, Some(Duration::from_millis(1 << 32)));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let cs = parse(
            "mongodb://u:pw1@a/?proxyHost=p&proxyUsername=pu&proxyPassword=pw2\
             &tlsCertificateKeyFilePassword=pw3",
        );
        let debug = format!("{cs:?}");
        for secret in ["pw1", "pw2", "pw3"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }

    mod prop {
        use proptest::prelude::*;

        use super::super::ConnectionString;

        proptest! {
            #[test]
            fn never_panics_on_arbitrary_input(s in "\\PC*") {
                let _ = ConnectionString::parse(&s);
            }

            #[test]
            fn never_panics_on_uri_shaped_input(
                s in "mongodb(\\+srv)?://[a-z%@:/?=&,.\\[\\]0-9A-F]{0,40}"
            ) {
                let _ = ConnectionString::parse(&s);
            }
        }
    }
}
