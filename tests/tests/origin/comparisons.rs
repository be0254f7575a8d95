//! Comparisons: create, list (offset and cursor), vote, delete, isolation, ETag and groups.

use llmselect_e2e::http::header;
use llmselect_e2e::origin::{TestOrigin, TestUser};
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{
    get, get_if_none_match, get_json, ints, json, origin_with_user, send_as, send_json, statements,
};

fn results() -> Value {
    json!([
        {"provider": "openai", "model": "gpt-4o", "response": "Hello", "time": 1.84, "tokens": 1},
        {"provider": "mistral", "model": "mistral-small-latest", "response": "Provider request failed. Please check your API key and try again.", "time": 0, "tokens": 0, "error": true}
    ])
}

/// `POST /api/v1/comparisons` of `prompt` with [`results`].
async fn post_comparison(o: &TestOrigin, u: &TestUser, prompt: &str) -> reqwest::Response {
    send_json(
        o,
        u,
        Method::POST,
        "/api/v1/comparisons",
        &json!({"prompt": prompt, "results": results()}),
    )
    .await
}

async fn create(o: &TestOrigin, u: &TestUser, prompt: &str) -> Value {
    let r = post_comparison(o, u, prompt).await;
    assert_eq!(r.status(), 201);
    json(r).await
}

/// `POST /api/v1/comparisons/{id}/vote` with `body`.
async fn vote(o: &TestOrigin, u: &TestUser, id: i64, body: &Value) -> reqwest::Response {
    send_json(
        o,
        u,
        Method::POST,
        &format!("/api/v1/comparisons/{id}/vote"),
        body,
    )
    .await
}

/// `DELETE /api/v1/comparisons/{id}`.
async fn delete(o: &TestOrigin, u: &TestUser, id: i64) -> reqwest::Response {
    send_as(o, u, Method::DELETE, &format!("/api/v1/comparisons/{id}")).await
}

#[tokio::test]
async fn create_list_vote_delete() {
    let s = origin_with_user("alice").await;
    let (o, u) = (s.origin(), s.user());
    let uid = o.user_id("alice").await;
    let r = post_comparison(o, u, "p1").await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        header(&r, "cache-group-invalidation"),
        format!("\"user:{uid}:comparisons\"")
    );
    let c1 = json(r).await;
    assert_eq!(c1["prompt"], "p1");
    assert_eq!(c1["results"], results());
    assert_eq!(c1["preferred_index"], json!(null));
    assert!(c1["created_at"].as_str().unwrap().ends_with('Z'));
    let c2 = create(o, u, "p2").await;

    let r = get(o, u, "/api/v1/comparisons?limit=5&offset=0").await;
    assert_eq!(r.status(), 200);
    assert_eq!(statements(&r), 2, "auth + one list statement");
    assert_eq!(
        header(&r, "cache-groups"),
        format!("\"all\", \"user:{uid}\", \"user:{uid}:comparisons\"")
    );
    assert_eq!(header(&r, "cache-control"), "private, no-cache");
    let etag = header(&r, "etag");
    let l = json(r).await;
    assert_eq!(l["limit"], 5);
    assert_eq!(l["offset"], 0);
    assert_eq!(
        ints(&l, "comparisons", "id"),
        vec![c2["id"].as_i64().unwrap(), c1["id"].as_i64().unwrap()]
    );

    let r = get_if_none_match(o, u, "/api/v1/comparisons?limit=5&offset=0", &etag).await;
    assert_eq!(r.status(), 304);

    let id = c1["id"].as_i64().unwrap();
    let r = vote(o, u, id, &json!({"preferred_index": 1})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "cache-group-invalidation"),
        format!("\"user:{uid}:comparisons\"")
    );
    let voted = json(r).await;
    assert_eq!(voted["preferred_index"], 1);
    assert_eq!(voted["id"], id);

    let r = get_if_none_match(o, u, "/api/v1/comparisons?limit=5&offset=0", &etag).await;
    assert_eq!(r.status(), 200, "a vote changes the list ETag");

    let r = vote(o, u, id, &json!({"preferred_index": 2})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        json(r).await,
        json!({"error": "bad_request", "message": "Invalid preferred_index: out of valid range"})
    );
    for bad in [
        json!({"preferred_index": -1}),
        json!({"preferred_index": "1"}),
        json!({"preferred_index": 0, "x": 1}),
        json!({}),
    ] {
        let r = vote(o, u, id, &bad).await;
        assert_eq!(r.status(), 422, "{bad}");
    }

    let r = delete(o, u, id).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "cache-group-invalidation"),
        format!("\"user:{uid}:comparisons\"")
    );
    assert_eq!(
        json(r).await,
        json!({"message": "Comparison deleted successfully"})
    );
    let r = delete(o, u, id).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        json(r).await,
        json!({"error": "not_found", "message": "Comparison not found"})
    );
}

#[tokio::test]
async fn comparisons_are_isolated() {
    let s = origin_with_user("alice").await;
    let (o, a) = (s.origin(), s.user());
    let b = o.user("bob").await;
    let c = create(o, a, "private").await;
    let id = c["id"].as_i64().unwrap();
    let r = vote(o, &b, id, &json!({"preferred_index": 0})).await;
    assert_eq!(r.status(), 404);
    let r = delete(o, &b, id).await;
    assert_eq!(r.status(), 404);
    let l = get_json(o, &b, "/api/v1/comparisons").await;
    assert_eq!(l["comparisons"], json!([]));
    let l = get_json(o, a, "/api/v1/comparisons").await;
    assert_eq!(l["comparisons"][0]["preferred_index"], json!(null));
}

#[tokio::test]
async fn list_parameters_and_cursor() {
    let s = origin_with_user("carl").await;
    let (o, u) = (s.origin(), s.user());
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(create(o, u, &format!("p{i}")).await["id"].as_i64().unwrap());
    }
    ids.reverse();
    let l = get_json(o, u, "/api/v1/comparisons?limit=abc&offset=-3").await;
    assert_eq!(
        (l["limit"].as_i64(), l["offset"].as_i64()),
        (Some(50), Some(0))
    );
    let l = get_json(o, u, "/api/v1/comparisons?limit=1000").await;
    assert_eq!(l["limit"], 100);
    let l = get_json(o, u, "/api/v1/comparisons?limit=3&offset=3").await;
    assert_eq!(ints(&l, "comparisons", "id"), ids[3..6].to_vec());

    let mut seen = Vec::new();
    let mut url = "/api/v1/comparisons?limit=3".to_string();
    loop {
        let r = get(o, u, &url).await;
        assert_eq!(statements(&r), 2);
        let l = json(r).await;
        seen.extend(ints(&l, "comparisons", "id"));
        // A new comparison between pages does not disturb the walk.
        create(o, u, "late").await;
        match l["next_cursor"].as_str() {
            Some(c) => url = format!("/api/v1/comparisons?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let r = get(o, u, "/api/v1/comparisons?cursor=garbage").await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn create_validates_nested_results() {
    let s = origin_with_user("dora").await;
    let (o, u) = (s.origin(), s.user());
    let body = json!({"prompt": "", "results": [
        {"provider": "openai", "model": "gpt-4o", "response": "ok", "time": 1, "tokens": 1},
        {"provider": "nope", "model": "m", "response": "r", "time": "slow", "tokens": 1, "extra": 1}
    ]});
    let r = send_json(o, u, Method::POST, "/api/v1/comparisons", &body).await;
    assert_eq!(r.status(), 422);
    let d = json(r).await["details"].clone();
    assert_eq!(d["prompt"], json!(["Length must be between 1 and 100000."]));
    assert_eq!(
        d["results"]["1"]["provider"],
        json!(["Must be one of: openai, anthropic, gemini, mistral."])
    );
    assert_eq!(d["results"]["1"]["time"], json!(["Not a valid number."]));
    assert_eq!(d["results"]["1"]["extra"], json!(["Unknown field."]));
    assert!(d["results"].get("0").is_none());
    let n = o.row_count("comparison_results").await;
    assert_eq!(n, 0);
}
