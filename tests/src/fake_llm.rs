//! The fake LLM provider for end-to-end tests: a thin re-export of `llmselect-fake-llm`.

pub use llmselect_fake_llm::{Failure, FakeConfig, FakeLlm, RecordedRequest};

/// Starts the fake on an ephemeral loopback port with no artificial delays.
pub async fn spawn_fake_llm() -> FakeLlm {
    spawn_fake_llm_with(FakeConfig::instant()).await
}

/// Starts the fake with `config` (its `listen` should stay on port 0).
pub async fn spawn_fake_llm_with(config: FakeConfig) -> FakeLlm {
    llmselect_fake_llm::spawn(config)
        .await
        .expect("start the fake LLM provider")
}
