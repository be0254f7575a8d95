//! A deterministic fake of the OpenAI, Mistral, Anthropic and Gemini chat APIs, for tests and the
//! offline demo.
//!
//! Base URLs to point clients at (`addr` from [`FakeLlm::addr`]): OpenAI and Mistral
//! `http://<addr>/v1`, Anthropic `http://<addr>`, Gemini `http://<addr>/v1beta`.
//!
//! Behaviour is set at start-up with [`FakeConfig`] and per request by markers in the model name
//! (see [`scenario`]): `fail-401`, `fail-429`, `fail-500`, `slow-<ms>`, `drop-mid-stream`,
//! `malformed`, `stream-error`.

mod answer;
pub mod cli;
mod config;
mod recorder;
pub mod scenario;
mod server;
mod wire;

use std::net::SocketAddr;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

pub use answer::{answer_text, split_chunks};
pub use config::{Failure, FakeConfig};
pub use recorder::RecordedRequest;
pub use scenario::Scenario;

use recorder::Recorder;

/// A running fake; the server stops when this is dropped.
pub struct FakeLlm {
    addr: SocketAddr,
    recorder: Recorder,
    task: JoinHandle<()>,
}

/// Binds `config.listen` and serves until the returned handle is dropped.
pub async fn spawn(config: FakeConfig) -> anyhow::Result<FakeLlm> {
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let recorder = Recorder::default();
    let task = tokio::spawn(accept_loop(listener, config, recorder.clone()));
    Ok(FakeLlm {
        addr,
        recorder,
        task,
    })
}

/// Accepts connections; dropping this task (on abort) drops the set and so every connection.
async fn accept_loop(listener: TcpListener, config: FakeConfig, recorder: Recorder) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        tracing::warn!(error = %err, "fake-llm: accept failed");
                        continue;
                    }
                };
                let config = config.clone();
                let recorder = recorder.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        server::handle(req, config.clone(), recorder.clone())
                    });
                    if let Err(err) = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!(error = %err, "fake-llm: connection ended with an error");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

impl FakeLlm {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Base URL for OpenAI and Mistral clients: `http://<addr>/v1`.
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.base_url())
    }

    /// Base URL for Anthropic clients: `http://<addr>` (they append `/v1/messages`).
    pub fn anthropic_base_url(&self) -> String {
        self.base_url()
    }

    /// Base URL for Gemini clients: `http://<addr>/v1beta`.
    pub fn gemini_base_url(&self) -> String {
        format!("{}/v1beta", self.base_url())
    }

    /// How many requests reached `path` (without query string), whatever their outcome.
    pub fn requests(&self, path: &str) -> u64 {
        self.recorder.requests(path)
    }

    /// How many requests reached the fake in total.
    pub fn total_requests(&self) -> u64 {
        self.recorder.total()
    }

    /// The last request received on `path`.
    pub fn last_request(&self, path: &str) -> Option<RecordedRequest> {
        self.recorder.last(path)
    }

    /// Forgets all counters and recorded requests.
    pub fn reset(&self) {
        self.recorder.reset();
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}
