//! The admin listener: purge kinds, soft purge, stats, metrics, health, and authentication.

use crate::{env, get};
use llmselect_e2e::http::send;
use llmselect_e2e::proxy::spawn_proxy;
use llmselect_e2e::scripted_origin::{Route, ScriptedOrigin};
use llmselect_e2e::stack::Stack;
use llmselect_e2e::wait::eventually_true;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_requires_the_bearer_token() {
    let e = env().await;
    for (method, path) in [
        ("GET", "/stats"),
        ("GET", "/metrics"),
        ("GET", "/health"),
        ("POST", "/purge"),
    ] {
        let url = format!("{}{path}", e.proxy().admin);
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let none = e
            .proxy()
            .client
            .request(m.clone(), &url)
            .send()
            .await
            .unwrap();
        assert_eq!(none.status(), 401, "{path} without token");
        let body: serde_json::Value = none.json().await.unwrap();
        assert!(body["error"]["message"].is_string());
        let wrong = e
            .proxy()
            .client
            .request(m.clone(), &url)
            .bearer_auth("nope")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path} with a wrong token");
    }
    let ok = e
        .proxy()
        .client
        .get(format!("{}/health", e.proxy().admin))
        .bearer_auth(&e.proxy().token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let missing = e
        .proxy()
        .client
        .get(format!("{}/nope", e.proxy().admin))
        .bearer_auth(&e.proxy().token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let (status, body) = e.proxy().purge(json!({"urls": ["/a"], "all": true})).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("exactly one"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_start_on_a_public_admin_address_without_token() {
    let origin = ScriptedOrigin::start().await;
    let mut cfg = llmselect_proxy::Config::for_upstream(&origin.url());
    cfg.admin_listen = "0.0.0.0:0".into();
    cfg.admin_token = None;
    let err = llmselect_proxy::start(cfg).err().expect("start refused");
    assert!(err.to_string().contains("admin token is required"), "{err}");
}

async fn warm_all(e: &Stack, paths: &[&str]) {
    for p in paths {
        get(e.proxy(), p).await;
        assert_eq!(get(e.proxy(), p).await.x_cache(), "HIT", "{p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_by_url_prefix_group_and_all() {
    let e = env().await;
    let paths = ["/api/v1/a", "/api/v1/b", "/api/v2/c", "/static/x"];
    for p in paths {
        e.scripted().route(
            "GET",
            p,
            Route::ok("x")
                .cache("max-age=600")
                .header("cache-groups", "\"g1\""),
        );
    }
    warm_all(&e, &paths).await;

    let (s, body) = e.proxy().purge(json!({"urls": ["/api/v1/a"]})).await;
    assert_eq!((s, body["purged"].as_u64()), (200, Some(1)));
    assert_eq!(get(e.proxy(), "/api/v1/a").await.x_cache(), "MISS");
    let absolute = format!("{}/api/v1/a", e.proxy().base);
    let (_, body) = e.proxy().purge(json!({"urls": [absolute]})).await;
    assert_eq!(body["purged"], 1);
    get(e.proxy(), "/api/v1/a").await;

    let (_, body) = e.proxy().purge(json!({"prefix": "/api/v1/"})).await;
    assert_eq!(body["purged"], 2);
    assert_eq!(get(e.proxy(), "/api/v1/b").await.x_cache(), "MISS");
    assert_eq!(get(e.proxy(), "/api/v2/c").await.x_cache(), "HIT");

    // stored now: /api/v1/b (refetched above), /api/v2/c, /static/x
    let (_, body) = e.proxy().purge(json!({"groups": ["g1"]})).await;
    assert_eq!(body["purged"], 3);
    for p in paths {
        assert_eq!(get(e.proxy(), p).await.x_cache(), "MISS", "{p}");
    }
    let (_, body) = e.proxy().purge(json!({"all": true})).await;
    assert_eq!(body["purged"], 4);
    assert_eq!(get(e.proxy(), "/static/x").await.x_cache(), "MISS");

    let stats = e.proxy().stats().await;
    assert_eq!(stats["purges"], 5);
    assert!(stats["hits"].as_u64().unwrap() >= 4);
    assert!(stats["misses"].as_u64().unwrap() >= 4);
    assert!(stats["hit_ratio"].as_f64().unwrap() > 0.0);
    assert!(stats["capacity"].as_u64().unwrap() > 0);
    assert_eq!(stats["entries"], 1, "only /static/x was fetched again");
    assert!(stats["bytes"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_purge_marks_stale_and_keeps_revalidation() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/soft",
        Route::ok("soft {n}").cache("max-age=600").etag("\"s\""),
    );
    e.scripted().route(
        "GET",
        "/swr",
        Route::ok("swr {n}").cache("max-age=600, stale-while-revalidate=600"),
    );
    warm_all(&e, &["/soft", "/swr"]).await;
    let (_, body) = e
        .proxy()
        .purge(json!({"urls": ["/soft", "/swr"], "soft": true}))
        .await;
    assert_eq!(body["purged"], 2);
    assert_eq!(body["soft"], true);
    let r = get(e.proxy(), "/soft").await;
    assert_eq!(r.x_cache(), "REVALIDATED");
    assert_eq!(r.body, "soft 1");
    let s = get(e.proxy(), "/swr").await;
    assert_eq!(s.x_cache(), "STALE");
    assert_eq!(s.body, "swr 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text() {
    let e = env().await;
    e.scripted()
        .route("GET", "/m", Route::ok("m").cache("max-age=60"));
    get(e.proxy(), "/m").await;
    get(e.proxy(), "/m").await;
    e.proxy().purge(json!({"urls": ["/m"]})).await;
    let text = e.proxy().metrics_text().await;
    for name in [
        "proxy_requests_total{cache_status=\"HIT\"}",
        "proxy_request_duration_seconds_bucket",
        "proxy_origin_fetch_duration_seconds",
        "proxy_coalesced_waiters_total",
        "proxy_purges_total{",
        "proxy_purged_entries_total{",
        "proxy_store_entries",
        "proxy_store_bytes",
        "proxy_store_evictions_total",
    ] {
        assert!(text.contains(name), "missing {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_proxy_points_at_any_upstream() {
    // the harness works with any base URL, including one with a trailing slash
    let origin = ScriptedOrigin::start().await;
    origin.route("GET", "/x", Route::ok("any").cache("max-age=60"));
    let p = spawn_proxy(&format!("{}/", origin.url()), |c| {
        c.cache.capacity_bytes = 1 << 20;
        c.cache.max_object_bytes = 64 * 1024;
    })
    .await;
    assert_eq!(get(&p, "/x").await.body, "any");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_purge_during_a_slow_fill_wins() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/api/slow",
        Route::ok("slow {n}")
            .cache("max-age=600")
            .delay(std::time::Duration::from_millis(1500)),
    );
    let slow = tokio::spawn(send(e.proxy().get("/api/slow")));
    eventually_true("the fill started", || async {
        e.scripted().count("/api/slow") == 1
    })
    .await;
    let (_, body) = e.proxy().purge(json!({"prefix": "/api/"})).await;
    assert_eq!(body["purged"], 0, "nothing was stored yet");
    assert_eq!(slow.await.unwrap().body, "slow 1");
    let next = get(e.proxy(), "/api/slow").await;
    assert_eq!(
        next.x_cache(),
        "MISS",
        "the fill that started before the purge was dropped"
    );
    assert_eq!(next.body, "slow 2");
}
