//! The `mongoplex` binary: parse flags, load configuration, run until SIGTERM/SIGINT
//! (reloading on SIGHUP), then drain; or one of the operator subcommands of
//! [`mongoplex::cli`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use mongoplex::cli;
use mongoplex::config::layers::Layers;
use mongoplex::config::{Config, ConfigError, Env, LogFormat, ProcessEnv, Settings};
use mongoplex::reload::{LogFilter, Reloader, Source};
use mongoplex::server::Proxy;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// A MongoDB connection pooler: point your app at mongoplex instead of the database.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    flags: Flags,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Probe a running mongoplex: GET /live (or /ready) on its admin port; exit 0 or 1.
    ///
    /// The address is --admin, else the admin setting of MONGOPLEX_ADMIN or the config file,
    /// else the default; an address bound to every interface is probed on loopback.
    Health {
        /// Query /ready (a primary known, upstream login working) instead of /live.
        #[arg(long)]
        ready: bool,
        /// Give up after this long.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// Validate the configuration as start-up would; print it, redacted, with sources.
    ///
    /// Reads the file, then MONGOPLEX_* variables, then flags, exactly as start-up does,
    /// and prints every effective setting with where it came from (default, uri, file,
    /// env, flag). Exit 0 if valid, else 2 with start-up's error message.
    CheckConfig {
        /// TOML configuration file (the same as --config).
        file: Option<PathBuf>,
    },
    /// A live view of a running mongoplex, refreshed from its /status and /metrics.
    ///
    /// Members and their states, pools (in use, idle, connecting, waiters, wait p99),
    /// clients per app, requests and errors per second, failover-buffer activity. On a
    /// terminal the screen is redrawn; otherwise one line per tick is printed. The
    /// admin address is found as for `health`.
    Top {
        /// Refresh interval.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Stop after this many ticks (default: run until interrupted).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Manage the users file of client_auth = "file" (SCRAM secrets, never passwords).
    User {
        #[command(subcommand)]
        action: UserCommand,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user (or replace its entry); the password is read from the terminal, or
    /// as one line of standard input.
    Add {
        /// The user name, as clients put it in their URI.
        name: String,
        /// The authentication database (the URI's authSource; drivers default to admin).
        #[arg(long)]
        db: String,
        /// The users file [default: the client_users_file setting].
        #[arg(long)]
        file: Option<PathBuf>,
        /// SCRAM-SHA-256 or SCRAM-SHA-1, repeatable [default: both].
        #[arg(long = "mechanism")]
        mechanisms: Vec<String>,
    },
}

/// The settings flags; global, so they may also follow a subcommand
/// (`mongoplex check-config f.toml --max-pool-size 8`).
#[derive(Debug, Args)]
struct Flags {
    /// TOML configuration file (see config/mongoplex.toml) [env: MONGOPLEX_CONFIG].
    #[arg(long, short = 'c', global = true)]
    config: Option<PathBuf>,
    /// Client listen address [default: 127.0.0.1:27016].
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Upstream MongoDB connection string [default: mongodb://127.0.0.1:27017/].
    #[arg(long, global = true)]
    upstream: Option<String>,
    /// Admin HTTP address for /metrics, /live, /ready, /status ("off" disables) [default: 127.0.0.1:9317].
    #[arg(long, global = true)]
    admin: Option<String>,
    /// Also listen on this unix socket path.
    #[arg(long, global = true)]
    unix_socket: Option<PathBuf>,
    /// DNS server (IP:PORT) for mongodb+srv lookups and member host names, instead of
    /// /etc/resolv.conf.
    #[arg(long)]
    dns_server: Option<String>,
    /// Whether clients authenticate to the proxy: off, file (upstream: not built yet).
    #[arg(long, global = true)]
    client_auth: Option<String>,
    /// The users file of client_auth = "file".
    #[arg(long, global = true)]
    client_users_file: Option<PathBuf>,
    /// maxPoolSize per upstream member.
    #[arg(long, global = true)]
    max_pool_size: Option<u64>,
    /// Answer configureFailPoint (failCommand) at the proxy, as a mongos started with
    /// --enable-test-commands does. For drivers' test suites only.
    #[arg(long, global = true)]
    enable_test_commands: bool,
    /// After SIGTERM, answer /ready with 503 for this long before closing the listener
    /// [default: 0].
    #[arg(long, global = true)]
    shutdown_delay_ms: Option<u64>,
    /// Log format: text or json.
    #[arg(long, global = true)]
    log_format: Option<String>,
    /// Log filter, e.g. info or mongoplex=debug.
    #[arg(long, global = true)]
    log_level: Option<String>,
}

impl Flags {
    /// `--config`, else `MONGOPLEX_CONFIG`: a container image names its mounted file
    /// in the environment, like every other setting.
    fn config_file(&self) -> Option<PathBuf> {
        self.config
            .clone()
            .or_else(|| ProcessEnv.var("MONGOPLEX_CONFIG").map(PathBuf::from))
    }

    fn settings(&self) -> Settings {
        Settings {
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            admin: self.admin.clone(),
            unix_socket: self.unix_socket.clone(),
            dns_server: self.dns_server.clone(),
            client_auth: self.client_auth.clone(),
            client_users_file: self.client_users_file.clone(),
            max_pool_size: self.max_pool_size,
            shutdown_delay_ms: self.shutdown_delay_ms,
            enable_test_commands: self.enable_test_commands.then_some(true),
            log_format: self.log_format.clone(),
            log_level: self.log_level.clone(),
            ..Settings::default()
        }
    }
}

/// Installs the subscriber; the returned closure replaces its filter on a reload of
/// `log_level`. `RUST_LOG`, when set, wins over `log_level` at start-up, and so a reload
/// reports that it cannot change it rather than silently overriding the operator.
fn init_tracing(config: &Config) -> LogFilter {
    use tracing_subscriber::EnvFilter;
    let from_env = EnvFilter::try_from_default_env().ok();
    let pinned = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(&config.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    fn setter<S: tracing::Subscriber>(
        handle: tracing_subscriber::reload::Handle<EnvFilter, S>,
        pinned: bool,
    ) -> LogFilter {
        Box::new(move |level: &str| {
            if pinned {
                return Err("RUST_LOG is set, and overrides log_level until a restart".into());
            }
            let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
            handle.reload(filter).map_err(|e| e.to_string())
        })
    }
    match config.log_format {
        LogFormat::Json => {
            let builder = builder.json().with_filter_reloading();
            let set = setter(builder.reload_handle(), pinned);
            builder.init();
            set
        }
        LogFormat::Text => {
            let builder = builder.with_filter_reloading();
            let set = setter(builder.reload_handle(), pinned);
            builder.init();
            set
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        None => {}
        Some(Command::Health { ready, timeout_ms }) => return health(&cli.flags, *ready, *timeout_ms),
        Some(Command::CheckConfig { file }) => return check_config(&cli.flags, file.as_deref()),
        Some(Command::Top { interval_ms, count }) => return top(&cli.flags, *interval_ms, *count),
        Some(Command::User { action }) => return user(&cli.flags, action),
    }
    let loaded = Layers::read(
        cli.flags.config_file().as_deref(),
        &ProcessEnv,
        cli.flags.settings(),
    )
    .map_err(ConfigError::from)
    .map(|layers| layers.merged())
    .and_then(|s| Config::validate(s.clone()).map(|c| (s, c)));
    let (settings, config) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return invalid_config(&e),
    };
    let log_filter = init_tracing(&config);
    let source = Source {
        file: cli.flags.config_file(),
        env: Arc::new(ProcessEnv),
        cli: cli.flags.settings(),
        initial: settings.clone(),
        log_filter: Some(log_filter),
    };
    for w in &config.upstream.warnings {
        tracing::warn!(warning = %w, "upstream connection string");
    }
    // Containers often start with a soft limit of 1024 under a far higher hard one.
    match mongoplex::fdlimit::raise() {
        Ok((before, after)) => tracing::info!(
            soft_before = before.soft,
            soft = after.soft,
            hard = after.hard,
            "file-descriptor limit (RLIMIT_NOFILE)"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the file-descriptor limit"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mongoplex: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        // mongodb+srv: the seeds come from DNS, before any connection (seedlist spec).
        let config = if config.srv.is_some() {
            match Config::discover(settings).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start");
                    return invalid_config(&e);
                }
            }
        } else {
            config
        };
        if let Some(spec) = &config.srv {
            let seeds: Vec<String> = config.seeds.iter().map(ToString::to_string).collect();
            tracing::info!(srv = %spec.srv_name(), seeds = %seeds.join(","), replica_set = ?config.replica_set, tls = config.connect.tls.is_some(), "mongodb+srv resolved");
        }
        run(Arc::new(config), source).await
    });
    // A second signal means now: do not wait for what is still running.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

/// Start-up's message and exit status for a configuration it will not run with.
fn invalid_config(e: &ConfigError) -> ExitCode {
    eprintln!("mongoplex: invalid configuration: {e}");
    ExitCode::from(2)
}

/// `mongoplex check-config [FILE]`: the layers and the validation of [`Config::load`].
fn check_config(flags: &Flags, file: Option<&std::path::Path>) -> ExitCode {
    if file.is_some() && flags.config.is_some() {
        eprintln!("mongoplex: check-config: give the file as FILE or as --config, not both");
        return ExitCode::from(2);
    }
    // FILE wins over MONGOPLEX_CONFIG, so that a candidate file can be checked inside
    // the container that names the running one.
    let file = file.map(PathBuf::from).or_else(|| flags.config_file());
    let checked = Layers::read(file.as_deref(), &ProcessEnv, flags.settings())
        .map_err(ConfigError::from)
        .and_then(|layers| Config::validate(layers.merged()).map(|c| (layers, c)));
    let (layers, config) = match checked {
        Ok(v) => v,
        Err(e) => return invalid_config(&e),
    };
    match cli::check_config::report(&layers, &config) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mongoplex: check-config: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The admin listener of the proxy an operator subcommand talks to: `--admin`, else the
/// admin setting of MONGOPLEX_ADMIN or the config file, else the default. Only `--admin`
/// and `--config` apply: ignoring the proxy's other flags would hide a typo'd call.
fn admin_addr(flags: &Flags, subcommand: &str) -> Result<std::net::SocketAddr, String> {
    let extra = Settings {
        admin: None,
        ..flags.settings()
    };
    if let Some(key) = Settings::keys().into_iter().find(|k| extra.is_set(k)) {
        return Err(format!(
            "only --admin and --config apply to {subcommand}, not --{}",
            key.replace('_', "-")
        ));
    }
    let admin = Layers::read(flags.config_file().as_deref(), &ProcessEnv, flags.settings())
        .map_err(|e| e.to_string())?
        .merged()
        .admin
        .unwrap_or_else(|| mongoplex::config::DEFAULT_ADMIN.to_string());
    match admin.as_str() {
        "" | "off" | "none" => Err("the admin listener is off (admin = \"off\")".into()),
        a => a
            .parse()
            .map_err(|_| format!("admin {a:?} is not an IP:PORT socket address")),
    }
}

/// `mongoplex user add`: exit 0, or 2 with the reason.
fn user(flags: &Flags, action: &UserCommand) -> ExitCode {
    let UserCommand::Add {
        name,
        db,
        file,
        mechanisms,
    } = action;
    let fail = |why: String| {
        eprintln!("mongoplex user add: {why}");
        ExitCode::from(2)
    };
    let path = match file.clone() {
        Some(p) => p,
        None => match Layers::read(flags.config_file().as_deref(), &ProcessEnv, flags.settings()) {
            Ok(layers) => match layers.merged().client_users_file {
                Some(p) => p,
                None => return fail("no --file, and no client_users_file setting names one".into()),
            },
            Err(e) => return fail(e.to_string()),
        },
    };
    let mechanisms = match cli::user::mechanisms(mechanisms) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let added = cli::user::read_password().and_then(|pw| cli::user::add(&path, name, db, &pw, &mechanisms));
    match added {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `mongoplex health`: exit 0 or 1 only, since Docker reserves a HEALTHCHECK's 2.
fn health(flags: &Flags, ready: bool, timeout_ms: u64) -> ExitCode {
    let fail = |why: String| {
        eprintln!("mongoplex health: {why}");
        ExitCode::FAILURE
    };
    let addr = match admin_addr(flags, "health") {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let path = if ready { "/ready" } else { "/live" };
    match cli::health::check(addr, path, std::time::Duration::from_millis(timeout_ms)) {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(message) => fail(message),
    }
}

/// `mongoplex top`: until interrupted, or `count` ticks.
fn top(flags: &Flags, interval_ms: u64, count: Option<u64>) -> ExitCode {
    use std::io::IsTerminal;
    let addr = match admin_addr(flags, "top") {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mongoplex top: {e}");
            return ExitCode::from(2);
        }
    };
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    let interval = std::time::Duration::from_millis(interval_ms.max(100));
    match cli::top::run(addr, interval, count, tty, &mut stdout.lock()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`mongoplex top | head`) is a normal end.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mongoplex top: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Arc<Config>, source: Source) -> ExitCode {
    // Before start-up completes, so that a SIGHUP never finds the default action
    // (terminate) in place.
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mongoplex: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let proxy = match Proxy::start_with(config, Some(source)).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("mongoplex: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let reloader = proxy.reloader.clone();
    let first = signals.stop(reloader.as_ref()).await;
    // Read now: a reload may have changed them.
    let config = proxy.ctx.current();
    tracing::info!(
        signal = first,
        shutdown_delay_ms = config.shutdown_delay.as_millis(),
        shutdown_timeout_ms = config.shutdown_timeout.as_millis(),
        "draining: /ready answers 503; the listener closes after shutdown_delay_ms"
    );
    proxy.drain();
    let drain = async move {
        tokio::time::sleep(config.shutdown_delay).await;
        proxy.shutdown(config.shutdown_timeout).await;
    };
    tokio::select! {
        () = drain => ExitCode::SUCCESS,
        second = signals.stop(reloader.as_ref()) => {
            tracing::warn!(signal = second, "second signal during the drain: exiting at once");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM and SIGINT stop; SIGHUP reloads.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for SIGTERM or SIGINT and names it; each SIGHUP meanwhile reloads.
    async fn stop(&mut self, reloader: Option<&Arc<Reloader>>) -> &'static str {
        loop {
            tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.hup.recv() => match reloader {
                    Some(r) => {
                        let r = r.clone();
                        // The outcome is logged by the reload itself.
                        let _ = tokio::task::spawn_blocking(move || r.reload("SIGHUP")).await;
                    }
                    None => tracing::warn!("SIGHUP: this proxy cannot reload"),
                },
            }
        }
    }
}
