//! The client side of SCRAM (RFC 5802, RFC 7677) as MongoDB uses it: SCRAM-SHA-1 over
//! the hex MD5 of `user:mongo:password`, SCRAM-SHA-256 over the SASLprep'd password.
//!
//! Pure: the nonce comes in, messages go out, and the expensive part, PBKDF2, runs
//! once per credential, salt and iteration count ([`Keys`], cached by the caller).
//! [`server`] is the other side of the same exchange, for clients of the proxy.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

pub mod server;

/// The two SCRAM variants a MongoDB server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Sha1,
    Sha256,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "SCRAM-SHA-1",
            Self::Sha256 => "SCRAM-SHA-256",
        }
    }

    /// The password as SCRAM hashes it: MongoDB's MD5 digest for SHA-1, SASLprep for
    /// SHA-256 (RFC 7677; a password SASLprep refuses is an error).
    pub fn prepare_password(self, username: &str, password: &str) -> Result<String, ScramError> {
        match self {
            Self::Sha1 => {
                let digest = md5::Md5::digest(format!("{username}:mongo:{password}").as_bytes());
                Ok(hex(&digest))
            }
            Self::Sha256 => stringprep::saslprep(password)
                .map(|p| p.into_owned())
                .map_err(|_| ScramError::Invalid("the password is not valid under SASLprep".into())),
        }
    }

    pub(crate) fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => {
                let mut m = <Hmac<Sha1> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Self::Sha256 => {
                let mut m =
                    <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    pub(crate) fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => Sha1::digest(data).to_vec(),
            Self::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    fn salted_password(self, prepared: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; if self == Self::Sha1 { 20 } else { 32 }];
        let done = match self {
            Self::Sha1 => pbkdf2::pbkdf2::<Hmac<Sha1>>(prepared.as_bytes(), salt, iterations, &mut out),
            Self::Sha256 => pbkdf2::pbkdf2::<Hmac<Sha256>>(prepared.as_bytes(), salt, iterations, &mut out),
        };
        done.expect("the output length matches the hash");
        out
    }

    /// The name as a client sends it in `saslStart` (exact, as mongod compares it).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "SCRAM-SHA-1" => Some(Self::Sha1),
            "SCRAM-SHA-256" => Some(Self::Sha256),
            _ => None,
        }
    }

    /// The least iteration count a client accepts (auth spec: 4096 for both).
    pub fn min_iterations(self) -> u32 {
        4096
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("invalid SCRAM message from the server: {0}")]
    Invalid(String),
    #[error("the server's nonce does not extend the client's")]
    NonceMismatch,
    #[error("the server asked for {0} iterations, fewer than the 4096 allowed")]
    TooFewIterations(u32),
    #[error("the server's signature does not verify: it does not know this user's password")]
    BadServerSignature,
    #[error("the client's proof does not verify")]
    BadProof,
    #[error("the server refused the proof: {0}")]
    Server(String),
}

/// What PBKDF2 yields for one credential, salt and iteration count: all a client needs
/// to log in again, without the password (and what pass-through needs from a verifier).
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub client_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

impl Keys {
    pub fn derive(mechanism: Mechanism, prepared_password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = mechanism.salted_password(prepared_password, salt, iterations);
        Self {
            client_key: mechanism.hmac(&salted, b"Client Key"),
            server_key: mechanism.hmac(&salted, b"Server Key"),
        }
    }
}

/// `saslname` of RFC 5802: '=' and ',' escaped.
pub(crate) fn escape_username(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// A conversation after the client-first message.
#[derive(Debug, Clone)]
pub struct ClientFirst {
    pub mechanism: Mechanism,
    nonce: String,
    bare: String,
}

impl ClientFirst {
    /// Starts a conversation; `nonce` is printable ASCII without ',' (the caller's
    /// random bytes, base64).
    pub fn new(mechanism: Mechanism, username: &str, nonce: &str) -> Self {
        let bare = format!("n={},r={nonce}", escape_username(username));
        Self {
            mechanism,
            nonce: nonce.to_owned(),
            bare,
        }
    }

    /// The client-first message (gs2 header: no channel binding, no authzid).
    pub fn message(&self) -> String {
        format!("n,,{}", self.bare)
    }

    /// Reads the server-first message: the combined nonce, the salt and the iterations.
    pub fn server_first(&self, message: &str) -> Result<ServerFirst, ScramError> {
        let attr = |name: char| {
            message
                .split(',')
                .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
        };
        if message.starts_with("m=") {
            return Err(ScramError::Invalid(
                "mandatory extensions are not supported".into(),
            ));
        }
        let nonce = attr('r').ok_or_else(|| ScramError::Invalid("no nonce".into()))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() <= self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = attr('s')
            .and_then(|s| B64.decode(s).ok())
            .ok_or_else(|| ScramError::Invalid("no valid salt".into()))?;
        let iterations: u32 = attr('i')
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| ScramError::Invalid("no valid iteration count".into()))?;
        if iterations < self.mechanism.min_iterations() {
            return Err(ScramError::TooFewIterations(iterations));
        }
        Ok(ServerFirst {
            mechanism: self.mechanism,
            client_bare: self.bare.clone(),
            message: message.to_owned(),
            nonce: nonce.to_owned(),
            salt,
            iterations,
        })
    }
}

/// The server's challenge: what [`Keys`] are derived from, then the proof.
#[derive(Debug, Clone)]
pub struct ServerFirst {
    pub mechanism: Mechanism,
    client_bare: String,
    message: String,
    nonce: String,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

impl ServerFirst {
    /// The client-final message with its proof, and what verifies the server's answer.
    pub fn client_final(&self, keys: &Keys) -> (String, ServerSignature) {
        let without_proof = format!("c=biws,r={}", self.nonce);
        let auth_message = format!("{},{},{without_proof}", self.client_bare, self.message);
        let m = self.mechanism;
        let stored_key = m.hash(&keys.client_key);
        let signature = m.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = keys
            .client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let expected = m.hmac(&keys.server_key, auth_message.as_bytes());
        (
            format!("{without_proof},p={}", B64.encode(proof)),
            ServerSignature(expected),
        )
    }
}

/// The signature a server that knows the password must send back.
#[derive(Debug, Clone)]
pub struct ServerSignature(Vec<u8>);

impl ServerSignature {
    /// Checks the server-final message (`v=...`, or `e=...` for a refusal).
    pub fn verify(&self, message: &str) -> Result<(), ScramError> {
        if let Some(e) = message.strip_prefix("e=") {
            return Err(ScramError::Server(e.to_owned()));
        }
        let v = message
            .split(',')
            .find_map(|p| p.strip_prefix("v="))
            .ok_or_else(|| ScramError::Invalid("no server signature".into()))?;
        let got = B64
            .decode(v)
            .map_err(|_| ScramError::Invalid("server signature is not base64".into()))?;
        // Not secret-dependent timing: the expected value is the server's to know.
        if got == self.0 {
            Ok(())
        } else {
            Err(ScramError::BadServerSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5802 section 5 (SHA-1) and RFC 7677 section 3 (SHA-256): the same exchange
    /// byte for byte. The RFCs hash the plain password ("pencil"); MongoDB's SHA-1
    /// digest step is tested separately below.
    #[test]
    fn rfc_test_vectors() {
        let vectors = [
            (
                Mechanism::Sha1,
                "fyko+d2lbbFgONRv9qkxdawL",
                "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
                "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
                "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
            ),
            (
                Mechanism::Sha256,
                "rOprNGfwEbeRWgbNEkqO",
                "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
            ),
        ];
        for (m, nonce, server_first, client_final, server_final) in vectors {
            let first = ClientFirst::new(m, "user", nonce);
            assert_eq!(first.message(), format!("n,,n=user,r={nonce}"));
            let challenge = first.server_first(server_first).unwrap();
            let keys = Keys::derive(m, "pencil", &challenge.salt, challenge.iterations);
            let (message, signature) = challenge.client_final(&keys);
            assert_eq!(message, client_final, "{m:?}");
            signature.verify(server_final).unwrap();
            assert_eq!(
                signature.verify("v=AAAA"),
                Err(ScramError::BadServerSignature),
                "{m:?}"
            );
        }
    }

    #[test]
    fn passwords_are_prepared_per_mechanism() {
        // MongoDB's SHA-1 password: hex MD5 of "user:mongo:pencil".
        assert_eq!(
            Mechanism::Sha1.prepare_password("user", "pencil").unwrap(),
            "1c33006ec1ffd90f9cadcbcc0e118200"
        );
        // SASLprep: a non-ASCII space maps to a space; a control character is refused.
        assert_eq!(
            Mechanism::Sha256.prepare_password("u", "I\u{00A0}X").unwrap(),
            "I X"
        );
        assert!(Mechanism::Sha256.prepare_password("u", "a\u{0007}b").is_err());
    }

    #[test]
    fn hostile_server_first_messages_are_refused() {
        let first = ClientFirst::new(Mechanism::Sha256, "u=,x", "abc");
        assert_eq!(first.message(), "n,,n=u=3D=2Cx,r=abc");
        let cases = [
            ("r=xyzdef,s=AAAA,i=4096", ScramError::NonceMismatch),
            ("r=abc,s=AAAA,i=4096", ScramError::NonceMismatch),
            ("r=abcdef,s=AAAA,i=1", ScramError::TooFewIterations(1)),
            (
                "r=abcdef,s=!!,i=4096",
                ScramError::Invalid("no valid salt".into()),
            ),
            (
                "r=abcdef,s=AAAA",
                ScramError::Invalid("no valid iteration count".into()),
            ),
            ("s=AAAA,i=4096", ScramError::Invalid("no nonce".into())),
            (
                "m=ext,r=abcdef,s=AAAA,i=4096",
                ScramError::Invalid("mandatory extensions are not supported".into()),
            ),
        ];
        for (message, want) in cases {
            assert_eq!(first.server_first(message).unwrap_err(), want, "{message}");
        }
    }
}
