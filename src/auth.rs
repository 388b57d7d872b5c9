//! Authentication to the upstream, per the auth spec: SCRAM-SHA-256, SCRAM-SHA-1 or
//! MONGODB-X509 on every pooled connection, right after its hello; monitoring
//! connections never authenticate.
//!
//! - The connection's hello carries `speculativeAuthenticate` (SCRAM's client-first
//!   message, or X.509's whole `authenticate` command), so a server that answers it
//!   saves a round trip, and, when no mechanism was configured, `saslSupportedMechs` to
//!   choose one (SHA-256 when listed).
//! - X.509 has no secret of its own here: the credential is the TLS client certificate
//!   (`tlsCertificateKeyFile`), which the TLS layer presents.
//! - PBKDF2 runs once per credential, salt and iteration count: the derived keys are
//!   cached in the [`UpstreamCredential`], so a connection storm costs two HMACs per
//!   connection, not 15,000 hash rounds.

pub mod login;
pub mod scram;
pub mod users;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bson::{rawdoc, spec::BinarySubtype, Binary, RawDocument, RawDocumentBuf};

use crate::config::uri::Secret;
use crate::upstream::{UpstreamConn, UpstreamError};
use scram::{ClientFirst, Keys, Mechanism, ScramError};

/// What one key derivation depends on besides the password: mechanism, salt, iterations.
type KeyId = (Mechanism, Vec<u8>, u32);

/// How the proxy proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// SCRAM with this mechanism; `None`: negotiated per server with `saslSupportedMechs`.
    Scram(Option<Mechanism>),
    /// MONGODB-X509: the TLS client certificate is the credential.
    X509,
}

/// Who the proxy logs in as upstream, with the keys derived so far.
pub struct UpstreamCredential {
    /// `None` only for X.509 without a user in the URI: the server then takes the
    /// certificate's subject.
    pub username: Option<String>,
    /// The authentication database (`authSource`: default "admin", "$external" for X.509).
    pub source: String,
    pub method: Method,
    /// SCRAM only.
    password: Option<Secret>,
    keys: Mutex<HashMap<KeyId, Keys>>,
}

impl std::fmt::Debug for UpstreamCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCredential")
            .field("username", &self.username)
            .field("source", &self.source)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl UpstreamCredential {
    pub fn scram(
        username: String,
        source: String,
        mechanism: Option<Mechanism>,
        password: Secret,
    ) -> Arc<Self> {
        Arc::new(Self {
            username: Some(username),
            source,
            method: Method::Scram(mechanism),
            password: Some(password),
            keys: Mutex::new(HashMap::new()),
        })
    }

    /// X.509 as `username` (the certificate's subject, RFC 4514), or as whatever subject
    /// the certificate has when `None`.
    pub fn x509(username: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            username,
            source: "$external".to_owned(),
            method: Method::X509,
            password: None,
            keys: Mutex::new(HashMap::new()),
        })
    }

    /// How many key derivations (PBKDF2 runs) this credential has needed.
    pub fn derivations(&self) -> usize {
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn keys_for(&self, m: Mechanism, salt: &[u8], iterations: u32) -> Result<Keys, ScramError> {
        let id = (m, salt.to_vec(), iterations);
        if let Some(k) = self.keys.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Ok(k.clone());
        }
        let password = self.password.as_ref().map_or("", Secret::expose);
        let prepared = m.prepare_password(self.name(), password)?;
        let keys = Keys::derive(m, &prepared, salt, iterations);
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, keys.clone());
        Ok(keys)
    }

    fn name(&self) -> &str {
        self.username.as_deref().unwrap_or("")
    }

    /// `db.user`, as `saslSupportedMechs` names a user (and as logs and `/ready` do).
    pub fn qualified(&self) -> String {
        match &self.username {
            Some(user) => format!("{}.{user}", self.source),
            None => format!("{}.<subject of tlsCertificateKeyFile>", self.source),
        }
    }
}

/// What the hello of an authenticating connection adds, and the conversation it began
/// (`None` for X.509, which is one command).
pub struct HelloAuth {
    pub fields: RawDocumentBuf,
    first: Option<ClientFirst>,
}

/// The fields for the connection's hello: `saslSupportedMechs` when the mechanism is
/// negotiated, and `speculativeAuthenticate` with the configured mechanism (SHA-256
/// when negotiated, as the spec says).
pub fn hello_fields(cred: &UpstreamCredential) -> HelloAuth {
    let mut fields = RawDocumentBuf::new();
    let mechanism = match cred.method {
        Method::X509 => {
            let mut cmd = x509_authenticate(cred);
            cmd.append(bson::cstr!("db"), cred.source.as_str());
            fields.append(bson::cstr!("speculativeAuthenticate"), cmd);
            return HelloAuth { fields, first: None };
        }
        Method::Scram(None) => {
            fields.append(bson::cstr!("saslSupportedMechs"), cred.qualified());
            Mechanism::Sha256
        }
        Method::Scram(Some(m)) => m,
    };
    let first = ClientFirst::new(mechanism, cred.name(), &nonce());
    fields.append(
        bson::cstr!("speculativeAuthenticate"),
        sasl_start(&first, &cred.source),
    );
    HelloAuth {
        fields,
        first: Some(first),
    }
}

/// X.509's one command: the user is optional (the server reads the certificate).
fn x509_authenticate(cred: &UpstreamCredential) -> RawDocumentBuf {
    let mut cmd = rawdoc! { "authenticate": 1, "mechanism": "MONGODB-X509" };
    if let Some(user) = &cred.username {
        cmd.append(bson::cstr!("user"), user.as_str());
    }
    cmd
}

fn nonce() -> String {
    let bytes: [u8; 24] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn binary(payload: &str) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes: payload.as_bytes().to_vec(),
    }
}

fn sasl_start(first: &ClientFirst, db: &str) -> RawDocumentBuf {
    rawdoc! {
        "saslStart": 1,
        "mechanism": first.mechanism.name(),
        "payload": binary(&first.message()),
        "options": { "skipEmptyExchange": true },
        "db": db,
    }
}

/// The SCRAM mechanism for a server whose hello answered `saslSupportedMechs` with `listed`.
pub fn negotiate(configured: Option<Mechanism>, listed: &[String]) -> Mechanism {
    configured.unwrap_or(if listed.iter().any(|m| m == Mechanism::Sha256.name()) {
        Mechanism::Sha256
    } else {
        Mechanism::Sha1
    })
}

/// Logs `conn` in after its hello (`hello` is the reply, `begun` what the hello sent).
pub async fn authenticate(
    conn: &mut UpstreamConn,
    cred: &UpstreamCredential,
    begun: HelloAuth,
    hello: &RawDocument,
) -> Result<(), UpstreamError> {
    let address = conn.address.clone();
    let fail = |why: String| UpstreamError::Auth {
        address: address.clone(),
        user: cred.qualified(),
        why,
    };
    let speculative = hello
        .get_document("speculativeAuthenticate")
        .ok()
        .filter(|r| check_ok(r).is_ok());
    let configured = match cred.method {
        Method::X509 => return x509(conn, cred, speculative.is_some()).await.map_err(fail),
        Method::Scram(m) => m,
    };
    // A server that answered the speculative saslStart has begun that conversation,
    // unless the user has no credential for its mechanism (negotiated: SHA-1 only).
    let mechanism = negotiate(configured, &listed(hello));
    let begun = begun.first.filter(|f| f.mechanism == mechanism);
    let (first, mut reply) = match (speculative, begun) {
        (Some(reply), Some(first)) => (first, reply.to_owned()),
        _ => {
            let first = ClientFirst::new(mechanism, cred.name(), &nonce());
            let mut cmd = sasl_start(&first, &cred.source);
            let reply = command(conn, &mut cmd, &cred.source).await?;
            (first, reply)
        }
    };
    check_ok(&reply).map_err(fail)?;
    let challenge = first
        .server_first(&payload(&reply).map_err(fail)?)
        .map_err(|e| fail(e.to_string()))?;
    let keys = cred
        .keys_for(first.mechanism, &challenge.salt, challenge.iterations)
        .map_err(|e| fail(e.to_string()))?;
    let (message, signature) = challenge.client_final(&keys);
    let id = reply
        .get("conversationId")
        .ok()
        .flatten()
        .map(bson::RawBson::from);
    let mut cont = rawdoc! { "saslContinue": 1, "payload": binary(&message) };
    if let Some(id) = id.clone() {
        cont.append(bson::cstr!("conversationId"), id);
    }
    reply = command(conn, &mut cont, &cred.source).await?;
    check_ok(&reply).map_err(fail)?;
    signature
        .verify(&payload(&reply).map_err(fail)?)
        .map_err(|e| fail(e.to_string()))?;
    // Without skipEmptyExchange the server wants one more, empty, round.
    if !reply.get_bool("done").unwrap_or(false) {
        let mut last = rawdoc! { "saslContinue": 1, "payload": binary("") };
        if let Some(id) = id {
            last.append(bson::cstr!("conversationId"), id);
        }
        let reply = command(conn, &mut last, &cred.source).await?;
        check_ok(&reply).map_err(fail)?;
        if !reply.get_bool("done").unwrap_or(false) {
            return Err(fail("the server did not end the conversation".into()));
        }
    }
    tracing::debug!(
        member = %address,
        user = %cred.qualified(),
        mechanism = first.mechanism.name(),
        speculative = speculative.is_some(),
        "authenticated upstream connection"
    );
    Ok(())
}

/// X.509 is done when the server answered the speculative `authenticate` in the hello;
/// otherwise it is the same command on its own.
async fn x509(conn: &mut UpstreamConn, cred: &UpstreamCredential, speculative: bool) -> Result<(), String> {
    if !speculative {
        let mut cmd = x509_authenticate(cred);
        let reply = command(conn, &mut cmd, &cred.source)
            .await
            .map_err(|e| e.to_string())?;
        check_ok(&reply)?;
    }
    tracing::debug!(
        member = %conn.address,
        user = %cred.qualified(),
        mechanism = "MONGODB-X509",
        speculative,
        "authenticated upstream connection"
    );
    Ok(())
}

fn listed(hello: &RawDocument) -> Vec<String> {
    hello
        .get_array("saslSupportedMechs")
        .map(|a| {
            a.into_iter()
                .filter_map(|v| Some(v.ok()?.as_str()?.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn check_ok(reply: &RawDocument) -> Result<(), String> {
    let ok = reply.get("ok").ok().flatten().is_some_and(crate::command::truthy);
    if ok {
        return Ok(());
    }
    let code = reply.get("code").ok().flatten().and_then(crate::command::as_i64);
    let msg = reply.get_str("errmsg").unwrap_or("authentication failed");
    Err(match code {
        Some(c) => format!("{msg} (code {c})"),
        None => msg.to_owned(),
    })
}

fn payload(reply: &RawDocument) -> Result<String, String> {
    let p = reply
        .get_binary("payload")
        .map_err(|_| "the server's SASL reply has no payload".to_string())?;
    String::from_utf8(p.bytes.to_vec()).map_err(|_| "the server's SASL payload is not UTF-8".to_string())
}

async fn command(
    conn: &mut UpstreamConn,
    body: &mut RawDocumentBuf,
    db: &str,
) -> Result<RawDocumentBuf, UpstreamError> {
    body.append(bson::cstr!("$db"), db);
    conn.command(body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_sha256_when_listed() {
        let s = |v: &[&str]| v.iter().map(|m| m.to_string()).collect::<Vec<_>>();
        let table = [
            (None, s(&["SCRAM-SHA-1", "SCRAM-SHA-256"]), Mechanism::Sha256),
            (None, s(&["SCRAM-SHA-1"]), Mechanism::Sha1),
            (None, s(&[]), Mechanism::Sha1),
            (Some(Mechanism::Sha256), s(&["SCRAM-SHA-1"]), Mechanism::Sha256),
            (Some(Mechanism::Sha1), s(&["SCRAM-SHA-256"]), Mechanism::Sha1),
        ];
        for (configured, listed, want) in table {
            assert_eq!(negotiate(configured, &listed), want, "{configured:?} {listed:?}");
        }
    }

    #[test]
    fn keys_are_derived_once_per_salt_and_count() {
        let cred = UpstreamCredential::scram("u".into(), "admin".into(), None, Secret::new("hunter2"));
        let a = cred.keys_for(Mechanism::Sha256, b"salt", 4096).unwrap();
        let b = cred.keys_for(Mechanism::Sha256, b"salt", 4096).unwrap();
        assert_eq!(a, b);
        assert_eq!(cred.derivations(), 1);
        cred.keys_for(Mechanism::Sha256, b"other", 4096).unwrap();
        cred.keys_for(Mechanism::Sha1, b"salt", 4096).unwrap();
        assert_eq!(cred.derivations(), 3);
        let debug = format!("{cred:?} {a:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    /// X.509 speculates with its whole command on `$external`, and names the user only
    /// when the URI does; SCRAM asks for the user's mechanisms only when negotiating.
    #[test]
    fn hello_fields_per_method() {
        let fields = |c: &UpstreamCredential| {
            let f = hello_fields(c).fields;
            let spec = f.get_document("speculativeAuthenticate").unwrap().to_owned();
            (f.get_str("saslSupportedMechs").ok().map(str::to_owned), spec)
        };
        let (mechs, spec) = fields(&UpstreamCredential::x509(None));
        assert_eq!(mechs, None);
        assert_eq!(
            spec,
            rawdoc! { "authenticate": 1, "mechanism": "MONGODB-X509", "db": "$external" }
        );
        let (_, spec) = fields(&UpstreamCredential::x509(Some("CN=a".into())));
        assert_eq!(spec.get_str("user").unwrap(), "CN=a");
        let negotiated = UpstreamCredential::scram("u".into(), "db".into(), None, Secret::new("p"));
        let (mechs, spec) = fields(&negotiated);
        assert_eq!(mechs.as_deref(), Some("db.u"));
        assert_eq!(spec.get_str("mechanism").unwrap(), "SCRAM-SHA-256");
        let named =
            UpstreamCredential::scram("u".into(), "db".into(), Some(Mechanism::Sha1), Secret::new("p"));
        let (mechs, spec) = fields(&named);
        assert_eq!(mechs, None);
        assert_eq!(spec.get_str("mechanism").unwrap(), "SCRAM-SHA-1");
    }
}
