//! `/compare`, `/compare/stream` and `/compare/analyze`.

use std::time::Instant;

use llmselect_e2e::http::{header, send, Resp};
use llmselect_fake_llm::answer_text;
use serde_json::{json, Value};

use super::*;

/// The `results` stored for comparison `id`.
async fn stored_results(origin: &TestOrigin, id: i64) -> Value {
    origin
        .db
        .client()
        .await
        .query_one(
            "SELECT results FROM comparison_results WHERE id = $1",
            &[&id],
        )
        .await
        .expect("stored comparison")
        .get(0)
}

#[tokio::test]
async fn compare_runs_concurrently_keeps_request_order_and_failures_in_place() {
    let s = setup().await;
    let origin = s.origin();
    let started = Instant::now();
    let r = post(
        &s,
        "/api/v1/compare",
        &compare_body(
            "Hi",
            &[
                ("openai", "gpt-4o-slow-400"),
                ("mistral", "mistral-small"),
                ("openai", "gpt-4o-mini-slow-400"),
                ("anthropic", "claude-fail-500"),
            ],
        ),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(r.status(), 200);
    assert!(elapsed.as_millis() < 750, "concurrent: took {elapsed:?}");
    assert!(header(&r, "cache-group-invalidation").contains(":comparisons"));
    let v: Value = r.json().await.unwrap();
    let results = v["results"].as_array().unwrap();
    let models: Vec<&str> = results
        .iter()
        .map(|e| e["model"].as_str().unwrap())
        .collect();
    assert_eq!(
        models,
        [
            "gpt-4o-slow-400",
            "mistral-small",
            "gpt-4o-mini-slow-400",
            "claude-fail-500"
        ]
    );
    assert_eq!(results[0]["response"], answer_text("gpt-4o-slow-400", "Hi"));
    assert_eq!(
        results[2]["response"],
        answer_text("gpt-4o-mini-slow-400", "Hi")
    );
    assert!(results[0]["time"].as_f64().unwrap() >= 0.4);
    assert!(results[0].get("error").is_none());
    for failed in [&results[1], &results[3]] {
        assert_eq!(failed["error"], true);
        assert_eq!(failed["tokens"], 0);
    }
    assert_eq!(v["prompt"], "Hi");

    // Stored in the same order: a vote for index 2 names the second OpenAI model.
    let id = v["id"].as_i64().unwrap();
    let stored = stored_results(origin, id).await;
    assert_eq!(&stored, &v["results"]);
    let r = post(
        &s,
        &format!("/api/v1/comparisons/{id}/vote"),
        &json!({"preferred_index": 2}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let db = origin.db.client().await;
    let voted: Value = db
        .query_one(
            "SELECT results -> preferred_index FROM comparison_results WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(voted["model"], "gpt-4o-mini-slow-400");
}

#[tokio::test]
async fn compare_stream_interleaves_events_and_saves_before_done() {
    let s = setup().await;
    let origin = s.origin();
    let started = Instant::now();
    let r = post(
        &s,
        "/api/v1/compare/stream",
        &compare_body(
            "Race",
            &[
                ("gemini", "gemini-slow-400"),
                ("mistral", "mistral-small"),
                ("openai", "gpt-4o-slow-400"),
                ("openai", "gpt-4o-stream-error"),
            ],
        ),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "cache-group-invalidation").contains(":comparisons"));
    assert_eq!(
        r.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let events = events_of(r).await;
    assert!(
        started.elapsed().as_millis() < 750,
        "concurrent: {:?}",
        started.elapsed()
    );
    assert_eq!(events[0], json!({"event": "start", "total": 4}));
    let of =
        |model: &str| -> Vec<&Value> { events.iter().filter(|e| e["model"] == model).collect() };

    let gem = of("gemini-slow-400");
    assert_eq!(gem[0]["chunk"], "");
    assert!(gem[0].get("first_chunk").is_none());
    assert_eq!(gem[1]["first_chunk"], true);
    let complete = gem.last().unwrap();
    assert_eq!(complete["event"], "complete");
    let text: String = gem[1..gem.len() - 1]
        .iter()
        .map(|e| e["chunk"].as_str().unwrap())
        .collect();
    assert_eq!(text, answer_text("gemini-slow-400", "Race"));
    assert_eq!(complete["data"]["response"], text.as_str());

    let mistral = of("mistral-small");
    assert_eq!(mistral.len(), 1, "missing key: only an error event");
    assert_eq!(mistral[0]["error"], STREAM_FAILED);
    assert_eq!(of("gpt-4o-stream-error").last().unwrap()["event"], "error");

    let done = events.last().unwrap();
    assert_eq!(done["event"], "done");
    let id = done["comparisonId"].as_i64().expect("saved");
    let stored = stored_results(origin, id).await;
    let stored = stored.as_array().unwrap();
    let models: Vec<&str> = stored
        .iter()
        .map(|e| e["model"].as_str().unwrap())
        .collect();
    assert_eq!(
        models,
        [
            "gemini-slow-400",
            "mistral-small",
            "gpt-4o-slow-400",
            "gpt-4o-stream-error"
        ]
    );
    assert_eq!(stored[1]["error"], true);
    assert_eq!(stored[3]["error"], true);
    assert_eq!(
        stored[2]["response"],
        answer_text("gpt-4o-slow-400", "Race")
    );
}

#[tokio::test]
async fn compare_stream_with_no_success_saves_nothing() {
    let s = setup().await;
    let origin = s.origin();
    let r = post(
        &s,
        "/api/v1/compare/stream",
        &compare_body("x", &[("openai", "fail-401"), ("mistral", "m")]),
    )
    .await;
    let events = events_of(r).await;
    assert_eq!(events.last().unwrap(), &json!({"event": "done"}));
    assert_eq!(origin.row_count("comparison_results").await, 0);
}

/// `POST /compare/analyze` with `body` as the stack's user; asserts nothing was stored.
async fn analyze(s: &Stack, body: Value) -> Resp {
    let req = s
        .origin()
        .request_as(s.user(), reqwest::Method::POST, "/api/v1/compare/analyze")
        .json(&body);
    let r = send(req).await;
    assert_eq!(s.origin().row_count("comparison_results").await, 0);
    r
}

fn two_outputs() -> Value {
    json!([{"model": "a", "response": "One"}, {"label": "B", "response": "Two"}])
}

#[tokio::test]
async fn analyze_asks_the_model_with_every_output() {
    let s = setup().await;
    let r = analyze(&s, json!({"outputs": two_outputs(), "prompt": "Q"})).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["provider"], "openai");
    assert_eq!(v["model"], "gpt-4o");
    assert_eq!(v["outputs_compared"], 2);
    assert!(v["analysis"].as_str().unwrap().starts_with("[gpt-4o]"));
    let sent = s
        .fake()
        .last_request("/v1/chat/completions")
        .unwrap()
        .json();
    assert_eq!(sent["messages"][0]["role"], "system");
    let user_msg = sent["messages"][1]["content"].as_str().unwrap();
    assert!(
        user_msg.contains("OUTPUT 1: a") && user_msg.contains("OUTPUT 2: B"),
        "{user_msg}"
    );
    assert!(user_msg.contains(&"=".repeat(60)));
}

#[tokio::test]
async fn a_failed_analysis_is_a_502_without_details() {
    let s = setup().await;
    let body = json!({"outputs": two_outputs(), "analysis_model": "gpt-4o-fail-500"});
    let r = analyze(&s, body).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json(), json!({"error": "Analysis failed"}));
}

#[tokio::test]
async fn analyze_needs_at_least_two_outputs() {
    let s = setup().await;
    let r = analyze(&s, json!({"prompt": "x"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json(), json!({"error": "outputs array is required"}));
    let r = analyze(&s, json!({"outputs": [{"response": "a"}]})).await;
    assert_eq!(
        r.json(),
        json!({"error": "At least 2 outputs are required for comparison"})
    );
}
