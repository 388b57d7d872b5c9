//! `mongoplex user add NAME --db DB [--file PATH]`: writes a user's SCRAM secrets to the
//! users file of `client_auth = "file"` ([`crate::auth::users::add`]). The password is
//! read from the terminal without echo (twice), or as one line of standard input when
//! that is not a terminal (`printf '%s\n' "$PW" | mongoplex user add ...`); it is never
//! an argument, which any user of the machine could read in the process list.

use std::io::{BufRead as _, IsTerminal as _};
use std::path::Path;

use crate::auth::scram::Mechanism;

/// The mechanisms of `--mechanism` (both when none is named, as mongod's createUser).
pub fn mechanisms(names: &[String]) -> Result<Vec<Mechanism>, String> {
    if names.is_empty() {
        return Ok(vec![Mechanism::Sha256, Mechanism::Sha1]);
    }
    names
        .iter()
        .map(|n| {
            Mechanism::from_name(n)
                .ok_or_else(|| format!("--mechanism {n:?} is not SCRAM-SHA-256 or SCRAM-SHA-1"))
        })
        .collect()
}

/// The password: prompted for on a terminal, else the first line of standard input.
pub fn read_password() -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        let first =
            rpassword::prompt_password("Password: ").map_err(|e| format!("cannot read the password: {e}"))?;
        let again = rpassword::prompt_password("Password again: ")
            .map_err(|e| format!("cannot read the password: {e}"))?;
        if first != again {
            return Err("the passwords do not match".into());
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    Ok(password.strip_suffix('\r').unwrap_or(password).to_owned())
}

/// Adds the user; the line to print.
pub fn add(
    path: &Path,
    user: &str,
    db: &str,
    password: &str,
    mechanisms: &[Mechanism],
) -> Result<String, String> {
    crate::auth::users::add(path, user, db, password, mechanisms)?;
    let names: Vec<&str> = mechanisms.iter().map(|m| m.name()).collect();
    Ok(format!(
        "mongoplex: user {user:?} on {db:?} ({}) written to {}; restart mongoplex to use it",
        names.join(", "),
        path.display()
    ))
}
