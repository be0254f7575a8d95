//! Glue between the HTTP handlers and the provider adapters of `llmselect-llm`: the shared
//! [`LlmService`], request validation ([`input`]), the chat memory budget ([`memory`]), SSE bodies
//! ([`sse`]) and how provider failures become client answers ([`errors`]). Key resolution lives in
//! `crate::provider_keys`.

pub mod errors;
pub mod input;
pub mod memory;
pub mod sse;

use std::sync::Arc;
use std::time::Duration;

use llmselect_llm::{Gateway, LlmClient, LlmConfig, LlmError, Provider};

use crate::config::Config;
use crate::metrics::{LlmCall, LlmEndpoint, LlmOutcome, Metrics};

/// The LLM client and the streaming settings, built once from the configuration.
pub struct LlmService {
    pub client: LlmClient,
    /// Interval of `: keep-alive` comments on SSE responses (15 s by default).
    pub keepalive: Duration,
    /// Kept here so the spawned per-model tasks, which own only the service, can record their
    /// calls (see [`LlmService::track`]).
    metrics: Arc<Metrics>,
}

impl LlmService {
    /// Builds the client from `providers.*` (base URLs, gateway, `LLM_MAX_TOKENS`).
    pub fn from_config(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<LlmService> {
        let p = &config.providers;
        let gateway = match (&p.gateway_base_url, &p.gateway_api_key) {
            (Some(base_url), Some(api_key)) if !base_url.trim().is_empty() => Some(Gateway {
                base_url: base_url.clone(),
                api_key: api_key.clone(),
            }),
            _ => None,
        };
        let cfg = LlmConfig {
            openai_base_url: p.openai_base_url.clone(),
            anthropic_base_url: p.anthropic_base_url.clone(),
            gemini_base_url: p.gemini_base_url.clone(),
            mistral_base_url: p.mistral_base_url.clone(),
            gateway,
            max_tokens_stream: p.llm_max_tokens.max(1),
            read_timeout: Duration::from_millis(p.llm_read_timeout_ms.max(1)),
            ..LlmConfig::default()
        };
        Ok(LlmService {
            client: LlmClient::new(cfg)?,
            keepalive: Duration::from_millis(p.sse_keepalive_ms.max(10)),
            metrics,
        })
    }

    /// Starts measuring one call to `provider` for `endpoint` (the `origin_llm_*` metrics): start
    /// it right before the client call and finish it once the reply or the stream ended.
    pub fn track(&self, provider: Provider, endpoint: LlmEndpoint) -> LlmCall {
        LlmCall::start(self.metrics.clone(), provider, endpoint)
    }
}

/// `max(1, chars / 4)`: the rough token count the original reports.
pub fn estimate_tokens(text: &str) -> usize {
    (text.chars().count() / 4).max(1)
}

/// Why a streamed relay (chat/stream, one model of compare/stream) stopped before its upstream
/// finished.
pub enum Stop {
    /// The client went away.
    ClientGone,
    /// The provider call failed, before or during the stream.
    Failed(LlmError),
}

/// The `origin_llm_calls_total` outcome of a relay.
pub fn relay_outcome<T>(relayed: &Result<T, Stop>) -> LlmOutcome {
    match relayed {
        Ok(_) => LlmOutcome::Ok,
        Err(Stop::ClientGone) => LlmOutcome::Cancelled,
        Err(Stop::Failed(_)) => LlmOutcome::Error,
    }
}
