//! Ranges from stored responses: `If-Range`, 416, `multipart/byteranges`, and a range miss that
//! fetches the whole object once.

use crate::{env, get};
use llmselect_e2e::http::send;
use llmselect_e2e::scripted_origin::Route;
use std::time::Duration;

const BODY: &str = "0123456789abcdef";
const MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

fn ranged_route() -> Route {
    Route::ok(BODY)
        .cache("max-age=60")
        .etag("\"v1\"")
        .header("last-modified", MODIFIED)
        .header("content-type", "text/plain")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_range_with_a_strong_validator_gets_the_range_otherwise_the_whole() {
    let e = env().await;
    e.scripted().route("GET", "/ir", ranged_route());
    let ranged = |if_range: &str| {
        e.proxy()
            .get("/ir")
            .header("range", "bytes=2-5")
            .header("if-range", if_range)
    };
    // on the miss as on the hits
    let miss = send(ranged("\"v1\"")).await;
    assert_eq!(miss.x_cache(), "MISS");
    assert_eq!((miss.status, miss.body.as_str()), (206, "2345"));
    for (if_range, partial) in [
        ("\"v1\"", true),
        (MODIFIED, true),
        ("\"v0\"", false),
        ("W/\"v1\"", false),
        ("Sun, 06 Nov 1994 08:49:38 GMT", false),
    ] {
        let r = send(ranged(if_range)).await;
        assert_eq!(r.x_cache(), "HIT", "{if_range}");
        if partial {
            assert_eq!(r.status, 206, "{if_range}");
            assert_eq!(r.body, "2345");
            assert_eq!(r.header("content-range"), "bytes 2-5/16");
        } else {
            assert_eq!(r.status, 200, "{if_range}");
            assert_eq!(r.body, BODY);
            assert_eq!(r.header("content-range"), "");
        }
    }
    assert_eq!(e.scripted().count("/ir"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsatisfiable_range_is_416_with_the_length() {
    let e = env().await;
    e.scripted().route("GET", "/416", ranged_route());
    get(e.proxy(), "/416").await;
    let r = send(e.proxy().get("/416").header("range", "bytes=100-200")).await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), "bytes */16");
    assert_eq!(r.body, "");
    assert_eq!(r.x_cache(), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_ranges_are_answered_as_multipart_byteranges() {
    let e = env().await;
    e.scripted().route("GET", "/multi", ranged_route());
    get(e.proxy(), "/multi").await;
    let r = send(e.proxy().get("/multi").header("range", "bytes=0-1, 10-12")).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.x_cache(), "HIT");
    let content_type = r.header("content-type");
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("{content_type}"));
    let parts: Vec<&str> = r.body.split(&format!("--{boundary}")).collect();
    // preamble, two parts, the closing delimiter
    assert_eq!(parts.len(), 4, "{}", r.body);
    assert!(
        parts[1].contains("Content-Range: bytes 0-1/16"),
        "{}",
        parts[1]
    );
    assert!(
        parts[1].contains("Content-Type: text/plain"),
        "{}",
        parts[1]
    );
    assert!(parts[1].trim_end().ends_with("01"), "{}", parts[1]);
    assert!(
        parts[2].contains("Content-Range: bytes 10-12/16"),
        "{}",
        parts[2]
    );
    assert!(parts[2].trim_end().ends_with("abc"), "{}", parts[2]);
    assert_eq!(r.header("content-length"), r.body.len().to_string());
    assert_eq!(e.scripted().count("/multi"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_range_misses_fetch_the_whole_object_once() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/cold-range",
        ranged_route().delay(Duration::from_millis(300)),
    );
    let ranges = ["bytes=0-3", "bytes=4-7", "bytes=12-", "bytes=-2"];
    let expected = ["0123", "4567", "cdef", "ef"];
    let mut tasks = Vec::new();
    for i in 0..20 {
        let req = e.proxy().get("/cold-range").header("range", ranges[i % 4]);
        tasks.push(tokio::spawn(send(req)));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap();
        assert_eq!(r.status, 206);
        assert_eq!(r.body, expected[i % 4]);
    }
    assert_eq!(e.scripted().count("/cold-range"), 1, "one whole fetch");
    let seen = e.scripted().last("/cold-range").unwrap();
    assert!(
        seen.headers.get("range").is_none(),
        "Range is not sent upstream"
    );
    let full = get(e.proxy(), "/cold-range").await;
    assert_eq!((full.x_cache(), full.body.as_str()), ("HIT", BODY));
}
