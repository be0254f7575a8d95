//! The front's fill (`server::fill`): plain HTTP/1.1 `GET` misses of cold keys are fetched,
//! stored and answered by the raw front instead of pingora's proxy state machine. `front_fills`
//! in the admin `/stats` counts them. The responses are the ones pingora's miss path sends,
//! apart from `Date` (the front keeps the origin's) and the timings; what is stored is the same.

use super::{env_with, get};
use llmselect_e2e::http::{send, Resp};
use llmselect_e2e::proxy::spawn_proxy;
use llmselect_e2e::raw_origin;
use llmselect_e2e::scripted_origin::Route;
use llmselect_e2e::stack::Stack;
use llmselect_e2e::wait::eventually_true;
use std::time::Duration;

/// Counter `name` of the admin `/stats` of the proxy `p`.
async fn stat(p: &llmselect_e2e::proxy::TestProxy, name: &str) -> u64 {
    p.stats().await[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in /stats"))
}

/// Headers that differ between two runs of the same exchange.
const VARYING: [&str; 4] = ["date", "x-response-time", "server-timing", "x-origin-count"];

/// The miss and the hit after it, as a client sees them.
#[derive(Debug, PartialEq)]
struct Seen {
    miss: (u16, Vec<(String, String)>, String),
    hit: (u16, Vec<(String, String)>, String),
}

fn seen(miss: &Resp, hit: &Resp) -> Seen {
    Seen {
        miss: (miss.status, settled(miss), miss.body.clone()),
        hit: (hit.status, settled(hit), hit.body.clone()),
    }
}

/// The stable headers of `r`, with the values that depend on the second a response was made in
/// (`Age`, the `ttl` of `Cache-Status`) checked for range and then written as a placeholder.
fn settled(r: &Resp) -> Vec<(String, String)> {
    let mut headers = r.stable_headers(&VARYING);
    for (name, value) in headers.iter_mut() {
        if name == "age" {
            let age: u64 = value.parse().unwrap();
            assert!(age <= 2, "age {age}");
            *value = "<age>".into();
        }
        if let Some((rest, ttl)) = value.split_once("; ttl=") {
            let ttl: i64 = ttl.parse().unwrap();
            assert!((0..=60).contains(&ttl), "ttl {ttl}");
            *value = format!("{rest}; ttl=<ttl>");
        }
    }
    headers
}

/// Request fields sent with a programmed route.
type Fields = Vec<(&'static str, &'static str)>;

/// Programmed responses that exercise what a fill does to a response: a plain stored one, one
/// with fields the store withholds (`Set-Cookie`) and this proxy's own targeted field, a `Vary`,
/// refused ones (a `no-store` `200`, which pingora marks `Accept-Ranges`, and a `503`), a stored
/// `404`, and one compressed on its way into the store.
fn routes() -> Vec<(&'static str, Route, Fields)> {
    let long = "compressible text, ".repeat(200);
    vec![
        (
            "/fill/plain",
            Route::ok("plain")
                .cache("max-age=60")
                .header("content-type", "application/json")
                .header("etag", "\"v1\"")
                .header("X-App-Field", "kept"),
            vec![],
        ),
        (
            "/fill/cookie",
            Route::ok("cookie")
                .cache("public, max-age=60")
                .header("set-cookie", "seen=1; Path=/")
                .header("llmselect-cache-control", "public, max-age=30"),
            vec![],
        ),
        (
            "/fill/vary",
            Route::ok("vary")
                .cache("max-age=60")
                .header("vary", "Accept-Language"),
            vec![("accept-language", "de")],
        ),
        (
            "/fill/refused",
            Route::ok("refused-{n}").cache("no-store"),
            vec![],
        ),
        (
            "/fill/busy",
            Route::status(503, "busy-{n}").cache("no-store"),
            vec![],
        ),
        (
            "/fill/missing",
            Route::status(404, "missing").cache("max-age=60"),
            vec![],
        ),
        (
            "/fill/gzip",
            Route::ok(&long)
                .cache("max-age=60")
                .header("content-type", "text/plain"),
            vec![("accept-encoding", "gzip")],
        ),
    ]
}

/// For each programmed response, the miss and the request after it through a proxy with the
/// front's fill and through one without: the same statuses, fields and bodies (the `404` and
/// the refused response included), and only the first proxy's front counted fills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_and_pingora_send_the_same_miss_and_store_the_same_entry() {
    let mut runs = Vec::new();
    for front in [true, false] {
        let e = env_with(|c| {
            c.server.front_fill = front;
            c.compression.enabled = true;
        })
        .await;
        let mut run = Vec::new();
        for (path, route, fields) in routes() {
            e.scripted().route("GET", path, route);
            let request = || {
                fields
                    .iter()
                    .fold(e.proxy().get(path), |r, (k, v)| r.header(*k, *v))
            };
            let miss = send(request()).await;
            assert_eq!(miss.x_cache(), "MISS", "{path}: {:?}", miss.headers);
            let next = send(request()).await;
            run.push((path, seen(&miss, &next)));
        }
        let fills = stat(e.proxy(), "front_fills").await;
        // every first request was a fill of the front's, when it has one, and so was the second
        // request for the `503`: a refusal for the response's status says nothing of the URL, so
        // the predictor does not learn it (pingora's path fetches it as a miss again too)
        let filled = routes().len() as u64 + 1;
        assert_eq!(fills, if front { filled } else { 0 });
        runs.push(run);
    }
    for ((path, front), (_, pingora)) in runs[0].iter().zip(&runs[1]) {
        assert_eq!(front, pingora, "{path}");
    }
    // what the client of each saw, spelled out for the plain one
    let plain = &runs[0][0].1;
    let field = |h: &[(String, String)], n: &str| {
        h.iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        field(&plain.miss.1, "cache-status"),
        "llmselect-edge; fwd=uri-miss; fwd-status=200; stored; ttl=<ttl>"
    );
    assert_eq!(field(&plain.miss.1, "x-app-field"), "kept");
    assert_eq!(field(&plain.hit.1, "x-cache"), "HIT");
    // the withheld cookie reaches the fetching client only, the own field nobody
    let cookie = &runs[0][1].1;
    assert_eq!(field(&cookie.miss.1, "set-cookie"), "seen=1; Path=/");
    assert_eq!(field(&cookie.hit.1, "set-cookie"), "");
    assert_eq!(field(&cookie.miss.1, "llmselect-cache-control"), "");
    assert_eq!(field(&cookie.hit.1, "x-cache"), "HIT");
    // the refused response: a miss that is not stored, then a bypass
    let refused = &runs[0][3].1;
    assert_eq!(
        field(&refused.miss.1, "cache-status"),
        "llmselect-edge; fwd=uri-miss; fwd-status=200"
    );
    assert_eq!(field(&refused.hit.1, "x-cache"), "BYPASS");
    assert_eq!(field(&refused.miss.1, "accept-ranges"), "bytes");
    let busy = &runs[0][4].1;
    assert_eq!((busy.miss.0, busy.miss.2.as_str()), (503, "busy-1"));
    assert_eq!((busy.hit.0, busy.hit.2.as_str()), (503, "busy-2"));
    assert_eq!(field(&busy.hit.1, "x-cache"), "MISS");
    // compressed into the store, and the hit is the stored encoding
    let gzip = &runs[0][6].1;
    assert_eq!(field(&gzip.miss.1, "content-encoding"), "gzip");
    assert_eq!(field(&gzip.hit.1, "content-encoding"), "gzip");
}

/// Chunked and close-delimited origin bodies are decoded into the store and reach the client
/// re-framed (chunked), as pingora's path frames them; the hits after them are the whole body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_close_delimited_bodies_are_stored_decoded() {
    let chunked = raw_origin::spawn(
        "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n",
    )
    .await;
    let closed = closing_origin(
        "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nConnection: close\r\n\r\nuntil the end",
    )
    .await;
    for (origin, body) in [(chunked, "hello, world"), (closed, "until the end")] {
        let mut answers = Vec::new();
        for front in [true, false] {
            let p = spawn_proxy(&format!("http://{origin}"), |c| c.server.front_fill = front).await;
            let miss = get(&p, "/raw").await;
            assert_eq!((miss.status, miss.body.as_str()), (200, body));
            assert_eq!(miss.x_cache(), "MISS");
            let hit = get(&p, "/raw").await;
            assert_eq!((hit.x_cache(), hit.body.as_str()), ("HIT", body));
            assert_eq!(stat(&p, "front_fills").await, u64::from(front));
            answers.push(seen(&miss, &hit));
        }
        assert_eq!(answers[0], answers[1], "{body}");
    }
}

/// An origin that answers each request head with `answer` and closes the connection (the end
/// of a close-delimited body).
async fn closing_origin(answer: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    addr
}

/// A hundred requests for a cold key: the first is fetched by the front's fill, the 99 sent while
/// the origin takes its time wait for that fill in the front (reported collapsed) and get its
/// body; one origin request in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_share_the_fronts_fill() {
    let e = env_with(|_| {}).await;
    e.scripted().route(
        "GET",
        "/fill/slow",
        Route::ok("slow-{n}")
            .cache("max-age=60")
            .delay(Duration::from_secs(2)),
    );
    let first = tokio::spawn(send(e.proxy().get("/fill/slow")));
    eventually_true("the first request reached the origin", || async {
        e.scripted().count("/fill/slow") == 1
    })
    .await;
    let rest = (0..99).map(|_| get(e.proxy(), "/fill/slow"));
    let rest = futures::future::join_all(rest).await;
    let first = first.await.unwrap();
    assert_eq!(
        (first.status, first.x_cache(), first.body.as_str()),
        (200, "MISS", "slow-1")
    );
    for a in &rest {
        assert_eq!(
            (a.status, a.x_cache(), a.body.as_str()),
            (200, "HIT", "slow-1")
        );
    }
    assert_eq!(e.scripted().count("/fill/slow"), 1);
    assert_eq!(stat(e.proxy(), "front_fills").await, 1);
    // those that arrived while the origin was still answering waited for the fill (the first of
    // them was sent right after the origin saw the fetch, well within its two seconds)
    let collapsed = rest
        .iter()
        .filter(|a| a.header("cache-status").contains("collapsed"))
        .count();
    assert!(collapsed >= 1, "no request waited for the fill");
}

/// A purge of the URL while the front's fill streams: the fetching client still gets the whole
/// response, but it is not stored (the next request goes to the origin again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_during_the_fronts_fill_keeps_it_out_of_the_store() {
    let e = env_with(|_| {}).await;
    let body = "first half, sent|second half, held";
    e.scripted().route(
        "GET",
        "/fill/purged",
        Route::ok(body).cache("max-age=60").hold_body(),
    );
    let mut resp = e.proxy().get("/fill/purged").send().await.unwrap();
    let first = resp.chunk().await.unwrap().expect("the first half");
    assert_eq!(stat(e.proxy(), "front_fills").await, 1);
    let (status, _) = e
        .proxy()
        .purge(serde_json::json!({ "urls": ["/fill/purged"] }))
        .await;
    assert_eq!(status, 200);
    e.scripted().release_streams();
    let rest = resp.text().await.unwrap();
    assert_eq!(format!("{}{rest}", String::from_utf8_lossy(&first)), body);
    let next = get(e.proxy(), "/fill/purged").await;
    assert_eq!((next.x_cache(), next.body.as_str()), ("MISS", body));
    assert_eq!(e.scripted().count("/fill/purged"), 2);
}

/// Per-user responses filled by the front are keyed per credential: another user's request for
/// the same URL never gets them, and gets its own from the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_for_one_credential_never_answers_another() {
    let e = env_with(|_| {}).await;
    e.scripted().route(
        "GET",
        "/fill/mine",
        Route::ok("{user}")
            .cache("private")
            // a shared cache stores a response to a request with `Authorization` only when told
            // it may (RFC 9111 §3.5)
            .header("llmselect-cache-control", "max-age=600, must-revalidate")
            .header("vary", "Authorization"),
    );
    let as_user = |user: &str| {
        e.proxy()
            .get("/fill/mine")
            .header("authorization", format!("Bearer {user}"))
    };
    let alice = send(as_user("alice")).await;
    assert_eq!(
        (alice.x_cache(), alice.body.as_str()),
        ("MISS", "auth:Bearer alice")
    );
    assert_eq!(stat(e.proxy(), "front_fills").await, 1);
    let bob = send(as_user("bob")).await;
    assert_eq!(
        (bob.x_cache(), bob.body.as_str()),
        ("MISS", "auth:Bearer bob")
    );
    for user in ["alice", "bob"] {
        let hit = send(as_user(user)).await;
        assert_eq!(
            (hit.x_cache(), hit.body.clone()),
            ("HIT", format!("auth:Bearer {user}"))
        );
    }
    assert_eq!(e.scripted().count("/fill/mine"), 2);
}

/// An origin that cannot be reached: the fill's client gets pingora's `502` JSON answer, and the
/// key is not left locked (the next request, once the origin is back, is fetched and stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_failure_leaves_no_lock_behind() {
    let e: Stack = env_with(|_| {}).await;
    e.scripted()
        .route("GET", "/fill/down", Route::ok("back").cache("max-age=60"));
    e.scripted().refuse_connections();
    let failed = get(e.proxy(), "/fill/down").await;
    assert_eq!(failed.status, 502, "{}", failed.body);
    assert_eq!(
        failed.json(),
        serde_json::json!({"error": {"code": "origin-unavailable", "status": 502}})
    );
    assert_eq!(failed.x_cache(), "ERROR");
    assert_eq!(stat(e.proxy(), "front_fills").await, 0);
    e.scripted().accept_connections().await;
    eventually_true("the origin answers through the proxy again", || async {
        get(e.proxy(), "/fill/down").await.status == 200
    })
    .await;
    let hit = get(e.proxy(), "/fill/down").await;
    assert_eq!((hit.x_cache(), hit.body.as_str()), ("HIT", "back"));
}
