//! The memory bound and the max object size.

use crate::{env_with, get};
use llmselect_e2e::http::send;
use llmselect_e2e::scripted_origin::Route;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filling_twice_the_capacity_stays_under_capacity() {
    let capacity: u64 = 1024 * 1024;
    let e = env_with(|c| {
        c.cache.capacity_bytes = capacity;
        c.cache.shards = 4;
        c.cache.max_object_bytes = 64 * 1024;
    })
    .await;
    let body = "x".repeat(32 * 1024);
    for i in 0..64 {
        let path = format!("/blob/{i}");
        e.scripted()
            .route("GET", &path, Route::ok(&body).cache("max-age=600"));
        let r = get(e.proxy(), &path).await;
        assert_eq!(r.body.len(), body.len());
    }
    let (weight, cap) = e.proxy().handle.as_ref().unwrap().store_weight();
    assert_eq!(cap, capacity);
    assert!(weight <= capacity, "weight {weight} > capacity {capacity}");
    let stats = e.proxy().stats().await;
    assert!(stats["evictions"].as_u64().unwrap() > 0);
    assert!(stats["bytes"].as_u64().unwrap() <= capacity);
    // recent entries are still there
    assert_eq!(get(e.proxy(), "/blob/63").await.x_cache(), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_responses_are_streamed_uncached() {
    let e = env_with(|c| c.cache.max_object_bytes = 64 * 1024).await;
    let big = "y".repeat(200 * 1024);
    // with Content-Length
    e.scripted()
        .route("GET", "/big", Route::ok(&big).cache("max-age=600"));
    for _ in 0..2 {
        let r = get(e.proxy(), "/big").await;
        assert_eq!(r.body.len(), big.len());
        assert_ne!(r.x_cache(), "HIT");
    }
    assert_eq!(e.scripted().count("/big"), 2);
    // chunked (no Content-Length): counted while streaming, still complete for the client
    e.scripted().route(
        "GET",
        "/big-chunked",
        Route::ok(&big)
            .cache("max-age=600")
            .body_pause(std::time::Duration::from_millis(20)),
    );
    for _ in 0..2 {
        let r = send(e.proxy().get("/big-chunked")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), big.len());
        assert_ne!(r.x_cache(), "HIT");
    }
    assert_eq!(e.scripted().count("/big-chunked"), 2);
}

/// An origin that promises 100 bytes, sends 50 and closes the connection, counting requests.
async fn truncating_origin() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head =
                    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nCache-Control: max-age=600\r\n\r\n";
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&[b'z'; 50]).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_fill_is_never_served_as_complete() {
    let (url, count) = truncating_origin().await;
    let proxy = llmselect_e2e::proxy::spawn_proxy(&url, |_| {}).await;
    for i in 1..=2 {
        let result = proxy.get("/cut").send().await;
        // the client sees an error or a short body, never a complete 100-byte response
        if let Ok(resp) = result {
            if let Ok(body) = resp.bytes().await {
                assert!(body.len() < 100, "attempt {i}: got {} bytes", body.len());
            }
        }
        assert_eq!(
            count.load(std::sync::atomic::Ordering::SeqCst),
            i,
            "attempt {i} had to go to the origin: nothing was stored"
        );
    }
    let stats = proxy.stats().await;
    assert_eq!(stats["entries"], 0);
}
