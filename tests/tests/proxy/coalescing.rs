//! Concurrent misses for one key make one origin request.

use crate::{env, env_with, get};
use llmselect_e2e::http::send;
use llmselect_e2e::scripted_origin::Route;
use llmselect_e2e::wait::eventually_true;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_misses_make_one_origin_request() {
    hundred_concurrent_misses(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_misses_make_one_origin_request_without_streamed_fills() {
    hundred_concurrent_misses(false).await;
}

async fn hundred_concurrent_misses(stream_fills: bool) {
    let e = env_with(|c| c.cache.stream_fills = stream_fills).await;
    e.scripted().route(
        "GET",
        "/cold",
        Route::ok("cold {n}")
            .cache("max-age=60")
            .delay(Duration::from_millis(300)),
    );
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let req = e.proxy().get("/cold");
        tasks.push(tokio::spawn(send(req)));
    }
    let mut statuses = std::collections::HashMap::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "cold 1");
        *statuses.entry(r.x_cache().to_string()).or_insert(0) += 1;
    }
    assert_eq!(
        e.scripted().count("/cold"),
        1,
        "one origin request for 100 clients: {statuses:?}"
    );
    assert_eq!(statuses.get("MISS"), Some(&1), "{statuses:?}");
    assert_eq!(statuses.get("HIT"), Some(&99), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_report_collapsed() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/slow",
        Route::ok("slow")
            .cache("max-age=60")
            .delay(Duration::from_millis(1000)),
    );
    let a = tokio::spawn(send(e.proxy().get("/slow")));
    // the second request arrives while the first holds the cache lock
    eventually_true("first request reached the origin", || async {
        e.scripted().count("/slow") == 1
    })
    .await;
    let b = send(e.proxy().get("/slow")).await;
    let a = a.await.unwrap();
    assert_eq!(a.x_cache(), "MISS");
    assert_eq!(b.x_cache(), "HIT");
    assert!(
        b.header("cache-status").contains("collapsed"),
        "{}",
        b.header("cache-status")
    );
    assert!(
        b.header("server-timing").contains("lock;dur="),
        "{}",
        b.header("server-timing")
    );
    assert_eq!(e.scripted().count("/slow"), 1);
}

/// The first half of [`HELD`] (the scripted origin holds the second half).
const FIRST_HALF: &str = "first half, sent|";
const HELD: &str = "first half, sent|second half, held";

/// Sends `GET path` and reads until the first half of [`HELD`] arrived; fails when it does not
/// arrive within 10 s (a proxy that buffers the fill never sends it while the origin holds).
async fn first_half(e: &llmselect_e2e::stack::Stack, path: &str) -> (reqwest::Response, String) {
    let read = async {
        let mut resp = e.proxy().get(path).send().await.expect("response header");
        let mut got = String::new();
        while got.len() < FIRST_HALF.len() {
            let chunk = resp.chunk().await.expect("body").expect("more body");
            got.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        (resp, got)
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the first half arrives while the origin holds the rest")
}

/// A proxy with `stream_fills` whose origin holds the second half of [`HELD`] at `path`, and
/// `clients` requests that each received the first half.
async fn held_fill(
    path: &str,
    clients: usize,
) -> (
    llmselect_e2e::stack::Stack,
    Vec<(reqwest::Response, String)>,
) {
    let e = env_with(|c| c.cache.stream_fills = true).await;
    e.scripted()
        .route("GET", path, Route::ok(HELD).cache("max-age=60").hold_body());
    let readers = (0..clients).map(|_| first_half(&e, path));
    let started = futures::future::join_all(readers).await;
    (e, started)
}

/// With `stream_fills`, every request waiting on a fill gets the bytes the origin has sent while
/// the origin still holds the rest; one origin request serves them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_fill_reaches_every_waiter_before_it_ends() {
    let (e, started) = held_fill("/streamed", 100).await;
    for (_, got) in &started {
        assert_eq!(got, FIRST_HALF);
    }
    e.scripted().release_streams();
    for (resp, got) in started {
        let rest = resp.text().await.expect("the rest of the body");
        assert_eq!(format!("{got}{rest}"), HELD);
    }
    assert_eq!(e.scripted().count("/streamed"), 1);
    let hit = get(e.proxy(), "/streamed").await;
    assert_eq!((hit.x_cache(), hit.body.as_str()), ("HIT", HELD));
}

/// A streamed fill that the origin cuts reaches its readers as an error, never as a complete
/// body, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_streamed_fill_is_an_error_for_every_reader() {
    let (e, started) = held_fill("/cut", 10).await;
    e.scripted().refuse_connections();
    for (resp, _) in started {
        assert!(
            resp.text().await.is_err(),
            "a cut fill must not look complete"
        );
    }
    e.scripted().accept_connections().await;
    e.scripted().release_streams();
    let next = get(e.proxy(), "/cut").await;
    assert_eq!(next.x_cache(), "MISS");
    assert_eq!(next.body, HELD);
}

/// Two users ask for the same per-user URL while its fill streams: pingora's cache lock is per
/// URL, so the second user's request may wait on the first user's fill, but it must never read
/// it. Each user gets their own body, from their own origin request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_fill_is_never_read_by_another_credential() {
    let e = env_with(|c| c.cache.stream_fills = true).await;
    e.scripted().route(
        "GET",
        "/mine",
        Route::ok("{user}|padding so that each half is long enough")
            .cache("private")
            .header("llmselect-cache-control", "max-age=600, must-revalidate")
            .header("vary", "Authorization, Cookie")
            .hold_body(),
    );
    let as_user = |user: &str| {
        e.proxy()
            .get("/mine")
            .header("authorization", format!("Bearer {user}"))
    };
    // alice's fill is under way: her first half has arrived, the origin holds the rest
    let mut alice = as_user("alice").send().await.expect("alice's header");
    let first = alice.chunk().await.expect("body").expect("first half");
    assert!(String::from_utf8_lossy(&first).starts_with("auth:Bearer alice|"));
    // bob arrives during alice's fill
    let bob = tokio::spawn(send(as_user("bob")));
    eventually_true("bob's own request reached the origin", || async {
        e.scripted().count("/mine") == 2
    })
    .await;
    e.scripted().release_streams();
    let rest = alice.text().await.expect("the rest of alice's body");
    let alice_body = format!("{}{rest}", String::from_utf8_lossy(&first));
    assert!(alice_body.starts_with("auth:Bearer alice|"), "{alice_body}");
    let bob = bob.await.unwrap();
    assert_eq!(bob.status, 200);
    assert!(bob.body.starts_with("auth:Bearer bob|"), "{}", bob.body);
    assert_eq!(bob.x_cache(), "MISS");
    // and each stored variant answers its own user only
    for user in ["alice", "bob"] {
        let hit = send(as_user(user)).await;
        assert_eq!(hit.x_cache(), "HIT");
        assert!(
            hit.body.starts_with(&format!("auth:Bearer {user}|")),
            "{}",
            hit.body
        );
    }
    assert_eq!(e.scripted().count("/mine"), 2);
}
