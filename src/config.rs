//! Configuration: a TOML file, overlaid by `MONGOPLEX_*` environment variables, overlaid
//! by command-line flags, then validated into an immutable [`Config`] shared as an `Arc`.
//! Pool and timeout options may also come from the upstream URI; explicit settings win.

mod credential;
pub mod layers;
pub mod settings;
mod tls;
mod upstream_options;
pub mod uri;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use settings::{Env, ProcessEnv, Settings, SettingsError};
use uri::ConnectionString;

use crate::address::ServerAddress;
use crate::pool::PoolOptions;
use crate::upstream::ConnectOptions;
use crate::wire::Compressor;

/// Used when neither the file, the environment nor the command line names an upstream,
/// so `mongoplex` with no arguments works in front of a local server.
pub const DEFAULT_UPSTREAM: &str = "mongodb://127.0.0.1:27017/";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:27016";
/// Clear of 27017 (mongod), 9090 (Prometheus) and 9216 (mongodb_exporter).
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9317";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct FailoverOptions {
    /// How long one request may wait for a primary.
    pub buffer_window: Duration,
    /// After this long without a primary, buffering stops and requests fail fast.
    pub max_duration: Duration,
    /// Requests held at once; more fail at once with a routing error.
    pub max_buffered: usize,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub unix_socket: Option<PathBuf>,
    pub admin: Option<SocketAddr>,
    pub upstream: ConnectionString,
    /// The upstream URI with any password hidden, for logs and /status.
    pub upstream_redacted: String,
    pub seeds: Vec<ServerAddress>,
    pub replica_set: Option<String>,
    pub direct_connection: bool,
    pub pool: PoolOptions,
    /// Connections per member for long-polling getMores (change streams, tailable
    /// awaitData cursors), apart from `pool` so that they never take the connections
    /// ordinary requests need. 0 sends them through `pool`.
    pub long_poll_pool_size: usize,
    /// configureFailPoint/failCommand at the proxy ([`crate::failpoint`]).
    pub enable_test_commands: bool,
    pub connect: ConnectOptions,
    pub server_selection_timeout: Duration,
    pub heartbeat_frequency: Duration,
    pub local_threshold: Duration,
    pub max_client_connections: usize,
    /// Once a client starts sending a message, the whole message must arrive within this.
    pub client_read_timeout: Duration,
    /// A reply the client does not take within this closes the client, freeing the reply.
    pub client_write_timeout: Duration,
    /// A client that begins no message within this is closed; `None` (the default, as
    /// in mongod) keeps idle clients for as long as they stay.
    pub client_idle_timeout: Option<Duration>,
    /// Bytes of large client messages and replies held at once ([`crate::memory`]).
    pub max_buffered_bytes: usize,
    pub compressors: Vec<Compressor>,
    pub shutdown_timeout: Duration,
    pub max_app_labels: usize,
    pub failover: FailoverOptions,
    pub log_format: LogFormat,
    pub log_level: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("upstream {uri:?} is not a valid MongoDB connection string: {source}")]
    Uri { uri: String, source: uri::UriError },
    #[error("{field}: {why}")]
    Invalid { field: &'static str, why: String },
}

fn invalid(field: &'static str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        why: why.into(),
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn to_usize(field: &'static str, v: u64) -> Result<usize, ConfigError> {
    usize::try_from(v).map_err(|_| invalid(field, format!("{v} is too large")))
}

fn socket_addr(field: &'static str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse().map_err(|_| {
        invalid(
            field,
            format!("{v:?} is not an IP:PORT socket address (e.g. 127.0.0.1:27016)"),
        )
    })
}

impl Config {
    /// Builds the configuration from an optional file, the environment and CLI flags.
    pub fn load(file: Option<&Path>, env: &dyn Env, cli: Settings) -> Result<Self, ConfigError> {
        Self::validate(layers::Layers::read(file, env, cli)?.merged())
    }

    /// Resolves defaults and checks every value, with messages that name the setting.
    pub fn validate(s: Settings) -> Result<Self, ConfigError> {
        let uri_text = s.upstream.clone().unwrap_or_else(|| DEFAULT_UPSTREAM.to_string());
        let upstream = credential::parse_upstream(&uri_text, &s).map_err(|source| ConfigError::Uri {
            uri: redact(&uri_text),
            source,
        })?;
        upstream_options::check(&upstream).map_err(|why| invalid("upstream", why))?;
        let credential = credential::resolve(&upstream, &s).map_err(|why| invalid("upstream", why))?;
        let tls = tls::resolve(&upstream.options).map_err(|why| invalid("upstream", why))?;
        let o = &upstream.options;
        let seeds = upstream.tcp_hosts().map_err(|why| invalid("upstream", why))?;
        let pick = |set: Option<u64>, uri: Option<Duration>, default: Duration| {
            set.map(ms).or(uri).unwrap_or(default)
        };
        let max_size = s
            .max_pool_size
            .map(|v| to_usize("max_pool_size", v))
            .transpose()?;
        let max_size = max_size
            .or(o.max_pool_size.and_then(|v| usize::try_from(v).ok()))
            .unwrap_or(100);
        let min_size = s
            .min_pool_size
            .map(|v| to_usize("min_pool_size", v))
            .transpose()?;
        let min_size = min_size
            .or(o.min_pool_size.and_then(|v| usize::try_from(v).ok()))
            .unwrap_or(0);
        if max_size != 0 && min_size > max_size {
            return Err(invalid(
                "min_pool_size",
                format!("{min_size} exceeds max_pool_size {max_size}"),
            ));
        }
        let max_connecting = s
            .max_connecting
            .map(|v| to_usize("max_connecting", v))
            .transpose()?;
        let max_connecting = max_connecting
            .or(o.max_connecting.and_then(|v| usize::try_from(v).ok()))
            .unwrap_or(2);
        if max_connecting == 0 {
            return Err(invalid("max_connecting", "must be at least 1"));
        }
        let wait_queue_timeout = pick(
            s.wait_queue_timeout_ms,
            o.wait_queue_timeout,
            Duration::from_secs(10),
        );
        if wait_queue_timeout.is_zero() {
            return Err(invalid("wait_queue_timeout_ms", "must be greater than 0"));
        }
        let max_idle = s
            .max_idle_time_ms
            .map(ms)
            .or(o.max_idle_time)
            .filter(|d| !d.is_zero());
        let max_lifetime = s.max_lifetime_ms.map(ms).filter(|d| !d.is_zero());
        let heartbeat_frequency = pick(
            s.heartbeat_frequency_ms,
            o.heartbeat_frequency,
            Duration::from_secs(10),
        );
        if heartbeat_frequency < ms(500) {
            return Err(invalid("heartbeat_frequency_ms", "must be at least 500"));
        }
        let connect_timeout = pick(s.connect_timeout_ms, o.connect_timeout, Duration::from_secs(10));
        if connect_timeout.is_zero() {
            return Err(invalid("connect_timeout_ms", "must be greater than 0"));
        }
        let socket_timeout = s
            .socket_timeout_ms
            .map(ms)
            .or(o.socket_timeout)
            .filter(|d| !d.is_zero());
        let server_selection_timeout = pick(
            s.server_selection_timeout_ms,
            o.server_selection_timeout,
            Duration::from_secs(30),
        );
        let local_threshold = pick(s.local_threshold_ms, o.local_threshold, ms(15));
        let compressors = match &s.compressors {
            None => vec![
                Compressor::Zstd,
                Compressor::Snappy,
                Compressor::Zlib { level: None },
            ],
            Some(names) => names
                .iter()
                .map(|n| {
                    Compressor::from_name(n).ok_or_else(|| {
                        invalid(
                            "compressors",
                            format!("unknown compressor {n:?} (use snappy, zlib, zstd)"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let log_format = match s.log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(invalid("log_format", format!("{other:?} is not text or json"))),
        };
        let listen = socket_addr("listen", s.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
        let admin = match s.admin.as_deref().unwrap_or(DEFAULT_ADMIN) {
            "" | "off" | "none" => None,
            a => Some(socket_addr("admin", a)?),
        };
        if admin == Some(listen) && listen.port() != 0 {
            return Err(invalid("admin", "must differ from listen"));
        }
        let failover = FailoverOptions {
            buffer_window: ms(s.failover_buffer_window_ms.unwrap_or(10_000)),
            max_duration: ms(s.failover_max_duration_ms.unwrap_or(30_000)),
            max_buffered: to_usize("failover_max_buffered", s.failover_max_buffered.unwrap_or(10_000))?,
        };
        if failover.buffer_window > failover.max_duration {
            return Err(invalid(
                "failover_buffer_window_ms",
                "must not exceed failover_max_duration_ms",
            ));
        }
        let app_name = s
            .app_name
            .clone()
            .or(o.app_name.clone())
            .unwrap_or_else(|| "mongoplex".into());
        Ok(Config {
            listen,
            unix_socket: s.unix_socket.clone(),
            admin,
            seeds,
            replica_set: o.replica_set.clone(),
            direct_connection: o.direct_connection.unwrap_or(false),
            pool: PoolOptions {
                max_size,
                min_size,
                max_connecting,
                max_idle_time: max_idle,
                max_lifetime,
                wait_queue_timeout,
            },
            long_poll_pool_size: to_usize("long_poll_pool_size", s.long_poll_pool_size.unwrap_or(16))?,
            enable_test_commands: s.enable_test_commands.unwrap_or(false),
            connect: ConnectOptions {
                connect_timeout,
                socket_timeout,
                app_name,
                credential,
                tls,
            },
            server_selection_timeout,
            heartbeat_frequency,
            local_threshold,
            max_client_connections: to_usize(
                "max_client_connections",
                s.max_client_connections.unwrap_or(10_000),
            )?,
            client_read_timeout: ms(s.client_read_timeout_ms.unwrap_or(30_000)).max(ms(1)),
            client_write_timeout: ms(s.client_write_timeout_ms.unwrap_or(30_000)).max(ms(1)),
            client_idle_timeout: s.client_idle_timeout_ms.filter(|&v| v > 0).map(ms),
            max_buffered_bytes: to_usize("max_buffered_bytes", s.max_buffered_bytes.unwrap_or(512 << 20))?,
            compressors,
            shutdown_timeout: ms(s.shutdown_timeout_ms.unwrap_or(10_000)),
            max_app_labels: to_usize("max_app_labels", s.max_app_labels.unwrap_or(50))?.max(1),
            failover,
            log_format,
            log_level: s.log_level.clone().unwrap_or_else(|| "info".into()),
            upstream_redacted: redact(&uri_text),
            upstream,
        })
    }
}

/// Hides a password in a URI for error messages and logs.
pub fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let hosts_end = rest.find('/').unwrap_or(rest.len());
    match rest[..hosts_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        None => uri.to_string(),
    }
}

#[cfg(test)]
mod tests;
