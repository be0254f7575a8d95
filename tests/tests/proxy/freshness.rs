//! Freshness, Age, validation and request directives.

use crate::{env, get};
use llmselect_e2e::http::{send, Resp};
use llmselect_e2e::scripted_origin::Route;
use llmselect_e2e::stack::Stack;

/// `max-age=60` with `Age: 60` arrives already stale: stored (it has a validator) and
/// revalidated on the next use, without waiting for a clock.
fn stale_on_arrival(body: &str) -> Route {
    Route::ok(body)
        .cache("max-age=60")
        .header("age", "60")
        .header("x-version", "{n}")
        .etag("\"v1\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_entry_is_revalidated_and_304_updates_all_headers() {
    let e = env().await;
    e.scripted().route("GET", "/v", stale_on_arrival("body-v1"));

    let first = get(e.proxy(), "/v").await;
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(first.header("x-version"), "1");

    let second = get(e.proxy(), "/v").await;
    assert_eq!(second.x_cache(), "REVALIDATED");
    assert_eq!(second.body, "body-v1");
    assert!(
        second
            .header("cache-status")
            .starts_with("llmselect-edge; fwd=stale; fwd-status=304; stored"),
        "{}",
        second.header("cache-status")
    );
    // RFC 9111 §4.3.4: the 304's fields replace the stored ones (pingora alone keeps x-version 1)
    assert_eq!(second.header("x-version"), "2");
    let seen = e.scripted().last("/v").unwrap();
    assert_eq!(seen.headers["if-none-match"], "\"v1\"");
    assert_eq!(e.scripted().count("/v"), 2);

    let third = get(e.proxy(), "/v").await;
    assert_eq!(third.x_cache(), "REVALIDATED");
    assert_eq!(third.header("x-version"), "3");
}

fn ttl_part(r: &Resp) -> String {
    r.header("cache-status")
        .split("; ")
        .find(|p| p.starts_with("ttl="))
        .map(|p| format!("; {p}"))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_conditional_requests_get_304_from_cache() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/c",
        Route::ok("cond").cache("max-age=60").etag("\"e1\""),
    );
    assert_eq!(get(e.proxy(), "/c").await.x_cache(), "MISS");

    let nm = send(e.proxy().get("/c").header("if-none-match", "\"e1\"")).await;
    assert_eq!(nm.status, 304);
    assert_eq!(nm.x_cache(), "HIT");
    assert_eq!(nm.body, "");
    let other = send(e.proxy().get("/c").header("if-none-match", "\"other\"")).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.body, "cond");
    assert_eq!(e.scripted().count("/c"), 1);

    // on a miss the 200 is stored and the client still gets its 304
    e.scripted().route(
        "GET",
        "/c2",
        Route::ok("cond2").cache("max-age=60").etag("\"e2\""),
    );
    let miss = send(e.proxy().get("/c2").header("if-none-match", "\"e2\"")).await;
    assert_eq!(miss.status, 304);
    assert_eq!(get(e.proxy(), "/c2").await.x_cache(), "HIT");
    assert_eq!(e.scripted().count("/c2"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_age_reduces_freshness() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/age",
        Route::ok("aged").cache("max-age=100").header("age", "30"),
    );
    get(e.proxy(), "/age").await;
    let hit = get(e.proxy(), "/age").await;
    assert_eq!(hit.x_cache(), "HIT");
    let age: u64 = hit.header("age").parse().unwrap();
    assert!((30..=32).contains(&age), "age {age}");
    let ttl: i64 = ttl_part(&hit).trim_start_matches("; ttl=").parse().unwrap();
    assert!((67..=70).contains(&ttl), "ttl {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdn_cache_control_wins_over_cache_control_and_is_not_rewritten() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/cdn",
        Route::ok("cdn")
            .cache("private, no-store")
            .header("cdn-cache-control", "max-age=120"),
    );
    assert_eq!(get(e.proxy(), "/cdn").await.x_cache(), "MISS");
    let hit = get(e.proxy(), "/cdn").await;
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(hit.header("cache-control"), "private, no-store");
    assert_eq!(e.scripted().count("/cdn"), 1);
}

/// `/d`: fresh for a minute with an ETag, stored and hit once.
async fn stored_d(e: &Stack) {
    e.scripted().route(
        "GET",
        "/d",
        Route::ok("d{n}").cache("max-age=60").etag("\"d\""),
    );
    assert_eq!(get(e.proxy(), "/d").await.x_cache(), "MISS");
    assert_eq!(get(e.proxy(), "/d").await.x_cache(), "HIT");
}

/// `GET path` with `Cache-Control: directives`.
async fn get_with(e: &Stack, path: &str, directives: &str) -> Resp {
    send(e.proxy().get(path).header("cache-control", directives)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cache_pragma_and_max_age_0_force_a_revalidation() {
    let e = env().await;
    stored_d(&e).await;
    assert_eq!(
        get_with(&e, "/d", "no-cache").await.x_cache(),
        "REVALIDATED"
    );
    assert_eq!(e.scripted().count("/d"), 2);
    assert_eq!(
        e.scripted().last("/d").unwrap().headers["if-none-match"],
        "\"d\""
    );
    let pragma = send(e.proxy().get("/d").header("pragma", "no-cache")).await;
    assert_eq!(pragma.x_cache(), "REVALIDATED");
    assert_eq!(
        get_with(&e, "/d", "max-age=0").await.x_cache(),
        "REVALIDATED"
    );
    assert_eq!(e.scripted().count("/d"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_max_age_and_min_fresh_bound_what_a_hit_may_be() {
    let e = env().await;
    stored_d(&e).await;
    assert_eq!(get_with(&e, "/d", "max-age=600").await.x_cache(), "HIT");
    assert_eq!(
        get_with(&e, "/d", "min-fresh=3600").await.x_cache(),
        "REVALIDATED"
    );
    assert_eq!(e.scripted().count("/d"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_stale_accepts_a_stale_copy_within_its_bound() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/old",
        Route::ok("old {n}")
            .cache("max-age=10")
            .header("age", "20")
            .etag("\"o\""),
    );
    assert_eq!(get(e.proxy(), "/old").await.x_cache(), "MISS");
    let stale_ok = get_with(&e, "/old", "max-stale=600").await;
    assert_eq!(stale_ok.x_cache(), "HIT");
    assert_eq!(stale_ok.body, "old 1");
    let too_stale = get_with(&e, "/old", "max-stale=1").await;
    assert_eq!(too_stale.x_cache(), "REVALIDATED");
    assert_eq!(e.scripted().count("/old"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_if_cached_serves_what_is_stored_and_never_contacts_the_origin() {
    let e = env().await;
    stored_d(&e).await;
    assert_eq!(get_with(&e, "/d", "only-if-cached").await.status, 200);
    let absent = get_with(&e, "/never", "only-if-cached").await;
    assert_eq!(absent.status, 504);
    assert_eq!(absent.x_cache(), "ERROR");
    assert_eq!(e.scripted().count("/never"), 0);
    assert_eq!(e.scripted().count("/d"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncacheable_responses_are_not_stored() {
    let e = env().await;
    let cases = [
        ("/ns", Route::ok("x").cache("no-store")),
        ("/pv", Route::ok("x").cache("private, max-age=60")),
        (
            "/vs",
            Route::ok("x").cache("max-age=60").header("vary", "*"),
        ),
        (
            "/sc",
            Route::ok("x")
                .cache("max-age=60")
                .header("set-cookie", "a=b"),
        ),
        ("/none", Route::ok("x")),
    ];
    for (path, route) in cases {
        e.scripted().route("GET", path, route);
        let first = get(e.proxy(), path).await;
        assert_eq!(first.x_cache(), "MISS", "{path}");
        assert!(!first.header("cache-status").contains("stored"), "{path}");
        // the predictor remembers: the next request skips lookup and lock
        let second = get(e.proxy(), path).await;
        assert_eq!(second.x_cache(), "BYPASS", "{path}");
        assert!(
            second.header("cache-status").contains("fwd=bypass"),
            "{path}"
        );
        assert_eq!(e.scripted().count(path), 2, "{path}");
    }
    // an Authorization request is stored only with must-revalidate / public / s-maxage
    e.scripted()
        .route("GET", "/auth", Route::ok("x").cache("max-age=60"));
    for _ in 0..2 {
        send(e.proxy().get("/auth").header("authorization", "Bearer a")).await;
    }
    assert_eq!(e.scripted().count("/auth"), 2);
}
