//! Errors of provider calls. None of them ever contains the API key.

use crate::redact::redact;
use crate::Provider;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// The provider answered with a non-2xx status. `payload` is its body, redacted and truncated
    /// to 500 characters.
    #[error("{} API error (HTTP {status})", provider.display_name())]
    Status {
        provider: Provider,
        status: u16,
        payload: String,
    },
    /// No byte arrived within the connect or idle-read timeout.
    #[error("{} API timed out", provider.display_name())]
    Timeout { provider: Provider },
    /// Connecting, sending or reading failed.
    #[error("{} API network error: {message}", provider.display_name())]
    Network { provider: Provider, message: String },
    /// The reply (a stream frame or a whole body) could not be understood.
    #[error("{} API sent a malformed response: {message}", provider.display_name())]
    Malformed { provider: Provider, message: String },
    /// The provider reported an error inside an otherwise successful stream.
    #[error("{} API stream error: {message}", provider.display_name())]
    Upstream { provider: Provider, message: String },
    /// The client or a request could not be built (bad base URL, key not valid in a header, ...).
    #[error("LLM client configuration error: {0}")]
    Config(String),
}

impl LlmError {
    /// The provider involved, if any.
    pub fn provider(&self) -> Option<Provider> {
        match self {
            LlmError::Status { provider, .. }
            | LlmError::Timeout { provider }
            | LlmError::Network { provider, .. }
            | LlmError::Malformed { provider, .. }
            | LlmError::Upstream { provider, .. } => Some(*provider),
            LlmError::Config(_) => None,
        }
    }

    /// The upstream HTTP status for [`LlmError::Status`].
    pub fn status_code(&self) -> Option<u16> {
        match self {
            LlmError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The client-facing message of §6.1: `"<Provider> API error"`.
    pub fn api_error_message(&self) -> String {
        match self.provider() {
            Some(p) => format!("{} API error", p.display_name()),
            None => "LLM API error".to_owned(),
        }
    }

    /// Maps a reqwest error, keeping its URL and the key out of the message.
    pub(crate) fn from_reqwest(provider: Provider, err: reqwest::Error, api_key: &str) -> Self {
        if err.is_timeout() {
            return LlmError::Timeout { provider };
        }
        let err = err.without_url();
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        LlmError::Network {
            provider,
            message: redact(&message, api_key),
        }
    }

    pub(crate) fn malformed(provider: Provider, message: impl Into<String>) -> Self {
        LlmError::Malformed {
            provider,
            message: message.into(),
        }
    }
}
