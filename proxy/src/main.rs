//! `llmselect-proxy`: parse the command line (see `cli`), load the configuration, set up logging
//! and run until SIGINT (fast) or SIGTERM (graceful); SIGHUP reloads the configuration.

use clap::Parser;
use llmselect_proxy::cli::{self, Cli};
use llmselect_proxy::logging;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if !cli.runs_proxy() {
        return Ok(cli::run_command(&cli));
    }
    let (config, generated_token) = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let log = logging::init(cli.log_format, &config.log_level)?;
    if let Some(path) = &generated_token {
        tracing::warn!(path = %path.display(), "no admin token configured: using the generated one in this file (mode 0600)");
    }

    let handle = llmselect_proxy::start(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let graceful = runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        anyhow::Ok(loop {
            tokio::select! {
                _ = term.recv() => break true,
                _ = int.recv() => break false,
                _ = hup.recv() => cli::reload(&cli, &handle, &log),
            }
        })
    })?;
    tracing::info!(graceful, "shutting down");
    if graceful {
        handle.shutdown_graceful();
    } else {
        handle.shutdown();
    }
    Ok(ExitCode::SUCCESS)
}
