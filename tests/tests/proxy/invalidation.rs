//! Read-your-writes: invalidation on unsafe methods (RFC 9111 §4.4), groups (RFC 9875), and
//! the purge-vs-fill race.

use crate::{env, get};
use llmselect_e2e::http::send;
use llmselect_e2e::scripted_origin::Route;
use llmselect_e2e::stack::Stack;
use llmselect_e2e::wait::eventually_true;
use std::time::Duration;

fn cached(body: &str) -> Route {
    Route::ok(body).cache("max-age=600")
}

async fn warm(e: &Stack, path: &str) {
    get(e.proxy(), path).await;
    assert_eq!(get(e.proxy(), path).await.x_cache(), "HIT", "{path} warmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_and_delete_invalidate_the_target_uri() {
    let e = env().await;
    e.scripted().route("GET", "/items/1", cached("item v{n}"));
    e.scripted()
        .route("PATCH", "/items/1", Route::ok("patched"));
    e.scripted()
        .route("DELETE", "/items/1", Route::status(204, ""));
    warm(&e, "/items/1").await;

    let patch = send(e.proxy().client.patch(e.proxy().url("/items/1"))).await;
    assert_eq!(patch.status, 200);
    let after = get(e.proxy(), "/items/1").await;
    assert_eq!(after.x_cache(), "MISS");
    assert_eq!(after.body, "item v2");

    assert_eq!(get(e.proxy(), "/items/1").await.x_cache(), "HIT");
    send(e.proxy().client.delete(e.proxy().url("/items/1"))).await;
    assert_eq!(get(e.proxy(), "/items/1").await.body, "item v3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_mutations_do_not_invalidate() {
    let e = env().await;
    e.scripted().route("GET", "/keep", cached("keep {n}"));
    e.scripted()
        .route("PATCH", "/keep", Route::status(409, "conflict"));
    warm(&e, "/keep").await;
    send(e.proxy().client.patch(e.proxy().url("/keep"))).await;
    assert_eq!(get(e.proxy(), "/keep").await.x_cache(), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_invalidates_location_and_content_location() {
    let e = env().await;
    e.scripted().route("GET", "/items", cached("list {n}"));
    e.scripted().route("GET", "/items/2", cached("two {n}"));
    e.scripted().route("GET", "/items/3", cached("three {n}"));
    e.scripted().route("GET", "/elsewhere", cached("else {n}"));
    e.scripted().route(
        "POST",
        "/items",
        Route::status(201, "created")
            .header("location", "/items/2")
            .header("content-location", "items/3"),
    );
    for p in ["/items", "/items/2", "/items/3", "/elsewhere"] {
        warm(&e, p).await;
    }
    let created = send(e.proxy().client.post(e.proxy().url("/items"))).await;
    assert_eq!(created.status, 201);
    assert_eq!(get(e.proxy(), "/items").await.x_cache(), "MISS");
    assert_eq!(get(e.proxy(), "/items/2").await.x_cache(), "MISS");
    assert_eq!(get(e.proxy(), "/items/3").await.x_cache(), "MISS");
    assert_eq!(get(e.proxy(), "/elsewhere").await.x_cache(), "HIT");

    // a Location on another origin is not ours to purge
    e.scripted().route(
        "POST",
        "/ext",
        Route::status(201, "").header("location", "http://other.example/elsewhere"),
    );
    send(e.proxy().client.post(e.proxy().url("/ext"))).await;
    assert_eq!(get(e.proxy(), "/elsewhere").await.x_cache(), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_group_invalidation_purges_every_member() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/convs",
        cached("convs {n}").header("cache-groups", "\"user:42:conversations\""),
    );
    e.scripted().route(
        "GET",
        "/convs?page=2",
        cached("p2 {n}").header("cache-groups", "\"user:42:conversations\", \"x\""),
    );
    e.scripted().route(
        "GET",
        "/legacy",
        cached("legacy {n}").header("surrogate-key", "user:42:conversations other"),
    );
    e.scripted().route(
        "GET",
        "/models",
        cached("models {n}").header("cache-groups", "\"models\""),
    );
    e.scripted().route(
        "POST",
        "/chat",
        Route::status(201, "ok").header("cache-group-invalidation", "\"user:42:conversations\""),
    );
    for p in ["/convs", "/convs?page=2", "/legacy", "/models"] {
        warm(&e, p).await;
    }
    send(e.proxy().client.post(e.proxy().url("/chat"))).await;
    for p in ["/convs", "/convs?page=2", "/legacy"] {
        assert_eq!(get(e.proxy(), p).await.x_cache(), "MISS", "{p}");
    }
    assert_eq!(get(e.proxy(), "/models").await.x_cache(), "HIT");
    // Cache-Group-Invalidation on a safe method is ignored
    e.scripted().route(
        "GET",
        "/sneaky",
        Route::ok("s")
            .cache("no-store")
            .header("cache-group-invalidation", "\"models\""),
    );
    get(e.proxy(), "/sneaky").await;
    assert_eq!(get(e.proxy(), "/models").await.x_cache(), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_started_before_a_mutation_is_not_stored() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/race",
        cached("old {n}").delay(Duration::from_millis(1500)),
    );
    e.scripted().route("PATCH", "/race", Route::ok("patched"));
    let slow = tokio::spawn(send(e.proxy().get("/race")));
    eventually_true("slow fill reached the origin", || async {
        e.scripted().count_method("GET", "/race") == 1
    })
    .await;
    let patch = send(e.proxy().client.patch(e.proxy().url("/race"))).await;
    assert_eq!(patch.status, 200);
    let slow = slow.await.unwrap();
    assert_eq!(
        slow.body, "old 1",
        "the racing client still gets its response"
    );
    let next = get(e.proxy(), "/race").await;
    assert_eq!(
        next.x_cache(),
        "MISS",
        "the pre-mutation fill was not stored"
    );
    assert_eq!(next.body, "old 2");
    assert_eq!(get(e.proxy(), "/race").await.x_cache(), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_racing_a_group_invalidation_is_not_stored() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/grace",
        cached("g {n}")
            .header("cache-groups", "\"grp\"")
            .delay(Duration::from_millis(1500)),
    );
    e.scripted().route(
        "POST",
        "/write",
        Route::ok("w").header("cache-group-invalidation", "\"grp\""),
    );
    let slow = tokio::spawn(send(e.proxy().get("/grace")));
    eventually_true("slow fill reached the origin", || async {
        e.scripted().count("/grace") == 1
    })
    .await;
    send(e.proxy().client.post(e.proxy().url("/write"))).await;
    assert_eq!(slow.await.unwrap().body, "g 1");
    assert_eq!(get(e.proxy(), "/grace").await.x_cache(), "MISS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_mutation_invalidates_again_at_end_of_body() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/conv",
        cached("conv {n}").header("cache-groups", "\"conv:1\""),
    );
    e.scripted().route(
        "POST",
        "/chat/stream",
        Route::ok("")
            .sse(&["start", "token", "done"], true)
            .header("cache-group-invalidation", "\"conv:1\""),
    );
    warm(&e, "/conv").await;
    let mut stream = e
        .proxy()
        .client
        .post(e.proxy().url("/chat/stream"))
        .send()
        .await
        .unwrap();
    let first = stream.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("start"));
    // invalidated when the headers arrived; a read during the stream re-caches pre-commit data
    let during = get(e.proxy(), "/conv").await;
    assert_eq!(during.x_cache(), "MISS");
    assert_eq!(get(e.proxy(), "/conv").await.x_cache(), "HIT");
    e.scripted().release_streams();
    while let Some(_chunk) = stream.chunk().await.unwrap() {}
    eventually_true("end-of-body invalidation", || async {
        get(e.proxy(), "/conv").await.x_cache() == "MISS"
    })
    .await;
}
