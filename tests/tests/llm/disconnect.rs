//! What the origin commits when the client of `/chat/stream` or `/compare/stream` disconnects
//! (the decision documented in `routes::chat` and the README): before the provider's answer is
//! complete, the upstream call is cancelled and nothing more is stored; once it is complete, the
//! answer is stored with its outbox row whether or not the client is still there.
//!
//! The origin runs with a bus nobody listens on, so every outbox row a write records stays in
//! `cache_invalidations` for the test to read. "After the provider finished but before the client
//! read the end" is made deterministic with a row lock on the user: the answer's commit bumps the
//! user's `cache_version`, so it waits on the lock while the client leaves, and proceeds after.

use std::time::Duration;

use futures::StreamExt;
use llmselect_e2e::http::header;
use llmselect_e2e::wait::eventually_true;
use llmselect_fake_llm::answer_text;
use serde_json::Value;

use super::*;

/// A NATS address nobody listens on: outbox rows are written and never relayed.
const UNREACHABLE_BUS: &str = "nats://127.0.0.1:1";

async fn stack() -> Stack {
    llm_stack_with(FakeConfig::instant(), |cfg| {
        cfg.bus.url = Some(UNREACHABLE_BUS.into());
    })
    .start()
    .await
}

/// `(id, groups, paths)` of every outbox row, by id.
async fn outbox(origin: &TestOrigin) -> Vec<(i64, Vec<String>, Vec<String>)> {
    origin
        .db
        .client()
        .await
        .query(
            "SELECT id, groups, paths FROM cache_invalidations ORDER BY id",
            &[],
        )
        .await
        .expect("outbox rows")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// The `LLMSelect-Invalidation-Id` of a response, if any.
fn invalidation_id(r: &reqwest::Response) -> Option<i64> {
    let v = header(r, "llmselect-invalidation-id");
    (!v.is_empty()).then(|| v.parse().expect("a decimal id"))
}

/// Waits until the origin counted a `cancelled` call of `provider` for `endpoint`.
async fn until_cancelled(origin: &TestOrigin, provider: &str, endpoint: &str) {
    let series = format!(
        "origin_llm_calls_total{{endpoint=\"{endpoint}\",outcome=\"cancelled\",provider=\"{provider}\"}} 1"
    );
    eventually_true("the upstream call is cancelled", || async {
        origin.metrics_text().await.lines().any(|l| l == series)
    })
    .await;
}

/// A transaction holding the row lock of user `uid`: the origin's next write to that user's
/// conversations or comparisons waits until [`release`].
async fn lock_user(origin: &TestOrigin, uid: i64) -> tokio_postgres::Client {
    let c = origin.db.client().await;
    c.batch_execute(&format!(
        "BEGIN; SELECT 1 FROM users WHERE id = {uid} FOR UPDATE"
    ))
    .await
    .expect("lock the user row");
    c
}

async fn release(lock: tokio_postgres::Client) {
    lock.batch_execute("ROLLBACK").await.expect("release");
}

/// Waits until a statement of the origin waits on the lock of [`lock_user`].
async fn until_a_write_waits(origin: &TestOrigin) {
    let db = origin.db.client().await;
    eventually_true("the origin's commit waits on the user row", || async {
        let n: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        n > 0
    })
    .await;
}

/// Longer than the origin needs to notice a closed connection (keep-alive comments every
/// 200 ms in this suite fail to write).
const NOTICE: Duration = Duration::from_millis(700);

#[tokio::test]
async fn chat_stream_left_before_the_first_token_stores_no_answer_and_no_second_outbox_row() {
    let s = stack().await;
    let origin = s.origin();
    let uid = origin.user_id("alice").await;
    let r = post(
        &s,
        "/api/v1/chat/stream",
        &chat_body("openai", "gpt-4o-slow-600", "Bye"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let pre = invalidation_id(&r).expect("the user message's outbox row");
    drop(r);
    until_cancelled(origin, "openai", "chat_stream").await;
    // Past the moment the provider would have answered.
    tokio::time::sleep(NOTICE).await;
    assert_eq!(
        stored_messages(origin).await,
        vec![("user".to_string(), "Bye".to_string())]
    );
    let rows = outbox(origin).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, pre);
    assert!(rows[0].1.contains(&format!("user:{uid}:conversations")));
}

#[tokio::test]
async fn chat_stream_left_after_the_provider_finished_stores_the_answer_and_its_invalidation() {
    let s = stack().await;
    let origin = s.origin();
    let uid = origin.user_id("alice").await;
    let r = post(
        &s,
        "/api/v1/chat/stream",
        &chat_body("openai", "gpt-4o-slow-400", "Stay"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let pre = invalidation_id(&r).expect("the user message's outbox row");
    let lock = lock_user(origin, uid).await;
    until_a_write_waits(origin).await;
    // The answer is complete and its commit is waiting: the client leaves without reading it.
    drop(r);
    tokio::time::sleep(NOTICE).await;
    release(lock).await;

    let answer = answer_text("gpt-4o-slow-400", "Stay");
    eventually_true("the answer is stored", || async {
        stored_messages(origin).await.len() == 2
    })
    .await;
    assert_eq!(
        stored_messages(origin).await,
        vec![
            ("user".to_string(), "Stay".to_string()),
            ("assistant".to_string(), answer)
        ]
    );
    let cid: uuid::Uuid = origin
        .db
        .client()
        .await
        .query_one("SELECT id FROM conversations", &[])
        .await
        .unwrap()
        .get(0);
    let rows = outbox(origin).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].0, pre);
    assert_eq!(
        rows[1].1,
        vec![
            format!("user:{uid}:conversations"),
            format!("conversation:{cid}")
        ],
        "the answer's own invalidation, committed with it"
    );
    assert_eq!(rows[1].2, vec!["/api/v1/chat/stream".to_string()]);
}

#[tokio::test]
async fn compare_stream_left_before_any_first_token_stores_nothing() {
    let s = stack().await;
    let origin = s.origin();
    let r = compare_stream(&s, "Leave", "gpt-4o-slow-600", "gemini-2.5-flash-slow-600").await;
    assert_eq!(
        invalidation_id(&r),
        None,
        "nothing is written before the headers"
    );
    assert!(first_frame_then_leave(r).await.contains("start"));
    until_cancelled(origin, "openai", "compare_stream").await;
    until_cancelled(origin, "gemini", "compare_stream").await;
    tokio::time::sleep(NOTICE).await;
    assert_eq!(origin.row_count("comparison_results").await, 0);
    assert!(outbox(origin).await.is_empty());
}

/// The results stored for the only comparison.
/// Starts `/compare/stream` of OpenAI model `openai` and Gemini model `gemini` (fake models whose
/// names set their delays), checking that it was accepted.
async fn compare_stream(s: &Stack, prompt: &str, openai: &str, gemini: &str) -> reqwest::Response {
    let body = compare_body(prompt, &[("openai", openai), ("gemini", gemini)]);
    let r = post(s, "/api/v1/compare/stream", &body).await;
    assert_eq!(r.status(), 200);
    r
}

async fn stored_results(origin: &TestOrigin) -> Vec<Value> {
    let db = origin.db.client().await;
    let results: Value = db
        .query_one("SELECT results FROM comparison_results", &[])
        .await
        .expect("one comparison")
        .get(0);
    results.as_array().unwrap().clone()
}

#[tokio::test]
async fn compare_stream_left_after_the_providers_finished_stores_the_comparison() {
    let s = stack().await;
    let origin = s.origin();
    let uid = origin.user_id("alice").await;
    let r = compare_stream(&s, "Stay", "gpt-4o-slow-300", "gemini-2.5-flash-slow-300").await;
    let lock = lock_user(origin, uid).await;
    until_a_write_waits(origin).await;
    drop(r);
    tokio::time::sleep(NOTICE).await;
    release(lock).await;

    eventually_true("the comparison is stored", || async {
        origin.row_count("comparison_results").await == 1
    })
    .await;
    let results = stored_results(origin).await;
    assert_eq!(results.len(), 2);
    for (entry, (model, provider)) in results.iter().zip([
        ("gpt-4o-slow-300", "openai"),
        ("gemini-2.5-flash-slow-300", "gemini"),
    ]) {
        assert_eq!(entry["provider"], provider);
        assert_eq!(entry["response"], answer_text(model, "Stay").as_str());
        assert!(entry.get("error").is_none(), "{entry}");
    }
    let rows = outbox(origin).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].1, vec![format!("user:{uid}:comparisons")]);
    assert_eq!(rows[0].2, vec!["/api/v1/compare/stream".to_string()]);
}

#[tokio::test]
async fn compare_stream_keeps_a_completed_answer_and_records_the_cancelled_model_in_place() {
    let s = stack().await;
    let origin = s.origin();
    let r = compare_stream(&s, "Half", "gpt-4o", "gemini-2.5-flash-slow-1200").await;
    // Read until OpenAI's answer is complete, then leave while Gemini is still silent.
    let mut body = r.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("\"event\":\"complete\"") {
        let frame = body.next().await.expect("a frame").expect("frame");
        seen.push_str(&String::from_utf8_lossy(&frame));
    }
    drop(body);
    until_cancelled(origin, "gemini", "compare_stream").await;
    eventually_true("the comparison is stored", || async {
        origin.row_count("comparison_results").await == 1
    })
    .await;
    let results = stored_results(origin).await;
    assert_eq!(
        results[0]["response"],
        answer_text("gpt-4o", "Half").as_str()
    );
    assert!(results[0].get("error").is_none());
    assert_eq!(results[1]["provider"], "gemini");
    assert_eq!(
        results[1]["error"], true,
        "cancelled: a failed entry in place"
    );
    assert_eq!(outbox(origin).await.len(), 1);
}
