//! Configuration: a TOML file, overlaid by `MONGOPLEX_*` environment variables, overlaid
//! by command-line flags, then validated into an immutable [`Config`] shared as an `Arc`.
//! Pool and timeout options may also come from the upstream URI; explicit settings win.

pub mod client_auth;
pub mod client_tls;
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
    /// The hosts to start from; for `mongodb+srv`, empty until the SRV lookup
    /// ([`Config::validate_with`]).
    pub seeds: Vec<ServerAddress>,
    /// What a `mongodb+srv` upstream looks up.
    pub srv: Option<crate::srv::SrvSpec>,
    /// The lowest TTL of the initial SRV answer, once looked up: when the first rescan is due.
    pub srv_initial_ttl: Option<Duration>,
    /// The resolver for SRV/TXT lookups (`mongodb+srv`) and, with `dns_server`, for member
    /// host names; `None` leaves host names to the system resolver.
    pub dns: Option<crate::srv::dns::Resolver>,
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
    /// After SIGTERM: `/ready` answers 503 this long before the listener closes.
    pub shutdown_delay: Duration,
    /// `POST /reload` from non-loopback addresses.
    pub allow_remote_reload: bool,
    pub max_app_labels: usize,
    pub failover: FailoverOptions,
    pub log_format: LogFormat,
    pub log_level: String,
    /// Whether clients authenticate to the proxy, and against what.
    pub client_auth: client_auth::ClientAuth,
    /// Which commands clients may send ([`crate::command::policy`]).
    pub command_policy: crate::command::policy::Policy,
    /// TLS on the client listener (TCP; the unix socket stays plaintext).
    pub client_tls: Option<client_tls::ClientTls>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("upstream {uri:?} is not a valid MongoDB connection string: {source}")]
    Uri { uri: String, source: uri::UriError },
    #[error("{field}: {why}")]
    Invalid { field: &'static str, why: String },
    #[error("upstream {uri:?}: the mongodb+srv lookup failed: {source}")]
    Srv {
        uri: String,
        source: crate::srv::dns::LookupError,
    },
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

    /// [`Config::validate`], then for a `mongodb+srv` upstream the SRV and TXT lookups and
    /// the configuration rebuilt from them. Its errors are start-up errors, as a bad
    /// setting's are.
    pub async fn discover(s: Settings) -> Result<Self, ConfigError> {
        let first = Self::validate(s.clone())?;
        let (Some(spec), Some(resolver)) = (&first.srv, &first.dns) else {
            return Ok(first);
        };
        let seedlist = crate::srv::dns::discover(resolver, spec)
            .await
            .map_err(|source| ConfigError::Srv {
                uri: first.upstream_redacted.clone(),
                source,
            })?;
        Self::validate_with(s, Some(&seedlist))
    }

    /// Resolves defaults and checks every value, with messages that name the setting. A
    /// `mongodb+srv` upstream comes out with no seeds: see [`Config::discover`].
    pub fn validate(s: Settings) -> Result<Self, ConfigError> {
        Self::validate_with(s, None)
    }

    /// [`Config::validate`] with the outcome of a `mongodb+srv` upstream's lookups: its
    /// hosts are the seeds and its TXT options apply where the URI gives none.
    pub fn validate_with(
        s: Settings,
        seedlist: Option<&crate::srv::dns::Seedlist>,
    ) -> Result<Self, ConfigError> {
        let uri_text = s.upstream.clone().unwrap_or_else(|| DEFAULT_UPSTREAM.to_string());
        let uri_error = |source| ConfigError::Uri {
            uri: redact(&uri_text),
            source,
        };
        let mut upstream = credential::parse_upstream(&uri_text, &s).map_err(uri_error)?;
        let srv = srv_spec(&upstream, &s)?;
        if let Some(seedlist) = seedlist.filter(|_| upstream.is_srv) {
            upstream = upstream
                .with_seedlist(seedlist.hosts.clone(), seedlist.txt.as_deref())
                .map_err(uri_error)?;
        }
        upstream_options::check(&upstream).map_err(|why| invalid("upstream", why))?;
        let credential = credential::resolve(&upstream, &s).map_err(|why| invalid("upstream", why))?;
        let tls = tls::resolve(&upstream.options, upstream.tls_enabled())
            .map_err(|why| invalid("upstream", why))?;
        let dns_server = s.dns_server.as_deref().map(dns_server_addr).transpose()?;
        let dns = (srv.is_some() || dns_server.is_some())
            .then(|| crate::srv::dns::Resolver::new(dns_server))
            .transpose()
            .map_err(|why| invalid("dns_server", why))?;
        let o = &upstream.options;
        let seeds = match (&srv, seedlist) {
            (Some(_), None) => Vec::new(),
            _ => upstream.tcp_hosts().map_err(|why| invalid("upstream", why))?,
        };
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
        let (client_auth, command_policy) = client_auth::resolve(&s)?;
        let client_tls = client_tls::resolve(&s)?;
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
            srv_initial_ttl: seedlist.filter(|_| srv.is_some()).map(|l| l.min_ttl),
            srv,
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
                compressors: upstream_compressors(o),
                wire_metrics: None,
                dns: dns_server.and(dns.clone()),
            },
            dns,
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
            // 0: a bare binary has no endpoints to leave, and Ctrl-C should stop it
            // promptly. The Kubernetes manifests set 5000 (deploy/kubernetes).
            shutdown_delay: ms(s.shutdown_delay_ms.unwrap_or(0)),
            allow_remote_reload: s.allow_remote_reload.unwrap_or(false),
            max_app_labels: to_usize("max_app_labels", s.max_app_labels.unwrap_or(50))?.max(1),
            failover,
            log_format,
            log_level: s.log_level.clone().unwrap_or_else(|| "info".into()),
            client_auth,
            command_policy,
            client_tls,
            upstream_redacted: redact(&uri_text),
            upstream,
        })
    }
}

/// The URI's `compressors`, in its order, with `zlibCompressionLevel` applied to zlib
/// (-1 is the library's default, as the compression spec has it).
fn upstream_compressors(o: &uri::UriOptions) -> Vec<Compressor> {
    let level = o.zlib_compression_level.and_then(|l| u32::try_from(l).ok());
    o.compressors
        .iter()
        .flatten()
        .map(|c| match c {
            uri::Compressor::Snappy => Compressor::Snappy,
            uri::Compressor::Zlib => Compressor::Zlib { level },
            uri::Compressor::Zstd => Compressor::Zstd,
        })
        .collect()
}

/// `IP:PORT`, or an IP alone for port 53.
fn dns_server_addr(v: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(ip) = v.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    v.parse().map_err(|_| {
        invalid(
            "dns_server",
            format!("{v:?} is not an IP:PORT address of a DNS server (e.g. 10.0.0.2:53)"),
        )
    })
}

/// What a `mongodb+srv` upstream looks up; `None` for `mongodb://`.
fn srv_spec(cs: &ConnectionString, s: &Settings) -> Result<Option<crate::srv::SrvSpec>, ConfigError> {
    let floor = s.srv_min_rescan_interval_ms.map(ms);
    let Some(hostname) = cs.srv_hostname() else {
        return match floor {
            Some(_) => Err(invalid(
                "srv_min_rescan_interval_ms",
                "applies only to a mongodb+srv:// upstream",
            )),
            None => Ok(None),
        };
    };
    let min_rescan_interval = floor.unwrap_or(crate::srv::MIN_RESCAN_INTERVAL);
    if min_rescan_interval.is_zero() {
        return Err(invalid("srv_min_rescan_interval_ms", "must be greater than 0"));
    }
    Ok(Some(crate::srv::SrvSpec {
        hostname: hostname.to_owned(),
        service_name: cs
            .options
            .srv_service_name
            .clone()
            .unwrap_or_else(|| "mongodb".to_owned()),
        max_hosts: cs
            .options
            .srv_max_hosts
            .and_then(|m| usize::try_from(m).ok())
            .unwrap_or(0),
        min_rescan_interval,
    }))
}

/// Hides a password in a URI for error messages and logs.
pub fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let hosts_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..hosts_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{user}:***@{}", &rest[at + 1..])
        }
        None => rest.to_string(),
    };
    match rest.split_once('?') {
        Some((path, query)) => format!("{scheme}://{path}?{}", redact_query(query)),
        None => format!("{scheme}://{rest}"),
    }
}

/// URI options whose values are, or may hold, secrets: `authMechanismProperties` can
/// carry AWS_SESSION_TOKEN.
const SECRET_OPTIONS: &[&str] = &[
    "authMechanismProperties",
    "proxyPassword",
    "tlsCertificateKeyFilePassword",
];

fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if SECRET_OPTIONS.iter().any(|s| s.eq_ignore_ascii_case(key)) => {
                format!("{key}=***")
            }
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests;
