//! Provider adapters for OpenAI, Anthropic, Gemini and Mistral: chat completions, streaming and
//! model lists over their real wire formats (design §5.2, §6.1, §6.7, §6.8).
//!
//! ```no_run
//! # async fn demo() -> Result<(), llmselect_llm::LlmError> {
//! use futures::StreamExt;
//! use llmselect_llm::{ChatMessage, LlmClient, LlmConfig, Provider};
//! let client = LlmClient::new(LlmConfig::default())?;
//! let messages = [ChatMessage::user("Hello")];
//! let text = client.chat(Provider::OpenAi, "gpt-4o", "sk-...", &messages).await?;
//! let mut deltas = client.chat_stream(Provider::Gemini, "gemini-2.5-flash", "AIza...", &messages).await?;
//! while let Some(delta) = deltas.next().await {
//!     print!("{}", delta?);
//! }
//! # let _ = text; Ok(()) }
//! ```
//!
//! API keys never appear in errors or logs: provider payloads are redacted and truncated.

mod anthropic;
mod client;
mod config;
mod error;
mod gemini;
mod models;
mod openai;
mod provider;
pub mod redact;
pub mod sanitize;
pub mod sse;
mod stream;

use serde::{Deserialize, Serialize};

pub use client::LlmClient;
pub use config::{
    Gateway, LlmConfig, DEFAULT_ANTHROPIC_BASE_URL, DEFAULT_GEMINI_BASE_URL,
    DEFAULT_MISTRAL_BASE_URL, DEFAULT_OPENAI_BASE_URL,
};
pub use error::LlmError;
pub use futures::stream::BoxStream;
pub use openai::max_tokens_field;
pub use provider::{Provider, UnknownProvider};

/// One chat message as the API receives it (`role` is `system`, `user` or `assistant`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}
