//! RFC 9111 details: every status with explicit freshness is reusable, stored `Date` and `Age`,
//! hop-by-hop fields, invalid `Age` / `Expires`, directive case, targeted-field validity,
//! `immutable`, `private` with `s-maxage`, `must-understand`, `Vary` normalisation and
//! `Set-Cookie`.

use crate::{env, env_with, get};
use llmselect_e2e::http::{send, Resp};
use llmselect_e2e::scripted_origin::Route;
use llmselect_e2e::stack::Stack;
use llmselect_e2e::wait::eventually;

/// Requests `path` twice and returns both answers.
async fn twice(e: &Stack, path: &str) -> (Resp, Resp) {
    let first = get(e.proxy(), path).await;
    let second = get(e.proxy(), path).await;
    (first, second)
}

/// Routes `path` to `route`, requests it twice and says whether the second answer came from the
/// cache (checked against what the origin saw).
async fn reused(e: &Stack, path: &str, route: Route) -> bool {
    e.scripted().route("GET", path, route);
    let (_, second) = twice(e, path).await;
    let hit = second.x_cache() == "HIT";
    let expected = if hit { 1 } else { 2 };
    assert_eq!(
        e.scripted().count(path),
        expected,
        "{path}: {}",
        second.header("cache-status")
    );
    hit
}

/// An HTTP-date `secs_ago` seconds in the past.
fn http_date_ago(secs_ago: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::seconds(secs_ago))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_final_status_with_explicit_freshness_is_a_hit() {
    let e = env().await;
    let far = "Sun, 18 Aug 2030 02:01:18 GMT";
    let cases = [
        (201, "cache-control", "max-age=60"),
        (203, "cache-control", "max-age=60"),
        (299, "cache-control", "max-age=60"),
        (302, "cache-control", "max-age=60"),
        (307, "cache-control", "max-age=60"),
        (400, "cache-control", "max-age=60"),
        (404, "cache-control", "s-maxage=60"),
        (429, "cache-control", "max-age=60"),
        (500, "cache-control", "max-age=60"),
        (503, "expires", far),
        (504, "cache-control", "max-age=60"),
        (599, "cache-control", "max-age=60"),
    ];
    for (status, name, value) in cases {
        let path = format!("/status/{status}");
        e.scripted().route(
            "GET",
            &path,
            Route::status(status, "answer {n}").header(name, value),
        );
        let (first, second) = twice(&e, &path).await;
        assert_eq!(first.status, status);
        assert!(
            first.header("cache-status").contains("stored"),
            "{status}: {}",
            first.header("cache-status")
        );
        assert_eq!(second.status, status);
        assert_eq!(second.x_cache(), "HIT", "{status}");
        assert_eq!(second.body, "answer 1", "{status}");
        assert_eq!(e.scripted().count(&path), 1, "{status}");
    }
    // a 204 is stored with its empty body
    e.scripted().route(
        "GET",
        "/status/204",
        Route::status(204, "").cache("max-age=60"),
    );
    let (_, second) = twice(&e, "/status/204").await;
    assert_eq!((second.status, second.x_cache()), (204, "HIT"));
    assert_eq!(second.body, "");
    assert_eq!(e.scripted().count("/status/204"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heuristic_freshness_only_for_heuristically_cacheable_statuses() {
    let e = env().await;
    let modified = http_date_ago(100_000);
    for (status, hit) in [
        (200, true),
        (404, true),
        (410, true),
        (500, false),
        (403, false),
    ] {
        let path = format!("/heuristic/{status}");
        let route = Route::status(status, "h {n}").header("last-modified", &modified);
        assert_eq!(reused(&e, &path, route).await, hit, "{status}");
    }
}

/// `Age` is the age the response had on arrival (from its `Date`) plus its time in the cache, on
/// both hit paths. (Plain HTTP/1 hits replay the stored `Date`; pingora 0.9.1 writes its own on
/// every response it sends itself: see `front.rs` and the README.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_counts_the_age_on_arrival_and_the_time_in_cache() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/dated",
        Route::ok("dated")
            .cache("max-age=3600")
            .header("date", &http_date_ago(10))
            .etag("\"d1\""),
    );
    get(e.proxy(), "/dated").await;
    let fast = get(e.proxy(), "/dated").await;
    // a precondition that does not match takes pingora's hit path
    let full = send(e.proxy().get("/dated").header("if-none-match", "\"other\"")).await;
    for hit in [&fast, &full] {
        assert_eq!(hit.x_cache(), "HIT");
        let age: u64 = hit.header("age").parse().unwrap();
        assert!((10..=12).contains(&age), "age {age}");
    }
    // Age grows with the time spent in the cache
    eventually("Age to grow past the age on arrival", || async {
        let hit = get(e.proxy(), "/dated").await;
        let age: u64 = hit.header("age").parse().unwrap();
        (age >= 12).then_some(())
    })
    .await;
    assert_eq!(e.scripted().count("/dated"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_named_and_hop_by_hop_fields_are_not_stored_or_forwarded() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/hop",
        Route::ok("hop")
            .cache("max-age=60")
            .header("connection", "x-conn-private")
            .header("x-conn-private", "secret")
            .header("proxy-connection", "keep-alive")
            .header("x-kept", "yes"),
    );
    let (miss, hit) = twice(&e, "/hop").await;
    assert_eq!(hit.x_cache(), "HIT");
    for r in [&miss, &hit] {
        assert_eq!(r.header("x-conn-private"), "", "{:?}", r.headers);
        assert_eq!(r.header("proxy-connection"), "", "{:?}", r.headers);
        assert_eq!(r.header("x-kept"), "yes");
        assert_eq!(r.body, "hop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_age_that_is_not_one_integer_makes_the_response_stale() {
    let e = env().await;
    for (path, age) in [("/age-bad", "old, 0"), ("/age-neg", "-5")] {
        e.scripted().route(
            "GET",
            path,
            Route::ok("aged")
                .cache("max-age=3600")
                .header("age", age)
                .etag("\"a\""),
        );
        let (_, second) = twice(&e, path).await;
        assert_eq!(second.x_cache(), "REVALIDATED", "{path}");
        assert_eq!(e.scripted().count(path), 2, "{path}");
    }
    e.scripted().route(
        "GET",
        "/age-ok",
        Route::ok("aged").cache("max-age=3600").header("age", "10"),
    );
    assert_eq!(twice(&e, "/age-ok").await.1.x_cache(), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expires_outside_the_three_date_formats_is_already_expired() {
    let e = env().await;
    let cases = [
        // IMF-fixdate and the two obsolete formats of RFC 9110 §5.6.7
        ("/exp-imf", "Sun, 18 Aug 2030 02:01:18 GMT", true),
        ("/exp-rfc850", "Sunday, 18-Aug-30 02:01:18 GMT", true),
        ("/exp-asctime", "Sun Aug 18 02:01:18 2030", true),
        // anything else: already expired
        ("/exp-spaces", "Sun, 18  Aug  2030 02:01:18 GMT", false),
        ("/exp-utc", "Sun, 18 Aug 2030 02:01:18 UTC", false),
        ("/exp-zero", "0", false),
    ];
    for (path, expires, fresh) in cases {
        let route = Route::ok("e").header("expires", expires);
        assert_eq!(reused(&e, path, route).await, fresh, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directive_names_are_case_insensitive_in_one_parser() {
    let e = env().await;
    e.scripted()
        .route("GET", "/upper", Route::ok("u").cache("MAX-AGE=60"));
    assert_eq!(twice(&e, "/upper").await.1.x_cache(), "HIT");

    e.scripted().route(
        "GET",
        "/nocache",
        Route::ok("n").cache("No-CaChE, max-age=60").etag("\"n\""),
    );
    assert_eq!(twice(&e, "/nocache").await.1.x_cache(), "REVALIDATED");

    // stale on arrival: `Must-Revalidate` forbids serving it on a request's max-stale ...
    e.scripted().route(
        "GET",
        "/mr",
        Route::ok("mr")
            .cache("max-age=10, Must-Revalidate")
            .header("age", "20")
            .etag("\"m\""),
    );
    get(e.proxy(), "/mr").await;
    let r = send(
        e.proxy()
            .get("/mr")
            .header("cache-control", "max-stale=1000"),
    )
    .await;
    assert_eq!(r.x_cache(), "REVALIDATED");
    // ... while an extension that merely contains `no-cache` does not
    e.scripted().route(
        "GET",
        "/ext",
        Route::ok("ext")
            .cache("max-age=10, x-no-cache-hint")
            .header("age", "20")
            .etag("\"x\""),
    );
    get(e.proxy(), "/ext").await;
    let r = send(
        e.proxy()
            .get("/ext")
            .header("cache-control", "max-stale=1000"),
    )
    .await;
    assert_eq!(r.x_cache(), "HIT", "{}", r.header("cache-status"));
    assert_eq!(e.scripted().count("/ext"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_cdn_cache_control_is_ignored_entirely() {
    let e = env().await;
    for (path, cdn, stored) in [
        ("/cdn-ok", "max-age=60", true),
        ("/cdn-string", "max-age=\"60\"", false),
        ("/cdn-garbage", "max-age=60, &&&&&", false),
        ("/cdn-space", "max-age= 60", false),
    ] {
        let route = Route::ok("c")
            .cache("no-store")
            .header("cdn-cache-control", cdn);
        assert_eq!(reused(&e, path, route).await, stored, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_never_prevents_revalidation_once_stale() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/imm",
        Route::ok("imm")
            .cache("max-age=10, immutable")
            .header("age", "20")
            .etag("\"i\""),
    );
    let (_, second) = twice(&e, "/imm").await;
    assert_eq!(second.x_cache(), "REVALIDATED");
    assert_eq!(
        e.scripted().last("/imm").unwrap().headers["if-none-match"],
        "\"i\""
    );
    // and an Expires in the past is not extended by it either
    let route = Route::ok("imm").cache("immutable").header("expires", "0");
    assert!(!reused(&e, "/imm-exp", route).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_wins_over_s_maxage_and_qualified_private_or_no_cache_strip_their_fields() {
    let e = env().await;
    let route = Route::ok("p").cache("s-maxage=60, private");
    assert!(!reused(&e, "/priv", route).await);

    e.scripted().route(
        "GET",
        "/qpriv",
        Route::ok("q")
            .cache("private=\"x-user\", s-maxage=60")
            .header("x-user", "alice"),
    );
    let (miss, hit) = twice(&e, "/qpriv").await;
    assert_eq!(miss.header("x-user"), "alice");
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(hit.header("x-user"), "", "the named field is not stored");
    assert_eq!(hit.body, "q");

    // a qualified no-cache: the response is reused, the named field is not
    e.scripted().route(
        "GET",
        "/qnocache",
        Route::ok("n")
            .cache("no-cache=\"x-token\", max-age=60")
            .header("x-token", "t1"),
    );
    let (miss, hit) = twice(&e, "/qnocache").await;
    assert_eq!(miss.header("x-token"), "t1");
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(hit.header("x-token"), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn must_understand_with_an_understood_status_is_stored() {
    let e = env().await;
    for (status, stored) in [(200, true), (404, true), (299, false)] {
        let path = format!("/mu/{status}");
        let route = Route::status(status, "mu").cache("must-understand, no-store, max-age=60");
        assert_eq!(reused(&e, &path, route).await, stored, "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_matching_normalises_whitespace_case_order_and_quality_values() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/lang",
        Route::ok("lang {n}")
            .cache("public, max-age=60")
            .header("vary", "Accept-Language, X-List"),
    );
    let req = |lang: &str, list: &str| {
        e.proxy()
            .get("/lang")
            .header("accept-language", lang)
            .header("x-list", list)
    };
    assert_eq!(send(req("en-US, fr;q=0.5", "a, b")).await.x_cache(), "MISS");
    let same = send(req("fr; q=0.50 ,EN-us", "a ,b")).await;
    assert_eq!(same.x_cache(), "HIT");
    assert_eq!(same.body, "lang 1");
    // a different preference is a different variant
    let other = send(req("en-US;q=0.5, fr", "a, b")).await;
    assert_eq!(other.x_cache(), "MISS");
    assert_eq!(e.scripted().count("/lang"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_cookie_is_never_replayed_to_another_client() {
    let e = env().await;
    // explicitly shared: stored without the cookie, the fetching client still gets it
    e.scripted().route(
        "GET",
        "/shared-cookie",
        Route::ok("s")
            .cache("public, max-age=60")
            .header("set-cookie", "sid=alice"),
    );
    let (miss, hit) = twice(&e, "/shared-cookie").await;
    assert_eq!(miss.header("set-cookie"), "sid=alice");
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(hit.header("set-cookie"), "");
    // not explicitly shared: not stored at all
    let route = Route::ok("o")
        .cache("max-age=60")
        .header("set-cookie", "sid=bob");
    assert!(!reused(&e, "/own-cookie", route).await);

    // `set_cookie = "refuse"`: never stored
    let strict = env_with(|c| {
        c.cache.set_cookie = llmselect_proxy::SetCookiePolicy::Refuse;
    })
    .await;
    strict.scripted().route(
        "GET",
        "/shared-cookie",
        Route::ok("s")
            .cache("public, max-age=60")
            .header("set-cookie", "sid=alice"),
    );
    let (_, second) = twice(&strict, "/shared-cookie").await;
    assert_eq!(second.header("set-cookie"), "sid=alice");
    assert_eq!(strict.scripted().count("/shared-cookie"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_response_naming_its_target_serves_later_gets() {
    let e = env().await;
    let post = |path: &str| e.proxy().client.post(e.proxy().url(path)).body("x");
    // stored before the POST, which invalidates it and leaves its own response instead
    e.scripted()
        .route("GET", "/post/doc", Route::ok("old").cache("max-age=600"));
    assert_eq!(get(e.proxy(), "/post/doc").await.body, "old");
    e.scripted().route(
        "POST",
        "/post/doc",
        Route::ok("new")
            .cache("max-age=600")
            .header("content-location", "/post/doc"),
    );
    let posted = send(post("/post/doc")).await;
    assert_eq!((posted.status, posted.body.as_str()), (200, "new"));
    let after = get(e.proxy(), "/post/doc").await;
    assert_eq!((after.body.as_str(), after.x_cache()), ("new", "HIT"));
    assert_eq!(e.scripted().count_method("GET", "/post/doc"), 1);

    // keyed by credential like a GET fill: the same cookie hits, another one misses
    let mine = |location: &str| {
        Route::ok("mine")
            .cache("max-age=600")
            .header("content-location", location)
    };
    let as_user = |user: &str| {
        e.proxy()
            .get("/post/mine")
            .header("cookie", format!("access_token_cookie={user}"))
    };
    let post_as_a = || post("/post/mine").header("cookie", "access_token_cookie=a");
    e.scripted().route(
        "GET",
        "/post/mine",
        Route::ok("fetched").cache("max-age=600"),
    );
    // another origin named: not stored
    e.scripted().route(
        "POST",
        "/post/mine",
        mine("http://ignored.invalid/post/mine"),
    );
    send(post_as_a()).await;
    assert_eq!(send(as_user("a")).await.body, "fetched");
    e.scripted().route("POST", "/post/mine", mine("/post/mine"));
    send(post_as_a()).await;
    let own = send(as_user("a")).await;
    assert_eq!((own.body.as_str(), own.x_cache()), ("mine", "HIT"));
    let other = send(as_user("b")).await;
    assert_eq!((other.body.as_str(), other.x_cache()), ("fetched", "MISS"));
    assert_eq!(e.scripted().count_method("GET", "/post/mine"), 2);

    // neither another target, nor freshness that is not explicit, nor no-store is reused
    for (path, route) in [
        (
            "/post/moved",
            Route::ok("p")
                .cache("max-age=600")
                .header("content-location", "/post/elsewhere"),
        ),
        (
            "/post/heuristic",
            Route::ok("p")
                .header("last-modified", &http_date_ago(86_400))
                .header("content-location", "/post/heuristic"),
        ),
        (
            "/post/unstored",
            Route::ok("p")
                .cache("no-store")
                .header("content-location", "/post/unstored"),
        ),
    ] {
        e.scripted().route("POST", path, route);
        e.scripted()
            .route("GET", path, Route::ok("fetched").cache("max-age=600"));
        assert_eq!(send(post(path)).await.body, "p");
        let next = get(e.proxy(), path).await;
        assert_eq!(
            (next.body.as_str(), next.x_cache()),
            ("fetched", "MISS"),
            "{path}"
        );
    }
}
