//! The LLM endpoints behind the caching proxy: SSE is relayed incrementally and never cached, and
//! the invalidation a write announces makes the next list read fresh.

use std::time::{Duration, Instant};

use futures::StreamExt;
use llmselect_e2e::http::send;
use llmselect_e2e::proxy::TestProxy;
use serde_json::Value;

use super::*;

#[tokio::test]
async fn chat_stream_arrives_incrementally_through_the_proxy() {
    let s = llm_stack(chunked(4, 150)).proxy(|_| {}).start().await;
    let (user, proxy) = (s.user(), s.proxy());
    let r = post_through(
        proxy,
        user,
        "/api/v1/chat/stream",
        &chat_body("openai", "gpt-4o", "Hi"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut text = String::new();
    let mut first_content_at = None;
    let started = Instant::now();
    while let Some(chunk) = tokio::time::timeout(GENEROUS, body.next())
        .await
        .expect("no stall")
    {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        if first_content_at.is_none() && text.contains("\"content\"") {
            first_content_at = Some(started.elapsed());
        }
    }
    let total = started.elapsed();
    let first = first_content_at.expect("content events");
    assert!(
        total - first >= Duration::from_millis(300),
        "first content at {first:?}, end at {total:?}"
    );
    assert_eq!(sse_events(&text).last().unwrap()["done"], true);
}

/// POSTs `body` as `user` through the proxy.
async fn post_through(
    proxy: &TestProxy,
    user: &TestUser,
    path: &str,
    body: &Value,
) -> reqwest::Response {
    proxy
        .request_as(user, reqwest::Method::POST, path)
        .json(body)
        .send()
        .await
        .expect("POST through the proxy")
}

/// `GET path` as `user` through the proxy, expecting a 200: the JSON body and `X-Cache`.
async fn list(proxy: &TestProxy, user: &TestUser, path: &str) -> (Value, String) {
    let r = send(proxy.request_as(user, reqwest::Method::GET, path)).await;
    assert_eq!(r.status, 200);
    (r.json(), r.x_cache().to_string())
}

/// Asserts that `path` is now served from the proxy's cache.
async fn assert_hit(proxy: &TestProxy, user: &TestUser, path: &str) {
    let (_, cache) = list(proxy, user, path).await;
    assert!(
        cache.to_ascii_uppercase().contains("HIT"),
        "cached before the write: {cache}"
    );
}

#[tokio::test]
async fn writes_through_the_proxy_make_the_next_list_fresh() {
    let s = llm_stack(FakeConfig::instant()).proxy(|_| {}).start().await;
    let (user, proxy) = (s.user(), s.proxy());
    let (before, _) = list(proxy, user, "/api/v1/conversations").await;
    assert_eq!(before["conversations"].as_array().unwrap().len(), 0);
    assert_hit(proxy, user, "/api/v1/conversations").await;

    let r = post_through(
        proxy,
        user,
        "/api/v1/chat/stream",
        &chat_body("openai", "gpt-4o", "Hi"),
    )
    .await;
    let events = events_of(r).await;
    let cid = events.last().unwrap()["conversationId"]
        .as_str()
        .unwrap()
        .to_string();
    let (after, _) = list(proxy, user, "/api/v1/conversations").await;
    assert_eq!(after["conversations"][0]["id"], cid.as_str());
    let (detail, _) = list(proxy, user, &format!("/api/v1/conversations/{cid}")).await;
    assert_eq!(
        detail["messages"].as_array().map(Vec::len),
        Some(2),
        "{detail}"
    );

    let (cmp_before, _) = list(proxy, user, "/api/v1/comparisons").await;
    assert_eq!(cmp_before["comparisons"].as_array().unwrap().len(), 0);
    let r = post_through(
        proxy,
        user,
        "/api/v1/compare",
        &compare_body("p", &[("openai", "a"), ("gemini", "b")]),
    )
    .await;
    assert_eq!(r.status(), 200);
    let (cmp_after, _) = list(proxy, user, "/api/v1/comparisons").await;
    assert_eq!(cmp_after["comparisons"].as_array().unwrap().len(), 1);
}

/// The assistant message commits after the headers left: the proxy must apply the announced
/// invalidation again when the body ends, or a detail read cached mid-stream would stay stale.
#[tokio::test]
async fn invalidation_is_reapplied_when_the_stream_ends() {
    let s = llm_stack(chunked(4, 150)).proxy(|_| {}).start().await;
    let (origin, user, proxy) = (s.origin(), s.user(), s.proxy());
    let cid = origin.create_conversation(user, None).await;
    let path = format!("/api/v1/conversations/{cid}");
    list(proxy, user, &path).await;
    assert_hit(proxy, user, &path).await;

    let r = post_through(
        proxy,
        user,
        "/api/v1/chat/stream",
        &chat_body_in(&cid, "openai", "gpt-4o", "Hi"),
    )
    .await;
    let mut body = r.bytes_stream();
    let mut text = String::new();
    let mut mid_stream = None;
    while let Some(chunk) = tokio::time::timeout(GENEROUS, body.next())
        .await
        .expect("no stall")
    {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        if mid_stream.is_none() && text.contains("\"content\"") && !text.contains("\"done\"") {
            // Re-cache the detail while only the user message is committed.
            let (detail, _) = list(proxy, user, &path).await;
            mid_stream = Some(detail["messages"].as_array().map(Vec::len));
        }
    }
    assert_eq!(mid_stream, Some(Some(1)), "read mid-stream");
    assert_eq!(sse_events(&text).last().unwrap()["done"], true);
    let (after, _) = list(proxy, user, &path).await;
    assert_eq!(
        after["messages"].as_array().map(Vec::len),
        Some(2),
        "{after}"
    );
}
