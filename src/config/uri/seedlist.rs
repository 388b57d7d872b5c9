//! A `mongodb+srv` string once its DNS lookups are done (Initial DNS Seedlist Discovery
//! spec): the SRV hosts replace the single name, and the options of the TXT record are
//! defaults that the string's own options override. Only `authSource`, `replicaSet` and
//! `loadBalanced` may come from TXT; anything else there is an error, not a warning,
//! because a DNS administrator must not be able to turn TLS off or change timeouts.

use super::apply;
use super::error::UriError;
use super::{ConnectionString, GivenOptions, Host};
use crate::address::ServerAddress;

/// The options a TXT record may carry (seedlist spec).
pub const TXT_ALLOWED: &[&str] = &["authSource", "replicaSet", "loadBalanced"];

impl ConnectionString {
    /// The string as if its hosts had been `hosts` and its options had included the TXT
    /// record's (when there is one) wherever it gives none of its own; validated again,
    /// since the spec validates only after the lookups (srvMaxHosts with a TXT replicaSet,
    /// loadBalanced with several hosts).
    pub fn with_seedlist(mut self, hosts: Vec<ServerAddress>, txt: Option<&str>) -> Result<Self, UriError> {
        if let Some(txt) = txt {
            self.apply_txt(txt)?;
        }
        self.hosts = hosts.into_iter().map(Host::Tcp).collect();
        self.validate()
    }

    fn apply_txt(&mut self, txt: &str) -> Result<(), UriError> {
        let mut warnings = Vec::new();
        let mut given = GivenOptions::default();
        let o = apply::parse_options(Some(txt), &mut warnings, &mut given)?;
        if let Some(key) = given.unknown.first() {
            return Err(UriError::TxtOptionNotAllowed { option: key.clone() });
        }
        if let Some(name) = given.names.iter().find(|n| !TXT_ALLOWED.contains(n)) {
            return Err(UriError::TxtOptionNotAllowed {
                option: (*name).to_owned(),
            });
        }
        if let Some(name) = given.dropped.first() {
            return Err(UriError::TxtInvalidValue { option: name });
        }
        let mut take = |name: &'static str| {
            let fresh = given.names.contains(&name) && !self.given.names.contains(&name);
            if fresh {
                self.given.names.push(name);
            }
            fresh
        };
        let (auth_source, replica_set, load_balanced) =
            (take("authSource"), take("replicaSet"), take("loadBalanced"));
        if auth_source {
            self.options.auth_source.clone_from(&o.auth_source);
            if let Some(credential) = self.credential.as_mut().filter(|c| c.source.is_none()) {
                credential.source.clone_from(&o.auth_source);
            }
        }
        if replica_set {
            self.options.replica_set = o.replica_set;
        }
        if load_balanced {
            self.options.load_balanced = o.load_balanced;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(uri: &str, txt: Option<&str>) -> Result<ConnectionString, UriError> {
        let hosts = vec![
            ServerAddress::new("a.example.com", 27017),
            ServerAddress::new("b.example.com", 27018),
        ];
        ConnectionString::parse(uri).unwrap().with_seedlist(hosts, txt)
    }

    /// Cases after the spec's own tests (one-txt-record, two-txt-records-with-override,
    /// txt-record-not-allowed-option, txt-record-with-unallowed-option, srvMaxHosts with
    /// a TXT replicaSet, loadBalanced from TXT with several hosts), with our own names.
    #[test]
    fn txt_options_are_defaults_under_the_uri_and_only_three_are_allowed() {
        let cs = resolved(
            "mongodb+srv://u:p@c.example.com/",
            Some("replicaSet=rs0&authSource=thisDB"),
        )
        .unwrap();
        assert_eq!(cs.options.replica_set.as_deref(), Some("rs0"));
        assert_eq!(cs.options.auth_source.as_deref(), Some("thisDB"));
        assert_eq!(cs.credential.as_ref().unwrap().source.as_deref(), Some("thisDB"));
        assert_eq!(cs.hosts.len(), 2);
        assert!(cs.tls_enabled(), "mongodb+srv keeps TLS on by default");
        assert!(cs.given.names.contains(&"replicaSet"));

        let cs = resolved(
            "mongodb+srv://u:p@c.example.com/?authSource=otherDB",
            Some("authSource=thisDB"),
        )
        .unwrap();
        assert_eq!(cs.credential.unwrap().source.as_deref(), Some("otherDB"));

        let refused: &[(Option<&str>, &str)] = &[
            (Some("ssl=false"), "\"ssl\""),
            (Some("tls=false"), "\"tls\""),
            (Some("socketTimeoutMS=500"), "\"socketTimeoutMS\""),
            (Some("replicaSet=rs0&bogus=1"), "\"bogus\""),
            (Some("authSource"), "authSource"),
            (Some("loadBalanced=maybe"), "loadBalanced"),
            (Some("loadBalanced=true"), "multiple hosts"),
        ];
        for (txt, needle) in refused {
            let e = resolved("mongodb+srv://c.example.com/", *txt)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{txt:?}: {e}");
        }
        let e = resolved(
            "mongodb+srv://c.example.com/?srvMaxHosts=1",
            Some("replicaSet=rs0"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("srvMaxHosts") && e.contains("replicaSet"), "{e}");
        // srvMaxHosts=0 is no limit, so it combines with anything.
        assert!(resolved(
            "mongodb+srv://c.example.com/?srvMaxHosts=0",
            Some("replicaSet=rs0")
        )
        .is_ok());
        assert!(!resolved("mongodb+srv://c.example.com/?tls=false", None)
            .unwrap()
            .tls_enabled());
    }
}
