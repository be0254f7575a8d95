//! Shared set-up: a fake provider and a client pointed at it.

#![allow(dead_code)]

use std::time::Duration;

use futures::StreamExt;
use llmselect_fake_llm::{FakeConfig, FakeLlm};
use llmselect_llm::{BoxStream, ChatMessage, LlmClient, LlmConfig, LlmError, Provider};

pub const OPENAI_KEY: &str = "sk-test-OPENAIKEY1234567890";
pub const ANTHROPIC_KEY: &str = "sk-ant-test-ANTHROPICKEY12345";
pub const GEMINI_KEY: &str = "AIzaSyTEST-GEMINIKEY1234567";
/// No recognisable prefix: only redaction of the exact key can hide it.
pub const MISTRAL_KEY: &str = "plainmistralkey0123456789";

/// Streaming `max_tokens`, distinct from the non-streaming 1000 so tests can tell them apart.
pub const STREAM_MAX_TOKENS: u32 = 321;

pub fn key_for(provider: Provider) -> &'static str {
    match provider {
        Provider::OpenAi => OPENAI_KEY,
        Provider::Anthropic => ANTHROPIC_KEY,
        Provider::Gemini => GEMINI_KEY,
        Provider::Mistral => MISTRAL_KEY,
    }
}

/// A model id for `provider` carrying the fake's scenario `marker` (may be empty).
pub fn model_for(provider: Provider, marker: &str) -> String {
    let base = match provider {
        Provider::OpenAi => "gpt-4o",
        Provider::Anthropic => "claude-haiku-4-5-20251001",
        Provider::Gemini => "gemini-2.5-flash",
        Provider::Mistral => "mistral-small-latest",
    };
    if marker.is_empty() {
        base.to_owned()
    } else {
        format!("{base}-{marker}")
    }
}

/// The path the fake records for a chat call.
pub fn chat_path(provider: Provider, model: &str, stream: bool) -> String {
    match provider {
        Provider::OpenAi | Provider::Mistral => "/v1/chat/completions".to_owned(),
        Provider::Anthropic => "/v1/messages".to_owned(),
        Provider::Gemini if stream => format!("/v1beta/models/{model}:streamGenerateContent"),
        Provider::Gemini => format!("/v1beta/models/{model}:generateContent"),
    }
}

pub fn test_config(fake: &FakeLlm) -> LlmConfig {
    LlmConfig {
        max_tokens_stream: STREAM_MAX_TOKENS,
        retry_backoff: Duration::from_millis(1),
        ..LlmConfig::for_local_fake(&fake.base_url())
    }
}

pub async fn setup() -> (FakeLlm, LlmClient) {
    setup_with(FakeConfig::instant()).await
}

pub async fn setup_with(config: FakeConfig) -> (FakeLlm, LlmClient) {
    let fake = spawn_fake(config).await;
    let client = LlmClient::new(test_config(&fake)).expect("client");
    (fake, client)
}

pub async fn spawn_fake(config: FakeConfig) -> FakeLlm {
    llmselect_fake_llm::spawn(config).await.expect("spawn fake")
}

/// Every item of a delta stream, in order.
pub async fn collect(
    stream: BoxStream<'static, Result<String, LlmError>>,
) -> Vec<Result<String, LlmError>> {
    stream.collect().await
}

/// Streams a chat whose opening and every item must succeed; returns the deltas in order.
pub async fn stream_deltas(
    client: &LlmClient,
    provider: Provider,
    model: &str,
    api_key: &str,
    messages: &[ChatMessage],
) -> Vec<String> {
    let stream = client
        .chat_stream(provider, model, api_key, messages)
        .await
        .unwrap();
    collect(stream)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// Asserts that no rendering of `err` contains `key`.
pub fn assert_no_key(err: &LlmError, key: &str) {
    assert!(
        !format!("{err}").contains(key),
        "Display leaks the key: {err}"
    );
    assert!(
        !format!("{err:?}").contains(key),
        "Debug leaks the key: {err:?}"
    );
}
