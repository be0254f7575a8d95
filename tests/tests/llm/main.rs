//! End-to-end tests of the LLM endpoints (origin-api.md §6): the origin on real PostgreSQL with its
//! provider base URLs pointed at the fake LLM, and the caching proxy in front where a test needs it.

mod chat;
mod compare;
mod disconnect;
mod memory;
mod metrics;
mod through_proxy;

use std::time::Duration;

use llmselect_e2e::fake_llm::FakeConfig;
use llmselect_e2e::origin::{TestOrigin, TestUser};
use llmselect_e2e::stack::{Stack, StackBuilder};
use llmselect_origin::Config as OriginConfig;
use serde_json::Value;

/// The system key configured for OpenAI, Anthropic and Gemini (Mistral has none).
pub const SYSTEM_KEY: &str = "sys-test-key";

/// The `error` event of a failed stream.
pub const STREAM_FAILED: &str = "Streaming failed. Please check your API key and try again.";

/// The fake with `config`, an origin whose providers all point at it (system keys for every
/// provider except Mistral, a short keep-alive interval and read timeout) and user `alice`; a test
/// may add a proxy before starting it.
pub fn llm_stack<'a>(config: FakeConfig) -> StackBuilder<'a> {
    llm_stack_with(config, |_| {})
}

/// [`llm_stack`] with `customize` applied to the origin's configuration after the suite's own.
pub fn llm_stack_with<'a>(
    config: FakeConfig,
    customize: impl FnOnce(&mut OriginConfig) + 'a,
) -> StackBuilder<'a> {
    Stack::builder()
        .fake_llm(config)
        .origin(|cfg| {
            let p = &mut cfg.providers;
            p.openai_api_key = Some(SYSTEM_KEY.into());
            p.anthropic_api_key = Some(SYSTEM_KEY.into());
            p.gemini_api_key = Some(SYSTEM_KEY.into());
            p.mistral_api_key = None;
            p.sse_keepalive_ms = 200;
            p.llm_read_timeout_ms = 1_500;
            customize(cfg);
        })
        .user("alice")
}

/// [`llm_stack`] with `config`, started.
pub async fn setup_with(config: FakeConfig) -> Stack {
    llm_stack(config).start().await
}

/// [`llm_stack`] with a fake that has no artificial latency, started.
pub async fn setup() -> Stack {
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

/// POSTs `body` to the stack's origin as the stack's user.
pub async fn post(s: &Stack, path: &str, body: &Value) -> reqwest::Response {
    s.origin()
        .request_as(s.user(), reqwest::Method::POST, path)
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

/// Starts a streamed chat answer ("Bye" to `gpt-4o`), reads its first content frame and leaves.
pub async fn leave_a_chat_stream_after_its_first_frame(s: &Stack) {
    let r = post(
        s,
        "/api/v1/chat/stream",
        &chat_body("openai", "gpt-4o", "Bye"),
    )
    .await;
    let first = first_frame_then_leave(r).await;
    assert!(first.contains("content"));
}

/// Reads the first frame of a streamed response, then drops the body (the client leaves).
pub async fn first_frame_then_leave(r: reqwest::Response) -> String {
    use futures::StreamExt;
    let mut body = r.bytes_stream();
    let first = body.next().await.expect("a first frame").expect("frame");
    String::from_utf8(first.to_vec()).expect("UTF-8 frame")
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

pub const GENEROUS: Duration = Duration::from_secs(10);
