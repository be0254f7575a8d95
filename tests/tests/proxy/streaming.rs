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

/// A response framed by `Content-Length` whose origin pauses mid-body reaches the client as it
/// arrives: its header and first bytes come while the origin still holds the rest, whether the
/// response passes through or is being stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_framed_body_is_forwarded_while_the_origin_holds_the_rest() {
    const WHOLE: &str = "first half, sent|second half, held";
    for (stream_fills, cache) in [
        (true, "no-store"),
        (true, "max-age=60"),
        (false, "max-age=60"),
    ] {
        let e = crate::env_with(|c| c.cache.stream_fills = stream_fills).await;
        e.scripted().route(
            "GET",
            "/held",
            Route::ok(WHOLE)
                .cache(cache)
                .header("content-length", &WHOLE.len().to_string())
                .hold_body(),
        );
        let case = format!("stream_fills={stream_fills}, {cache}");
        let first = async {
            let mut resp = e.proxy().get("/held").send().await.expect("header");
            let chunk = resp.chunk().await.expect("body").expect("first bytes");
            (resp, chunk)
        };
        let (resp, chunk) = tokio::time::timeout(std::time::Duration::from_secs(10), first)
            .await
            .unwrap_or_else(|_| panic!("{case}: nothing arrived while the origin held the rest"));
        assert!(
            WHOLE.starts_with(std::str::from_utf8(&chunk).unwrap()),
            "{case}: {chunk:?}"
        );
        e.scripted().release_streams();
        let rest = resp.text().await.expect("the rest");
        assert_eq!(
            format!("{}{rest}", String::from_utf8_lossy(&chunk)),
            WHOLE,
            "{case}"
        );
    }
}

/// A `103` that arrives in the same read as a cacheable final response reaches the client once,
/// before it, while the response is stored and streamed from its fill; the hit that follows has
/// no `103` (RFC 9111 §3: interim responses are not stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_hints_before_a_streamed_fill_reach_the_client_once() {
    use tokio::io::AsyncWriteExt;
    let origin = llmselect_e2e::raw_origin::spawn(
        "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n\
         HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 4\r\n\r\nbody",
    )
    .await;
    let p = llmselect_e2e::proxy::spawn_proxy(&format!("http://{origin}"), |c| {
        c.cache.stream_fills = true;
    })
    .await;
    let host = format!("Host: {}", super::front::addr(&p));
    for (i, path) in ["/fill-a", "/fill-b", "/fill-c"].iter().enumerate() {
        let mut s = tokio::net::TcpStream::connect(super::front::addr(&p))
            .await
            .unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\n{host}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = Vec::new();
        llmselect_e2e::http::read_until(&mut s, &mut out, |out| out.ends_with(b"\r\n\r\nbody"))
            .await;
        let out = String::from_utf8_lossy(&out).into_owned();
        assert!(
            out.starts_with("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n"),
            "request {i}: {out}"
        );
        assert_eq!(out.matches("HTTP/1.1 103").count(), 1, "{out}");
        // the interim response carries nothing of the cache's outcome
        let hint = out.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
        assert!(
            !hint.contains("x-cache") && !hint.contains("cache-status"),
            "{out}"
        );
        assert!(out.to_ascii_lowercase().contains("x-cache: miss"), "{out}");
        let hit = llmselect_e2e::http::send(
            reqwest::Client::new().get(format!("http://{}{path}", super::front::addr(&p))),
        )
        .await;
        assert_eq!((hit.x_cache(), hit.body.as_str()), ("HIT", "body"));
    }
}
