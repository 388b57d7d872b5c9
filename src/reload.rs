//! Live reload: SIGHUP or `POST /reload` re-reads the config file and the `MONGOPLEX_*`
//! environment through start-up's layering ([`Layers::read`], [`Config::validate`]); the
//! command-line flags stay as given.
//!
//! What changes is decided by [`plan`], a pure function of the settings in force and the
//! new ones: each changed setting either applies live ([`Apply::Live`]) or keeps its
//! running value and is reported as needing a restart ([`Apply::Restart`]), never
//! accepted and ignored. An invalid new configuration (a parse error, a bad value, even in
//! a setting that needs a restart) is rejected whole and the old one stays in force.
//!
//! The configuration in force is published on [`Context::live`] (a `watch`), which the
//! request path reads per use; pools are resized through [`crate::topology::Topology::reconfigure`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::layers::Layers;
use crate::config::{Config, ConfigError, Env, Settings, SettingsError};
use crate::context::Context;

/// The `result` label values of `mongoplex_config_reloads_total`.
pub const RESULTS: &[&str] = &["applied", "rejected"];

/// How a changed setting takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    /// From the next checkout, request or message on, without dropping a client.
    Live,
    /// Only after a restart; until then the running value stays (and is reported).
    Restart,
}

/// Which settings apply live. Everything not named here needs a restart, so that a new
/// setting is never silently taken as live: listeners and the admin address are bound
/// sockets; the upstream, its credential, TLS, compressors, app name and connect options
/// are baked into every open connection and monitor; heartbeat and local threshold live
/// in the SDAM state machine; the client limit, buffer budget and app-label cap size
/// structures built at start-up; the log format is the subscriber's type; the long-poll
/// pool exists or not per member.
pub fn apply_of(key: &str) -> Apply {
    match key {
        // Pools ([`crate::pool::Pool::set_options`]).
        "max_pool_size" | "min_pool_size" | "max_connecting" | "max_idle_time_ms" | "max_lifetime_ms"
        | "wait_queue_timeout_ms"
        // Read per use from [`Context::current`] or the topology's config.
        | "server_selection_timeout_ms" | "client_read_timeout_ms" | "client_write_timeout_ms"
        | "client_idle_timeout_ms" | "failover_buffer_window_ms" | "failover_max_duration_ms"
        | "failover_max_buffered" | "shutdown_timeout_ms" | "shutdown_delay_ms"
        | "allow_remote_reload"
        // The tracing filter's reload handle (main.rs).
        | "log_level" => Apply::Live,
        _ => Apply::Restart,
    }
}

/// What a reload changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Changed settings that apply now.
    pub live: Vec<&'static str>,
    /// Changed settings that keep their running value until a restart.
    pub restart: Vec<&'static str>,
    /// The new settings with every restart-only key put back to its running value: what
    /// the configuration in force is validated from, so that nothing derived from a
    /// pinned setting (the upstream URI's `maxPoolSize`, say) changes either.
    pub in_force: Settings,
}

/// Compares the settings in force with freshly read ones.
pub fn plan(old: &Settings, new: &Settings) -> Plan {
    let mut in_force = new.clone();
    let (mut live, mut restart) = (Vec::new(), Vec::new());
    for key in old.changed_keys(new) {
        match apply_of(key) {
            Apply::Live => live.push(key),
            Apply::Restart => {
                in_force.copy_key(old, key);
                restart.push(key);
            }
        }
    }
    Plan {
        live,
        restart,
        in_force,
    }
}

/// The configuration in force after a reload: the running one, with the live fields of
/// `new` (validated from [`Plan::in_force`]). Everything else, including what start-up
/// derived at run time (SRV seeds, the resolver, connect options and credential), stays.
pub fn in_force(old: &Config, new: Config) -> Config {
    Config {
        pool: new.pool,
        server_selection_timeout: new.server_selection_timeout,
        client_read_timeout: new.client_read_timeout,
        client_write_timeout: new.client_write_timeout,
        client_idle_timeout: new.client_idle_timeout,
        failover: new.failover,
        shutdown_timeout: new.shutdown_timeout,
        shutdown_delay: new.shutdown_delay,
        allow_remote_reload: new.allow_remote_reload,
        log_level: new.log_level,
        ..old.clone()
    }
}

/// Where a reload reads from: start-up's file and environment, and its flags as given.
pub struct Source {
    pub file: Option<PathBuf>,
    pub env: Arc<dyn Env + Send + Sync>,
    pub cli: Settings,
    /// The merged settings start-up ran with.
    pub initial: Settings,
    /// Replaces the log filter; `Err` says why it cannot (e.g. `RUST_LOG` overrides it).
    pub log_filter: Option<LogFilter>,
}

pub type LogFilter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// A reload's result: the `/reload` body, and what is logged. Names settings, never
/// values, so that no secret can appear in it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Outcome {
    /// One of [`RESULTS`].
    pub result: &'static str,
    /// What asked: `SIGHUP` or `POST /reload`.
    pub trigger: &'static str,
    /// Changed settings now in force.
    pub applied: Vec<&'static str>,
    /// Changed settings that keep their running value until a restart.
    pub needs_restart: Vec<&'static str>,
    /// Why the new configuration was rejected (the old one stays in force).
    pub error: Option<String>,
}

pub struct Reloader {
    file: Option<PathBuf>,
    env: Arc<dyn Env + Send + Sync>,
    cli: Settings,
    log_filter: Option<LogFilter>,
    /// The merged settings in force. Held through a whole reload, so that a SIGHUP and a
    /// `POST /reload` arriving together run one after the other.
    settings: Mutex<Settings>,
    ctx: Arc<Context>,
}

impl Reloader {
    pub fn new(source: Source, ctx: Arc<Context>) -> Self {
        Self {
            file: source.file,
            env: source.env,
            cli: source.cli,
            log_filter: source.log_filter,
            settings: Mutex::new(source.initial),
            ctx,
        }
    }

    /// Re-reads and applies the configuration. Blocking (it reads a file): call it from
    /// a blocking thread.
    pub fn reload(&self, trigger: &'static str) -> Outcome {
        let mut settings = self.settings.lock().unwrap_or_else(|p| p.into_inner());
        let outcome = match self.prepare(&settings) {
            Ok((plan, config)) => {
                *settings = plan.in_force.clone();
                self.commit(trigger, plan, config)
            }
            Err(e) => {
                let error = describe(&e);
                tracing::error!(
                    trigger,
                    error,
                    "configuration reload rejected; the running configuration stays in force"
                );
                Outcome {
                    result: "rejected",
                    trigger,
                    applied: Vec::new(),
                    needs_restart: Vec::new(),
                    error: Some(error),
                }
            }
        };
        self.ctx
            .metrics
            .config_reloads
            .with_label_values(&[outcome.result])
            .inc();
        outcome
    }

    /// Reads and validates everything; changes nothing.
    fn prepare(&self, old: &Settings) -> Result<(Plan, Config), ConfigError> {
        let layers = Layers::read(self.file.as_deref(), &*self.env, self.cli.clone())?;
        let new = layers.merged();
        // The whole new configuration must be valid, restart-only settings included: a
        // typo there would otherwise surface only at the next restart.
        Config::validate(new.clone())?;
        let plan = plan(old, &new);
        let config = Config::validate(plan.in_force.clone())?;
        if plan.live.contains(&"log_level") {
            tracing_subscriber::EnvFilter::try_new(&config.log_level).map_err(|e| ConfigError::Invalid {
                field: "log_level",
                why: e.to_string(),
            })?;
        }
        Ok((plan, config))
    }

    fn commit(&self, trigger: &'static str, mut plan: Plan, config: Config) -> Outcome {
        let config = Arc::new(in_force(&self.ctx.current(), config));
        self.ctx.live.send_replace(config.clone());
        self.ctx.topology.reconfigure();
        if plan.live.contains(&"log_level") {
            let set = self.log_filter.as_ref().map(|f| f(&config.log_level));
            if let Some(Err(why)) = set {
                tracing::warn!(setting = "log_level", why, "changed setting cannot apply live");
                plan.live.retain(|k| *k != "log_level");
                plan.restart.push("log_level");
            }
        }
        for key in &plan.restart {
            tracing::warn!(
                setting = key,
                "changed setting needs a restart; its running value stays in force"
            );
        }
        tracing::info!(trigger, applied = ?plan.live, needs_restart = ?plan.restart, "configuration reloaded");
        Outcome {
            result: "applied",
            trigger,
            applied: plan.live,
            needs_restart: plan.restart,
            error: None,
        }
    }
}

/// A rejected reload's reason, for the log and the `/reload` body. A TOML error's usual
/// text quotes the offending line, which may hold a password (a typo next to
/// `upstream = "mongodb://user:pw@..."`): keep its position, the key on that line and
/// the message, not the line.
fn describe(e: &ConfigError) -> String {
    let ConfigError::Settings(SettingsError::Parse { path, source }) = e else {
        return e.to_string();
    };
    let shown = source.to_string();
    let position = shown.lines().next().unwrap_or("TOML parse error");
    let key = source.span().and_then(|span| {
        let text = std::fs::read_to_string(path).ok()?;
        let start = text.get(..span.start)?.rfind('\n').map_or(0, |i| i + 1);
        let line = text.get(start..)?.lines().next()?;
        let key = line.split('=').next()?.trim();
        let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        plain.then(|| format!(" (key {key})"))
    });
    format!(
        "invalid config file {}: {position}{}: {}",
        path.display(),
        key.unwrap_or_default(),
        source.message()
    )
}

#[cfg(test)]
mod tests;
