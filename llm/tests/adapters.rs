//! Each adapter against the fake: what it sends and what it reads back.

mod common;

use common::*;
use llmselect_fake_llm::answer_text;
use llmselect_llm::{ChatMessage, Gateway, LlmClient, LlmConfig, Provider};
use serde_json::json;

fn conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("Be brief."),
        ChatMessage::user("First question"),
        ChatMessage::assistant("First answer"),
        ChatMessage::user("  Hello\u{0} there\u{7f} \n"),
    ]
}

/// The sanitised messages as OpenAI-shaped JSON.
fn sanitized_openai_messages() -> serde_json::Value {
    json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "First answer"},
        {"role": "user", "content": "Hello there"},
    ])
}

#[tokio::test]
async fn openai_non_streaming_request_and_answer() {
    let (fake, client) = setup().await;
    let text = client
        .chat(Provider::OpenAi, "gpt-4o", OPENAI_KEY, &conversation())
        .await
        .unwrap();
    assert_eq!(text, answer_text("gpt-4o", "Hello there"));

    let req = fake.last_request("/v1/chat/completions").unwrap();
    assert_eq!(req.method, "POST");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.json(),
        json!({"model": "gpt-4o", "messages": sanitized_openai_messages(), "max_tokens": 1000})
    );
    assert_eq!(fake.requests("/v1/chat/completions"), 1);
}

#[tokio::test]
async fn openai_reasoning_models_use_max_completion_tokens() {
    let (fake, client) = setup().await;
    for model in ["gpt-5.1", "o1-mini", "o3", "o4-mini"] {
        client
            .chat(
                Provider::OpenAi,
                model,
                OPENAI_KEY,
                &[ChatMessage::user("hi")],
            )
            .await
            .unwrap();
        let body = fake.last_request("/v1/chat/completions").unwrap().json();
        assert_eq!(body["max_completion_tokens"], 1000, "{model}");
        assert!(body.get("max_tokens").is_none(), "{model}");
    }
    for model in ["gpt-4.1", "gpt-3.5-turbo"] {
        let stream = client
            .chat_stream(
                Provider::OpenAi,
                model,
                OPENAI_KEY,
                &[ChatMessage::user("hi")],
            )
            .await
            .unwrap();
        collect(stream).await;
        let body = fake.last_request("/v1/chat/completions").unwrap().json();
        assert_eq!(body["max_tokens"], STREAM_MAX_TOKENS, "{model}");
        assert!(body.get("max_completion_tokens").is_none(), "{model}");
    }
}

#[tokio::test]
async fn openai_streaming_deltas_and_request() {
    let (fake, client) = setup().await;
    let deltas = stream_deltas(&client, Provider::OpenAi, "o3", OPENAI_KEY, &conversation()).await;
    assert_eq!(deltas.len(), 8, "the fake's default is 8 chunks");
    assert!(deltas.iter().all(|d| !d.is_empty()));
    assert_eq!(deltas.concat(), answer_text("o3", "Hello there"));

    let req = fake.last_request("/v1/chat/completions").unwrap();
    assert_eq!(req.header("accept"), Some("text/event-stream"));
    assert_eq!(
        req.json(),
        json!({"model": "o3", "messages": sanitized_openai_messages(),
               "max_completion_tokens": STREAM_MAX_TOKENS, "stream": true})
    );
}

#[tokio::test]
async fn mistral_uses_the_openai_format_with_max_tokens() {
    let (fake, client) = setup().await;
    // An id that would take max_completion_tokens at OpenAI: Mistral always takes max_tokens.
    let model = "o1-mistral-like";
    let text = client
        .chat(Provider::Mistral, model, MISTRAL_KEY, &conversation())
        .await
        .unwrap();
    assert_eq!(text, answer_text(model, "Hello there"));
    let req = fake.last_request("/v1/chat/completions").unwrap();
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {MISTRAL_KEY}").as_str())
    );
    assert_eq!(
        req.json(),
        json!({"model": model, "messages": sanitized_openai_messages(), "max_tokens": 1000})
    );

    let text = stream_deltas(
        &client,
        Provider::Mistral,
        "mistral-small-latest",
        MISTRAL_KEY,
        &conversation(),
    )
    .await
    .concat();
    assert_eq!(text, answer_text("mistral-small-latest", "Hello there"));
    let body = fake.last_request("/v1/chat/completions").unwrap().json();
    assert_eq!(body["max_tokens"], STREAM_MAX_TOKENS);
    assert_eq!(body["stream"], true);
}

#[tokio::test]
async fn anthropic_non_streaming_request_and_answer() {
    let (fake, client) = setup().await;
    let model = "claude-sonnet-4-5-20250929";
    let text = client
        .chat(Provider::Anthropic, model, ANTHROPIC_KEY, &conversation())
        .await
        .unwrap();
    assert_eq!(text, answer_text(model, "Hello there"));

    let req = fake.last_request("/v1/messages").unwrap();
    assert_eq!(req.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(req.header("authorization"), None);
    assert_eq!(
        req.json(),
        json!({
            "model": model,
            "max_tokens": 1000,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": "First question"},
                {"role": "assistant", "content": "First answer"},
                {"role": "user", "content": "Hello there"},
            ]
        })
    );
}

#[tokio::test]
async fn anthropic_streaming_deltas_and_request() {
    let (fake, client) = setup().await;
    let model = "claude-haiku-4-5-20251001";
    let messages = [ChatMessage::user("Stream please")];
    let deltas = stream_deltas(
        &client,
        Provider::Anthropic,
        model,
        ANTHROPIC_KEY,
        &messages,
    )
    .await;
    assert_eq!(deltas.len(), 8);
    assert_eq!(deltas.concat(), answer_text(model, "Stream please"));
    let body = fake.last_request("/v1/messages").unwrap().json();
    assert_eq!(
        body,
        json!({"model": model, "max_tokens": STREAM_MAX_TOKENS, "stream": true,
               "messages": [{"role": "user", "content": "Stream please"}]})
    );
}

#[tokio::test]
async fn gemini_non_streaming_request_and_answer() {
    let (fake, client) = setup().await;
    let model = "gemini-2.5-pro";
    let text = client
        .chat(Provider::Gemini, model, GEMINI_KEY, &conversation())
        .await
        .unwrap();
    assert_eq!(text, answer_text(model, "Hello there"));

    let req = fake
        .last_request("/v1beta/models/gemini-2.5-pro:generateContent")
        .unwrap();
    assert_eq!(req.header("x-goog-api-key"), Some(GEMINI_KEY));
    assert_eq!(req.query, None, "the key must not travel in the URL");
    assert_eq!(
        req.json(),
        json!({"contents": [
            {"role": "user", "parts": [{"text": "First question"}]},
            {"role": "model", "parts": [{"text": "First answer"}]},
            {"role": "user", "parts": [{"text": "Hello there"}]},
        ]})
    );
}

#[tokio::test]
async fn gemini_streaming_deltas_and_request() {
    let (fake, client) = setup().await;
    let model = "gemini-2.5-flash";
    let deltas = stream_deltas(
        &client,
        Provider::Gemini,
        model,
        GEMINI_KEY,
        &[ChatMessage::user("Hi")],
    )
    .await;
    assert_eq!(deltas.len(), 8);
    assert_eq!(deltas.concat(), answer_text(model, "Hi"));
    let req = fake
        .last_request("/v1beta/models/gemini-2.5-flash:streamGenerateContent")
        .unwrap();
    assert_eq!(req.query.as_deref(), Some("alt=sse"));
    assert_eq!(req.header("x-goog-api-key"), Some(GEMINI_KEY));
    assert_eq!(
        req.json(),
        json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]})
    );
}

#[tokio::test]
async fn chunks_arriving_slowly_still_assemble() {
    // A real gap between chunks means one SSE frame per TCP read, unlike the instant default.
    let config = llmselect_fake_llm::FakeConfig {
        chunk_delay: std::time::Duration::from_millis(5),
        chunks: 5,
        ..llmselect_fake_llm::FakeConfig::instant()
    };
    let (_fake, client) = setup_with(config).await;
    for provider in Provider::ALL {
        let model = model_for(provider, "");
        let deltas = stream_deltas(
            &client,
            provider,
            &model,
            key_for(provider),
            &[ChatMessage::user("x")],
        )
        .await;
        assert_eq!(deltas.len(), 5, "{provider}");
        assert_eq!(deltas.concat(), answer_text(&model, "x"), "{provider}");
    }
}

#[tokio::test]
async fn gateway_mode_sends_every_provider_to_one_openai_endpoint() {
    let fake = spawn_fake(llmselect_fake_llm::FakeConfig::instant()).await;
    let cfg = LlmConfig {
        gateway: Some(Gateway {
            base_url: format!("{}/v1", fake.base_url()),
            api_key: "gateway-key-123456".into(),
        }),
        max_tokens_stream: STREAM_MAX_TOKENS,
        // Direct URLs that would fail, to prove they are not used.
        anthropic_base_url: "http://127.0.0.1:9".into(),
        ..LlmConfig::default()
    };
    let client = LlmClient::new(cfg).unwrap();
    assert!(client.gateway_mode());
    let model = "claude-haiku-4-5-20251001";
    let text = client
        .chat(
            Provider::Anthropic,
            model,
            "user-key-ignored",
            &conversation(),
        )
        .await
        .unwrap();
    assert_eq!(text, answer_text(model, "Hello there"));
    let req = fake.last_request("/v1/chat/completions").unwrap();
    assert_eq!(
        req.header("authorization"),
        Some("Bearer gateway-key-123456")
    );
    assert_eq!(
        req.json(),
        json!({"model": model, "messages": sanitized_openai_messages(), "max_tokens": STREAM_MAX_TOKENS})
    );
    let text = stream_deltas(
        &client,
        Provider::Gemini,
        "gemini-2.5-flash",
        "",
        &[ChatMessage::user("Hi")],
    )
    .await
    .concat();
    assert_eq!(text, answer_text("gemini-2.5-flash", "Hi"));
    assert_eq!(fake.requests("/v1/chat/completions"), 2);
    assert_eq!(fake.total_requests(), 2);
}
