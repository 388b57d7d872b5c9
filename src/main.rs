//! The `mongoplex` binary: parse flags, load configuration, run until SIGTERM/SIGINT;
//! or one of the operator subcommands of [`mongoplex::cli`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use mongoplex::cli;
use mongoplex::config::layers::Layers;
use mongoplex::config::{Config, ConfigError, Env, LogFormat, ProcessEnv, Settings};
use mongoplex::server::Proxy;

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
            enable_test_commands: self.enable_test_commands.then_some(true),
            log_format: self.log_format.clone(),
            log_level: self.log_level.clone(),
            ..Settings::default()
        }
    }
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        None => {}
        Some(Command::Health { ready, timeout_ms }) => return health(&cli.flags, *ready, *timeout_ms),
        Some(Command::CheckConfig { file }) => return check_config(&cli.flags, file.as_deref()),
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
    init_tracing(&config);
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
    runtime.block_on(async move {
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
        run(Arc::new(config)).await
    })
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
    // The proxy's other flags mean nothing here; ignoring them would hide a typo'd call.
    let extra = Settings {
        admin: None,
        ..flags.settings()
    };
    if let Some(key) = Settings::keys().into_iter().find(|k| extra.is_set(k)) {
        return fail(format!(
            "only --admin and --config apply to health, not --{}",
            key.replace('_', "-")
        ));
    }
    let admin = match Layers::read(flags.config_file().as_deref(), &ProcessEnv, flags.settings()) {
        Ok(layers) => layers.merged().admin,
        Err(e) => return fail(e.to_string()),
    };
    let admin = admin.unwrap_or_else(|| mongoplex::config::DEFAULT_ADMIN.to_string());
    let addr = match admin.as_str() {
        "" | "off" | "none" => return fail("the admin listener is off (admin = \"off\")".into()),
        a => match a.parse() {
            Ok(addr) => addr,
            Err(_) => return fail(format!("admin {a:?} is not an IP:PORT socket address")),
        },
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

async fn run(config: Arc<Config>) -> ExitCode {
    let deadline = config.shutdown_timeout;
    let proxy = match Proxy::start(config).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("mongoplex: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    wait_for_signal().await;
    proxy.shutdown(deadline).await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
