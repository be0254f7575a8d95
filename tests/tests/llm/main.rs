//! End-to-end tests of the LLM endpoints (origin-api.md §6): the origin on real PostgreSQL with its
//! provider base URLs pointed at the fake LLM, and the caching proxy in front where a test needs it.

mod chat;
mod compare;
mod metrics;
mod through_proxy;

use std::time::Duration;

use llmselect_e2e::fake_llm::{spawn_fake_llm_with, FakeConfig, FakeLlm};
use llmselect_e2e::origin::{spawn_origin, TestOrigin, TestUser};
use serde_json::Value;

/// The system key configured for OpenAI, Anthropic and Gemini (Mistral has none).
pub const SYSTEM_KEY: &str = "sys-test-key";

/// The `error` event of a failed stream.
pub const STREAM_FAILED: &str = "Streaming failed. Please check your API key and try again.";

/// An origin whose providers all point at `fake`, with system keys for every provider except
/// Mistral and a short keep-alive interval.
pub async fn origin_for(fake: &FakeLlm) -> TestOrigin {
    let root = fake.base_url();
    spawn_origin(|cfg| {
        let p = &mut cfg.providers;
        p.openai_base_url = format!("{root}/v1");
        p.mistral_base_url = format!("{root}/v1");
        p.anthropic_base_url = root.clone();
        p.gemini_base_url = format!("{root}/v1beta");
        p.openai_api_key = Some(SYSTEM_KEY.into());
        p.anthropic_api_key = Some(SYSTEM_KEY.into());
        p.gemini_api_key = Some(SYSTEM_KEY.into());
        p.mistral_api_key = None;
        p.verify_model_lists = false;
        p.sse_keepalive_ms = 200;
        p.llm_read_timeout_ms = 1_500;
    })
    .await
}

/// A fake with no artificial latency, plus an origin in front of it and a logged-in user.
pub async fn setup_with(config: FakeConfig) -> (FakeLlm, TestOrigin, TestUser) {
    let fake = spawn_fake_llm_with(config).await;
    let origin = origin_for(&fake).await;
    let user = origin.user("alice").await;
    (fake, origin, user)
}

pub async fn setup() -> (FakeLlm, TestOrigin, TestUser) {
    setup_with(FakeConfig::instant()).await
}

/// A fake whose streamed answers come in `chunks` pieces, `chunk_delay_ms` apart.
pub fn chunked(chunks: usize, chunk_delay_ms: u64) -> FakeConfig {
    FakeConfig {
        chunks,
        chunk_delay: Duration::from_millis(chunk_delay_ms),
        ..FakeConfig::instant()
    }
}

/// A chat request body with one user message.
pub fn chat_body(provider: &str, model: &str, content: &str) -> Value {
    serde_json::json!({
        "provider": provider, "model": model,
        "messages": [{"role": "user", "content": content}]
    })
}

/// A chat request body with one user message, continuing conversation `cid`.
pub fn chat_body_in(cid: &str, provider: &str, model: &str, content: &str) -> Value {
    let mut body = chat_body(provider, model, content);
    body["conversationId"] = cid.into();
    body
}

/// A `/compare` or `/compare/stream` body: `prompt` for every `(provider, model)`, in order.
pub fn compare_body(prompt: &str, providers: &[(&str, &str)]) -> Value {
    let providers: Vec<Value> = providers
        .iter()
        .map(|(provider, model)| serde_json::json!({"provider": provider, "model": model}))
        .collect();
    serde_json::json!({"prompt": prompt, "providers": providers})
}

/// POSTs `body` as `user`.
pub async fn post(
    origin: &TestOrigin,
    user: &TestUser,
    path: &str,
    body: &Value,
) -> reqwest::Response {
    origin
        .request_as(user, reqwest::Method::POST, path)
        .json(body)
        .send()
        .await
        .expect("request")
}

/// The JSON of every `data: ` line of an SSE body.
pub fn sse_events(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("event is JSON"))
        .collect()
}

/// The events of a whole SSE response.
pub async fn events_of(r: reqwest::Response) -> Vec<Value> {
    sse_events(&r.text().await.expect("SSE body"))
}

/// Reads the first frame of a streamed response, then drops the body (the client leaves).
pub async fn first_frame_then_leave(r: reqwest::Response) -> String {
    use futures::StreamExt;
    let mut body = r.bytes_stream();
    let first = body.next().await.expect("a first frame").expect("frame");
    String::from_utf8(first.to_vec()).expect("UTF-8 frame")
}

/// The `Cache-Group-Invalidation` header.
pub fn invalidation(r: &reqwest::Response) -> String {
    r.headers()
        .get("cache-group-invalidation")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// `(role, content)` of the stored messages, oldest first.
pub async fn stored_messages(origin: &TestOrigin) -> Vec<(String, String)> {
    let db = origin.db.client().await;
    db.query(
        "SELECT role, content FROM messages ORDER BY created_at, id",
        &[],
    )
    .await
    .expect("messages")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

pub async fn count(origin: &TestOrigin, table: &str) -> i64 {
    let db = origin.db.client().await;
    db.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

pub const GENEROUS: Duration = Duration::from_secs(10);
