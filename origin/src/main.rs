//! `llmselect-origin`: command-line entry point (see the library's `cli` module).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    llmselect_origin::cli::main()
}
