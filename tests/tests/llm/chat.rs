//! `/chat` and `/chat/stream`.

use llmselect_e2e::http::header;
use llmselect_fake_llm::answer_text;
use serde_json::{json, Value};

use super::*;

#[tokio::test]
async fn chat_creates_conversation_stores_both_messages_and_invalidates() {
    let s = setup().await;
    let (fake, origin, user) = (s.fake(), s.origin(), s.user());
    let r = post(&s, "/api/v1/chat", &json!({
        "provider": "openai", "model": "gpt-4o",
        "messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hello"}]
    }))
    .await;
    assert_eq!(r.status(), 200);
    let groups = header(&r, "cache-group-invalidation");
    let v: Value = r.json().await.unwrap();
    let cid = v["conversationId"].as_str().unwrap();
    assert_eq!(v["response"], answer_text("gpt-4o", "Hello"));
    assert!(
        groups.contains("user:") && groups.contains(":conversations"),
        "{groups}"
    );
    assert!(
        groups.contains(&format!("\"conversation:{cid}\"")),
        "{groups}"
    );
    assert_eq!(
        stored_messages(origin).await,
        vec![
            ("user".into(), "Hello".into()),
            ("assistant".into(), answer_text("gpt-4o", "Hello"))
        ]
    );
    let sent = fake
        .last_request("/v1/chat/completions")
        .expect("the fake was called");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {SYSTEM_KEY}").as_str())
    );
    assert_eq!(
        sent.json()["messages"].as_array().unwrap().len(),
        2,
        "messages sent as given"
    );

    // The conversation list shows it with the model used.
    let list: Value = origin
        .get_as(user, "/api/v1/conversations")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["conversations"][0]["id"], cid);
}

#[tokio::test]
async fn chat_provider_errors_are_400_and_write_nothing() {
    let s = setup().await;
    let origin = s.origin();
    for (model, status) in [("gpt-4o-fail-401", 401), ("gpt-4o-fail-500", 500)] {
        let r = post(&s, "/api/v1/chat", &chat_body("openai", model, "Hi")).await;
        assert_eq!(r.status(), 400);
        assert!(r.headers().get("cache-group-invalidation").is_none());
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "bad_request");
        assert_eq!(v["message"], "OpenAI API error");
        assert_eq!(v["details"]["status_code"], status);
        assert!(!v.to_string().contains(SYSTEM_KEY));
    }
    assert_eq!(origin.row_count("conversations").await, 0);
    assert_eq!(origin.row_count("messages").await, 0);
}

#[tokio::test]
async fn chat_error_in_existing_conversation_names_it_and_keeps_it_unchanged() {
    let s = setup().await;
    let (origin, user) = (s.origin(), s.user());
    let cid = origin.create_conversation(user, Some("t")).await;
    let r = post(
        &s,
        "/api/v1/chat",
        &chat_body_in(&cid, "anthropic", "claude-fail-500", "Hi"),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"], "Anthropic API error");
    assert_eq!(v["details"]["conversationId"], cid.as_str());
    assert_eq!(origin.row_count("messages").await, 0);
    let db = origin.db.client().await;
    let provider: String = db
        .query_one("SELECT provider FROM conversations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(provider, "openai", "model switch not committed on failure");
}

#[tokio::test]
async fn chat_bodies_with_unknown_fields_or_providers_are_422() {
    let s = setup().await;
    let (fake, origin) = (s.fake(), s.origin());
    let msg = json!([{"role": "user", "content": "Hi"}]);
    let r = post(
        &s,
        "/api/v1/chat",
        &json!({"provider": "openai", "model": "m", "messages": msg, "conversation_id": "x"}),
    )
    .await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["details"]["conversation_id"], json!(["Unknown field."]));
    let r = post(&s, "/api/v1/chat", &chat_body("cohere", "m", "Hi")).await;
    assert_eq!(r.status(), 422);
    assert_eq!(fake.total_requests(), 0, "nothing reached the provider");
    assert_eq!(origin.row_count("messages").await, 0);
}

#[tokio::test]
async fn chat_with_no_key_for_the_provider_is_404() {
    let s = setup().await;
    let (fake, origin) = (s.fake(), s.origin());
    let r = post(
        &s,
        "/api/v1/chat/stream",
        &chat_body("mistral", "mistral-small", "Hi"),
    )
    .await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["message"],
        "API key for provider 'mistral' not configured"
    );
    assert_eq!(fake.total_requests(), 0, "nothing reached the provider");
    assert_eq!(origin.row_count("messages").await, 0);
}

#[tokio::test]
async fn chat_in_another_users_conversation_is_404() {
    let s = setup().await;
    let (fake, origin) = (s.fake(), s.origin());
    let other = origin.user("mallory").await;
    let cid = origin.create_conversation(&other, None).await;
    let r = post(
        &s,
        "/api/v1/chat/stream",
        &chat_body_in(&cid, "openai", "m", "Hi"),
    )
    .await;
    assert_eq!(r.status(), 404);
    assert_eq!(fake.total_requests(), 0, "nothing reached the provider");
    assert_eq!(origin.row_count("messages").await, 0);
}

#[tokio::test]
async fn chat_stream_relays_deltas_and_saves_before_done() {
    let s = setup().await;
    let origin = s.origin();
    let r = post(
        &s,
        "/api/v1/chat/stream",
        &json!({
            "provider": "gemini", "model": "gemini-2.5-flash",
            "messages": [{"role": "user", "content": "Stream please"}]
        }),
    )
    .await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/event-stream; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
    let groups = h["cache-group-invalidation"].to_str().unwrap().to_string();
    let events = events_of(r).await;
    let (last, deltas) = events.split_last().unwrap();
    assert!(deltas.len() > 1, "several content events: {events:?}");
    let text: String = deltas
        .iter()
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, answer_text("gemini-2.5-flash", "Stream please"));
    assert_eq!(last["done"], true);
    let cid = last["conversationId"].as_str().unwrap();
    assert!(groups.contains(&format!("conversation:{cid}")));
    assert_eq!(
        stored_messages(origin).await,
        vec![
            ("user".into(), "Stream please".into()),
            ("assistant".into(), text)
        ]
    );
}

#[tokio::test]
async fn chat_stream_sends_the_stored_history() {
    let s = setup().await;
    let (fake, origin, user) = (s.fake(), s.origin(), s.user());
    let cid = origin.create_conversation(user, None).await;
    origin
        .add_message(user, &cid, "user", "First question")
        .await;
    origin
        .add_message(user, &cid, "assistant", "First answer")
        .await;
    let r = post(
        &s,
        "/api/v1/chat/stream",
        &chat_body_in(&cid, "openai", "gpt-4o", "Second question"),
    )
    .await;
    let events = events_of(r).await;
    assert_eq!(events.last().unwrap()["conversationId"], cid.as_str());
    let sent = fake.last_request("/v1/chat/completions").unwrap().json();
    let contents: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        ["First question", "First answer", "Second question"]
    );
    assert_eq!(origin.row_count("messages").await, 4);
}

#[tokio::test]
async fn chat_stream_failures_end_with_an_error_event_and_keep_only_the_user_message() {
    let s = setup().await;
    let origin = s.origin();
    for model in [
        "gpt-4o-fail-500",
        "gpt-4o-fail-401",
        "gpt-4o-drop-mid-stream",
        "gpt-4o-malformed",
        "gpt-4o-stream-error",
    ] {
        let r = post(
            &s,
            "/api/v1/chat/stream",
            &chat_body("openai", model, model),
        )
        .await;
        assert_eq!(r.status(), 200, "{model}");
        let events = events_of(r).await;
        assert_eq!(
            events.last().unwrap(),
            &json!({"error": STREAM_FAILED}),
            "{model}"
        );
        assert!(events.iter().all(|e| e.get("done").is_none()), "{model}");
    }
    let stored = stored_messages(origin).await;
    assert_eq!(stored.len(), 5);
    assert!(stored.iter().all(|(role, _)| role == "user"), "{stored:?}");
}

#[tokio::test]
async fn chat_stream_sends_keepalives_while_the_provider_is_slow() {
    let s = setup().await;
    let r = post(
        &s,
        "/api/v1/chat/stream",
        &chat_body("openai", "gpt-4o-slow-700", "x"),
    )
    .await;
    let body = r.text().await.unwrap();
    assert!(body.contains(": keep-alive\n\n"), "{body}");
    assert_eq!(sse_events(&body).last().unwrap()["done"], true);
}

#[tokio::test]
async fn client_disconnect_cancels_the_stream_and_saves_no_answer() {
    let s = setup_with(chunked(6, 100)).await;
    let origin = s.origin();
    leave_a_chat_stream_after_its_first_frame(&s).await;
    // The whole answer would take about 600 ms; wait well past it before checking nothing came.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(
        stored_messages(origin).await,
        vec![("user".to_string(), "Bye".to_string())]
    );
}

/// §6.1: user key with override > system key > user key.
#[tokio::test]
async fn key_resolution_follows_the_override_rules() {
    let s = setup().await;
    let fake = s.fake();
    let auth_sent = |path: &str| {
        fake.last_request(path)
            .and_then(|r| r.header("authorization").map(str::to_string))
    };
    let chat = chat_body("openai", "gpt-4o", "k");

    assert_eq!(
        post(
            &s,
            "/api/v1/keys",
            &json!({"openai": "sk-user-openai", "mistral": "user-mistral"})
        )
        .await
        .status(),
        200
    );
    assert_eq!(post(&s, "/api/v1/chat", &chat).await.status(), 200);
    assert_eq!(
        auth_sent("/v1/chat/completions"),
        Some(format!("Bearer {SYSTEM_KEY}")),
        "system key wins"
    );

    assert_eq!(
        post(&s, "/api/v1/keys", &json!({"openai_override": true}))
            .await
            .status(),
        200
    );
    assert_eq!(post(&s, "/api/v1/chat", &chat).await.status(), 200);
    assert_eq!(
        auth_sent("/v1/chat/completions").as_deref(),
        Some("Bearer sk-user-openai"),
        "override"
    );

    let mistral = chat_body("mistral", "mistral-small", "k");
    assert_eq!(post(&s, "/api/v1/chat", &mistral).await.status(), 200);
    assert_eq!(
        auth_sent("/v1/chat/completions").as_deref(),
        Some("Bearer user-mistral"),
        "user key as fallback"
    );
}

#[tokio::test]
async fn a_provider_timeout_on_chat_is_a_400_without_status_code() {
    let s = setup().await;
    let origin = s.origin();
    let body = chat_body("openai", "gpt-4o-slow-2500", "t");
    let r = post(&s, "/api/v1/chat", &body).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"], "OpenAI API error");
    assert_eq!(v["details"]["status_code"], Value::Null);
    assert_eq!(origin.row_count("conversations").await, 0);
}

#[tokio::test]
async fn a_provider_timeout_on_chat_stream_ends_with_an_error_event() {
    let s = setup().await;
    let origin = s.origin();
    let body = chat_body("openai", "gpt-4o-slow-2500", "t");
    let r = post(&s, "/api/v1/chat/stream", &body).await;
    let events = events_of(r).await;
    assert_eq!(events.last().unwrap(), &json!({"error": STREAM_FAILED}));
    assert_eq!(
        stored_messages(origin).await,
        vec![("user".to_string(), "t".to_string())]
    );
}
