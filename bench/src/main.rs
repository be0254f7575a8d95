//! `llmselect-bench`: parse the command line, run the suite on a single-threaded runtime (pin the
//! process with `taskset` to keep it off the servers' CPUs), print the Markdown report.

use clap::Parser;
use llmselect_bench::cli::Cli;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(llmselect_bench::suite::run(cli))?;
    println!("{}", report.markdown());
    Ok(())
}
