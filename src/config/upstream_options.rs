//! What mongoplex does with each option of its upstream connection string, in one
//! table. Drivers warn about an option they do not support and carry on; a proxy that
//! did the same would accept `tls=true` and talk plaintext. So every option given is
//! either honoured or refused at start-up, naming it ([`check`]). Unknown options, and
//! values the parser had to ignore, are refused too: a misspelt option is one the
//! user believes is in force.

use super::uri::{ConnectionString, UriOptions};

/// What the proxy does with one URI option.
#[derive(Clone, Copy)]
enum Support {
    /// Used for the proxy's own upstream connections.
    Honoured,
    /// Accepted only when its value asks for what the proxy does anyway; otherwise
    /// refused with the reason.
    OnlyDefault(fn(&UriOptions) -> bool, &'static str),
    /// Refused whatever its value, with the reason.
    Refused(&'static str),
}

use Support::{Honoured, OnlyDefault, Refused};

const PER_CLIENT: &str = "it belongs in each application's own connection string: \
                          mongoplex forwards what every client sends";
const NO_REVOCATION: &str = "mongoplex (rustls) checks neither OCSP nor revocation lists; \
                             only the value true states what it does";
const NO_PROXY: &str = "mongoplex does not connect through a SOCKS5 proxy";

/// Every option the parser knows ([`super::uri`]'s list), and what the proxy does with
/// it. A unit test keeps the two lists equal.
const TABLE: &[(&str, Support)] = &[
    ("appName", Honoured),
    (
        "authMechanism",
        OnlyDefault(
            |o| {
                use super::uri::AuthMechanism::{MongoDbX509, ScramSha1, ScramSha256};
                matches!(o.auth_mechanism, Some(ScramSha1 | ScramSha256 | MongoDbX509))
            },
            "mongoplex authenticates upstream with SCRAM-SHA-256, SCRAM-SHA-1 or MONGODB-X509 only",
        ),
    ),
    (
        "authMechanismProperties",
        Refused("SCRAM and X.509 take no mechanism properties"),
    ),
    ("authSource", Honoured),
    ("compressors", Honoured),
    ("connectTimeoutMS", Honoured),
    ("directConnection", Honoured),
    (
        "enableOverloadRetargeting",
        Refused("mongoplex has no client backpressure retries"),
    ),
    ("heartbeatFrequencyMS", Honoured),
    ("journal", Refused(PER_CLIENT)),
    (
        "loadBalanced",
        OnlyDefault(
            |o| o.load_balanced == Some(false),
            "mongoplex does not front a load balancer",
        ),
    ),
    ("localThresholdMS", Honoured),
    (
        "maxAdaptiveRetries",
        Refused("mongoplex has no client backpressure retries"),
    ),
    ("maxConnecting", Honoured),
    ("maxIdleTimeMS", Honoured),
    ("maxPoolSize", Honoured),
    ("maxStalenessSeconds", Refused(PER_CLIENT)),
    ("minPoolSize", Honoured),
    ("proxyHost", Refused(NO_PROXY)),
    ("proxyPassword", Refused(NO_PROXY)),
    ("proxyPort", Refused(NO_PROXY)),
    ("proxyUsername", Refused(NO_PROXY)),
    ("readConcernLevel", Refused(PER_CLIENT)),
    ("readPreference", Refused(PER_CLIENT)),
    ("readPreferenceTags", Refused(PER_CLIENT)),
    ("replicaSet", Honoured),
    (
        "retryReads",
        OnlyDefault(
            |o| o.retry_reads == Some(true),
            "mongoplex retries a read once where it is safe; clients set their own retryReads",
        ),
    ),
    (
        "retryWrites",
        OnlyDefault(
            |o| o.retry_writes == Some(true),
            "mongoplex retries a write once only where the server deduplicates it or it \
             provably never ran; clients set their own retryWrites",
        ),
    ),
    (
        "serverMonitoringMode",
        OnlyDefault(
            |o| {
                use super::uri::ServerMonitoringMode::{Auto, Stream};
                matches!(o.server_monitoring_mode, Some(Auto | Stream))
            },
            "mongoplex streams hello from servers that support it (auto); poll is not supported",
        ),
    ),
    ("serverSelectionTimeoutMS", Honoured),
    (
        "serverSelectionTryOnce",
        Refused("mongoplex is multi-threaded: it always retries selection"),
    ),
    ("socketTimeoutMS", Honoured),
    ("srvMaxHosts", Honoured),
    ("srvServiceName", Honoured),
    ("ssl", Honoured),
    ("timeoutMS", Refused(PER_CLIENT)),
    ("tls", Honoured),
    ("tlsAllowInvalidCertificates", Honoured),
    ("tlsAllowInvalidHostnames", Honoured),
    ("tlsCAFile", Honoured),
    ("tlsCertificateKeyFile", Honoured),
    (
        "tlsCertificateKeyFilePassword",
        Refused("encrypted private keys are refused: decrypt the key file (openssl pkey -in key.pem -out plain.pem)"),
    ),
    (
        "tlsDisableCertificateRevocationCheck",
        OnlyDefault(|o| o.tls_disable_certificate_revocation_check == Some(true), NO_REVOCATION),
    ),
    (
        "tlsDisableOCSPEndpointCheck",
        OnlyDefault(|o| o.tls_disable_ocsp_endpoint_check == Some(true), NO_REVOCATION),
    ),
    ("tlsInsecure", Honoured),
    ("w", Refused(PER_CLIENT)),
    ("waitQueueTimeoutMS", Honoured),
    ("wTimeoutMS", Refused(PER_CLIENT)),
    ("wtimeout", Refused(PER_CLIENT)),
    ("zlibCompressionLevel", Honoured),
];

/// Everything in `cs` the proxy would not honour, as one message naming each.
pub fn check(cs: &ConnectionString) -> Result<(), String> {
    let mut refused = Vec::new();
    for key in &cs.given.unknown {
        refused.push(format!(
            "unknown option {key:?}: mongoplex refuses options it does not honour (check the spelling)"
        ));
    }
    for name in &cs.given.dropped {
        refused.push(format!(
            "option {name:?}: its value is not valid, and mongoplex does not fall back to a default"
        ));
    }
    if let Some(db) = &cs.default_database {
        refused.push(format!(
            "the database in the path (/{db}) means nothing to mongoplex: each client names its own"
        ));
    }
    for name in &cs.given.names {
        let support = TABLE
            .iter()
            .find(|(n, _)| n == name)
            .map_or(Refused("mongoplex does not know it"), |(_, s)| *s);
        match support {
            Honoured => {}
            OnlyDefault(accepted, _) if accepted(&cs.options) => {}
            OnlyDefault(_, why) | Refused(why) => refused.push(format!("option {name:?}: {why}")),
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(refused.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_the_parser_knows_has_one_row() {
        let known = crate::config::uri::known_options();
        for name in known {
            let rows = TABLE.iter().filter(|(n, _)| n == name).count();
            assert_eq!(rows, 1, "{name} has {rows} rows");
        }
        for (name, _) in TABLE {
            assert!(known.contains(name), "{name} is not an option the parser knows");
        }
    }

    /// Each option, given as a user would: accepted, or refused with a message that
    /// names it. The honoured options' effects are tested with the config.
    #[test]
    fn each_option_is_honoured_or_refused_by_name() {
        let table: &[(&str, Option<&str>)] = &[
            ("mongodb://h/", None),
            (
                "mongodb://h/?appName=a&replicaSet=rs&directConnection=false",
                None,
            ),
            (
                "mongodb://h/?maxPoolSize=5&minPoolSize=1&maxConnecting=3&maxIdleTimeMS=9",
                None,
            ),
            (
                "mongodb://h/?connectTimeoutMS=1&socketTimeoutMS=2&serverSelectionTimeoutMS=3",
                None,
            ),
            (
                "mongodb://h/?heartbeatFrequencyMS=900&localThresholdMS=4&waitQueueTimeoutMS=5",
                None,
            ),
            ("mongodb://h/?tls=false&ssl=false&loadBalanced=false", None),
            (
                "mongodb://h/?retryWrites=true&retryReads=true&serverMonitoringMode=auto",
                None,
            ),
            ("mongodb://h/?serverMonitoringMode=stream", None),
            (
                "mongodb://h/?tls=true&tlsCAFile=/ca.pem&tlsCertificateKeyFile=/k.pem",
                None,
            ),
            ("mongodb://h/?ssl=true&tlsInsecure=true", None),
            ("mongodb://h/?tls=true&tlsAllowInvalidHostnames=true", None),
            ("mongodb://h/?tls=true&tlsDisableOCSPEndpointCheck=true", None),
            (
                "mongodb://h/?tls=true&tlsDisableOCSPEndpointCheck=false",
                Some("\"tlsDisableOCSPEndpointCheck\""),
            ),
            (
                "mongodb://h/?tls=true&tlsCertificateKeyFilePassword=x",
                Some("\"tlsCertificateKeyFilePassword\""),
            ),
            ("mongodb://h/?retryWrites=false", Some("\"retryWrites\"")),
            ("mongodb://h/?retryReads=false", Some("\"retryReads\"")),
            (
                "mongodb://h/?serverMonitoringMode=poll",
                Some("\"serverMonitoringMode\""),
            ),
            ("mongodb://h/?loadBalanced=true", Some("\"loadBalanced\"")),
            ("mongodb://h/?w=majority", Some("\"w\"")),
            ("mongodb://h/?journal=true", Some("\"journal\"")),
            ("mongodb://h/?wTimeoutMS=5", Some("\"wTimeoutMS\"")),
            (
                "mongodb://h/?readPreference=secondary",
                Some("\"readPreference\""),
            ),
            (
                "mongodb://h/?readConcernLevel=majority",
                Some("\"readConcernLevel\""),
            ),
            ("mongodb://h/?timeoutMS=5", Some("\"timeoutMS\"")),
            ("mongodb://h/?compressors=zstd", None),
            (
                "mongodb://h/?compressors=zstd,snappy,zlib&zlibCompressionLevel=5",
                None,
            ),
            ("mongodb://h/?zlibCompressionLevel=-1", None),
            (
                "mongodb://h/?zlibCompressionLevel=10",
                Some("\"zlibCompressionLevel\""),
            ),
            ("mongodb://h/?compressors=", Some("\"compressors\"")),
            (
                "mongodb://h/?serverSelectionTryOnce=false",
                Some("\"serverSelectionTryOnce\""),
            ),
            ("mongodb://h/?proxyHost=p", Some("\"proxyHost\"")),
            (
                "mongodb://h/?maxAdaptiveRetries=2",
                Some("\"maxAdaptiveRetries\""),
            ),
            ("mongodb://alice:secret@h/", None),
            (
                "mongodb://alice:secret@h/?authSource=db&authMechanism=SCRAM-SHA-1",
                None,
            ),
            ("mongodb://alice@h/", None),
            ("mongodb://h/?authMechanism=MONGODB-X509", None),
            (
                "mongodb://h/?authMechanism=MONGODB-AWS",
                Some("\"authMechanism\""),
            ),
            ("mongodb://a:b@h/?authMechanism=PLAIN", Some("\"authMechanism\"")),
            (
                "mongodb://a:b@h/?authMechanismProperties=SERVICE_NAME:x&authMechanism=GSSAPI",
                Some("\"authMechanismProperties\""),
            ),
            ("mongodb+srv://cluster0.example.com/", None),
            (
                "mongodb+srv://cluster0.example.com/?srvServiceName=mdb&srvMaxHosts=2&tls=false",
                None,
            ),
            (
                "mongodb+srv://cluster0.example.com/?loadBalanced=true",
                Some("\"loadBalanced\""),
            ),
            ("mongodb://h/mydb", Some("/mydb")),
            ("mongodb://h/?tsl=true", Some("\"tsl\"")),
            ("mongodb://h/?maxPoolSize=lots", Some("\"maxPoolSize\"")),
            ("mongodb://h/?compressors=zstd,jpeg", Some("\"compressors\"")),
            ("mongodb://h/?appName=", Some("\"appName\"")),
        ];
        for (uri, refused) in table {
            let cs = ConnectionString::parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
            match (check(&cs), refused) {
                (Ok(()), None) => {}
                (Err(msg), Some(names)) => assert!(msg.contains(names), "{uri}: {msg}"),
                (got, want) => panic!("{uri}: got {got:?}, want refusal naming {want:?}"),
            }
        }
    }
}
