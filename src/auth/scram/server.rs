//! The server side of SCRAM (RFC 5802, RFC 7677), for clients that authenticate to the
//! proxy: it holds what a mongod stores per user and mechanism ([`Secrets`]: salt,
//! iteration count, StoredKey, ServerKey) and never a password.
//!
//! Pure, like the client side it shares its primitives with: the server nonce comes in,
//! messages go out. Verifying a proof costs two HMACs and a hash, no PBKDF2: only
//! [`Secrets::derive`] (run by `mongoplex user add`, never per connection) pays that.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::{Keys, Mechanism, ScramError};

/// What a server stores for one user and mechanism, as mongod keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secrets {
    pub iterations: u32,
    pub salt: Vec<u8>,
    /// H(ClientKey).
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets(i={}, ***)", self.iterations)
    }
}

impl Secrets {
    /// The secrets of a password as MongoDB prepares it for `m` (MD5 digest for SHA-1,
    /// SASLprep for SHA-256). Runs PBKDF2: for writing a users file, not per login.
    pub fn derive(
        m: Mechanism,
        username: &str,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, ScramError> {
        let prepared = m.prepare_password(username, password)?;
        Ok(Self::from_prepared(m, &prepared, salt, iterations))
    }

    /// The secrets of an already prepared password (the RFCs' vectors hash "pencil" as is).
    pub fn from_prepared(m: Mechanism, prepared: &str, salt: &[u8], iterations: u32) -> Self {
        let keys = Keys::derive(m, prepared, salt, iterations);
        Self {
            iterations,
            salt: salt.to_vec(),
            stored_key: m.hash(&keys.client_key),
            server_key: keys.server_key,
        }
    }

    /// Lengths that fit the mechanism's hash: a users file with a truncated key is refused
    /// when read, not at the first login.
    pub fn check(&self, m: Mechanism) -> Result<(), String> {
        let len = m.hash(b"").len();
        if self.stored_key.len() != len || self.server_key.len() != len {
            return Err(format!("{} keys must be {len} bytes", m.name()));
        }
        if self.salt.is_empty() {
            return Err("the salt is empty".into());
        }
        if self.iterations < m.min_iterations() {
            return Err(format!(
                "{} iterations is fewer than the {} drivers accept",
                self.iterations,
                m.min_iterations()
            ));
        }
        Ok(())
    }
}

/// A client-first message, read: the user it names and the client's part of the nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirstMessage {
    pub username: String,
    nonce: String,
    /// The gs2 header ("n,," or "y,,"), which the client-final's `c=` must repeat.
    gs2: String,
    bare: String,
}

/// Reads a client-first message. Channel binding and an authorization identity are
/// refused, as mongod refuses them.
pub fn parse_client_first(message: &str) -> Result<ClientFirstMessage, ScramError> {
    let invalid = |why: &str| ScramError::Invalid(why.to_owned());
    let (gs2, bare) = match message.get(..3) {
        Some(h @ ("n,," | "y,,")) => (h, &message[3..]),
        _ if message.starts_with("p=") => return Err(invalid("channel binding is not supported")),
        _ if message.starts_with("n,a=") || message.starts_with("y,a=") => {
            return Err(invalid("an authorization identity is not supported"))
        }
        _ => return Err(invalid("no valid gs2 header")),
    };
    if bare.starts_with("m=") {
        return Err(invalid("mandatory extensions are not supported"));
    }
    let mut parts = bare.split(',');
    let name = parts
        .next()
        .and_then(|p| p.strip_prefix("n="))
        .ok_or_else(|| invalid("no user name"))?;
    let nonce = parts
        .next()
        .and_then(|p| p.strip_prefix("r="))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("no nonce"))?;
    Ok(ClientFirstMessage {
        username: unescape_username(name).ok_or_else(|| invalid("a bad escape in the user name"))?,
        nonce: nonce.to_owned(),
        gs2: gs2.to_owned(),
        bare: bare.to_owned(),
    })
}

/// `saslname` of RFC 5802 read back: "=3D" and "=2C" are the only escapes.
fn unescape_username(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3)? {
            "=3D" => out.push('='),
            "=2C" => out.push(','),
            _ => return None,
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    (!out.is_empty()).then_some(out)
}

/// The server's challenge, sent; what checks the client's proof.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub mechanism: Mechanism,
    client_bare: String,
    gs2: String,
    message: String,
    nonce: String,
    secrets: Secrets,
}

/// A proof that checked out: the server-final message, and the ClientKey it recovered
/// (what SCRAM pass-through would log in upstream with).
pub struct Verified {
    pub server_final: String,
    pub client_key: Vec<u8>,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verified(***)")
    }
}

impl Challenge {
    /// The server-first message for `first`, with the stored salt and iteration count;
    /// `server_nonce` (printable ASCII without ',') extends the client's nonce.
    pub fn new(m: Mechanism, first: &ClientFirstMessage, secrets: &Secrets, server_nonce: &str) -> Self {
        let nonce = format!("{}{server_nonce}", first.nonce);
        let message = format!(
            "r={nonce},s={},i={}",
            B64.encode(&secrets.salt),
            secrets.iterations
        );
        Self {
            mechanism: m,
            client_bare: first.bare.clone(),
            gs2: first.gs2.clone(),
            message,
            nonce,
            secrets: secrets.clone(),
        }
    }

    /// The server-first message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Checks the client-final message: ClientKey = ClientProof XOR HMAC(StoredKey,
    /// AuthMessage), and H(ClientKey) must be StoredKey.
    pub fn verify(&self, client_final: &str) -> Result<Verified, ScramError> {
        let invalid = |why: &str| ScramError::Invalid(why.to_owned());
        let (without_proof, proof) = client_final
            .rsplit_once(",p=")
            .ok_or_else(|| invalid("no proof"))?;
        let mut parts = without_proof.split(',');
        let binding = parts
            .next()
            .and_then(|p| p.strip_prefix("c="))
            .ok_or_else(|| invalid("no channel binding attribute"))?;
        if B64.decode(binding).ok().as_deref() != Some(self.gs2.as_bytes()) {
            return Err(invalid("the channel binding does not repeat the gs2 header"));
        }
        let nonce = parts.next().and_then(|p| p.strip_prefix("r="));
        if nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::NonceMismatch);
        }
        let m = self.mechanism;
        let proof = B64
            .decode(proof)
            .map_err(|_| invalid("the proof is not base64"))?;
        let auth_message = format!("{},{},{without_proof}", self.client_bare, self.message);
        let signature = m.hmac(&self.secrets.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(ScramError::BadProof);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        if !equal_in_constant_time(&m.hash(&client_key), &self.secrets.stored_key) {
            return Err(ScramError::BadProof);
        }
        let server_signature = m.hmac(&self.secrets.server_key, auth_message.as_bytes());
        Ok(Verified {
            server_final: format!("v={}", B64.encode(server_signature)),
            client_key,
        })
    }
}

/// Compares without stopping at the first difference, so timing tells nothing of how
/// much of a guessed key was right.
fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::super::ClientFirst;
    use super::*;

    /// RFC 5802 section 5 and RFC 7677 section 3, from the server's side: the same salt,
    /// iterations and nonces give the RFCs' server-first message byte for byte, accept
    /// their client proof, and answer their server signature.
    #[test]
    fn rfc_test_vectors() {
        let vectors = [
            (
                Mechanism::Sha1,
                "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
                "3rfcNHYJY1ZVvWVs7j",
                "QSXCR+Q6sek8bf92",
                "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
                "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
                "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
            ),
            (
                Mechanism::Sha256,
                "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
                "W22ZaJ0SNY7soEsUEjb6gQ==",
                "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
            ),
        ];
        for (m, client_first, server_nonce, salt, server_first, client_final, server_final) in vectors {
            let salt = B64.decode(salt).unwrap();
            let secrets = Secrets::from_prepared(m, "pencil", &salt, 4096);
            secrets.check(m).unwrap();
            let first = parse_client_first(client_first).unwrap();
            assert_eq!(first.username, "user");
            let challenge = Challenge::new(m, &first, &secrets, server_nonce);
            assert_eq!(challenge.message(), server_first, "{m:?}");
            let verified = challenge.verify(client_final).unwrap();
            assert_eq!(verified.server_final, server_final, "{m:?}");
            // A wrong password's secrets refuse the same proof.
            let other = Secrets::from_prepared(m, "pencil2", &salt, 4096);
            let challenge = Challenge::new(m, &first, &other, server_nonce);
            assert!(matches!(
                challenge.verify(client_final),
                Err(ScramError::BadProof)
            ));
        }
    }

    /// The proxy's own client side logs in against its server side, for both mechanisms
    /// with MongoDB's password preparation, and a wrong password fails at the proof.
    #[test]
    fn the_client_side_logs_in_and_a_wrong_password_does_not() {
        for m in [Mechanism::Sha1, Mechanism::Sha256] {
            let secrets = Secrets::derive(m, "app,x", "right", b"0123456789abcdef", 4096).unwrap();
            for (password, ok) in [("right", true), ("wrong", false)] {
                let client = ClientFirst::new(m, "app,x", "clientnonce");
                let first = parse_client_first(&client.message()).unwrap();
                assert_eq!(first.username, "app,x");
                let challenge = Challenge::new(m, &first, &secrets, "servernonce");
                let server_first = client.server_first(challenge.message()).unwrap();
                let prepared = m.prepare_password("app,x", password).unwrap();
                let keys = Keys::derive(m, &prepared, &server_first.salt, server_first.iterations);
                let (client_final, signature) = server_first.client_final(&keys);
                match challenge.verify(&client_final) {
                    Ok(v) => {
                        assert!(ok, "{m:?}: a wrong password verified");
                        signature.verify(&v.server_final).unwrap();
                        assert_eq!(v.client_key, keys.client_key);
                    }
                    Err(e) => {
                        assert!(!ok, "{m:?}: {e}");
                        assert_eq!(e, ScramError::BadProof);
                    }
                }
            }
        }
    }

    #[test]
    fn hostile_client_messages_are_refused() {
        let invalid = |s: &str| ScramError::Invalid(s.to_owned());
        let firsts = [
            (
                "p=tls-unique,,n=u,r=a",
                invalid("channel binding is not supported"),
            ),
            (
                "n,a=admin,n=u,r=a",
                invalid("an authorization identity is not supported"),
            ),
            ("x,,n=u,r=a", invalid("no valid gs2 header")),
            (
                "n,,m=ext,n=u,r=a",
                invalid("mandatory extensions are not supported"),
            ),
            ("n,,r=a", invalid("no user name")),
            ("n,,n=u", invalid("no nonce")),
            ("n,,n=u,r=", invalid("no nonce")),
            ("n,,n=u=41,r=a", invalid("a bad escape in the user name")),
            ("n,,n=,r=a", invalid("a bad escape in the user name")),
            ("", invalid("no valid gs2 header")),
        ];
        for (message, want) in firsts {
            assert_eq!(parse_client_first(message).unwrap_err(), want, "{message:?}");
        }
        let first = parse_client_first("n,,n=u=3Dv,r=abc").unwrap();
        assert_eq!(first.username, "u=v");
        let secrets = Secrets::from_prepared(Mechanism::Sha256, "p", b"salt", 4096);
        let challenge = Challenge::new(Mechanism::Sha256, &first, &secrets, "def");
        let finals = [
            ("c=biws,r=abcdef", invalid("no proof")),
            ("r=abcdef,p=AAAA", invalid("no channel binding attribute")),
            (
                "c=eSws,r=abcdef,p=AAAA",
                invalid("the channel binding does not repeat the gs2 header"),
            ),
            ("c=biws,r=abcxyz,p=AAAA", ScramError::NonceMismatch),
            ("c=biws,p=AAAA", ScramError::NonceMismatch),
            ("c=biws,r=abcdef,p=!!", invalid("the proof is not base64")),
            ("c=biws,r=abcdef,p=AAAA", ScramError::BadProof),
        ];
        for (message, want) in finals {
            assert_eq!(challenge.verify(message).unwrap_err(), want, "{message:?}");
        }
    }

    #[test]
    fn secrets_are_checked_and_never_printed() {
        let m = Mechanism::Sha256;
        let good = Secrets::from_prepared(m, "p", b"salt", 4096);
        assert!(good.check(m).is_ok());
        assert!(
            good.check(Mechanism::Sha1).is_err(),
            "32-byte keys are not SHA-1's"
        );
        let few = Secrets {
            iterations: 100,
            ..good.clone()
        };
        assert!(few.check(m).unwrap_err().contains("100 iterations"));
        let no_salt = Secrets {
            salt: Vec::new(),
            ..good.clone()
        };
        assert!(no_salt.check(m).is_err());
        let debug = format!("{good:?}");
        assert_eq!(debug, "Secrets(i=4096, ***)");
    }
}
