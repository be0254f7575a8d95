//! `llmselect-origin`: command-line entry point (see `cli.rs`).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
