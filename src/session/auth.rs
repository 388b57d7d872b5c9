//! Clients authenticating to the proxy (`client_auth`): the SASL commands and the
//! `speculativeAuthenticate` of hello ([`crate::auth::login`] holds the conversation),
//! logout, connectionStatus with the client's own identity, and the command policy
//! ([`crate::command::policy`]) applied before anything is forwarded.

use std::sync::Arc;
use std::time::Duration;

use bson::{doc, spec::BinarySubtype, Binary, Document, RawBsonRef, RawDocument};

use super::{End, Session};
use crate::auth::login::{Conversation, Identity, LoginError, Progress, Start};
use crate::auth::scram::Mechanism;
use crate::auth::users::Users;
use crate::command::policy::Verdict;
use crate::command::{as_i64, truthy, Command, CommandName};
use crate::config::client_auth::ClientAuth;
use crate::errors::{ErrorCode, ProxyError};
use crate::wire::build_msg;

/// How long a failed login waits before its error, whatever failed: a client learns
/// nothing from timing, and guessing passwords through the proxy is slow.
pub const FAILURE_DELAY: Duration = Duration::from_millis(100);

/// A client's authentication on this connection.
#[derive(Debug, Default)]
pub(super) struct AuthState {
    pub identity: Option<Identity>,
    conversation: Option<Conversation>,
    next_id: i32,
}

fn binary(payload: &str) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes: payload.as_bytes().to_vec(),
    }
}

/// A SASL payload as drivers send it: binary, or (old shells) a string.
fn payload_of(doc: &RawDocument) -> Vec<u8> {
    match doc.get("payload").ok().flatten() {
        Some(RawBsonRef::Binary(b)) => b.bytes.to_vec(),
        Some(RawBsonRef::String(s)) => s.as_bytes().to_vec(),
        _ => Vec::new(),
    }
}

fn server_nonce() -> String {
    use base64::Engine as _;
    let bytes: [u8; 24] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn off_error() -> ProxyError {
    ProxyError::new(
        ErrorCode::AuthenticationFailed,
        "clients do not authenticate to mongoplex: client_auth is \"off\" (the proxy logs in upstream \
         with its own credential). Connect without credentials, or set client_auth = \"file\" with a \
         client_users_file to have clients authenticate to the proxy",
    )
}

fn failed() -> ProxyError {
    ProxyError::new(ErrorCode::AuthenticationFailed, "Authentication failed.")
}

impl AuthState {
    /// saslStart, from the command or from hello's `speculativeAuthenticate`.
    /// The conversation's id and the server-first message.
    fn start(
        &mut self,
        users: &Users,
        key: &[u8],
        cmd: &RawDocument,
        db: &str,
    ) -> Result<(i32, String), LoginError> {
        let payload = payload_of(cmd);
        let start = Start {
            mechanism: cmd.get_str("mechanism").unwrap_or(""),
            payload: &payload,
            db,
            skip_empty_exchange: cmd
                .get_document("options")
                .ok()
                .and_then(|o| o.get("skipEmptyExchange").ok().flatten())
                .is_some_and(truthy),
        };
        self.next_id = self.next_id.wrapping_add(1);
        let (conversation, message) = Conversation::start(users, key, &start, &server_nonce(), self.next_id)?;
        self.conversation = Some(conversation);
        Ok((self.next_id, message))
    }
}

impl Session {
    /// What hello's reply gains under `client_auth = "file"`: `saslSupportedMechs` for
    /// the user it names, and the answer to `speculativeAuthenticate`.
    pub(super) fn hello_auth_fields(&mut self, body: &RawDocument) -> Document {
        let mut out = Document::new();
        let config = Arc::clone(&self.ctx.config);
        let Some(users) = config.client_auth.users() else {
            return out;
        };
        if let Ok(name) = body.get_str("saslSupportedMechs") {
            // An unknown user is listed as a user with both mechanisms would be.
            let mechs = match name.split_once('.').and_then(|(db, user)| users.get(db, user)) {
                Some(record) => record.mechanisms(),
                None => vec![Mechanism::Sha256.name(), Mechanism::Sha1.name()],
            };
            out.insert("saslSupportedMechs", mechs);
        }
        let Ok(spec) = body.get_document("speculativeAuthenticate") else {
            return out;
        };
        if spec.get("saslStart").ok().flatten().is_none() {
            return out;
        }
        let db = spec.get_str("db").unwrap_or("admin");
        // A user without the speculated mechanism gets no speculative reply, as from
        // mongod: the driver then starts over with the mechanism hello listed.
        let mechanism = spec.get_str("mechanism").ok().and_then(Mechanism::from_name);
        let user = scram_user(&payload_of(spec));
        if let (Some(m), Some(user)) = (mechanism, user) {
            if Conversation::has_mechanism(users, db, &user, m) == Some(false) {
                return out;
            }
        }
        let key = self.ctx.login_key.0;
        match self.auth.start(users, &key, spec, db) {
            Ok((id, message)) => {
                out.insert(
                    "speculativeAuthenticate",
                    doc! { "conversationId": id, "done": false, "payload": binary(&message), "ok": 1.0 },
                );
            }
            Err(e) => tracing::debug!(parent: &self.span, error = ?e, "speculative authentication not begun"),
        }
        out
    }

    /// saslStart, saslContinue and authenticate.
    pub(super) async fn sasl(
        &mut self,
        request_id: i32,
        cmd: &Command<'_>,
        body: &RawDocument,
    ) -> Result<(), End> {
        let config = Arc::clone(&self.ctx.config);
        let Some(users) = config.client_auth.users() else {
            return self.reply_error(request_id, &off_error(), None).await;
        };
        let key = self.ctx.login_key.0;
        let db = cmd.db.unwrap_or("admin").to_owned();
        let reply = match cmd.known {
            CommandName::SaslStart => self
                .auth
                .start(users, &key, body, &db)
                .map(|(id, message)| (id, message, false, None)),
            CommandName::SaslContinue => self.sasl_continue(body),
            _ => Err(LoginError::Mechanism(format!(
                "mechanism {:?} is not available at mongoplex: use SCRAM-SHA-256 or SCRAM-SHA-1",
                body.get_str("mechanism").unwrap_or("")
            ))),
        };
        match reply {
            Ok((id, payload, done, identity)) => {
                if let Some(identity) = identity {
                    tracing::debug!(parent: &self.span, user = %identity.user, db = %identity.db, "client authenticated");
                    self.auth.identity = Some(identity);
                }
                let d = doc! { "conversationId": id, "done": done, "payload": binary(&payload), "ok": 1.0 };
                let bytes = d.to_vec().unwrap_or_default();
                self.write(build_msg(0, request_id, 0, &bytes), None).await
            }
            Err(e) => {
                self.auth.conversation = None;
                let err = match e {
                    LoginError::Mechanism(m) => ProxyError::new(ErrorCode::MechanismUnavailable, m),
                    LoginError::Failed(why) => {
                        tracing::debug!(parent: &self.span, db = %db, why, "client authentication failed");
                        tokio::time::sleep(FAILURE_DELAY).await;
                        failed()
                    }
                };
                self.reply_error(request_id, &err, None).await
            }
        }
    }

    /// The conversation's id, the payload, `done`, and the identity once done.
    fn sasl_continue(
        &mut self,
        body: &RawDocument,
    ) -> Result<(i32, String, bool, Option<Identity>), LoginError> {
        let id = body.get("conversationId").ok().flatten().and_then(as_i64);
        let conversation = self
            .auth
            .conversation
            .as_mut()
            .filter(|c| id.is_none() || id == Some(i64::from(c.id)))
            .ok_or(LoginError::Failed("no SASL conversation with this id"))?;
        let id = conversation.id;
        match conversation.next(&payload_of(body))? {
            Progress::More(payload) => Ok((id, payload, false, None)),
            Progress::Done { payload, identity } => {
                self.auth.conversation = None;
                Ok((id, payload, true, Some(identity)))
            }
        }
    }

    /// logout: forgets the client's identity; never forwarded (it would log a pooled
    /// connection out of the proxy's own upstream login).
    pub(super) async fn logout(&mut self, request_id: i32) -> Result<(), End> {
        if let Some(identity) = self.auth.identity.take() {
            tracing::debug!(parent: &self.span, user = %identity.user, db = %identity.db, "client logged out");
        }
        self.auth.conversation = None;
        let bytes = doc! { "ok": 1.0 }.to_vec().unwrap_or_default();
        self.write(build_msg(0, request_id, 0, &bytes), None).await
    }

    /// The command policy's refusal of `cmd`, if it refuses it.
    pub(super) fn refusal(&self, cmd: &Command<'_>, body: &RawDocument) -> Option<ProxyError> {
        let lock = cmd.known == CommandName::Fsync && body.get("lock").ok().flatten().is_some_and(truthy);
        let policy = &self.ctx.config.command_policy;
        let name = cmd.name;
        let message = match policy.decide(name, cmd.known, lock, self.auth.identity.is_some()) {
            Verdict::Pass => return None,
            Verdict::NeedsAuth => format!("command {name} requires authentication"),
            Verdict::SharedIdentity => format!(
                "command {name} is refused: under client_auth = \"{}\" every client acts upstream as the \
                 proxy's own login, and {name} acts on the whole server or on that login; add it to \
                 command_allow to let it through",
                self.ctx.config.client_auth.name()
            ),
            Verdict::Denied => format!("command {name} is refused by command_deny"),
        };
        Some(ProxyError::new(ErrorCode::Unauthorized, message))
    }

    /// connectionStatus with the client's own identity, when clients authenticate to the
    /// proxy (upstream it would name the proxy's login). `None`: forward it.
    pub(super) async fn connection_status(&mut self, request_id: i32) -> Option<Result<(), End>> {
        if matches!(self.ctx.config.client_auth, ClientAuth::Off) {
            return None;
        }
        let users: Vec<Document> = self
            .auth
            .identity
            .iter()
            .map(|i| doc! { "user": &i.user, "db": &i.db })
            .collect();
        let d = doc! {
            "authInfo": { "authenticatedUsers": users, "authenticatedUserRoles": [] },
            "ok": 1.0,
        };
        let bytes = d.to_vec().unwrap_or_default();
        Some(self.write(build_msg(0, request_id, 0, &bytes), None).await)
    }
}

/// The user a SCRAM client-first message names, if it is one.
fn scram_user(payload: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(payload).ok()?;
    crate::auth::scram::server::parse_client_first(text)
        .ok()
        .map(|f| f.username)
}
