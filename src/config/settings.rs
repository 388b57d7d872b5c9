//! Raw settings as they come from the TOML file, the environment or the command line.
//! Every field is optional; layers merge by "later wins", then `Config::validate`
//! resolves defaults and checks values.

use std::path::PathBuf;

use serde::Deserialize;

use super::uri::Secret;

/// One layer of settings. Field names are the TOML keys; environment variables are
/// `MONGOPLEX_` plus the upper-cased key (e.g. `MONGOPLEX_MAX_POOL_SIZE`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: Option<String>,
    pub unix_socket: Option<PathBuf>,
    pub admin: Option<String>,
    pub upstream: Option<String>,
    /// The upstream user's password, read from this file (a mounted Secret); trailing
    /// newlines are dropped.
    pub upstream_password_file: Option<PathBuf>,
    /// The upstream user's password (`MONGOPLEX_UPSTREAM_PASSWORD`).
    pub upstream_password: Option<Secret>,
    /// `IP:PORT` (or `IP`, port 53) of the DNS server for SRV/TXT lookups and member host
    /// names, instead of /etc/resolv.conf.
    pub dns_server: Option<String>,
    /// Floor of the SRV rescan interval (default 60000, the spec's); for tests.
    pub srv_min_rescan_interval_ms: Option<u64>,

    pub max_pool_size: Option<u64>,
    pub min_pool_size: Option<u64>,
    pub max_connecting: Option<u64>,
    pub max_idle_time_ms: Option<u64>,
    pub max_lifetime_ms: Option<u64>,
    pub wait_queue_timeout_ms: Option<u64>,
    pub long_poll_pool_size: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub socket_timeout_ms: Option<u64>,
    pub server_selection_timeout_ms: Option<u64>,
    pub heartbeat_frequency_ms: Option<u64>,
    pub local_threshold_ms: Option<u64>,
    pub app_name: Option<String>,

    pub max_client_connections: Option<u64>,
    pub client_read_timeout_ms: Option<u64>,
    pub client_write_timeout_ms: Option<u64>,
    pub client_idle_timeout_ms: Option<u64>,
    pub max_buffered_bytes: Option<u64>,
    pub compressors: Option<Vec<String>>,
    pub shutdown_timeout_ms: Option<u64>,
    /// After SIGTERM, how long `/ready` answers 503 while the listener still accepts, so
    /// that load balancers and Kubernetes endpoints stop sending clients first.
    pub shutdown_delay_ms: Option<u64>,
    /// Accept `POST /reload` from any address that reaches the admin port, not only
    /// loopback.
    pub allow_remote_reload: Option<bool>,
    pub max_app_labels: Option<u64>,

    pub failover_buffer_window_ms: Option<u64>,
    pub failover_max_duration_ms: Option<u64>,
    pub failover_max_buffered: Option<u64>,

    pub log_format: Option<String>,
    pub log_level: Option<String>,

    /// Whether clients authenticate to the proxy: off, file (or upstream, not built yet).
    pub client_auth: Option<String>,
    /// The SCRAM secrets of `client_auth = "file"` (written by `mongoplex user add`).
    pub client_users_file: Option<PathBuf>,
    /// Commands let through whatever the command policy's default says.
    pub command_allow: Option<Vec<String>>,
    /// Commands refused whatever the command policy's default says.
    pub command_deny: Option<Vec<String>>,

    /// TLS on the client listener: its certificate chain (PEM) and key.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Clients must present a certificate signed by this CA (PEM).
    pub tls_ca_file: Option<PathBuf>,

    /// `configureFailPoint` answered by the proxy itself, as mongos's
    /// `--enable-test-commands` does (for drivers' test suites; never in production).
    pub enable_test_commands: Option<bool>,
}

macro_rules! for_each_field {
    ($m:ident) => {
        $m!(listen, str);
        $m!(unix_socket, path);
        $m!(admin, str);
        $m!(upstream, str);
        $m!(upstream_password_file, path);
        $m!(upstream_password, secret);
        $m!(dns_server, str);
        $m!(srv_min_rescan_interval_ms, u64);
        $m!(max_pool_size, u64);
        $m!(min_pool_size, u64);
        $m!(max_connecting, u64);
        $m!(max_idle_time_ms, u64);
        $m!(max_lifetime_ms, u64);
        $m!(wait_queue_timeout_ms, u64);
        $m!(long_poll_pool_size, u64);
        $m!(connect_timeout_ms, u64);
        $m!(socket_timeout_ms, u64);
        $m!(server_selection_timeout_ms, u64);
        $m!(heartbeat_frequency_ms, u64);
        $m!(local_threshold_ms, u64);
        $m!(app_name, str);
        $m!(max_client_connections, u64);
        $m!(client_read_timeout_ms, u64);
        $m!(client_write_timeout_ms, u64);
        $m!(client_idle_timeout_ms, u64);
        $m!(max_buffered_bytes, u64);
        $m!(compressors, list);
        $m!(shutdown_timeout_ms, u64);
        $m!(shutdown_delay_ms, u64);
        $m!(allow_remote_reload, bool);
        $m!(max_app_labels, u64);
        $m!(failover_buffer_window_ms, u64);
        $m!(failover_max_duration_ms, u64);
        $m!(failover_max_buffered, u64);
        $m!(log_format, str);
        $m!(log_level, str);
        $m!(enable_test_commands, bool);
        $m!(client_auth, str);
        $m!(client_users_file, path);
        $m!(command_allow, list);
        $m!(command_deny, list);
        $m!(tls_cert_file, path);
        $m!(tls_key_file, path);
        $m!(tls_ca_file, path);
    };
}

/// Where environment variables come from; tests pass a map instead of the real
/// process environment.
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl<S: std::hash::BuildHasher> Env for std::collections::HashMap<String, String, S> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("environment variable {var}={value:?} is not a valid {expected}")]
    Env {
        var: String,
        value: String,
        expected: &'static str,
    },
}

impl Settings {
    pub fn from_toml(text: &str, path: &std::path::Path) -> Result<Self, SettingsError> {
        toml::from_str(text).map_err(|e| SettingsError::Parse {
            path: path.into(),
            source: Box::new(e),
        })
    }

    pub fn from_file(path: &std::path::Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.into(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Reads every `MONGOPLEX_<FIELD>` variable that is set.
    pub fn from_env(env: &dyn Env) -> Result<Self, SettingsError> {
        let mut s = Settings::default();
        macro_rules! read {
            ($field:ident, $kind:ident) => {{
                let var = concat!("MONGOPLEX_", stringify!($field)).to_ascii_uppercase();
                if let Some(value) = env.var(&var) {
                    s.$field = Some(read!(@parse $kind, var, value));
                }
            }};
            (@parse str, $var:ident, $value:ident) => { $value };
            (@parse path, $var:ident, $value:ident) => { PathBuf::from($value) };
            (@parse secret, $var:ident, $value:ident) => { Secret::new($value) };
            (@parse list, $var:ident, $value:ident) => {
                $value.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()
            };
            (@parse bool, $var:ident, $value:ident) => {
                match $value.trim() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(SettingsError::Env {
                        var: $var.clone(), value: $value.clone(), expected: "boolean (true/false)",
                    }),
                }
            };
            (@parse u64, $var:ident, $value:ident) => {
                $value.trim().parse::<u64>().map_err(|_| SettingsError::Env {
                    var: $var.clone(), value: $value.clone(), expected: "non-negative integer",
                })?
            };
        }
        for_each_field!(read);
        Ok(s)
    }

    /// Every setting's name (its TOML key), in declaration order.
    pub fn keys() -> Vec<&'static str> {
        let mut keys = Vec::new();
        macro_rules! name {
            ($field:ident, $kind:ident) => {
                keys.push(stringify!($field));
            };
        }
        for_each_field!(name);
        keys
    }

    /// Whether this layer sets `key` (a name from [`Settings::keys`]).
    pub fn is_set(&self, key: &str) -> bool {
        macro_rules! check {
            ($field:ident, $kind:ident) => {
                if key == stringify!($field) {
                    return self.$field.is_some();
                }
            };
        }
        for_each_field!(check);
        false
    }

    /// The keys whose values differ between `self` and `other`, in declaration order.
    pub fn changed_keys(&self, other: &Settings) -> Vec<&'static str> {
        let mut changed = Vec::new();
        macro_rules! diff {
            ($field:ident, $kind:ident) => {
                if self.$field != other.$field {
                    changed.push(stringify!($field));
                }
            };
        }
        for_each_field!(diff);
        changed
    }

    /// Sets `key` (a name from [`Settings::keys`]) to its value in `from`, set or not.
    pub fn copy_key(&mut self, from: &Settings, key: &str) {
        macro_rules! copy {
            ($field:ident, $kind:ident) => {
                if key == stringify!($field) {
                    self.$field = from.$field.clone();
                }
            };
        }
        for_each_field!(copy);
    }

    /// Overlays `top` on `self`: every field set in `top` wins.
    pub fn overlay(mut self, top: Settings) -> Self {
        macro_rules! merge {
            ($field:ident, $kind:ident) => {
                if top.$field.is_some() {
                    self.$field = top.$field;
                }
            };
        }
        for_each_field!(merge);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn env_layer_parses_and_reports_bad_values() {
        let env: HashMap<String, String> = [
            ("MONGOPLEX_MAX_POOL_SIZE", "8"),
            ("MONGOPLEX_COMPRESSORS", "zstd, snappy"),
            ("MONGOPLEX_LISTEN", "127.0.0.1:1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let s = Settings::from_env(&env).unwrap();
        assert_eq!(s.max_pool_size, Some(8));
        assert_eq!(
            s.compressors.as_deref(),
            Some(&["zstd".to_string(), "snappy".to_string()][..])
        );
        let secret: HashMap<String, String> = [
            ("MONGOPLEX_UPSTREAM_PASSWORD".to_string(), "hunter2".to_string()),
            (
                "MONGOPLEX_UPSTREAM_PASSWORD_FILE".to_string(),
                "/run/secrets/pw".to_string(),
            ),
        ]
        .into();
        let s = Settings::from_env(&secret).unwrap();
        assert_eq!(s.upstream_password, Some(Secret::new("hunter2")));
        assert_eq!(s.upstream_password_file, Some(PathBuf::from("/run/secrets/pw")));
        assert!(
            !format!("{s:?}").contains("hunter2"),
            "the password leaked into Debug"
        );
        let bad: HashMap<String, String> = [("MONGOPLEX_MAX_POOL_SIZE".to_string(), "-1".to_string())].into();
        let e = Settings::from_env(&bad).unwrap_err().to_string();
        assert!(e.contains("MONGOPLEX_MAX_POOL_SIZE") && e.contains("-1"), "{e}");
    }

    #[test]
    fn overlay_prefers_top_and_file_rejects_unknown_keys() {
        let file = Settings::from_toml("max_pool_size = 5\nmin_pool_size = 1\n", "f.toml".as_ref()).unwrap();
        let cli = Settings {
            max_pool_size: Some(9),
            ..Default::default()
        };
        let merged = file.overlay(cli);
        assert_eq!((merged.max_pool_size, merged.min_pool_size), (Some(9), Some(1)));
        let e = Settings::from_toml("max_pool_sise = 5\n", "f.toml".as_ref())
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_pool_sise"), "{e}");
    }
}
