//! `list_models` (§5.2) against the fake.

mod common;

use common::*;
use llmselect_fake_llm::{Failure, FakeConfig};
use llmselect_llm::{LlmError, Provider};

#[tokio::test]
async fn openai_ids_are_filtered_to_chat_models() {
    let (fake, client) = setup().await;
    let ids = client
        .list_models(Provider::OpenAi, OPENAI_KEY)
        .await
        .unwrap();
    for expected in ["gpt-5.1", "gpt-4o", "o3", "o4-mini", "o1-mini"] {
        assert!(ids.iter().any(|id| id == expected), "{expected} in {ids:?}");
    }
    for excluded in [
        "whisper-1",
        "dall-e-3",
        "text-embedding-3-small",
        "mistral-large-latest",
    ] {
        assert!(
            !ids.iter().any(|id| id == excluded),
            "{excluded} in {ids:?}"
        );
    }
    let req = fake.last_request("/v1/models").unwrap();
    assert_eq!(req.method, "GET");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
}

#[tokio::test]
async fn mistral_takes_every_id() {
    let (fake, client) = setup().await;
    let ids = client
        .list_models(Provider::Mistral, MISTRAL_KEY)
        .await
        .unwrap();
    assert!(ids.iter().any(|id| id == "mistral-large-latest"));
    assert!(ids.iter().any(|id| id == "whisper-1"));
    let req = fake.last_request("/v1/models").unwrap();
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {MISTRAL_KEY}").as_str())
    );
}

#[tokio::test]
async fn gemini_ids_need_generate_content_and_lose_the_prefix() {
    let (fake, client) = setup().await;
    let ids = client
        .list_models(Provider::Gemini, GEMINI_KEY)
        .await
        .unwrap();
    assert_eq!(
        ids,
        [
            "gemini-2.5-pro",
            "gemini-2.5-flash",
            "gemini-2.5-flash-lite",
            "gemini-1.5-flash"
        ]
    );
    let req = fake.last_request("/v1beta/models").unwrap();
    assert_eq!(req.header("x-goog-api-key"), Some(GEMINI_KEY));
    assert_eq!(req.query, None);
}

#[tokio::test]
async fn anthropic_has_no_list_call() {
    let (fake, client) = setup().await;
    assert!(client
        .list_models(Provider::Anthropic, ANTHROPIC_KEY)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(fake.total_requests(), 0);
}

#[tokio::test]
async fn server_errors_are_retried_twice_then_reported() {
    let config = FakeConfig {
        failure: Some(Failure::Status(503)),
        ..FakeConfig::instant()
    };
    let (fake, client) = setup_with(config).await;
    let err = client
        .list_models(Provider::OpenAi, OPENAI_KEY)
        .await
        .unwrap_err();
    assert_eq!(err.status_code(), Some(503));
    assert_eq!(fake.requests("/v1/models"), 3);
}

#[tokio::test]
async fn unauthorized_is_not_retried() {
    let config = FakeConfig {
        failure: Some(Failure::Status(401)),
        ..FakeConfig::instant()
    };
    let (fake, client) = setup_with(config).await;
    let err = client
        .list_models(Provider::Gemini, GEMINI_KEY)
        .await
        .unwrap_err();
    assert!(
        matches!(err, LlmError::Status { status: 401, .. }),
        "{err:?}"
    );
    assert_no_key(&err, GEMINI_KEY);
    assert_eq!(fake.requests("/v1beta/models"), 1);
}
