//! Logs of the binary through `tracing`: human-readable lines on a terminal, JSON lines otherwise
//! (`--log-format auto|human|json`). pingora logs through `log`; its records are bridged in with
//! tracing-log, and its own crates are capped at `warn` unless the filter names them, so start-up
//! is not an INFO flood. The filter (`log_level`, or `RUST_LOG` when set) can be swapped at run
//! time (SIGHUP reload).

use std::io::IsTerminal;
use tracing_log::AsLog;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human on a terminal, JSON otherwise.
    #[default]
    Auto,
    Human,
    Json,
}

/// pingora's crates, quiet below `warn` unless the filter names them.
const PINGORA: [&str; 6] = [
    "pingora",
    "pingora_core",
    "pingora_proxy",
    "pingora_cache",
    "pingora_load_balancing",
    "pingora_pool",
];

/// Swaps the log filter of a running process.
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set: it wins over the configuration, also on reload.
    from_env: bool,
}

/// The filter for `level`: pingora at `warn` unless `level` names one of its crates.
pub fn filter(level: &str) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
    let mut spec = level.to_string();
    for name in PINGORA {
        if !level.contains(name) {
            spec.push_str(&format!(",{name}=warn"));
        }
    }
    EnvFilter::try_new(spec)
}

/// Installs the global subscriber; `level` is the configuration's `log_level`.
pub fn init(format: LogFormat, level: &str) -> anyhow::Result<LogHandle> {
    let env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let from_env = env.is_some();
    let filter = filter(env.as_deref().unwrap_or(level))?;
    let max = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
    let (filter, handle) = reload::Layer::new(filter);
    let human = match format {
        LogFormat::Auto => std::io::stdout().is_terminal(),
        LogFormat::Human => true,
        LogFormat::Json => false,
    };
    let fmt = if human {
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stdout().is_terminal())
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .boxed()
    };
    // not `try_init`: it would install the `log` bridge without a level cap
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(filter).with(fmt))?;
    // pingora logs through `log`; without a cap every disabled `debug!` on the hit path would
    // still reach the filter.
    tracing_log::LogTracer::builder()
        .with_max_level(max.as_log())
        .init()?;
    Ok(LogHandle {
        filter: handle,
        from_env,
    })
}

impl LogHandle {
    /// Applies a new `log_level` (ignored while `RUST_LOG` is set).
    pub fn set_level(&self, level: &str) -> anyhow::Result<()> {
        if self.from_env {
            return Ok(());
        }
        let filter = filter(level)?;
        let max = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
        self.filter.reload(filter)?;
        log::set_max_level(max.as_log());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pingora_is_capped_unless_named() {
        let f = filter("info").unwrap().to_string();
        assert!(f.contains("pingora_core=warn"), "{f}");
        let f = filter("info,pingora_core=debug").unwrap().to_string();
        assert!(
            f.contains("pingora_core=debug") && !f.contains("pingora_core=warn"),
            "{f}"
        );
        assert!(filter("info,=[").is_err());
    }
}
