//! Command-line flags of the `llmselect-fake-llm` binary.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::config::{Failure, FakeConfig};

/// Deterministic fake of the OpenAI, Mistral, Anthropic and Gemini chat APIs.
#[derive(Debug, Parser)]
#[command(name = "llmselect-fake-llm", version)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Delay before the first byte of every answer, in milliseconds.
    #[arg(long, default_value_t = 120)]
    pub latency_ms: u64,
    /// Gap between streamed chunks, in milliseconds.
    #[arg(long, default_value_t = 35)]
    pub chunk_delay_ms: u64,
    /// Number of chunks a streamed answer is split into.
    #[arg(long, default_value_t = 8)]
    pub chunks: usize,
    /// Failure injected into every request: 401, 429, 500, drop-mid-stream, malformed, stream-error.
    #[arg(long)]
    pub fail: Option<Failure>,
}

impl Args {
    pub fn into_config(self) -> FakeConfig {
        FakeConfig {
            listen: self.listen,
            latency: Duration::from_millis(self.latency_ms),
            chunks: self.chunks.max(1),
            chunk_delay: Duration::from_millis(self.chunk_delay_ms),
            failure: self.fail,
        }
    }
}
