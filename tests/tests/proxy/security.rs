//! Fail closed: targeted fields stay inside the proxy, client input is bounded, keys match what
//! the origin receives, 304s refresh only what they validated, no stale where the origin forbade
//! it, the predictor learns only from the URL, and stream invalidations are never lost.

use crate::{env, env_with, get};
use llmselect_e2e::http::send;
use llmselect_e2e::scripted_origin::Route;
use llmselect_e2e::stack::Stack;
use llmselect_e2e::wait::eventually_true;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends raw bytes on a fresh connection and returns the whole answer (the proxy closes or the
/// response ends with the connection).
async fn raw(addr: &str, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn proxy_addr(e: &Stack) -> String {
    e.proxy().base.trim_start_matches("http://").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_targeted_field_is_obeyed_and_never_forwarded() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/t",
        Route::ok("t #{n}")
            .cache("private, no-store")
            .header("llmselect-cache-control", "max-age=60, must-revalidate")
            .header("cdn-cache-control", "no-store")
            .header("vary", "Authorization"),
    );
    let user = || e.proxy().get("/t").bearer_auth("alice");
    let miss = send(user()).await;
    assert_eq!(miss.x_cache(), "MISS");
    // the fast path and pingora's hit path (a conditional request) alike
    let hit = send(user()).await;
    let slow_hit = send(user().header("if-none-match", "\"other\"")).await;
    for r in [&miss, &hit, &slow_hit] {
        assert_eq!(r.body, "t #1");
        assert!(r.headers.get("llmselect-cache-control").is_none());
        assert_eq!(r.header("cdn-cache-control"), "no-store");
        assert_eq!(r.header("cache-control"), "private, no-store");
    }
    assert_eq!((hit.x_cache(), slow_hit.x_cache()), ("HIT", "HIT"));
    assert_eq!(e.scripted().count("/t"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_invalid_request_heads_are_refused_with_the_proxy_headers() {
    let e = env().await;
    e.scripted()
        .route("GET", "/x", Route::ok("x").cache("max-age=60"));
    let addr = proxy_addr(&e);
    let long_host = "h".repeat(9000);
    let answer = raw(
        &addr,
        format!("GET /x HTTP/1.1\r\nHost: {long_host}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("x-cache: error"));
    for host in ["a\"b", "h;for=evil", "h:port", "u@h"] {
        let answer = raw(
            &addr,
            format!("GET /x HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{host}: {answer}");
    }
    let big = "v".repeat(40 * 1024);
    let r = send(e.proxy().get("/x").header("x-big", big)).await;
    assert_eq!(r.status, 431);
    assert_eq!(r.x_cache(), "ERROR");
    assert!(r.body.contains("header-too-large"));
    let long_path = format!("/x?{}", "q".repeat(9000));
    let r = send(e.proxy().get(&long_path)).await;
    assert_eq!(r.status, 414);
    assert_eq!(r.x_cache(), "ERROR");
    assert_eq!(
        e.scripted().count("/x"),
        0,
        "nothing refused reached the origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_carries_a_validated_quoted_host() {
    let e = env().await;
    e.scripted()
        .route("GET", "/f", Route::ok("f").cache("no-store"));
    get(e.proxy(), "/f").await;
    let seen = e.scripted().last("/f").expect("origin saw /f");
    let fwd = seen.headers["forwarded"].to_str().unwrap().to_string();
    assert_eq!(
        fwd,
        format!("for=127.0.0.1;proto=http;host=\"{}\"", proxy_addr(&e))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_with_a_body_is_never_stored() {
    let e = env().await;
    e.scripted()
        .route("GET", "/b", Route::ok("b #{n}").cache("public, max-age=60"));
    let with_body = send(e.proxy().get("/b").body("filter=secret")).await;
    assert_eq!(with_body.body, "b #1");
    let plain = send(e.proxy().get("/b")).await;
    assert_eq!(
        plain.body, "b #2",
        "the response to a GET with a body was not stored"
    );
    let again = send(e.proxy().get("/b").body("other")).await;
    assert_eq!(
        again.body, "b #3",
        "a GET with a body is not answered from the cache"
    );
    assert_eq!(e.scripted().count("/b"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_names_the_origin_decodes_alike_never_share_a_key() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/l?page=1&p%61ge=2",
        Route::ok("page one").cache("max-age=60"),
    );
    e.scripted().route(
        "GET",
        "/l?p%61ge=2&page=1",
        Route::ok("page two").cache("max-age=60"),
    );
    assert_eq!(get(e.proxy(), "/l?page=1&p%61ge=2").await.body, "page one");
    let other = get(e.proxy(), "/l?p%61ge=2&page=1").await;
    assert_eq!((other.x_cache(), other.body.as_str()), ("MISS", "page two"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_is_keyed_on_the_raw_path_the_origin_receives() {
    let e = env().await;
    e.scripted()
        .route("GET", "/a/../b", Route::ok("dots").cache("max-age=60"));
    e.scripted()
        .route("GET", "/b", Route::ok("plain b").cache("max-age=60"));
    let addr = proxy_addr(&e);
    let answer = raw(
        &addr,
        format!("GET http://{addr}/a/../b HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(answer.ends_with("dots"), "{answer}");
    // the key is the raw path: /b is another resource, /a/../b (origin form) the same one
    assert_eq!(get(e.proxy(), "/b").await.body, "plain b");
    let same = raw(
        &addr,
        format!("GET /a/../b HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(same.to_ascii_lowercase().contains("x-cache: hit"), "{same}");
    assert!(same.ends_with("dots"), "{same}");
    assert_eq!(e.scripted().count("/a/../b"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_304_never_pairs_old_validators_with_a_newer_body() {
    let e = env_with(|c| {
        c.cache.lock_age_timeout_ms = 200;
        c.cache.lock_wait_timeout_ms = 100;
    })
    .await;
    let v1 = || Route::ok("version one").cache("max-age=600").etag("\"v1\"");
    e.scripted().route("GET", "/r", v1());
    assert_eq!(get(e.proxy(), "/r").await.body, "version one");
    // A revalidates (forced by its request); the origin's 304 arrives late
    e.scripted()
        .route("GET", "/r", v1().delay(Duration::from_millis(1500)));
    let base = e.proxy().url("/r");
    let client = e.proxy().client.clone();
    let a = tokio::spawn(async move {
        let r = client.get(base).header("cache-control", "no-cache");
        r.send().await.unwrap().text().await.unwrap()
    });
    eventually_true("A's revalidation reached the origin", || async {
        e.scripted().count("/r") >= 2
    })
    .await;
    // meanwhile the resource changed, and B stores the new version once A's lock aged out
    e.scripted().route(
        "GET",
        "/r",
        Route::ok("version two").cache("max-age=600").etag("\"v2\""),
    );
    eventually_true("B stored version two", || async {
        let b = send(e.proxy().get("/r").header("cache-control", "no-cache")).await;
        b.body == "version two" && b.header("cache-status").contains("stored")
    })
    .await;
    assert_eq!(a.await.unwrap(), "version one");
    // A's 304 validated version one only: version two keeps its own validator
    let now = get(e.proxy(), "/r").await;
    assert_eq!((now.x_cache(), now.body.as_str()), ("HIT", "version two"));
    assert_eq!(now.header("etag"), "\"v2\"");
    let cond = send(e.proxy().get("/r").header("if-none-match", "\"v1\"")).await;
    assert_eq!(cond.status, 200, "v1's validator does not match v2's body");
    assert_eq!(cond.body, "version two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_stale_never_overrides_no_cache_or_a_soft_purge() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/nc",
        Route::ok("nc #{n}").cache("no-cache").etag("\"nc\""),
    );
    e.scripted()
        .route("GET", "/sp", Route::ok("sp #{n}").cache("max-age=600"));
    get(e.proxy(), "/nc").await;
    get(e.proxy(), "/sp").await;
    let stale_ok = |p: &'static str| e.proxy().get(p).header("cache-control", "max-stale=3600");
    // no-cache: every use is validated with the origin first
    send(stale_ok("/nc")).await;
    assert_eq!(
        e.scripted().count("/nc"),
        2,
        "no-cache revalidated despite max-stale"
    );
    // a soft purge: the next use is validated too
    let (status, _) = e
        .proxy()
        .purge(serde_json::json!({"urls": ["/sp"], "soft": true}))
        .await;
    assert_eq!(status, 200);
    let r = send(stale_ok("/sp")).await;
    assert_eq!(
        r.body, "sp #2",
        "a soft-purged entry is not served on max-stale"
    );
    assert_eq!(e.scripted().count("/sp"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_specific_refusals_do_not_bypass_the_cache_for_everybody() {
    let e = env().await;
    for (path, first) in [
        ("/p404", Route::status(404, "nope").cache("no-store")),
        ("/p429", Route::status(429, "slow down").cache("no-store")),
        ("/pcred", Route::ok("yours").cache("no-store")),
        ("/pdir", Route::ok("x").cache("max-age=60")),
    ] {
        e.scripted().route("GET", path, first);
        let req = e.proxy().get(path);
        let req = match path {
            "/pcred" => req.bearer_auth("someone"),
            "/pdir" => req.header("cache-control", "no-store"),
            _ => req,
        };
        send(req).await;
        e.scripted()
            .route("GET", path, Route::ok("shared #{n}").cache("max-age=60"));
        let next = get(e.proxy(), path).await;
        assert_eq!(next.x_cache(), "MISS", "{path}: looked up, not bypassed");
        assert!(next.header("cache-status").contains("stored"), "{path}");
        assert_eq!(get(e.proxy(), path).await.x_cache(), "HIT", "{path}");
        assert_eq!(e.scripted().count(path), 2, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_short_by_its_client_still_invalidates_at_its_end() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/list",
        Route::ok("list #{n}")
            .cache("max-age=600")
            .header("cache-groups", "\"g\""),
    );
    e.scripted().route(
        "POST",
        "/stream",
        Route::ok("")
            .sse(&["one", "two"], true)
            .header("cache-group-invalidation", "\"g\""),
    );
    get(e.proxy(), "/list").await;
    let mut stream = e
        .proxy()
        .client
        .post(e.proxy().url("/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    stream.chunk().await.unwrap().expect("first event");
    // read during the stream: refilled after the header-time invalidation
    assert_eq!(get(e.proxy(), "/list").await.body, "list #2");
    assert_eq!(get(e.proxy(), "/list").await.x_cache(), "HIT");
    drop(stream); // the client goes away before the stream's end
    eventually_true("the list is invalidated when the stream ends", || async {
        get(e.proxy(), "/list").await.x_cache() == "MISS"
    })
    .await;
    e.scripted().release_streams();
}
