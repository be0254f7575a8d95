//! `llmselect-reliability`: the fault-injection suite (see `llmselect_bench::reliability`);
//! prints the Markdown report and writes it with its JSON to `--results-dir`.

use clap::Parser;
use llmselect_bench::reliability::{run, Cli};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(cli))?;
    println!("{}", report.markdown());
    Ok(())
}
