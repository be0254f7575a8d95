//! Concurrent misses for one key make one origin request.

use crate::env;
use llmselect_e2e::http::send;
use llmselect_e2e::scripted_origin::Route;
use llmselect_e2e::wait::eventually_true;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_misses_make_one_origin_request() {
    let e = env().await;
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
