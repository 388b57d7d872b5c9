//! Building the [`Credential`] from userinfo and the auth options, with the
//! per-mechanism rules of the authentication spec ("MongoCredential
//! Properties").

use super::error::AuthError;
use super::options::{AuthMechanism, AuthMechanismProperties, UriOptions};
use super::syntax::Userinfo;
use super::Credential;

const EXTERNAL: &str = "$external";

/// The spec's `CANONICALIZE_HOST_NAME` values (booleans are legacy forms).
const CANONICALIZE_VALUES: &[&str] = &["none", "forward", "forwardAndReverse", "true", "false"];

/// Built-in OIDC environments, and whether each needs `TOKEN_RESOURCE` and
/// allows a username (for azure it names the managed identity's client id).
const OIDC_ENVIRONMENTS: &[(&str, bool, bool)] = &[
    ("test", false, false),
    ("azure", true, true),
    ("gcp", true, false),
    ("k8s", false, false),
];

/// A credential exists when the string has userinfo ('@' means the user asked
/// for authentication, even with empty names) or an `authMechanism`. A
/// database or `authSource` alone does not ask for authentication.
pub(super) fn build(
    userinfo: Option<Userinfo>,
    options: &UriOptions,
    database: Option<&str>,
) -> Result<Option<Credential>, AuthError> {
    if userinfo.is_none() && options.auth_mechanism.is_none() {
        return Ok(None);
    }
    let (username, password) = match userinfo {
        Some(u) => (Some(u.username), u.password),
        None => (None, None),
    };
    if username.as_deref() == Some("") {
        return Err(AuthError::EmptyUsername);
    }
    let mut credential = Credential {
        username,
        password,
        source: None,
        mechanism: options.auth_mechanism,
        mechanism_properties: options.auth_mechanism_properties.clone().unwrap_or_default(),
    };
    let explicit_source = options.auth_source.clone();
    credential.source = match credential.mechanism {
        None => {
            require_user_no_properties(&credential, "the default mechanism (SCRAM)")?;
            explicit_source.or_else(|| database.map(str::to_owned))
        }
        Some(m @ (AuthMechanism::ScramSha1 | AuthMechanism::ScramSha256 | AuthMechanism::MongoDbCr)) => {
            require_user_no_properties(&credential, m.as_str())?;
            require_password(&credential, m)?;
            explicit_source.or_else(|| database.map(str::to_owned))
        }
        Some(AuthMechanism::Plain) => {
            require_user_no_properties(&credential, "PLAIN")?;
            require_password(&credential, AuthMechanism::Plain)?;
            explicit_source
                .or_else(|| database.map(str::to_owned))
                .or_else(|| Some(EXTERNAL.to_owned()))
        }
        Some(m) => {
            check_external_mechanism(&credential, m)?;
            Some(external_source(m, explicit_source)?)
        }
    };
    Ok(Some(credential))
}

fn require_user_no_properties(c: &Credential, mechanism: &'static str) -> Result<(), AuthError> {
    if c.username.is_none() {
        return Err(AuthError::MissingUsername { mechanism });
    }
    if !c.mechanism_properties.is_empty() {
        return Err(AuthError::PropertiesNotAllowed { mechanism });
    }
    Ok(())
}

fn require_password(c: &Credential, mechanism: AuthMechanism) -> Result<(), AuthError> {
    match c.password {
        Some(_) => Ok(()),
        None => Err(AuthError::MissingPassword {
            mechanism: mechanism.as_str(),
        }),
    }
}

/// GSSAPI, X.509, AWS and OIDC authenticate against `$external` only.
fn external_source(mechanism: AuthMechanism, source: Option<String>) -> Result<String, AuthError> {
    match source {
        Some(given) if given != EXTERNAL => Err(AuthError::SourceNotExternal { mechanism, given }),
        _ => Ok(EXTERNAL.to_owned()),
    }
}

fn check_external_mechanism(c: &Credential, m: AuthMechanism) -> Result<(), AuthError> {
    let props = &c.mechanism_properties;
    match m {
        AuthMechanism::Gssapi => {
            if c.username.is_none() {
                return Err(AuthError::MissingUsername { mechanism: "GSSAPI" });
            }
            only_properties(
                m,
                props,
                &[
                    "SERVICE_NAME",
                    "CANONICALIZE_HOST_NAME",
                    "SERVICE_REALM",
                    "SERVICE_HOST",
                ],
            )?;
            if let Some(value) = props.get("CANONICALIZE_HOST_NAME") {
                if !CANONICALIZE_VALUES.iter().any(|v| v.eq_ignore_ascii_case(value)) {
                    return Err(AuthError::InvalidProperty {
                        property: "CANONICALIZE_HOST_NAME",
                        value: value.to_owned(),
                        expected: "none, forward, forwardAndReverse, true or false",
                    });
                }
            }
            Ok(())
        }
        AuthMechanism::MongoDbX509 => {
            if c.password.is_some() {
                return Err(AuthError::PasswordNotAllowed { mechanism: m });
            }
            if !props.is_empty() {
                return Err(AuthError::PropertiesNotAllowed {
                    mechanism: "MONGODB-X509",
                });
            }
            Ok(())
        }
        AuthMechanism::MongoDbAws => {
            // Keys in the string would outlive the short-lived credentials AWS
            // issues, so the spec (DRIVERS-3131) has them come from the
            // environment only.
            let what = if c.username.is_some() {
                Some("a username (access key id)")
            } else if c.password.is_some() {
                Some("a password (secret access key)")
            } else if props.get("AWS_SESSION_TOKEN").is_some() {
                Some("AWS_SESSION_TOKEN")
            } else {
                None
            };
            if let Some(what) = what {
                return Err(AuthError::AwsCredentialsInUri { what });
            }
            only_properties(m, props, &[])
        }
        AuthMechanism::MongoDbOidc => check_oidc(c),
        // Handled by `build`; listed so a new mechanism must be placed.
        AuthMechanism::ScramSha1
        | AuthMechanism::ScramSha256
        | AuthMechanism::Plain
        | AuthMechanism::MongoDbCr => Ok(()),
    }
}

fn only_properties(
    mechanism: AuthMechanism,
    props: &AuthMechanismProperties,
    allowed: &[&str],
) -> Result<(), AuthError> {
    match props.keys().find(|k| !allowed.contains(k)) {
        Some(property) => Err(AuthError::UnsupportedProperty {
            mechanism,
            property: property.to_owned(),
        }),
        None => Ok(()),
    }
}

/// A connection string cannot carry an OIDC callback, so it must name a
/// built-in environment. ALLOWED_HOSTS is settable only in code (auth spec).
fn check_oidc(c: &Credential) -> Result<(), AuthError> {
    let m = AuthMechanism::MongoDbOidc;
    if c.password.is_some() {
        return Err(AuthError::PasswordNotAllowed { mechanism: m });
    }
    let props = &c.mechanism_properties;
    only_properties(m, props, &["ENVIRONMENT", "TOKEN_RESOURCE"])?;
    let environment = props.get("ENVIRONMENT").ok_or(AuthError::MissingProperty {
        mechanism: m,
        property: "ENVIRONMENT",
        reason: "(a connection string cannot supply an OIDC callback)",
    })?;
    let &(_, needs_resource, allows_username) = OIDC_ENVIRONMENTS
        .iter()
        .find(|(name, _, _)| *name == environment)
        .ok_or_else(|| AuthError::InvalidProperty {
            property: "ENVIRONMENT",
            value: environment.to_owned(),
            expected: "test, azure, gcp or k8s",
        })?;
    match (needs_resource, props.get("TOKEN_RESOURCE").is_some()) {
        (true, false) => {
            return Err(AuthError::MissingProperty {
                mechanism: m,
                property: "TOKEN_RESOURCE",
                reason: "for the azure and gcp environments",
            })
        }
        (false, true) => {
            return Err(AuthError::UnsupportedProperty {
                mechanism: m,
                property: "TOKEN_RESOURCE".to_owned(),
            })
        }
        _ => {}
    }
    if c.username.is_some() && !allows_username {
        return Err(AuthError::UsernameNotAllowed {
            mechanism: m,
            reason: "with this ENVIRONMENT (only azure takes one, as the client id)",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::uri::options::Secret;

    fn userinfo(user: &str, password: Option<&str>) -> Option<Userinfo> {
        Some(Userinfo {
            username: user.to_owned(),
            password: password.map(Secret::new),
        })
    }

    fn with(mechanism: AuthMechanism, props: &[(&str, &str)]) -> UriOptions {
        let mut p = AuthMechanismProperties::default();
        for (k, v) in props {
            p.insert(k, *v);
        }
        UriOptions {
            auth_mechanism: Some(mechanism),
            auth_mechanism_properties: (!p.is_empty()).then_some(p),
            ..UriOptions::default()
        }
    }

    #[test]
    fn sources_follow_the_mechanism() {
        let none = UriOptions::default();
        let c = build(userinfo("u", Some("p")), &none, Some("app"))
            .unwrap()
            .unwrap();
        assert_eq!(c.source.as_deref(), Some("app"));
        let c = build(userinfo("u", Some("p")), &none, None).unwrap().unwrap();
        assert_eq!(c.source_or_default(), "admin");
        let plain = with(AuthMechanism::Plain, &[]);
        let c = build(userinfo("u", Some("p")), &plain, None).unwrap().unwrap();
        assert_eq!(c.source.as_deref(), Some("$external"));
        let x509 = with(AuthMechanism::MongoDbX509, &[]);
        let c = build(None, &x509, Some("ignored")).unwrap().unwrap();
        assert_eq!(c.source.as_deref(), Some("$external"));
        // No userinfo and no mechanism: no credential, whatever else is set.
        let source_only = UriOptions {
            auth_source: Some("db".into()),
            ..UriOptions::default()
        };
        assert_eq!(build(None, &source_only, Some("db")), Ok(None));
    }

    #[test]
    fn mechanism_rules() {
        let gssapi = with(AuthMechanism::Gssapi, &[("CANONICALIZE_HOST_NAME", "sideways")]);
        assert!(matches!(
            build(userinfo("u", None), &gssapi, None),
            Err(AuthError::InvalidProperty { .. })
        ));
        let aws = with(AuthMechanism::MongoDbAws, &[("AWS_SESSION_TOKEN", "t")]);
        assert!(matches!(
            build(None, &aws, None),
            Err(AuthError::AwsCredentialsInUri { .. })
        ));
        let aws = with(AuthMechanism::MongoDbAws, &[]);
        assert!(build(userinfo("id", Some("key")), &aws, None).is_err());
        assert!(build(None, &aws, None).is_ok());
        let oidc = with(AuthMechanism::MongoDbOidc, &[("ENVIRONMENT", "azure")]);
        assert!(matches!(
            build(None, &oidc, None),
            Err(AuthError::MissingProperty {
                property: "TOKEN_RESOURCE",
                ..
            })
        ));
        let oidc = with(AuthMechanism::MongoDbOidc, &[("environment", "k8s")]);
        assert!(build(None, &oidc, None).is_ok());
        assert!(build(userinfo("u", None), &oidc, None).is_err());
        let scram = with(AuthMechanism::ScramSha256, &[]);
        assert!(matches!(
            build(userinfo("u", None), &scram, None),
            Err(AuthError::MissingPassword { .. })
        ));
        assert_eq!(
            build(userinfo("", Some("p")), &UriOptions::default(), None),
            Err(AuthError::EmptyUsername)
        );
    }
}
