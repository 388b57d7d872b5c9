//! The users file of `client_auth = "file"`: per user and mechanism, the four values a
//! mongod stores (salt, iteration count, StoredKey, ServerKey, base64, under mongod's own
//! names as `usersInfo` with `showCredentials` returns them), never a password.
//! `mongoplex user add` writes it ([`add`]); start-up reads it ([`Users::load`]).
//!
//! ```toml
//! [[users]]
//! user = "app"
//! db = "admin"
//! [users.credentials.SCRAM-SHA-256]
//! iterationCount = 15000
//! salt = "..."
//! storedKey = "..."
//! serverKey = "..."
//! ```

use std::collections::HashMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::scram::server::Secrets;
use super::scram::Mechanism;

/// mongod's defaults (`scramIterationCount`, `scramSHA256IterationCount`).
pub const SHA1_ITERATIONS: u32 = 10_000;
pub const SHA256_ITERATIONS: u32 = 15_000;
/// A users file larger than this is refused before it is read whole.
const MAX_FILE_BYTES: u64 = 16 << 20;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileText {
    #[serde(default)]
    users: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    user: String,
    db: String,
    credentials: Credentials,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    #[serde(rename = "SCRAM-SHA-1", default, skip_serializing_if = "Option::is_none")]
    sha1: Option<Stored>,
    #[serde(rename = "SCRAM-SHA-256", default, skip_serializing_if = "Option::is_none")]
    sha256: Option<Stored>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Stored {
    iteration_count: u32,
    salt: String,
    stored_key: String,
    server_key: String,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stored(***)")
    }
}

impl Stored {
    fn from_secrets(s: &Secrets) -> Self {
        Self {
            iteration_count: s.iterations,
            salt: B64.encode(&s.salt),
            stored_key: B64.encode(&s.stored_key),
            server_key: B64.encode(&s.server_key),
        }
    }

    fn secrets(&self, m: Mechanism) -> Result<Secrets, String> {
        let decode = |field: &str, v: &str| {
            B64.decode(v)
                .map_err(|_| format!("{}: {field} is not base64", m.name()))
        };
        let s = Secrets {
            iterations: self.iteration_count,
            salt: decode("salt", &self.salt)?,
            stored_key: decode("storedKey", &self.stored_key)?,
            server_key: decode("serverKey", &self.server_key)?,
        };
        s.check(m).map_err(|why| format!("{}: {why}", m.name()))?;
        Ok(s)
    }
}

/// One user's secrets, per mechanism it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub sha1: Option<Secrets>,
    pub sha256: Option<Secrets>,
}

impl UserRecord {
    pub fn secrets(&self, m: Mechanism) -> Option<&Secrets> {
        match m {
            Mechanism::Sha1 => self.sha1.as_ref(),
            Mechanism::Sha256 => self.sha256.as_ref(),
        }
    }

    /// `saslSupportedMechs` for this user, SHA-256 first as mongod lists it.
    pub fn mechanisms(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.sha256.is_some() {
            out.push(Mechanism::Sha256.name());
        }
        if self.sha1.is_some() {
            out.push(Mechanism::Sha1.name());
        }
        out
    }
}

/// The users of a users file, by (database, user name).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Users {
    map: HashMap<(String, String), UserRecord>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Users({} users, ***)", self.map.len())
    }
}

impl Users {
    /// Reads and checks a users file; the error names the file and the entry.
    pub fn load(path: &Path) -> Result<Self, String> {
        Self::parse(&read_bounded(path)?).map_err(|why| format!("{}: {why}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        // The message alone: the full error quotes the offending line, which may be a key.
        let file: FileText = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        let mut map = HashMap::new();
        for e in &file.users {
            let at = format!("user {:?} on {:?}", e.user, e.db);
            if e.user.is_empty() || e.db.is_empty() {
                return Err(format!("{at}: user and db must not be empty"));
            }
            let read = |stored: &Option<Stored>, m: Mechanism| {
                stored
                    .as_ref()
                    .map(|s| s.secrets(m))
                    .transpose()
                    .map_err(|why| format!("{at}: {why}"))
            };
            let record = UserRecord {
                sha1: read(&e.credentials.sha1, Mechanism::Sha1)?,
                sha256: read(&e.credentials.sha256, Mechanism::Sha256)?,
            };
            if record.sha1.is_none() && record.sha256.is_none() {
                return Err(format!("{at}: no credentials (SCRAM-SHA-256 or SCRAM-SHA-1)"));
            }
            if map.insert((e.db.clone(), e.user.clone()), record).is_some() {
                return Err(format!("{at} is listed twice"));
            }
        }
        Ok(Self { map })
    }

    pub fn get(&self, db: &str, user: &str) -> Option<&UserRecord> {
        self.map.get(&(db.to_owned(), user.to_owned()))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn read_bounded(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} is {} bytes, more than the {MAX_FILE_BYTES} a users file may have",
            path.display(),
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Adds `user` on `db` to the users file at `path` (created when missing), or replaces
/// its entry: fresh random salts, mongod's iteration counts, for each of `mechanisms`.
/// The file is written whole to a temporary file beside it, readable by its owner
/// only, then renamed over it, so that a reader never sees half of it.
pub fn add(
    path: &Path,
    user: &str,
    db: &str,
    password: &str,
    mechanisms: &[Mechanism],
) -> Result<(), String> {
    if user.is_empty() || db.is_empty() {
        return Err("the user name and --db must not be empty".into());
    }
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    let mut file: FileText = if path.exists() {
        let text = read_bounded(path)?;
        Users::parse(&text).map_err(|why| format!("{}: {why}", path.display()))?;
        toml::from_str(&text).map_err(|e| e.message().to_owned())?
    } else {
        FileText::default()
    };
    let mut credentials = Credentials::default();
    for &m in mechanisms {
        let (salt_len, iterations) = match m {
            Mechanism::Sha1 => (16, SHA1_ITERATIONS),
            Mechanism::Sha256 => (28, SHA256_ITERATIONS),
        };
        let salt: Vec<u8> = (0..salt_len).map(|_| rand::random::<u8>()).collect();
        let secrets = Secrets::derive(m, user, password, &salt, iterations).map_err(|e| e.to_string())?;
        let stored = Some(Stored::from_secrets(&secrets));
        match m {
            Mechanism::Sha1 => credentials.sha1 = stored,
            Mechanism::Sha256 => credentials.sha256 = stored,
        }
    }
    file.users.retain(|e| !(e.user == user && e.db == db));
    file.users.push(Entry {
        user: user.to_owned(),
        db: db.to_owned(),
        credentials,
    });
    let text = format!(
        "# mongoplex users file (client_auth = \"file\"): SCRAM secrets, no passwords.\n\
         # Written by `mongoplex user add`.\n\n{}",
        toml::to_string(&file).map_err(|e| e.to_string())?
    );
    write_private(path, &text)
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            fail(e)
        })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_writes_secrets_that_verify_and_no_password() {
        let dir = std::env::temp_dir().join(format!("mongoplex-users-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users.toml");
        add(
            &path,
            "app",
            "admin",
            "pw-Secret1",
            &[Mechanism::Sha256, Mechanism::Sha1],
        )
        .unwrap();
        add(&path, "old", "admin", "pw-Secret2", &[Mechanism::Sha1]).unwrap();
        // Replacing an entry keeps one entry per user.
        add(&path, "app", "admin", "pw-Secret3", &[Mechanism::Sha256]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("pw-Secret"), "a password was written:\n{text}");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let users = Users::load(&path).unwrap();
        assert_eq!(users.len(), 2);
        let app = users.get("admin", "app").unwrap();
        assert_eq!(app.mechanisms(), ["SCRAM-SHA-256"]);
        let s = app.sha256.as_ref().unwrap();
        assert_eq!((s.iterations, s.salt.len()), (SHA256_ITERATIONS, 28));
        assert_eq!(
            *s,
            Secrets::derive(Mechanism::Sha256, "app", "pw-Secret3", &s.salt, s.iterations).unwrap()
        );
        let old = users.get("admin", "old").unwrap();
        assert_eq!(old.mechanisms(), ["SCRAM-SHA-1"]);
        let s = old.sha1.as_ref().unwrap();
        assert_eq!(
            *s,
            Secrets::derive(Mechanism::Sha1, "old", "pw-Secret2", &s.salt, s.iterations).unwrap()
        );
        assert!(users.get("app", "app").is_none());
        assert!(!format!("{users:?}").contains(&B64.encode(&s.stored_key)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_files_are_refused_with_the_entry_named() {
        let key = B64.encode([0u8; 32]);
        let entry = |extra: &str, iterations: u32, k: &str| {
            format!(
                "[[users]]\nuser = \"u\"\ndb = \"admin\"\n{extra}[users.credentials.SCRAM-SHA-256]\n\
                 iterationCount = {iterations}\nsalt = \"c2FsdA==\"\nstoredKey = \"{k}\"\nserverKey = \"{key}\"\n"
            )
        };
        assert_eq!(Users::parse(&entry("", 15000, &key)).unwrap().len(), 1);
        let cases = [
            (entry("", 100, &key), "100 iterations"),
            (entry("", 15000, "AAAA"), "32 bytes"),
            (entry("", 15000, "!!"), "storedKey is not base64"),
            (entry("role = \"x\"\n", 15000, &key), "role"),
            (
                format!("{}{}", entry("", 15000, &key), entry("", 15000, &key)),
                "listed twice",
            ),
            (
                "[[users]]\nuser = \"u\"\ndb = \"admin\"\n[users.credentials]\n".to_owned(),
                "no credentials",
            ),
            (
                "[[users]]\nuser = \"\"\ndb = \"admin\"\n[users.credentials]\n".to_owned(),
                "must not be empty",
            ),
        ];
        for (text, want) in cases {
            let e = Users::parse(&text).unwrap_err();
            assert!(e.contains(want), "{want:?} not in {e:?}");
            assert!(!e.contains(&key), "a key leaked: {e}");
        }
    }
}
