//! Client settings: base URLs, gateway mode, timeouts and token limits (§6.1, §6.8, Appendix B).

use std::fmt;
use std::time::Duration;

use crate::error::LlmError;

pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
pub const DEFAULT_GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";
pub const DEFAULT_MISTRAL_BASE_URL: &str = "https://api.mistral.ai/v1";

/// One OpenAI-compatible endpoint that serves every provider's models.
#[derive(Clone, PartialEq, Eq)]
pub struct Gateway {
    /// Base URL; the client appends `/chat/completions` and `/models`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer` instead of the per-provider keys.
    pub api_key: String,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("base_url", &self.base_url)
            .field("api_key", &"[REDACTED]")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmConfig {
    /// `OPENAI_BASE_URL`; the client appends `/chat/completions` and `/models`.
    pub openai_base_url: String,
    /// `ANTHROPIC_BASE_URL`; the client appends `/v1/messages`.
    pub anthropic_base_url: String,
    /// `GEMINI_BASE_URL`; the client appends `/models/{m}:generateContent` etc.
    pub gemini_base_url: String,
    /// `MISTRAL_BASE_URL`; the client appends `/chat/completions` and `/models`.
    pub mistral_base_url: String,
    /// `LLM_GATEWAY_BASE_URL` + `LLM_GATEWAY_API_KEY`: when set, every call goes there.
    pub gateway: Option<Gateway>,
    pub connect_timeout: Duration,
    /// Longest wait for any byte (headers or the next body chunk); a stream may run longer.
    pub read_timeout: Duration,
    /// `max_tokens` of non-streaming direct calls (1000 in the original).
    pub max_tokens: u32,
    /// `LLM_MAX_TOKENS`: streaming calls and every gateway call.
    pub max_tokens_stream: u32,
    /// Whole-request timeout of each model-list call.
    pub list_models_timeout: Duration,
    /// Extra attempts of a model-list call after a 429, a 5xx, a timeout or a network error.
    pub list_models_retries: u32,
    /// Pause before the first retry; doubled for each further one.
    pub retry_backoff: Duration,
}

impl Default for LlmConfig {
    /// The real providers, no gateway, 10 s connect and 30 s idle-read timeouts.
    fn default() -> Self {
        LlmConfig {
            openai_base_url: DEFAULT_OPENAI_BASE_URL.to_owned(),
            anthropic_base_url: DEFAULT_ANTHROPIC_BASE_URL.to_owned(),
            gemini_base_url: DEFAULT_GEMINI_BASE_URL.to_owned(),
            mistral_base_url: DEFAULT_MISTRAL_BASE_URL.to_owned(),
            gateway: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            max_tokens: 1000,
            max_tokens_stream: 1000,
            list_models_timeout: Duration::from_secs(10),
            list_models_retries: 2,
            retry_backoff: Duration::from_millis(250),
        }
    }
}

impl LlmConfig {
    /// Every provider (direct mode) pointed at one fake or test server:
    /// OpenAI and Mistral `<root>/v1`, Anthropic `<root>`, Gemini `<root>/v1beta`.
    pub fn for_local_fake(root: &str) -> Self {
        let root = root.trim_end_matches('/');
        LlmConfig {
            openai_base_url: format!("{root}/v1"),
            anthropic_base_url: root.to_owned(),
            gemini_base_url: format!("{root}/v1beta"),
            mistral_base_url: format!("{root}/v1"),
            ..LlmConfig::default()
        }
    }

    /// Reads the variables of Appendix B from the process environment.
    pub fn from_env() -> Result<Self, LlmError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`LlmConfig::from_env`], with `lookup` standing in for the environment. Unset or
    /// empty variables keep their defaults.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, LlmError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut cfg = LlmConfig::default();
        if let Some(v) = get("OPENAI_BASE_URL") {
            cfg.openai_base_url = v;
        }
        if let Some(v) = get("ANTHROPIC_BASE_URL") {
            cfg.anthropic_base_url = v;
        }
        if let Some(v) = get("GEMINI_BASE_URL") {
            cfg.gemini_base_url = v;
        }
        if let Some(v) = get("MISTRAL_BASE_URL") {
            cfg.mistral_base_url = v;
        }
        if let Some(v) = get("LLM_MAX_TOKENS") {
            cfg.max_tokens_stream = v.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                LlmError::Config("LLM_MAX_TOKENS must be a positive integer".into())
            })?;
        }
        match (get("LLM_GATEWAY_BASE_URL"), get("LLM_GATEWAY_API_KEY")) {
            (Some(base_url), Some(api_key)) => cfg.gateway = Some(Gateway { base_url, api_key }),
            (None, None) => {}
            _ => {
                return Err(LlmError::Config(
                    "LLM_GATEWAY_BASE_URL and LLM_GATEWAY_API_KEY must be set together".into(),
                ))
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn env_overrides_defaults() {
        let cfg = LlmConfig::from_lookup(lookup(&[
            ("OPENAI_BASE_URL", "http://127.0.0.1:1/v1"),
            ("LLM_MAX_TOKENS", "256"),
            ("LLM_GATEWAY_BASE_URL", "http://gw/v1"),
            ("LLM_GATEWAY_API_KEY", "gw-key"),
        ]))
        .unwrap();
        assert_eq!(cfg.openai_base_url, "http://127.0.0.1:1/v1");
        assert_eq!(cfg.mistral_base_url, DEFAULT_MISTRAL_BASE_URL);
        assert_eq!(cfg.max_tokens_stream, 256);
        assert_eq!(cfg.max_tokens, 1000);
        let gateway = cfg.gateway.unwrap();
        assert_eq!(gateway.base_url, "http://gw/v1");
        assert!(!format!("{gateway:?}").contains("gw-key"));
    }

    #[test]
    fn rejects_bad_values() {
        assert!(LlmConfig::from_lookup(lookup(&[("LLM_MAX_TOKENS", "lots")])).is_err());
        assert!(LlmConfig::from_lookup(lookup(&[("LLM_GATEWAY_BASE_URL", "http://gw")])).is_err());
        assert_eq!(
            LlmConfig::from_lookup(lookup(&[])).unwrap(),
            LlmConfig::default()
        );
    }
}
