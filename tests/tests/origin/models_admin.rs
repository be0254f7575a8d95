//! The model registry (static list, provider check, in-process cache) and the admin endpoints.

use llmselect_e2e::http::header;
use llmselect_e2e::origin::spawn_origin;
use reqwest::Method;
use serde_json::json;

use crate::support::{get, get_anonymous, json, send_as, send_json, MiniHttp};

#[tokio::test]
async fn models_list_filter_and_headers() {
    let o = spawn_origin(|_| {}).await;
    let r = get_anonymous(&o, "/api/v1/models").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-control"), "public, max-age=3600");
    let cdn = header(&r, "cdn-cache-control");
    let max_age: u64 = cdn.trim_start_matches("public, max-age=").parse().unwrap();
    assert!((86_000..=86_400).contains(&max_age), "{cdn}");
    assert_eq!(header(&r, "cache-groups"), "\"all\", \"models\"");
    let etag = header(&r, "etag");
    let v = json(r).await;
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 35);
    assert_eq!(
        models[0],
        json!({"id": "gpt-5.1", "name": "GPT-5.1", "provider": "openai", "contextWindow": 250000, "maxTokens": 20000})
    );
    let providers: Vec<&str> = models
        .iter()
        .map(|m| m["provider"].as_str().unwrap())
        .collect();
    let mut dedup = providers.clone();
    dedup.dedup();
    assert_eq!(dedup, vec!["openai", "anthropic", "gemini", "mistral"]);
    assert!(models.iter().all(|m| m.get("available").is_none()));

    let r = o
        .http
        .get(o.url("/api/v1/models"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(header(&r, "cache-control"), "public, max-age=3600");

    let v = json(get_anonymous(&o, "/api/v1/models?provider=mistral").await).await;
    assert_eq!(v["models"].as_array().unwrap().len(), 3);
    let r = get_anonymous(&o, "/api/v1/models?provider=bogus").await;
    assert_eq!(r.status(), 400);
    assert_eq!(header(&r, "cache-control"), "no-store");
    assert_eq!(
        json(r).await,
        json!({"error": "bad_request", "message": "Unsupported provider: bogus"})
    );
    // A JWT, even a broken one, is ignored.
    let r = o
        .http
        .get(o.url("/api/v1/models"))
        .header("Authorization", "Bearer garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn provider_lists_are_checked_once_per_ttl_and_single_flight() {
    let upstream =
        MiniHttp::start(r#"{"data":[{"id":"gpt-4o"},{"id":"o3"},{"id":"whisper-1"}]}"#).await;
    let o = spawn_origin(|c| {
        c.providers.verify_model_lists = true;
        c.providers.openai_api_key = Some("system-key".into());
        c.providers.openai_base_url = format!("http://{}/v1", upstream.addr);
    })
    .await;
    let admin = o.user("root").await;
    let fetch = || async {
        let r = get_anonymous(&o, "/api/v1/models?provider=openai").await;
        assert_eq!(r.status(), 200);
        let cdn = header(&r, "cdn-cache-control");
        (json(r).await, cdn)
    };
    let results = futures::future::join_all((0..20).map(|_| fetch())).await;
    assert_eq!(
        upstream.hits(),
        1,
        "concurrent misses share one upstream call"
    );
    let (v, cdn) = &results[0];
    let max_age: u64 = cdn.trim_start_matches("public, max-age=").parse().unwrap();
    assert!(
        max_age <= 3600,
        "verified entries live MODEL_REGISTRY_VERIFIED_TTL_SECS: {cdn}"
    );
    let models = v["models"].as_array().unwrap();
    let avail = |id: &str| models.iter().find(|m| m["id"] == id).unwrap()["available"].clone();
    assert_eq!(avail("gpt-4o"), json!(true));
    assert_eq!(avail("o3"), json!(true));
    assert_eq!(avail("gpt-5.1"), json!(false));
    for _ in 0..30 {
        fetch().await;
    }
    assert_eq!(upstream.hits(), 1);
    // Anthropic has no list endpoint and no key here: never called, never annotated.
    let v = json(get_anonymous(&o, "/api/v1/models?provider=anthropic").await).await;
    assert!(v["models"][0].get("available").is_none());

    let r = get(&o, &admin, "/api/v1/admin/cache/stats").await;
    let stats = json(r).await;
    let reg = &stats["caches"]["model_registry"];
    assert_eq!(reg["upstream_list_calls"], json!({"openai": 1}));
    assert!(reg["hits"].as_u64().unwrap() >= 30);

    let r = send_json(
        &o,
        &admin,
        Method::POST,
        "/api/v1/admin/cache/clear",
        &json!({"scope": "models"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-group-invalidation"), "\"models\"");
    fetch().await;
    assert_eq!(
        upstream.hits(),
        2,
        "the admin clear forces exactly one more call"
    );
}

#[tokio::test]
async fn admin_endpoints_need_an_admin() {
    let o = spawn_origin(|_| {}).await;
    let admin = o.user("root").await;
    let user = o.user("pleb").await;
    for (method, path) in [
        (Method::POST, "/api/v1/admin/cache/clear"),
        (Method::GET, "/api/v1/admin/cache/stats"),
        (Method::GET, "/api/v1/admin/health/detailed"),
    ] {
        let r = send_as(&o, &user, method.clone(), path).await;
        assert_eq!(r.status(), 403, "{path}");
        assert_eq!(
            json(r).await,
            json!({"error": "authorization_error", "message": "Admin access required"})
        );
        let r = o.http.request(method, o.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401);
    }

    let r = send_as(&o, &admin, Method::POST, "/api/v1/admin/cache/clear").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-group-invalidation"), "\"all\"");
    assert_eq!(header(&r, "cache-control"), "no-store");
    let v = json(r).await;
    assert_eq!(v["message"], "All caches cleared successfully");
    assert!(v["cleared_at"].as_str().unwrap().ends_with('Z'));
    let r = send_json(
        &o,
        &admin,
        Method::POST,
        "/api/v1/admin/cache/clear",
        &json!({"scope": "everything"}),
    )
    .await;
    assert_eq!(r.status(), 422);

    let r = get(&o, &admin, "/api/v1/admin/cache/stats").await;
    assert_eq!(header(&r, "cache-control"), "private, no-store");
    let v = json(r).await;
    assert_eq!(v["cache_type"], "in-process");
    assert_eq!(v["message"], "Cache is operational");
    assert!(v["caches"]["model_registry"]["hit_rate"].is_number());

    let r = get(&o, &admin, "/api/v1/admin/health/detailed").await;
    assert_eq!(r.status(), 200);
    let v = json(r).await;
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["database"]["connected"], true);
    assert_eq!(v["database"]["pool"]["max_size"], 4);
    assert!(v["slow_queries"].is_number() && v["slow_requests"].is_number());
}

/// A failed provider check is cached for `model_registry_failure_ttl_ms` only; a successful one
/// keeps the verified TTL. Counted by what the fake provider recorded.
#[tokio::test]
async fn a_failed_provider_check_is_retried_after_the_short_failure_ttl() {
    use llmselect_e2e::fake_llm::{Failure, FakeConfig};
    use llmselect_e2e::http::send;
    use llmselect_e2e::stack::Stack;
    use std::time::Duration;

    let stack = |failure: Option<Failure>| {
        Stack::builder()
            .fake_llm(FakeConfig {
                failure,
                ..FakeConfig::instant()
            })
            .origin(|c| {
                c.providers.verify_model_lists = true;
                c.providers.openai_api_key = Some("system-key".into());
                c.cache.model_registry_failure_ttl_ms = 200;
            })
            .start()
    };
    const LIST: &str = "/v1/models";

    // 401 from the provider (no retries): the static list, cached for 200 ms.
    let s = stack(Some(Failure::Status(401))).await;
    let o = s.origin();
    let models = || send(o.http.get(o.url("/api/v1/models?provider=openai")));
    let r = models().await;
    assert_eq!(r.status, 200);
    assert!(r.json()["models"][0].get("available").is_none());
    assert_eq!(r.header("cdn-cache-control"), "public, max-age=0");
    assert_eq!(s.fake().requests(LIST), 1);
    models().await;
    assert_eq!(s.fake().requests(LIST), 1, "cached within the failure TTL");
    tokio::time::sleep(Duration::from_millis(300)).await;
    models().await;
    assert_eq!(
        s.fake().requests(LIST),
        2,
        "checked again after the failure TTL"
    );
    drop(s);

    // A successful check keeps the verified TTL (an hour), whatever the failure TTL.
    let s = stack(None).await;
    let o = s.origin();
    let r = send(o.http.get(o.url("/api/v1/models?provider=openai"))).await;
    assert_eq!(r.json()["models"][0]["available"], json!(true));
    assert_eq!(s.fake().requests(LIST), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(o.http.get(o.url("/api/v1/models?provider=openai"))).await;
    assert_eq!(s.fake().requests(LIST), 1, "a success is cached for long");
}
