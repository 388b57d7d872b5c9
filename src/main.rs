//! The `mongoplex` binary: parse flags, load configuration, run until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use mongoplex::config::{Config, LogFormat, ProcessEnv, Settings};
use mongoplex::server::Proxy;

/// A MongoDB connection pooler: point your app at mongoplex instead of the database.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (see config/mongoplex.toml).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Client listen address [default: 127.0.0.1:27016].
    #[arg(long)]
    listen: Option<String>,
    /// Upstream MongoDB connection string [default: mongodb://127.0.0.1:27017/].
    #[arg(long)]
    upstream: Option<String>,
    /// Admin HTTP address for /metrics, /live, /ready, /status ("off" disables) [default: 127.0.0.1:9317].
    #[arg(long)]
    admin: Option<String>,
    /// Also listen on this unix socket path.
    #[arg(long)]
    unix_socket: Option<PathBuf>,
    /// DNS server (IP:PORT) for mongodb+srv lookups and member host names, instead of
    /// /etc/resolv.conf.
    #[arg(long)]
    dns_server: Option<String>,
    /// maxPoolSize per upstream member.
    #[arg(long)]
    max_pool_size: Option<u64>,
    /// Answer configureFailPoint (failCommand) at the proxy, as a mongos started with
    /// --enable-test-commands does. For drivers' test suites only.
    #[arg(long)]
    enable_test_commands: bool,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<String>,
    /// Log filter, e.g. info or mongoplex=debug.
    #[arg(long)]
    log_level: Option<String>,
}

impl Cli {
    fn settings(&self) -> Settings {
        Settings {
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            admin: self.admin.clone(),
            unix_socket: self.unix_socket.clone(),
            dns_server: self.dns_server.clone(),
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
    let loaded = cli
        .config
        .as_deref()
        .map_or(Ok(Settings::default()), Settings::from_file)
        .map_err(Into::into)
        .and_then(|file| Config::merge(file, &ProcessEnv, cli.settings()))
        .and_then(|s| Config::validate(s.clone()).map(|c| (s, c)));
    let (settings, config) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("mongoplex: invalid configuration: {e}");
            return ExitCode::from(2);
        }
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
                    eprintln!("mongoplex: invalid configuration: {e}");
                    return ExitCode::from(2);
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
