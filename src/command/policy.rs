//! Which commands a client may send, as one pure decision: before authentication only
//! what mongod allows unauthenticated (the table's [`Gate::Open`] rows), and, when
//! clients share the proxy's upstream identity (`client_auth = "file"`), none of the
//! commands that act on the whole server or on that identity ([`Gate::Server`]), unless
//! the operator's `command_allow` names them. `command_deny` refuses more.

use super::table::{CommandName, Gate};

/// The operator's policy, from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Clients must authenticate to the proxy before anything but [`Gate::Open`] rows.
    pub require_auth: bool,
    /// Refuse the table's [`Gate::Server`] rows: on under `client_auth = "file"`, where
    /// every client acts as the proxy's one upstream identity.
    pub shared_identity: bool,
    /// Command names let through whatever the default says (exact names, as sent).
    pub allow: Vec<String>,
    /// Command names refused whatever the default says.
    pub deny: Vec<String>,
}

/// What happens to one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Unauthorized (13): "command X requires authentication", as mongod says it.
    NeedsAuth,
    /// Refused by default for clients sharing one upstream identity.
    SharedIdentity,
    /// Refused because `command_deny` names it.
    Denied,
}

impl Policy {
    /// The verdict on command `name` (its row `known`; `lock` is fsync's `lock: true`)
    /// from a client that has or has not authenticated.
    pub fn decide(&self, name: &str, known: CommandName, lock: bool, authenticated: bool) -> Verdict {
        let spec = known.spec();
        if self.require_auth && !authenticated && spec.gate != Gate::Open {
            return Verdict::NeedsAuth;
        }
        if self.allow.iter().any(|a| a == name) {
            return Verdict::Pass;
        }
        if self.deny.iter().any(|d| d == name) {
            return Verdict::Denied;
        }
        if self.shared_identity && spec.acts_on_server(lock) {
            return Verdict::SharedIdentity;
        }
        Verdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CommandName as N;
    use Verdict::*;

    #[test]
    fn decisions() {
        let file = Policy {
            require_auth: true,
            shared_identity: true,
            ..Policy::default()
        };
        let allowing = Policy {
            allow: vec!["shutdown".into(), "find".into()],
            deny: vec!["dropDatabase".into(), "shutdown".into(), "mapReduce".into()],
            ..file.clone()
        };
        let off = Policy::default();
        let off_deny = Policy {
            deny: vec!["dropDatabase".into()],
            ..Policy::default()
        };
        let cases = [
            // policy, name, lock, authenticated, verdict
            (&file, "find", false, false, NeedsAuth),
            (&file, "insert", false, false, NeedsAuth),
            (&file, "mapReduce", false, false, NeedsAuth),
            (&file, "connectionStatus", false, false, NeedsAuth),
            (&file, "ping", false, false, Pass),
            (&file, "buildInfo", false, false, Pass),
            (&file, "saslStart", false, false, Pass),
            (&file, "saslContinue", false, false, Pass),
            (&file, "hello", false, false, Pass),
            (&file, "logout", false, false, Pass),
            (&file, "find", false, true, Pass),
            (&file, "shutdown", false, true, SharedIdentity),
            (&file, "shutdown", false, false, NeedsAuth),
            (&file, "createUser", false, true, SharedIdentity),
            (&file, "grantRolesToUser", false, true, SharedIdentity),
            (&file, "createRole", false, true, SharedIdentity),
            (&file, "setParameter", false, true, SharedIdentity),
            (&file, "replSetStepDown", false, true, SharedIdentity),
            (&file, "replSetReconfig", false, true, SharedIdentity),
            (&file, "killAllSessions", false, true, SharedIdentity),
            (&file, "killAllSessionsByPattern", false, true, SharedIdentity),
            (&file, "fsync", true, true, SharedIdentity),
            (&file, "fsync", false, true, Pass),
            (&file, "dropDatabase", false, true, Pass),
            // The allow list wins over the default and over the deny list.
            (&allowing, "shutdown", false, true, Pass),
            (&allowing, "createUser", false, true, SharedIdentity),
            (&allowing, "dropDatabase", false, true, Denied),
            (&allowing, "mapReduce", false, true, Denied),
            // ... but not over authentication.
            (&allowing, "find", false, false, NeedsAuth),
            // client_auth = off: nothing refused by default; a deny list still applies.
            (&off, "shutdown", false, false, Pass),
            (&off, "createUser", false, false, Pass),
            (&off_deny, "dropDatabase", false, false, Denied),
            (&off_deny, "find", false, false, Pass),
        ];
        for (policy, name, lock, authenticated, want) in cases {
            let got = policy.decide(name, N::from_name(name), lock, authenticated);
            assert_eq!(
                got, want,
                "{name} lock={lock} authenticated={authenticated} {policy:?}"
            );
        }
    }

    /// The unauthenticated rows are mongod's list, and nothing else.
    #[test]
    fn open_rows_are_the_handshake_sasl_ping_and_build_info() {
        let open: Vec<&str> = N::ALL
            .iter()
            .filter(|n| n.spec().gate == Gate::Open)
            .map(|n| n.as_str())
            .collect();
        assert_eq!(
            open,
            [
                "hello",
                "isMaster",
                "ismaster",
                "ping",
                "buildInfo",
                "saslStart",
                "saslContinue",
                "authenticate",
                "logout"
            ]
        );
        assert_eq!(N::Other.spec().gate, Gate::Authenticated);
    }
}
