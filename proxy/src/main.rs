//! `llmselect-proxy`: parse the command line (see `cli`), load the configuration, set up logging
//! and run until SIGINT (fast), SIGTERM (graceful) or SIGQUIT (hand the sockets over to a
//! `run --upgrade` process, then graceful); SIGHUP reloads the configuration.

use clap::Parser;
use llmselect_proxy::cli::{self, Cli};
use llmselect_proxy::logging;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The signals `main` handles.
fn handled_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGHUP,
    ] {
        set.add(signal);
    }
    set
}

/// How the process ends.
#[derive(Debug, Clone, Copy)]
enum Exit {
    Fast,
    Graceful,
    Upgrade,
}

fn main() -> anyhow::Result<ExitCode> {
    let blocked = handled_signals();
    blocked.thread_block()?;
    let cli = Cli::parse();
    if !cli.runs_proxy() {
        blocked.thread_unblock()?;
        return Ok(cli::run_command(&cli));
    }
    // The signal handlers exist before anything else is done: a SIGTERM that arrives while the
    // listeners bind is kept for later, and a SIGHUP or SIGQUIT sent as soon as the proxy answers
    // does not meet the default action (terminate). Until they are installed the four signals
    // are blocked, so one sent while the runtime is built waits for the handler instead of
    // ending the process (they were blocked first thing in `main`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut term, mut int, mut quit, mut hup) = {
        use tokio::signal::unix::{signal, SignalKind};
        let _context = runtime.enter();
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
            signal(SignalKind::quit())?,
            signal(SignalKind::hangup())?,
        )
    };
    // a signal that arrived meanwhile is delivered now, to the handler
    blocked.thread_unblock()?;
    let (config, generated_token) = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let log = logging::init(cli.log_format, &config.log_level)?;
    if let Some(path) = &generated_token {
        tracing::warn!(
            path = %path.display(),
            "no admin token configured: using the generated one in this file (mode 0600)"
        );
    }

    let handle = if cli.upgrade() {
        llmselect_proxy::start_upgrade(config)?
    } else {
        llmselect_proxy::start(config)?
    };
    let exit = runtime.block_on(async {
        loop {
            tokio::select! {
                _ = term.recv() => break Exit::Graceful,
                _ = int.recv() => break Exit::Fast,
                _ = quit.recv() => break Exit::Upgrade,
                _ = hup.recv() => cli::reload(&cli, &handle, &log),
            }
        }
    });
    tracing::info!(?exit, "shutting down");
    match exit {
        Exit::Fast => handle.shutdown(),
        Exit::Graceful => handle.shutdown_graceful(),
        Exit::Upgrade => handle.hand_over(),
    }
    Ok(ExitCode::SUCCESS)
}
