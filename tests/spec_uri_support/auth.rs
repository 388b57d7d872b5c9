//! Checks one case of the authentication spec files (`credential` format).

use mongoplex::config::uri::{ConnectionString, Credential};
use serde_json::Value;

use crate::spec_view::scalar_string;
use crate::Outcome;

pub fn check_auth_case(case: &Value) -> Outcome {
    let (Some(uri), Some(valid)) = (
        case.get("uri").and_then(Value::as_str),
        case.get("valid").and_then(Value::as_bool),
    ) else {
        return Outcome::Fail(vec![
            "malformed case: needs string \"uri\" and bool \"valid\"".into()
        ]);
    };
    if let Some(reason) = unsupported_credential(case) {
        return Outcome::Skip(reason);
    }
    let cs = match (ConnectionString::parse(uri), valid) {
        (Err(_), false) => return Outcome::Pass,
        (Ok(cs), false) => {
            return Outcome::Fail(vec![format!(
                "{uri:?} should be rejected, got {:?}",
                cs.credential
            )])
        }
        (Err(e), true) => return Outcome::Fail(vec![format!("{uri:?} rejected: {e}")]),
        (Ok(cs), true) => cs,
    };
    let mut errors = Vec::new();
    match (case.get("credential"), &cs.credential) {
        (None, _) | (Some(Value::Null), None) => {}
        (Some(Value::Null), Some(c)) => errors.push(format!("expected no credential, got {c:?}")),
        (Some(want), None) => errors.push(format!("expected credential {want}, got none")),
        (Some(want), Some(got)) => compare_credential(want, got, &mut errors),
    }
    if errors.is_empty() {
        Outcome::Pass
    } else {
        Outcome::Fail(errors)
    }
}

/// The auth spec's legacy file still holds "valid" cases that put AWS keys in
/// the URI next to the newer cases that reject them (DRIVERS-3131 removed URI
/// credentials for MONGODB-AWS). mongoplex follows the current rule, so the
/// legacy expectations are skipped, by what they assert rather than by name.
fn unsupported_credential(case: &Value) -> Option<String> {
    let credential = case.get("credential").filter(|c| c.is_object())?;
    let field = |name: &str| credential.get(name).filter(|v| !v.is_null());
    let aws = credential.get("mechanism").and_then(Value::as_str) == Some("MONGODB-AWS");
    let keys = field("username").is_some()
        || field("password").is_some()
        || field("mechanism_properties")
            .and_then(|p| p.get("AWS_SESSION_TOKEN"))
            .is_some();
    (aws && keys).then(|| {
        "MONGODB-AWS credentials in the URI: the auth spec removed them (DRIVERS-3131) and mongoplex \
         rejects them; AWS keys come from the environment"
            .to_owned()
    })
}

fn compare_credential(want: &Value, got: &Credential, errors: &mut Vec<String>) {
    let fields = [
        ("username", got.username.clone()),
        ("password", got.password.as_ref().map(|p| p.expose().to_owned())),
        ("source", Some(got.source_or_default().to_owned())),
        ("mechanism", got.mechanism.map(|m| m.as_str().to_owned())),
    ];
    for (field, actual) in fields {
        let expected = want.get(field).and_then(Value::as_str);
        if expected != actual.as_deref() {
            errors.push(format!(
                "credential {field}: expected {expected:?}, got {actual:?}"
            ));
        }
    }
    match want.get("mechanism_properties") {
        Some(Value::Object(props)) => {
            for (key, value) in props {
                let value = scalar_string(value);
                if got.mechanism_property(key) != value.as_str() {
                    errors.push(format!(
                        "mechanism property {key}: expected {value}, got {:?}",
                        got.mechanism_property(key)
                    ));
                }
            }
            if let Some(extra) = got
                .mechanism_properties
                .keys()
                .find(|k| !props.keys().any(|e| e.eq_ignore_ascii_case(k)))
            {
                errors.push(format!("unexpected mechanism property {extra}"));
            }
        }
        _ if !got.mechanism_properties.is_empty() => {
            errors.push(format!(
                "expected no mechanism properties, got {:?}",
                got.mechanism_properties
            ));
        }
        _ => {}
    }
}
