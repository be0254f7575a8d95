//! Request budgets and pool hygiene: the body read timeout (408), the handler budget (504, chat
//! exempt), and no pooled connection held while a password is hashed.

use std::time::{Duration, Instant};

use llmselect_e2e::fake_llm::FakeConfig;
use llmselect_e2e::http::{raw_exchange, raw_status, send};
use llmselect_e2e::stack::Stack;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_a_408() {
    let s = Stack::builder()
        .origin(|c| c.http.body_read_timeout_ms = 300)
        .start()
        .await;
    let addr = s.origin().addr;
    // Content-Length 100, then only 10 bytes, and the connection stays open.
    let request = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"username"
    );
    let start = Instant::now();
    let response = raw_exchange(addr, request.as_bytes(), Duration::from_secs(10)).await;
    let elapsed = start.elapsed();
    assert_eq!(raw_status(&response), 408, "{response}");
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "answered after {elapsed:?}"
    );
    let lower = response.to_ascii_lowercase();
    assert!(lower.contains("connection: close"), "{response}");
    assert!(lower.contains("cache-control: no-store"), "{response}");
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["error"], "request_timeout", "{body}");

    // A body that arrives in time is unaffected.
    let r = send(
        s.origin()
            .http
            .post(s.origin().url("/api/v1/auth/login"))
            .json(&json!({"username": "nobody", "password": "whatever-123"})),
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn a_handler_over_budget_is_a_504_and_the_pool_recovers() {
    let s = Stack::builder()
        .origin(|c| c.http.handler_timeout_ms = 300)
        .user("alice")
        .start()
        .await;
    let (o, user) = (s.origin(), s.user());
    // Another session holds a lock on `users`: the handler's user load waits for it.
    let blocker = o.db.client().await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let start = Instant::now();
    let r = send(o.get_as(user, "/api/v1/auth/me")).await;
    let elapsed = start.elapsed();
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.json()["error"], "gateway_timeout");
    assert_eq!(r.header("cache-control"), "no-store");
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "answered after {elapsed:?}"
    );
    blocker.batch_execute("COMMIT").await.unwrap();
    let r = send(o.get_as(user, "/api/v1/auth/me")).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn chat_is_exempt_from_the_handler_budget() {
    let s = Stack::builder()
        .fake_llm(FakeConfig::instant())
        .origin(|c| {
            c.http.handler_timeout_ms = 200;
            c.providers.openai_api_key = Some("sys-test-key".into());
        })
        .user("alice")
        .start()
        .await;
    let (o, user) = (s.origin(), s.user());
    let r = send(
        o.request_as(user, Method::POST, "/api/v1/chat")
            .json(&json!({
                "provider": "openai", "model": "gpt-4o-slow-600",
                "messages": [{"role": "user", "content": "Hello"}]
            })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// With one pooled connection and a slow password hash, a registration and then a login in
/// progress leave the connection free: a concurrent authenticated request is served at once
/// (it would wait for the hash and time out at the pool if the connection were held).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pooled_connection_is_held_while_a_password_is_hashed() {
    let s = Stack::builder()
        .origin(|c| {
            c.database.pool_max_size = 1;
            c.database.pool_timeout_ms = 300;
            c.auth.password_hash_log_n = SLOW_LOG_N;
        })
        .user("alice")
        .start()
        .await;
    let (o, user) = (s.origin(), s.user());
    for (what, path, body) in [
        (
            "register",
            "/api/v1/auth/register",
            json!({"username": "bob", "password": "password-bob"}),
        ),
        (
            "login",
            "/api/v1/auth/login",
            json!({"username": "bob", "password": "password-bob"}),
        ),
    ] {
        let slow = tokio::spawn(send(o.http.post(o.url(path)).json(&body)));
        // The hash has started (nothing else precedes it in these handlers but validation).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = send(o.get_as(user, "/api/v1/auth/me")).await;
        assert_eq!(
            r.status, 200,
            "GET /auth/me during a {what}'s hash: {}",
            r.body
        );
        assert!(
            !slow.is_finished(),
            "the {what} must still be hashing (raise SLOW_LOG_N on a faster machine)"
        );
        let done = slow.await.unwrap();
        assert!(done.status < 300, "{what}: {} {}", done.status, done.body);
    }
}

/// scrypt N = 2^18 (256 MiB, about a second): far longer than the pool timeout above.
const SLOW_LOG_N: u8 = 18;
