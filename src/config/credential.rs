//! The upstream credential: the user and options from the URI, the password from the
//! URI, `upstream_password_file` or `upstream_password` (`MONGOPLEX_UPSTREAM_PASSWORD`),
//! later layers winning as everywhere else.

use std::sync::Arc;

use super::settings::Settings;
use super::uri::{AuthError, AuthMechanism, ConnectionString, Secret, UriError};
use crate::auth::scram::Mechanism;
use crate::auth::UpstreamCredential;

/// Parses the upstream URI. A user given without a password, as in
/// `mongodb://svc@host/?authMechanism=SCRAM-SHA-256`, is complete when the password is
/// configured apart (file or environment): the URI is then read with a stand-in
/// password, which [`resolve`] replaces.
pub fn parse_upstream(uri: &str, s: &Settings) -> Result<ConnectionString, UriError> {
    match ConnectionString::parse(uri) {
        Err(UriError::Auth(AuthError::MissingPassword { .. }))
            if s.upstream_password.is_some() || s.upstream_password_file.is_some() =>
        {
            ConnectionString::parse(&with_stand_in_password(uri))
        }
        other => other,
    }
}

/// `scheme://user@rest` → `scheme://user:-@rest` (the userinfo ends at the last '@'
/// before the path).
fn with_stand_in_password(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) if !rest[..at].contains(':') => format!("{scheme}://{}:-{}", &rest[..at], &rest[at..]),
        _ => uri.to_owned(),
    }
}

/// `None` when the URI names no user and no password is configured.
pub fn resolve(cs: &ConnectionString, s: &Settings) -> Result<Option<Arc<UpstreamCredential>>, String> {
    let from_file = match &s.upstream_password_file {
        Some(path) => Some(read_password(path)?),
        None => None,
    };
    let password = s
        .upstream_password
        .clone()
        .or(from_file)
        .or_else(|| cs.credential.as_ref().and_then(|c| c.password.clone()));
    let Some(cred) = &cs.credential else {
        if password.is_some() {
            return Err(
                "an upstream password is configured but the upstream URI names no user \
                        (mongodb://USER@host/)"
                    .into(),
            );
        }
        return Ok(None);
    };
    let mechanism = match cred.mechanism {
        None => None,
        Some(AuthMechanism::ScramSha256) => Some(Mechanism::Sha256),
        Some(AuthMechanism::ScramSha1) => Some(Mechanism::Sha1),
        Some(AuthMechanism::MongoDbX509) => return x509(cs, cred.username.clone(), password.is_some()),
        Some(other) => {
            return Err(format!(
                "authMechanism {other}: mongoplex authenticates upstream with SCRAM-SHA-256, \
                 SCRAM-SHA-1 or MONGODB-X509 only"
            ))
        }
    };
    let username = cred
        .username
        .clone()
        .ok_or("the upstream credential has no user name")?;
    let password = password.ok_or_else(|| {
        format!(
            "upstream user {username:?} has no password: give it in the URI, in \
             upstream_password_file, or in MONGOPLEX_UPSTREAM_PASSWORD"
        )
    })?;
    Ok(Some(UpstreamCredential::scram(
        username,
        cred.source_or_default().to_owned(),
        mechanism,
        password,
    )))
}

/// X.509 needs the certificate it proves itself with, and no password: one configured
/// apart would be ignored, so it is refused.
fn x509(
    cs: &ConnectionString,
    username: Option<String>,
    password_given: bool,
) -> Result<Option<Arc<UpstreamCredential>>, String> {
    if password_given {
        return Err(
            "authMechanism MONGODB-X509 takes no password, but one is configured \
                    (upstream_password_file or MONGOPLEX_UPSTREAM_PASSWORD)"
                .into(),
        );
    }
    if !cs.tls_enabled() || cs.options.tls_certificate_key_file.is_none() {
        return Err("authMechanism MONGODB-X509 needs TLS with a client certificate: \
                    add tls=true&tlsCertificateKeyFile=/path/to/client.pem"
            .into());
    }
    Ok(Some(UpstreamCredential::x509(username)))
}

fn read_password(path: &std::path::Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read upstream_password_file {}: {e}", path.display()))?;
    let password = text.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(format!("upstream_password_file {} is empty", path.display()));
    }
    Ok(Secret::new(password))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Method;

    fn resolve_with(uri: &str, s: &Settings) -> Result<Option<Arc<UpstreamCredential>>, String> {
        match parse_upstream(uri, s) {
            Ok(cs) => resolve(&cs, s),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn the_password_comes_from_the_latest_layer_and_a_user_is_required() {
        let none = Settings::default();
        assert!(resolve_with("mongodb://h/", &none).unwrap().is_none());
        let c = resolve_with("mongodb://u:p@h/?authSource=db", &none)
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_deref(), c.source.as_str(), c.method),
            (Some("u"), "db", Method::Scram(None))
        );
        let e = resolve_with("mongodb://u@h/?authMechanism=SCRAM-SHA-1", &none).map(|_| ());
        assert!(
            e.unwrap_err().contains("needs a password"),
            "a user needs a password"
        );
        let e = resolve_with("mongodb://u@h/", &none).map(|_| ());
        assert!(e.unwrap_err().contains("no password"), "a user needs a password");
        let env = Settings {
            upstream_password: Some(Secret::new("from-env")),
            ..Settings::default()
        };
        let c = resolve_with("mongodb://u@h/?authMechanism=SCRAM-SHA-1", &env)
            .unwrap()
            .unwrap();
        assert_eq!(c.method, Method::Scram(Some(Mechanism::Sha1)));
        assert_eq!(
            with_stand_in_password("mongodb://u@h:1,g/x?y=@"),
            "mongodb://u:-@h:1,g/x?y=@"
        );
        assert_eq!(with_stand_in_password("mongodb://u:p@h/"), "mongodb://u:p@h/");
        let e = resolve_with("mongodb://h/", &env).map(|_| ()).unwrap_err();
        assert!(e.contains("names no user"), "{e}");
        let missing = Settings {
            upstream_password_file: Some("/nonexistent/pw".into()),
            ..Settings::default()
        };
        let e = resolve_with("mongodb://u@h/", &missing).map(|_| ()).unwrap_err();
        assert!(e.contains("/nonexistent/pw"), "{e}");
    }

    #[test]
    fn x509_needs_a_client_certificate_and_no_password() {
        let none = Settings::default();
        let x509 = "authMechanism=MONGODB-X509";
        let uri = format!("mongodb://h/?tls=true&tlsCertificateKeyFile=/c.pem&{x509}");
        let c = resolve_with(&uri, &none).unwrap().unwrap();
        assert_eq!(
            (c.username.as_deref(), c.source.as_str(), c.method),
            (None, "$external", Method::X509)
        );
        let uri = format!("mongodb://CN%3Dsvc%2CO%3Dt@h/?tls=true&tlsCertificateKeyFile=/c.pem&{x509}");
        let c = resolve_with(&uri, &none).unwrap().unwrap();
        assert_eq!(c.username.as_deref(), Some("CN=svc,O=t"));
        for uri in [
            format!("mongodb://h/?{x509}"),
            format!("mongodb://h/?tls=true&{x509}"),
        ] {
            let e = resolve_with(&uri, &none).map(|_| ()).unwrap_err();
            assert!(e.contains("tlsCertificateKeyFile"), "{uri}: {e}");
        }
        let env = Settings {
            upstream_password: Some(Secret::new("from-env")),
            ..Settings::default()
        };
        let uri = format!("mongodb://h/?tls=true&tlsCertificateKeyFile=/c.pem&{x509}");
        let e = resolve_with(&uri, &env).map(|_| ()).unwrap_err();
        assert!(e.contains("takes no password"), "{e}");
    }
}
