//! A client's SCRAM conversation with the proxy, as a mongod holds it: saslStart (or the
//! `speculativeAuthenticate` of hello, which is the same first step), saslContinue with
//! the proof, and the empty last round unless the client asked for `skipEmptyExchange`.
//!
//! Pure: the users, the server nonce and a per-process key come in; payloads come out.
//! A user the file does not hold, or a mechanism the user has no secrets for, gets a
//! made-up challenge (a salt derived from the per-process key, so the same name always
//! sees the same salt) and fails at the proof exactly as a wrong password does: nothing
//! tells a client whether the user exists.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::scram::server::{parse_client_first, Challenge, Secrets};
use super::scram::Mechanism;
use super::users::{Users, SHA1_ITERATIONS, SHA256_ITERATIONS};

/// The per-process key of the made-up challenges; never printed.
#[derive(Clone, Copy)]
pub struct LoginKey(pub [u8; 32]);

impl LoginKey {
    pub fn random() -> Self {
        Self(rand::random())
    }
}

impl std::fmt::Debug for LoginKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginKey(***)")
    }
}

/// Who a client authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub db: String,
}

/// Why a conversation failed. What the client is told depends only on the kind; the
/// reason is for the proxy's debug log (it never holds a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// MechanismUnavailable (334): not SCRAM-SHA-1 or SCRAM-SHA-256.
    Mechanism(String),
    /// AuthenticationFailed (18), whatever the reason.
    Failed(&'static str),
}

/// The next message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// `done: false`: the client sends another saslContinue.
    More(String),
    /// `done: true`: the client is now `identity`.
    Done { payload: String, identity: Identity },
}

enum Step {
    Challenged(Box<Challenge>),
    /// The proof checked out; the client owes the empty last round.
    Verified,
}

/// One conversation in progress.
pub struct Conversation {
    pub id: i32,
    pub mechanism: Mechanism,
    identity: Identity,
    /// False for a made-up challenge: no proof can pass it.
    real: bool,
    skip_empty_exchange: bool,
    step: Step,
}

impl std::fmt::Debug for Conversation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversation")
            .field("id", &self.id)
            .field("mechanism", &self.mechanism)
            .field("user", &self.identity.user)
            .finish_non_exhaustive()
    }
}

/// What saslStart carries.
pub struct Start<'a> {
    pub mechanism: &'a str,
    pub payload: &'a [u8],
    /// The authentication database: the command's `$db` (or `db` in speculativeAuthenticate).
    pub db: &'a str,
    pub skip_empty_exchange: bool,
}

impl Conversation {
    /// The first step: the server-first message for the user the payload names.
    pub fn start(
        users: &Users,
        key: &[u8],
        start: &Start<'_>,
        server_nonce: &str,
        id: i32,
    ) -> Result<(Self, String), LoginError> {
        let mechanism = Mechanism::from_name(start.mechanism).ok_or_else(|| {
            LoginError::Mechanism(format!(
                "mechanism {:?} is not available at mongoplex: use SCRAM-SHA-256 or SCRAM-SHA-1",
                start.mechanism
            ))
        })?;
        let text =
            std::str::from_utf8(start.payload).map_err(|_| LoginError::Failed("payload is not UTF-8"))?;
        let first = parse_client_first(text).map_err(|_| LoginError::Failed("bad client-first message"))?;
        let stored = users
            .get(start.db, &first.username)
            .and_then(|r| r.secrets(mechanism))
            .cloned();
        let real = stored.is_some();
        let secrets = stored.unwrap_or_else(|| made_up(key, mechanism, start.db, &first.username));
        let challenge = Challenge::new(mechanism, &first, &secrets, server_nonce);
        let message = challenge.message().to_owned();
        Ok((
            Self {
                id,
                mechanism,
                identity: Identity {
                    user: first.username.clone(),
                    db: start.db.to_owned(),
                },
                real,
                skip_empty_exchange: start.skip_empty_exchange,
                step: Step::Challenged(Box::new(challenge)),
            },
            message,
        ))
    }

    /// Whether the user exists with this mechanism (for speculative authentication only,
    /// where a user without the mechanism gets no speculative reply, as from mongod).
    pub fn has_mechanism(users: &Users, db: &str, user: &str, m: Mechanism) -> Option<bool> {
        users.get(db, user).map(|r| r.secrets(m).is_some())
    }

    /// A saslContinue's payload.
    pub fn next(&mut self, payload: &[u8]) -> Result<Progress, LoginError> {
        match &self.step {
            Step::Challenged(challenge) => {
                let text =
                    std::str::from_utf8(payload).map_err(|_| LoginError::Failed("payload is not UTF-8"))?;
                let verified = challenge
                    .verify(text)
                    .map_err(|_| LoginError::Failed("the proof does not verify"))?;
                if !self.real {
                    return Err(LoginError::Failed("no such user or mechanism"));
                }
                if self.skip_empty_exchange {
                    return Ok(Progress::Done {
                        payload: verified.server_final,
                        identity: self.identity.clone(),
                    });
                }
                self.step = Step::Verified;
                Ok(Progress::More(verified.server_final))
            }
            Step::Verified if payload.is_empty() => Ok(Progress::Done {
                payload: String::new(),
                identity: self.identity.clone(),
            }),
            Step::Verified => Err(LoginError::Failed("the last round must be empty")),
        }
    }
}

/// A challenge for a user or mechanism the file does not hold: its salt is fixed per
/// name for this process, and its StoredKey is no hash anyone knows the input of.
fn made_up(key: &[u8], m: Mechanism, db: &str, user: &str) -> Secrets {
    let mac = |what: &str| {
        let mut h = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
        h.update(format!("{what}\0{}\0{db}\0{user}", m.name()).as_bytes());
        h.finalize().into_bytes().to_vec()
    };
    let (salt_len, iterations) = match m {
        Mechanism::Sha1 => (16, SHA1_ITERATIONS),
        Mechanism::Sha256 => (28, SHA256_ITERATIONS),
    };
    let len = m.hash(b"").len();
    let mut salt = mac("salt");
    salt.truncate(salt_len);
    let mut stored_key = mac("stored");
    stored_key.truncate(len);
    let mut server_key = mac("server");
    server_key.truncate(len);
    Secrets {
        iterations,
        salt,
        stored_key,
        server_key,
    }
}

#[cfg(test)]
mod tests {
    use super::super::scram::{ClientFirst, Keys};
    use super::*;

    fn users() -> Users {
        let secrets = |m| Secrets::derive(m, "app", "pw", b"0123456789abcdef", 4096).unwrap();
        let text = |m: Mechanism, s: &Secrets| {
            use base64::Engine as _;
            let b = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
            format!(
                "[users.credentials.{}]\niterationCount = {}\nsalt = \"{}\"\nstoredKey = \"{}\"\nserverKey = \"{}\"\n",
                m.name(),
                s.iterations,
                b(&s.salt),
                b(&s.stored_key),
                b(&s.server_key)
            )
        };
        let both = format!(
            "[[users]]\nuser = \"app\"\ndb = \"admin\"\n{}{}",
            text(Mechanism::Sha256, &secrets(Mechanism::Sha256)),
            text(Mechanism::Sha1, &secrets(Mechanism::Sha1))
        );
        let sha1_only = Secrets::derive(Mechanism::Sha1, "old", "pw", b"0123456789abcdef", 4096).unwrap();
        let old = format!(
            "[[users]]\nuser = \"old\"\ndb = \"admin\"\n{}",
            text(Mechanism::Sha1, &sha1_only)
        );
        Users::parse(&format!("{both}{old}")).unwrap()
    }

    /// Runs a whole conversation as a driver would; the outcome and the rounds it took.
    fn login(
        m: Mechanism,
        db: &str,
        user: &str,
        password: &str,
        skip: bool,
    ) -> (Result<Identity, LoginError>, usize) {
        let users = users();
        let client = ClientFirst::new(m, user, "cnonce");
        let message = client.message();
        let start = Start {
            mechanism: m.name(),
            payload: message.as_bytes(),
            db,
            skip_empty_exchange: skip,
        };
        let (mut conv, server_first) = Conversation::start(&users, b"key", &start, "snonce", 1).unwrap();
        let challenge = client.server_first(&server_first).unwrap();
        let prepared = m.prepare_password(user, password).unwrap();
        let keys = Keys::derive(m, &prepared, &challenge.salt, challenge.iterations);
        let (client_final, signature) = challenge.client_final(&keys);
        let mut rounds = 2;
        let mut progress = conv.next(client_final.as_bytes());
        loop {
            match progress {
                Err(e) => return (Err(e), rounds),
                Ok(Progress::Done { payload, identity }) => {
                    if !payload.is_empty() {
                        signature.verify(&payload).unwrap();
                    }
                    return (Ok(identity), rounds);
                }
                Ok(Progress::More(payload)) => {
                    signature.verify(&payload).unwrap();
                    rounds += 1;
                    progress = conv.next(b"");
                }
            }
        }
    }

    #[test]
    fn conversations() {
        use Mechanism::{Sha1, Sha256};
        let ok = |user: &str| {
            Ok(Identity {
                user: user.into(),
                db: "admin".into(),
            })
        };
        let failed = |why| Err(LoginError::Failed(why));
        let cases = [
            // mechanism, db, user, password, skipEmptyExchange, outcome, rounds
            (Sha256, "admin", "app", "pw", true, ok("app"), 2),
            (Sha256, "admin", "app", "pw", false, ok("app"), 3),
            (Sha1, "admin", "app", "pw", true, ok("app"), 2),
            (Sha1, "admin", "old", "pw", false, ok("old"), 3),
            (
                Sha256,
                "admin",
                "app",
                "wrong",
                true,
                failed("the proof does not verify"),
                2,
            ),
            (
                Sha1,
                "admin",
                "old",
                "wrong",
                true,
                failed("the proof does not verify"),
                2,
            ),
            // No such user, the wrong database, a mechanism the user lacks: the same
            // failure at the same step as a wrong password.
            (
                Sha256,
                "admin",
                "nobody",
                "pw",
                true,
                failed("the proof does not verify"),
                2,
            ),
            (
                Sha256,
                "app",
                "app",
                "pw",
                true,
                failed("the proof does not verify"),
                2,
            ),
            (
                Sha256,
                "admin",
                "old",
                "pw",
                true,
                failed("the proof does not verify"),
                2,
            ),
        ];
        for (m, db, user, password, skip, want, rounds) in cases {
            assert_eq!(
                login(m, db, user, password, skip),
                (want, rounds),
                "{m:?} {db}.{user} {password} {skip}"
            );
        }
    }

    #[test]
    fn made_up_challenges_look_real_and_stay_the_same() {
        let users = users();
        let start = |user: &str, mechanism: &'static str| {
            let first = format!("n,,n={user},r=abc");
            let s = Start {
                mechanism,
                payload: first.as_bytes(),
                db: "admin",
                skip_empty_exchange: true,
            };
            Conversation::start(&users, b"key", &s, "xyz", 1).map(|(_, m)| m)
        };
        let real = start("app", "SCRAM-SHA-256").unwrap();
        assert!(
            real.starts_with("r=abcxyz,s=") && real.ends_with(",i=4096"),
            "{real}"
        );
        let fake = start("nobody", "SCRAM-SHA-256").unwrap();
        assert!(
            fake.starts_with("r=abcxyz,s=") && fake.ends_with(",i=15000"),
            "{fake}"
        );
        assert_eq!(
            fake,
            start("nobody", "SCRAM-SHA-256").unwrap(),
            "the same name, the same salt"
        );
        assert_ne!(fake, start("nobody2", "SCRAM-SHA-256").unwrap());
        assert!(matches!(start("app", "PLAIN"), Err(LoginError::Mechanism(m)) if m.contains("PLAIN")));
        assert_eq!(
            start("", "SCRAM-SHA-256"),
            Err(LoginError::Failed("bad client-first message"))
        );
        assert_eq!(
            Conversation::has_mechanism(&users, "admin", "old", Mechanism::Sha256),
            Some(false)
        );
        assert_eq!(
            Conversation::has_mechanism(&users, "admin", "nobody", Mechanism::Sha256),
            None
        );
    }
}
