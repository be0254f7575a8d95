//! stale-while-revalidate and stale-if-error (RFC 5861).

use crate::{env, env_with, get};
use llmselect_e2e::scripted_origin::Route;
use llmselect_e2e::wait::eventually_true;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_serves_stale_and_refreshes_in_background() {
    let e = env().await;
    // stale on arrival (Age = max-age) but inside its SWR window
    e.scripted().route(
        "GET",
        "/swr",
        Route::ok("v{n}")
            .cache("max-age=10, stale-while-revalidate=600")
            .header("age", "10"),
    );
    let first = get(e.proxy(), "/swr").await;
    assert_eq!(first.body, "v1");
    let stale = get(e.proxy(), "/swr").await;
    assert_eq!(stale.x_cache(), "STALE");
    assert_eq!(stale.body, "v1");
    eventually_true("background revalidation reached the origin", || async {
        e.scripted().count("/swr") == 2
    })
    .await;
    // the refreshed copy (again stale on arrival) replaced the old one
    eventually_true("refreshed copy served", || async {
        get(e.proxy(), "/swr").await.body == "v2" || e.scripted().count("/swr") > 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_swr_applies_when_the_origin_names_none() {
    let e = env_with(|c| c.cache.default_stale_while_revalidate_secs = 600).await;
    e.scripted()
        .route("GET", "/dswr", Route::ok("v{n}").cache("max-age=1"));
    assert_eq!(get(e.proxy(), "/dswr").await.x_cache(), "MISS");
    // once it expires, the next request is served stale (v1) while it is refetched
    let seen = parking_lot::Mutex::new(Vec::new());
    eventually_true("the entry expired and was served stale", || async {
        let r = get(e.proxy(), "/dswr").await;
        seen.lock().push(r.x_cache().to_string());
        r.x_cache() == "STALE" && r.body == "v1"
    })
    .await;
    let seen = seen.into_inner();
    assert!(seen.iter().all(|s| s == "HIT" || s == "STALE"), "{seen:?}");
    // must-revalidate closes the window: an expired entry is refetched, never served stale
    e.scripted().route(
        "GET",
        "/mr",
        Route::ok("m{n}").cache("max-age=1, must-revalidate"),
    );
    get(e.proxy(), "/mr").await;
    eventually_true("the must-revalidate entry expired", || async {
        let r = get(e.proxy(), "/mr").await;
        assert_ne!(r.x_cache(), "STALE");
        r.body != "m1"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_on_500() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/sie",
        Route::ok("good {n}")
            .cache("max-age=5, stale-if-error=600")
            .header("age", "5"),
    );
    assert_eq!(get(e.proxy(), "/sie").await.body, "good 1");
    e.scripted().fail_with_500(true);
    let r = get(e.proxy(), "/sie").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "good 1");
    assert_eq!(r.x_cache(), "STALE");
    assert_eq!(
        e.scripted().count("/sie"),
        2,
        "the origin was asked and failed"
    );
    // without a stored copy the 500 goes through
    let miss = get(e.proxy(), "/sie-none").await;
    assert_eq!(miss.status, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_when_the_origin_is_down() {
    let e = env_with(|c| c.cache.default_stale_if_error_secs = 600).await;
    e.scripted().route(
        "GET",
        "/down",
        Route::ok("kept {n}")
            .cache("max-age=5")
            .header("age", "5")
            .etag("\"k\""),
    );
    assert_eq!(get(e.proxy(), "/down").await.body, "kept 1");
    e.scripted().refuse_connections();
    let r = get(e.proxy(), "/down").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "kept 1");
    assert_eq!(r.x_cache(), "STALE");
    assert_eq!(
        r.header("connection"),
        "close",
        "pingora drops this client connection"
    );
    // nothing stored: the proxy's own 502, stamped
    let gone = get(e.proxy(), "/down-uncached").await;
    assert_eq!(gone.status, 502);
    assert_eq!(gone.x_cache(), "ERROR");
    assert!(gone
        .header("cache-status")
        .contains("detail=origin-unavailable"));
    assert!(!gone.header("x-response-time").is_empty());
    assert!(gone.body.contains("origin-unavailable"));
    e.scripted().accept_connections().await;
    let back = get(e.proxy(), "/down").await;
    assert_eq!(back.x_cache(), "REVALIDATED");
    assert_eq!(back.body, "kept 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_in_place_of_a_stale_entry_says_fwd_stale() {
    let e = env().await;
    // stored, but stale on arrival, and nothing allows serving it stale
    e.scripted().route(
        "GET",
        "/gone",
        Route::ok("v{n}")
            .cache("max-age=10, must-revalidate")
            .etag("\"g\"")
            .header("age", "10"),
    );
    assert_eq!(get(e.proxy(), "/gone").await.body, "v1");
    e.scripted().refuse_connections();
    let r = get(e.proxy(), "/gone").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.x_cache(), "ERROR");
    assert!(
        r.header("cache-status").contains("fwd=stale"),
        "{}",
        r.header("cache-status")
    );
    // a URL never stored says uri-miss
    let never = get(e.proxy(), "/never").await;
    assert_eq!(never.status, 502);
    assert!(never.header("cache-status").contains("fwd=uri-miss"));
}
