//! SSE passes through unbuffered and uncached.

use crate::env;
use llmselect_e2e::scripted_origin::Route;

async fn first_event_before_origin_finishes(method: reqwest::Method) {
    let e = env().await;
    e.scripted().route(
        method.as_str(),
        "/events",
        Route::ok("")
            .sse(&["one", "two", "three"], true)
            .cache("no-cache"),
    );
    let resp = e
        .proxy()
        .client
        .request(method, e.proxy().url("/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    e.scripted()
        .expect_incremental_stream(resp, &["one", "two", "three"])
        .await;
    assert_eq!(e.scripted().streams_finished(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_get_is_streamed_incrementally() {
    first_event_before_origin_finishes(reqwest::Method::GET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_post_is_streamed_incrementally() {
    first_event_before_origin_finishes(reqwest::Method::POST).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_is_never_cached_even_when_marked_cacheable() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/ev",
        Route::ok("").sse(&["a"], false).cache("max-age=600"),
    );
    for _ in 0..2 {
        let r = crate::get(e.proxy(), "/ev").await;
        assert_eq!(r.body, "data: a\n\n");
        assert_ne!(r.x_cache(), "HIT");
    }
    assert_eq!(e.scripted().count("/ev"), 2);
}
