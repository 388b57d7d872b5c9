//! `client_auth` and its companions: whether clients authenticate to the proxy, against
//! what, and the command policy that follows from it. Every combination the proxy
//! does not honour is a start-up error that names the setting.

use std::path::PathBuf;
use std::sync::Arc;

use super::{invalid, ConfigError, Settings};
use crate::auth::users::Users;
use crate::command::policy::Policy;

/// How clients prove who they are to the proxy.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// They do not: a loopback sidecar that trusts its pod. A client that tries gets an
    /// error naming `client_auth`.
    Off,
    /// Against the SCRAM secrets of `client_users_file`; upstream they all act as the
    /// proxy's own login.
    File { path: PathBuf, users: Arc<Users> },
}

impl ClientAuth {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::File { .. } => "file",
        }
    }

    pub fn users(&self) -> Option<&Users> {
        match self {
            Self::Off => None,
            Self::File { users, .. } => Some(users),
        }
    }
}

pub(super) fn resolve(s: &Settings) -> Result<(ClientAuth, Policy), ConfigError> {
    let mode = s.client_auth.as_deref().unwrap_or("off");
    let auth = match mode {
        "off" => {
            if s.client_users_file.is_some() {
                return Err(invalid(
                    "client_users_file",
                    "applies only with client_auth = \"file\" (client_auth is \"off\")",
                ));
            }
            ClientAuth::Off
        }
        "file" => {
            let path = s.client_users_file.clone().ok_or_else(|| {
                invalid(
                    "client_users_file",
                    "client_auth = \"file\" needs a users file (write one with `mongoplex user add NAME --db DB --file PATH`)",
                )
            })?;
            let users = Users::load(&path).map_err(|why| invalid("client_users_file", why))?;
            ClientAuth::File {
                path,
                users: Arc::new(users),
            }
        }
        "upstream" => {
            return Err(invalid(
                "client_auth",
                "\"upstream\" (verifying clients against the upstream's own users) is not built yet; use \"off\" or \"file\"",
            ))
        }
        other => {
            return Err(invalid(
                "client_auth",
                format!("{other:?} is not one of off, file, upstream"),
            ))
        }
    };
    let names = |field: &'static str, v: &Option<Vec<String>>| -> Result<Vec<String>, ConfigError> {
        let list = v.clone().unwrap_or_default();
        match list
            .iter()
            .find(|n| n.is_empty() || n.contains(char::is_whitespace))
        {
            Some(bad) => Err(invalid(field, format!("{bad:?} is not a command name"))),
            None => Ok(list),
        }
    };
    let policy = Policy {
        require_auth: !matches!(auth, ClientAuth::Off),
        shared_identity: matches!(auth, ClientAuth::File { .. }),
        allow: names("command_allow", &s.command_allow)?,
        deny: names("command_deny", &s.command_deny)?,
    };
    if let Some(both) = policy.allow.iter().find(|a| policy.deny.contains(a)) {
        return Err(invalid(
            "command_deny",
            format!("{both:?} is in command_allow too; name it in one of them"),
        ));
    }
    Ok((auth, policy))
}
