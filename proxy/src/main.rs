//! `llmselect-proxy`: parse the command line, load the configuration, set up logging and run
//! until SIGINT (fast) or SIGTERM (graceful).

use clap::Parser;
use llmselect_proxy::{Config, Overrides};
use std::path::PathBuf;
use tracing_log::AsLog;
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// RFC 9111 caching reverse proxy (pingora) for llmselect-edge.
#[derive(Debug, Parser)]
#[command(name = "llmselect-proxy", version, about)]
struct Cli {
    /// TOML configuration file (see config/proxy.toml).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Proxy listen address (overrides `listen`).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Origin base URL (overrides `upstream`); several, comma-separated, are balanced with
    /// health checks (overrides `upstreams`).
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Admin listen address (overrides `admin_listen`).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
}

/// JSON logs through `tracing`; pingora's `log` records are bridged in with tracing-log.
fn init_logging() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // pingora logs through `log`; without a cap every disabled `debug!` on the hit path would
    // still reach the filter.
    let max_level = filter
        .max_level_hint()
        .unwrap_or(tracing_subscriber::filter::LevelFilter::TRACE)
        .as_log();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .json()
        .finish();
    tracing::subscriber::set_global_default(subscriber)?;
    tracing_log::LogTracer::builder()
        .with_max_level(max_level)
        .init()?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // Signal handlers first: a SIGTERM that arrives while the listeners bind is kept for later
    // instead of killing the process.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut term, mut int) = runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        anyhow::Ok((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    let cli = Cli::parse();
    let overrides = Overrides {
        listen: cli.listen,
        upstream: cli.upstream,
        admin_listen: cli.admin_listen,
    };
    let config = match Config::load(cli.config.as_deref(), overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    init_logging()?;

    let handle = llmselect_proxy::start(config)?;
    let graceful = runtime.block_on(async {
        tokio::select! {
            _ = term.recv() => true,
            _ = int.recv() => false,
        }
    });
    tracing::info!(graceful, "shutting down");
    if graceful {
        handle.shutdown_graceful();
    } else {
        handle.shutdown();
    }
    Ok(())
}
