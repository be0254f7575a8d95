//! Hits, misses, the headers on every response, HEAD, Range, forwarding, methods.

use crate::{env, get};
use llmselect_e2e::http::send;
use llmselect_e2e::scripted_origin::Route;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hit_after_miss_is_served_without_the_origin() {
    let e = env().await;
    e.scripted()
        .route("GET", "/a", Route::ok("alpha {n}").cache("max-age=60"));

    let first = get(e.proxy(), "/a").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body, "alpha 1");
    assert_eq!(first.x_cache(), "MISS");
    assert!(
        first
            .header("cache-status")
            .starts_with("llmselect-edge; fwd=uri-miss; fwd-status=200; stored"),
        "{}",
        first.header("cache-status")
    );

    let second = get(e.proxy(), "/a").await;
    assert_eq!(second.body, "alpha 1");
    assert_eq!(second.x_cache(), "HIT");
    assert!(
        second
            .header("cache-status")
            .starts_with("llmselect-edge; hit; ttl="),
        "{}",
        second.header("cache-status")
    );
    assert!(second.headers.contains_key("age"));
    assert_eq!(
        e.scripted().count("/a"),
        1,
        "the hit never reached the origin"
    );

    // the query is normalised: same parameters in another order are the same entry
    e.scripted()
        .route("GET", "/q?a=1&b=2", Route::ok("q").cache("max-age=60"));
    assert_eq!(get(e.proxy(), "/q?a=1&b=2").await.x_cache(), "MISS");
    assert_eq!(get(e.proxy(), "/q?b=2&a=1").await.x_cache(), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_timing_and_status_headers() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/t",
        Route::ok("t")
            .cache("max-age=60")
            .header("x-response-time", "9.999s"),
    );
    for expected in ["MISS", "HIT"] {
        let r = get(e.proxy(), "/t").await;
        assert_eq!(r.x_cache(), expected);
        let xrt = r.header("x-response-time");
        assert!(
            xrt.ends_with('s') && xrt.len() == "0.000000s".len() && xrt != "9.999s",
            "{xrt}"
        );
        let st = r.header("server-timing");
        assert!(
            st.contains(&format!("cache;desc=\"{expected}\"")) && st.contains("total;dur="),
            "{st}"
        );
        if expected == "MISS" {
            assert!(st.contains("origin;dur="), "{st}");
        } else {
            assert!(st.contains("lookup;dur="), "{st}");
        }
    }
    // uncacheable responses and errors the proxy makes itself are stamped too
    e.scripted().route("POST", "/t", Route::ok("posted"));
    let r = send(e.proxy().client.post(e.proxy().url("/t"))).await;
    assert_eq!(r.x_cache(), "PASS");
    assert!(r.header("cache-status").contains("fwd=method"));
    assert!(!r.header("x-response-time").is_empty());
    let missing = get(e.proxy(), "/nothing-here").await;
    assert_eq!(missing.status, 404);
    assert!(!missing.header("x-cache").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_range_are_served_from_cache() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/r",
        Route::ok("0123456789abcdef").cache("max-age=60"),
    );
    let head = send(e.proxy().client.head(e.proxy().url("/r"))).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "");
    assert_eq!(
        e.scripted().count_method("GET", "/r"),
        1,
        "a HEAD miss fetches the full body with GET"
    );

    let full = get(e.proxy(), "/r").await;
    assert_eq!(full.x_cache(), "HIT");
    assert_eq!(full.body, "0123456789abcdef");

    let range = send(e.proxy().get("/r").header("range", "bytes=2-5")).await;
    assert_eq!(range.status, 206);
    assert_eq!(range.body, "2345");
    assert_eq!(range.header("content-range"), "bytes 2-5/16");
    let head_hit = send(e.proxy().client.head(e.proxy().url("/r"))).await;
    assert_eq!(head_hit.x_cache(), "HIT");
    assert_eq!(e.scripted().count("/r"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_get_methods_are_never_cached() {
    let e = env().await;
    for m in ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        e.scripted()
            .route(m, "/m", Route::ok("m {n}").cache("public, max-age=600"));
    }
    for m in ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
        for _ in 0..2 {
            let r = send(
                e.proxy()
                    .client
                    .request(method.clone(), e.proxy().url("/m")),
            )
            .await;
            assert_eq!(r.status, 200);
            assert_eq!(r.x_cache(), "PASS", "{m}");
        }
        assert_eq!(
            e.scripted().count_method(m, "/m"),
            2,
            "{m} went to the origin both times"
        );
    }
    // an OPTIONS/POST answer never feeds a GET
    e.scripted()
        .route("GET", "/m", Route::ok("get").cache("max-age=60"));
    assert_eq!(get(e.proxy(), "/m").await.body, "get");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_appended() {
    let e = env().await;
    e.scripted()
        .route("GET", "/f", Route::ok("f").cache("no-store"));
    let r = send(
        e.proxy()
            .get("/f")
            .header("x-forwarded-for", "203.0.113.7")
            .header("forwarded", "for=203.0.113.7"),
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = e.scripted().last("/f").unwrap();
    let xff = seen.headers["x-forwarded-for"].to_str().unwrap();
    assert_eq!(xff, "203.0.113.7, 127.0.0.1");
    let fwd = seen.headers["forwarded"].to_str().unwrap();
    assert!(
        fwd.starts_with("for=203.0.113.7, for=127.0.0.1;proto=http;host="),
        "{fwd}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_4xx() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let e = env().await;
    for raw in [
        "GARBAGE\r\n\r\n".to_string(),
        "GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n".to_string(),
        "GET /x HTTP/1.1\r\n\r\n".to_string(), // HTTP/1.1 without Host
        "GET /x HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n".to_string(),
        "GET x HTTP/1.1\r\nHost: a\r\n\r\n".to_string(), // not a path
    ] {
        let mut s = tokio::net::TcpStream::connect(e.proxy().handle.as_ref().unwrap().listen_addr)
            .await
            .unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        let text = String::from_utf8_lossy(&buf);
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!((400..500).contains(&status), "{raw:?} answered {text:?}");
    }
    assert_eq!(
        e.scripted().seen().len(),
        0,
        "nothing malformed reached the origin"
    );
    // the proxy still works
    e.scripted()
        .route("GET", "/ok", Route::ok("fine").cache("no-store"));
    assert_eq!(get(e.proxy(), "/ok").await.body, "fine");
    // HTTP/1.0 may omit Host: keyed by the address the request arrived on
    let mut s = tokio::net::TcpStream::connect(e.proxy().handle.as_ref().unwrap().listen_addr)
        .await
        .unwrap();
    s.write_all(b"GET /ok HTTP/1.0\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    assert!(text.ends_with("fine"), "{text}");
}

/// Plain fresh hits are answered from a header decoded at store time (`cache::hit`); any other
/// hit goes through pingora's cache state machine. Both must send the same response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_hits_and_pingora_hits_send_the_same_response() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/same",
        Route::ok("same body {n}")
            .cache("public, max-age=60")
            .etag("\"v1\"")
            .header("vary", "Accept-Language")
            .header("x-custom", "kept")
            .header("content-type", "application/json"),
    );
    let lang = |r: reqwest::RequestBuilder| r.header("accept-language", "en");
    assert_eq!(send(lang(e.proxy().get("/same"))).await.x_cache(), "MISS");
    let fast_before = e.proxy().stats().await["fast_hits"].as_u64().unwrap();

    let fast = send(lang(e.proxy().get("/same"))).await;
    let fast_after = e.proxy().stats().await["fast_hits"].as_u64().unwrap();
    assert_eq!(
        fast_after,
        fast_before + 1,
        "the plain hit took the fast path"
    );
    // `If-Match` (which a GET hit satisfies) sends the request through pingora's hit path
    let full = send(lang(e.proxy().get("/same")).header("if-match", "\"v1\"")).await;
    assert_eq!(
        e.proxy().stats().await["fast_hits"].as_u64().unwrap(),
        fast_after,
        "the conditional hit did not take the fast path"
    );

    assert_eq!((fast.status, full.status), (200, 200));
    assert_eq!(fast.body, "same body 1");
    assert_eq!(full.body, fast.body);
    assert_eq!((fast.x_cache(), full.x_cache()), ("HIT", "HIT"));
    // `date`: the front replays the stored one, pingora writes its own clock's (see
    // `front::a_plain_http1_hit_keeps_the_stored_date`)
    let varying = [
        "x-response-time",
        "server-timing",
        "age",
        "cache-status",
        "date",
    ];
    assert_eq!(fast.stable_headers(&varying), full.stable_headers(&varying));
    for r in [&fast, &full] {
        assert!(r
            .header("cache-status")
            .starts_with("llmselect-edge; hit; ttl="));
        assert!(r.header("age").parse::<u64>().is_ok(), "{:?}", r.headers);
        assert_eq!(r.header("x-custom"), "kept");
        assert_eq!(r.header("etag"), "\"v1\"");
    }

    // another variant of the same URL is not a fast hit: it is fetched
    let fr = send(e.proxy().get("/same").header("accept-language", "fr")).await;
    assert_eq!(fr.x_cache(), "MISS");
    assert_eq!(fr.body, "same body 2");

    // HEAD from the fast path: the GET's headers, no body
    let head = send(lang(reqwest::Client::new().head(e.proxy().url("/same")))).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.x_cache(), "HIT");
    assert_eq!(head.body, "");
    assert_eq!(head.header("content-length"), fast.header("content-length"));
    assert_eq!(e.scripted().count("/same"), 2);
}
