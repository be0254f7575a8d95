//! The front's pass-through (`server::forward`): once the cache knows a URL's responses cannot be
//! stored, HTTP/1.1 `GET`/`HEAD` requests for it are forwarded by the raw front instead of
//! pingora's proxy state machine. `front_passes` in the admin `/stats` counts them; the responses
//! are the ones pingora's path sends for a bypass, except that the origin's `Date` is kept.

use super::front::{addr, origin_date, read_answer};
use crate::{env, env_with};
use llmselect_e2e::http::send;
use llmselect_e2e::scripted_origin::Route;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Counter `name` of the admin `/stats`.
async fn stat(e: &llmselect_e2e::stack::Stack, name: &str) -> u64 {
    e.proxy().stats().await[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in /stats"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_uncacheable_urls_are_forwarded_by_the_front_on_a_kept_alive_connection() {
    let e = env().await;
    let date = origin_date();
    // any method: a HEAD is forwarded as a HEAD
    e.scripted().route(
        "*",
        "/pt/list",
        Route::ok("list-{n}")
            .cache("private, no-store")
            .header("date", &date)
            .header("x-app", "kept"),
    );
    // the first response teaches the cache that this URL is not stored (through pingora)
    let first = send(e.proxy().get("/pt/list")).await;
    assert_eq!((first.status, first.x_cache()), (200, "MISS"));
    let (passes, bypass) = (stat(&e, "front_passes").await, stat(&e, "bypass").await);

    let host = format!("Host: {}", addr(e.proxy()));
    let mut s = TcpStream::connect(addr(e.proxy())).await.unwrap();
    let mut buf = Vec::new();
    let requests = [
        ("GET /pt/list HTTP/1.1\r\nHost: t\r\n\r\n", "list-2"),
        ("HEAD /pt/list HTTP/1.1\r\nHost: t\r\n\r\n", ""),
        (
            "GET /pt/list HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 10.0.0.7\r\n\
             Connection: keep-alive, X-Hop\r\nX-Hop: one-connection-only\r\n\r\n",
            // `{n}` counts per method: the HEAD had its own
            "list-3",
        ),
    ];
    for (request, body) in requests {
        let request = request.replace("Host: t", &host);
        s.write_all(request.as_bytes()).await.unwrap();
        let a = read_answer(&mut s, &mut buf, request.starts_with("HEAD")).await;
        assert_eq!((a.status, a.body.as_str()), (200, body), "{}", a.head);
        assert_eq!(a.header("x-cache"), Some("BYPASS"), "{}", a.head);
        assert_eq!(
            a.header("cache-status"),
            Some("llmselect-edge; fwd=bypass; fwd-status=200")
        );
        assert_eq!(a.header("cache-control"), Some("private, no-store"));
        assert_eq!(a.header("x-app"), Some("kept"));
        assert_eq!(a.header("content-length"), Some("6"), "{}", a.head);
        assert_eq!(a.header("connection"), Some("keep-alive"));
        // written by the front: the origin's Date (pingora writes its own)
        assert_eq!(a.header("date"), Some(date.as_str()), "{}", a.head);
        let timing = a.header("server-timing").unwrap();
        assert!(
            timing.starts_with("cache;desc=\"BYPASS\", total;dur=")
                && timing.contains("origin;dur="),
            "{timing}"
        );
        assert!(a
            .header("x-response-time")
            .is_some_and(|v| v.ends_with('s')));
    }
    assert_eq!(stat(&e, "front_passes").await, passes + 3);
    assert_eq!(stat(&e, "bypass").await, bypass + 3);
    assert_eq!(e.scripted().count("/pt/list"), 4);
    assert_eq!(e.scripted().count_method("HEAD", "/pt/list"), 1);
    // what the origin saw: this hop appended to the forwarding fields, the fields named in the
    // client's Connection (and Connection itself) not forwarded
    let seen = e.scripted().last("/pt/list").unwrap();
    let field = |n: &str| seen.headers.get(n).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(
        field("x-forwarded-for").as_deref(),
        Some("10.0.0.7, 127.0.0.1")
    );
    assert!(
        field("forwarded").is_some_and(|v| v.starts_with("for=127.0.0.1;proto=http;host=")),
        "{:?}",
        field("forwarded")
    );
    assert_eq!(field("x-hop"), None);
    assert_eq!(field("connection"), None);
}

/// The front's pass-through and pingora's send the same response for a bypass, apart from
/// `Date` (the front keeps the origin's), the timings and the body's request count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_and_pingora_send_the_same_bypass() {
    let route = || {
        Route::ok("same")
            .cache("no-store")
            .header("content-type", "application/json")
            .header("etag", "\"v1\"")
            .header("llmselect-cache-control", "no-store")
    };
    let mut answers = Vec::new();
    for front in [true, false] {
        let e = env_with(|c| c.server.front_pass_through = front).await;
        e.scripted().route("GET", "/pt/same", route());
        assert_eq!(send(e.proxy().get("/pt/same")).await.x_cache(), "MISS");
        let r = send(e.proxy().get("/pt/same")).await;
        assert_eq!(
            (r.status, r.x_cache(), r.body.as_str()),
            (200, "BYPASS", "same")
        );
        // this proxy's own targeted field never leaves it
        assert_eq!(r.headers.get("llmselect-cache-control"), None);
        assert_eq!(stat(&e, "front_passes").await, u64::from(front));
        answers.push(r.stable_headers(&[
            "date",
            "x-response-time",
            "server-timing",
            "x-origin-count",
        ]));
    }
    assert_eq!(answers[0], answers[1]);
}

/// A streamed (chunked) pass-through reaches the client as the origin sends it, and the
/// connections stay usable after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_pass_through_streams_as_it_arrives() {
    let e = env().await;
    e.scripted()
        .route("GET", "/pt/events", Route::ok("warm-up").cache("no-store"));
    assert_eq!(send(e.proxy().get("/pt/events")).await.x_cache(), "MISS");
    e.scripted().route(
        "GET",
        "/pt/events",
        Route::ok("")
            .cache("no-store")
            .sse(&["one", "two", "three"], true),
    );
    let client = reqwest::Client::new();
    let resp = client
        .get(e.proxy().url("/pt/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-cache"], "BYPASS");
    assert_eq!(resp.headers()["transfer-encoding"], "chunked");
    e.scripted()
        .expect_incremental_stream(resp, &["one", "two", "three"])
        .await;
    assert_eq!(stat(&e, "front_passes").await, 1);
    // the same client connection and a pooled origin connection carry the next one
    e.scripted()
        .route("GET", "/pt/events", Route::ok("after").cache("no-store"));
    let next = send(client.get(e.proxy().url("/pt/events"))).await;
    assert_eq!((next.x_cache(), next.body.as_str()), ("BYPASS", "after"));
    assert_eq!(stat(&e, "front_passes").await, 2);
}

/// A URL whose response becomes storable goes back to the cache: the pass-through learns it as
/// pingora's path does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_that_becomes_cacheable_is_cached_again() {
    let e = env().await;
    e.scripted()
        .route("GET", "/pt/flip", Route::ok("v{n}").cache("no-store"));
    assert_eq!(send(e.proxy().get("/pt/flip")).await.x_cache(), "MISS");
    assert_eq!(send(e.proxy().get("/pt/flip")).await.x_cache(), "BYPASS");
    e.scripted()
        .route("GET", "/pt/flip", Route::ok("v{n}").cache("max-age=600"));
    // still predicted uncacheable: forwarded, and the cacheable answer is learnt
    let learnt = send(e.proxy().get("/pt/flip")).await;
    assert_eq!((learnt.x_cache(), learnt.body.as_str()), ("BYPASS", "v3"));
    assert_eq!(stat(&e, "front_passes").await, 2);
    let stored = send(e.proxy().get("/pt/flip")).await;
    assert_eq!((stored.x_cache(), stored.body.as_str()), ("MISS", "v4"));
    let hit = send(e.proxy().get("/pt/flip")).await;
    assert_eq!((hit.x_cache(), hit.body.as_str()), ("HIT", "v4"));
    assert_eq!(e.scripted().count("/pt/flip"), 4);
}

/// Origin failures get the answers pingora's path gives: `504` when the origin does not answer
/// within `timeouts.read_ms`, `502` when it cannot be reached; a pooled origin connection that
/// the origin closed is replaced without the client noticing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_failures_get_json_errors_and_closed_pooled_connections_are_replaced() {
    let e = env_with(|c| c.timeouts.read_ms = 300).await;
    e.scripted()
        .route("GET", "/pt/fail", Route::ok("ok-{n}").cache("no-store"));
    assert_eq!(send(e.proxy().get("/pt/fail")).await.x_cache(), "MISS");
    let pooled = send(e.proxy().get("/pt/fail")).await;
    assert_eq!((pooled.x_cache(), pooled.body.as_str()), ("BYPASS", "ok-2"));
    // the origin drops every open connection (the front's pooled one included) and comes back
    e.scripted().refuse_connections();
    e.scripted().accept_connections().await;
    let replaced = send(e.proxy().get("/pt/fail")).await;
    assert_eq!(
        (replaced.status, replaced.x_cache(), replaced.body.as_str()),
        (200, "BYPASS", "ok-3")
    );

    e.scripted().route(
        "GET",
        "/pt/fail",
        Route::ok("late")
            .cache("no-store")
            .delay(Duration::from_secs(3)),
    );
    let timed_out = send(e.proxy().get("/pt/fail")).await;
    assert_eq!(timed_out.status, 504, "{}", timed_out.body);
    assert_eq!(
        timed_out.json(),
        serde_json::json!({"error": {"code": "origin-timeout", "status": 504}})
    );
    assert_eq!(timed_out.x_cache(), "ERROR");
    assert_eq!(timed_out.header("cache-control"), "no-store");
    assert!(timed_out
        .header("cache-status")
        .ends_with("detail=origin-timeout"));

    e.scripted().refuse_connections();
    let refused = send(e.proxy().get("/pt/fail")).await;
    assert_eq!(refused.status, 502, "{}", refused.body);
    assert_eq!(
        refused.json(),
        serde_json::json!({"error": {"code": "origin-unavailable", "status": 502}})
    );
    assert_eq!(stat(&e, "front_passes").await, 2);
    assert!(stat(&e, "errors").await >= 2);
}

/// With `server.front_pass_through = false`, pingora forwards every pass-through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pass_through_can_be_switched_off() {
    let e = env_with(|c| c.server.front_pass_through = false).await;
    e.scripted()
        .route("GET", "/pt/off", Route::ok("off").cache("no-store"));
    for expected in ["MISS", "BYPASS", "BYPASS"] {
        assert_eq!(send(e.proxy().get("/pt/off")).await.x_cache(), expected);
    }
    // pingora counts a request in its `logging` hook, after the response went out
    llmselect_e2e::wait::eventually_true("pingora counted both bypasses", || async {
        stat(&e, "bypass").await == 2
    })
    .await;
    assert_eq!(stat(&e, "front_passes").await, 0);
}

/// Interim responses (`103 Early Hints`) reach the client before the final response, unchanged
/// (RFC 9110 §15.2), through the front's pass-through. The origin here is a raw socket that
/// sends a 103 before each final `no-store` answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_hints_are_passed_on_before_the_final_response() {
    let origin = llmselect_e2e::raw_origin::spawn(
        "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n\
         HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let p = llmselect_e2e::proxy::spawn_proxy(&format!("http://{origin}"), |_| {}).await;
    let host = format!("Host: {}", addr(&p));
    let mut s = TcpStream::connect(addr(&p)).await.unwrap();
    // one request at a time, each after the previous answer (a pipelined batch would stay
    // with pingora)
    let mut out = Vec::new();
    for i in 1..=3 {
        s.write_all(format!("GET /hints HTTP/1.1\r\n{host}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        llmselect_e2e::http::read_until(&mut s, &mut out, |out| {
            out.windows(6).filter(|w| w == b"\r\n\r\nok").count() >= i
        })
        .await;
    }
    let out = String::from_utf8_lossy(&out).into_owned();
    let answers: Vec<&str> = out.split("HTTP/1.1 103 Early Hints\r\n").skip(1).collect();
    assert_eq!(answers.len(), 3, "{out}");
    for (i, a) in answers.iter().enumerate() {
        let (hint, last) = a.split_once("\r\n\r\n").unwrap();
        assert_eq!(hint, "Link: </s.css>; rel=preload", "{out}");
        assert!(last.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(last.ends_with("\r\n\r\nok"), "{out}");
        // the first goes through pingora (MISS), the others through the front (BYPASS)
        let x = if i == 0 {
            "x-cache: MISS"
        } else {
            "x-cache: BYPASS"
        };
        assert!(
            last.to_ascii_lowercase().contains(&x.to_ascii_lowercase()),
            "{out}"
        );
    }
    let stats = p.stats().await;
    assert_eq!(stats["front_passes"], 2, "{stats}");
}

/// An authenticated uncacheable GET (`/api/v1/auth/me`-like: `private, no-store`) is remembered
/// per user and URL: that user's next requests are forwarded by the front, another user's first
/// request still goes through pingora, and a storable answer puts the pair back on the cache path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_uncacheable_url_is_passed_through_per_user() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/pt/me",
        Route::ok("me {user} #{n}").cache("private, no-store"),
    );
    let as_user = |token: &str| {
        e.proxy()
            .get("/pt/me")
            .header("authorization", format!("Bearer {token}"))
    };
    let first = send(as_user("alice")).await;
    assert_eq!(
        (first.x_cache(), first.body.as_str()),
        ("MISS", "me auth:Bearer alice #1")
    );
    let passes = stat(&e, "front_passes").await;
    let again = send(as_user("alice")).await;
    assert_eq!(
        (again.x_cache(), again.body.as_str()),
        ("BYPASS", "me auth:Bearer alice #2")
    );
    assert_eq!(stat(&e, "front_passes").await, passes + 1);
    // another user: nothing is known for this credential yet
    let bob = send(as_user("bob")).await;
    assert_eq!(
        (bob.x_cache(), bob.body.as_str()),
        ("MISS", "me auth:Bearer bob #3")
    );
    assert_eq!(send(as_user("bob")).await.x_cache(), "BYPASS");
    // nor for an anonymous request, which never reads a user's answer
    let anonymous = send(e.proxy().get("/pt/me")).await;
    assert_eq!(anonymous.body, "me anonymous #5");
    assert_eq!(stat(&e, "front_passes").await, passes + 2);

    // the origin makes the answer storable per user: the pass-through learns it, the next request
    // is stored, then hit, for that user only
    e.scripted().route(
        "GET",
        "/pt/me",
        Route::ok("me {user} #{n}")
            .cache("private")
            .header("llmselect-cache-control", "max-age=60, must-revalidate"),
    );
    let learnt = send(as_user("alice")).await;
    assert_eq!(
        (learnt.x_cache(), learnt.body.as_str()),
        ("BYPASS", "me auth:Bearer alice #6")
    );
    let stored = send(as_user("alice")).await;
    assert_eq!(
        (stored.x_cache(), stored.body.as_str()),
        ("MISS", "me auth:Bearer alice #7")
    );
    let hit = send(as_user("alice")).await;
    assert_eq!(
        (hit.x_cache(), hit.body.as_str()),
        ("HIT", "me auth:Bearer alice #7")
    );
    // bob's pair is still remembered: forwarded, learnt, then cached for bob alone
    assert_eq!(send(as_user("bob")).await.x_cache(), "BYPASS");
    assert_eq!(send(as_user("bob")).await.body, "me auth:Bearer bob #9");
    let bob_hit = send(as_user("bob")).await;
    assert_eq!(
        (bob_hit.x_cache(), bob_hit.body.as_str()),
        ("HIT", "me auth:Bearer bob #9")
    );
}
