//! The fault-injection suite behind `scripts/reliability.sh`: the release proxy as a child
//! process in front of [`origin::FaultOrigin`], each scenario of issue 16 run against it, and a
//! report in Markdown and JSON (`bench/results/reliability/latest.{md,json}`).
//!
//! Scenarios: slow clients (trickled headers, with the normal latency of everybody else), slow
//! clients at a low `nofile`, the origin hung / killed / restarted, memory under churn with small
//! and large objects, pipelining, SIGTERM (idle, at start-up, under load) and SIGKILL under load,
//! the proxy's metrics against its `/stats`, and PostgreSQL restarted and stopped under write load
//! (the origin on a private server; [`llmselect_e2e::pg_faults`], shared with the end-to-end
//! test).

pub mod origin;
pub mod report;
pub mod scenarios;

use std::path::PathBuf;

use clap::Parser;

/// Command line of `llmselect-reliability`.
#[derive(Debug, Parser)]
#[command(
    name = "llmselect-reliability",
    about = "llmselect-edge fault-injection suite"
)]
pub struct Cli {
    /// Directory holding the llmselect-proxy binary (default: this binary's directory).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Where latest.md and latest.json go.
    #[arg(long, default_value = "bench/results/reliability")]
    pub results_dir: PathBuf,
    /// Slow clients held at once (the figure: 2,000).
    #[arg(long, default_value_t = 2000)]
    pub slow_clients: usize,
    /// Seconds between two bytes of a slow client's header.
    #[arg(long, default_value_t = 2)]
    pub trickle_secs: u64,
    /// The short form: fewer clients and objects (a smoke run).
    #[arg(long)]
    pub quick: bool,
    /// Run only these scenarios (comma-separated; all by default). The report keeps the previous
    /// rows of the areas not run, and says which run they come from.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub only: Vec<Scenario>,
}

/// The scenarios, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Pipelining,
    Metrics,
    Origin,
    Signals,
    SlowClients,
    LowNofile,
    Memory,
    Postgres,
}

/// Runs every scenario and writes the report.
pub async fn run(cli: Cli) -> anyhow::Result<report::ReliabilityReport> {
    let bin_dir = match &cli.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default(),
    };
    let work_dir =
        std::env::temp_dir().join(format!("llmselect-reliability-{}", std::process::id()));
    std::fs::create_dir_all(&work_dir)?;
    let env = crate::procs::ProcEnv {
        bin_dir,
        work_dir: work_dir.clone(),
        server_cpus: None,
        nginx: PathBuf::from("nginx"),
        haproxy: PathBuf::from("haproxy"),
        proxy_threads: 2,
        workers: 1,
        proxy_work_stealing: true,
    };
    let mut origin = origin::FaultOrigin::start().await?;
    let mut rows = Vec::new();
    let wanted = |s: Scenario| cli.only.is_empty() || cli.only.contains(&s);
    for scenario in [
        Scenario::Pipelining,
        Scenario::Metrics,
        Scenario::Origin,
        Scenario::Signals,
        Scenario::SlowClients,
        Scenario::LowNofile,
        Scenario::Memory,
        Scenario::Postgres,
    ] {
        if !wanted(scenario) {
            continue;
        }
        eprintln!("[reliability] {scenario:?}");
        rows.extend(match scenario {
            Scenario::Pipelining => scenarios::pipelining(&env, &origin).await?,
            Scenario::Metrics => scenarios::metrics_agree(&env, &origin).await?,
            Scenario::Origin => scenarios::origin_faults(&env, &mut origin).await?,
            Scenario::Signals => scenarios::signals(&env, &origin).await?,
            Scenario::SlowClients => scenarios::slow_clients(&env, &origin, &cli).await?,
            Scenario::LowNofile => scenarios::low_nofile(&env, &origin, &cli).await?,
            Scenario::Memory => scenarios::memory(&env, &origin, cli.quick).await?,
            Scenario::Postgres => scenarios::postgres(cli.quick).await?,
        });
    }
    let mut report = report::ReliabilityReport {
        generated_at: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: crate::machine::Machine::probe("nginx", None, String::new()),
        rows,
        kept_from: None,
    };
    if !cli.only.is_empty() {
        report.keep_other_rows(&cli.results_dir);
    }
    report.write(&cli.results_dir)?;
    let _ = std::fs::remove_dir_all(&work_dir);
    Ok(report)
}
