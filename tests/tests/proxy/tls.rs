//! TLS and HTTP/2 on the client side: HTTP/2 by ALPN (HTTP/1.1 kept), cached hits on both hit
//! paths over HTTP/2, SSE over HTTP/2, h2c, and certificates replaced without a restart.

use llmselect_e2e::scripted_origin::Route;
use llmselect_e2e::stack::Stack;
use llmselect_e2e::tls::{free_port, TestCa};
use llmselect_e2e::wait::eventually_true;
use reqwest::Version;

/// The scripted origin and a proxy with a TLS listener serving a `localhost` certificate.
async fn tls_env(ca: &TestCa, customize: impl FnOnce(&mut llmselect_proxy::Config)) -> Stack {
    let leaf = ca.write_leaf(&["localhost"]);
    Stack::builder()
        .scripted_origin()
        .proxy(move |c| {
            c.tls.listen = format!("127.0.0.1:{}", free_port());
            c.tls.cert = leaf.cert.to_string_lossy().into_owned();
            c.tls.key = leaf.key.to_string_lossy().into_owned();
            customize(c);
        })
        .start()
        .await
}

fn tls_addr(e: &Stack) -> std::net::SocketAddr {
    e.proxy()
        .handle
        .as_ref()
        .and_then(|h| h.tls_addr)
        .expect("a TLS listener")
}

fn https(e: &Stack, host: &str, path: &str) -> String {
    format!("https://{host}:{}{path}", tls_addr(e).port())
}

fn json_list() -> String {
    let rows: Vec<String> = (0..20)
        .map(|i| format!(r#"{{"id":{i},"title":"Conversation number {i}","model":"m"}}"#))
        .collect();
    format!("[{}]", rows.join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_over_tls_serves_misses_and_hits_on_both_hit_paths() {
    let ca = TestCa::new();
    let e = tls_env(&ca, |_| {}).await;
    let body = json_list();
    e.scripted().route(
        "GET",
        "/list",
        Route::ok(&body)
            .header("content-type", "application/json")
            .cache("public, max-age=60")
            .etag("\"l1\""),
    );
    let h2 = ca.client(&["localhost"], tls_addr(&e)).build().unwrap();
    let url = https(&e, "localhost", "/list");
    let get = |ae: &'static str| h2.get(&url).header("accept-encoding", ae);

    let miss = get("br").send().await.unwrap();
    assert_eq!(miss.version(), Version::HTTP_2);
    assert_eq!(miss.headers()["content-encoding"], "br");
    let miss_body = miss.bytes().await.unwrap();
    let seen = e
        .scripted()
        .last("/list")
        .expect("the miss reached the origin");
    let forwarded = seen.headers["forwarded"].to_str().unwrap();
    assert!(forwarded.contains("proto=https"), "{forwarded}");
    assert!(forwarded.contains("host=\"localhost:"), "{forwarded}");

    // the fast hit path over HTTP/2
    let fast = || async { e.proxy().stats().await["fast_hits"].as_u64().unwrap() };
    let fast_before = fast().await;
    let hit = get("br").send().await.unwrap();
    assert_eq!(hit.version(), Version::HTTP_2);
    assert_eq!(hit.headers()["x-cache"], "HIT");
    assert_eq!(fast().await, fast_before + 1);
    assert!(hit.headers()["cache-status"]
        .to_str()
        .unwrap()
        .contains("; hit"));
    assert_eq!(
        hit.headers()["content-length"],
        miss_body.len().to_string().as_str()
    );
    assert_eq!(hit.bytes().await.unwrap(), miss_body);

    // pingora's hit path over HTTP/2 (a conditional request that does not match)
    let full = get("br")
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(full.version(), Version::HTTP_2);
    assert_eq!(full.headers()["x-cache"], "HIT");
    assert_eq!(fast().await, fast_before + 1, "served by pingora's path");
    assert_eq!(full.bytes().await.unwrap(), miss_body);
    let not_modified = get("br")
        .header("if-none-match", "\"l1-br\"")
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);

    // identity over HTTP/2, and HTTP/1.1 over TLS still answers
    let plain = h2.get(&url).send().await.unwrap();
    assert_eq!(plain.text().await.unwrap(), body);
    let h1 = ca
        .client(&["localhost"], tls_addr(&e))
        .http1_only()
        .build()
        .unwrap();
    let over_h1 = h1.get(&url).send().await.unwrap();
    assert_eq!(over_h1.version(), Version::HTTP_11);
    assert_eq!(over_h1.headers()["x-cache"], "HIT");
    assert_eq!(over_h1.text().await.unwrap(), body);
    assert_eq!(e.scripted().count("/list"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_arrives_incrementally_over_http2() {
    let ca = TestCa::new();
    let e = tls_env(&ca, |_| {}).await;
    e.scripted().route(
        "GET",
        "/events",
        Route::ok("").sse(&["one", "two", "three"], true),
    );
    let client = ca.client(&["localhost"], tls_addr(&e)).build().unwrap();
    let resp = client
        .get(https(&e, "localhost", "/events"))
        .header("accept-encoding", "br, gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert!(resp.headers().get("content-encoding").is_none());
    e.scripted()
        .expect_incremental_stream(resp, &["one", "two", "three"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_off_offers_http1_only_and_h2c_is_optional() {
    let ca = TestCa::new();
    let e = tls_env(&ca, |c| {
        c.tls.h2 = false;
        c.server.h2c = true;
    })
    .await;
    e.scripted()
        .route("GET", "/x", Route::ok("x").cache("public, max-age=60"));
    let client = ca.client(&["localhost"], tls_addr(&e)).build().unwrap();
    let r = client
        .get(https(&e, "localhost", "/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), Version::HTTP_11);
    assert_eq!(r.text().await.unwrap(), "x");
    // h2c with prior knowledge on the plain listener, HTTP/1.1 there as before
    let h2c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let first = h2c.get(e.proxy().url("/x")).send().await.unwrap();
    assert_eq!(first.version(), Version::HTTP_2);
    assert_eq!(first.text().await.unwrap(), "x");
    let r = h2c.get(e.proxy().url("/x")).send().await.unwrap();
    assert_eq!(r.version(), Version::HTTP_2);
    assert_eq!(r.headers()["x-cache"], "HIT");
    assert_eq!(r.text().await.unwrap(), "x");
    // (the TLS request named another authority, hence another cache key)
    assert_eq!(e.scripted().count("/x"), 2);
    let r = e.proxy().get("/x").send().await.unwrap();
    assert_eq!(r.version(), Version::HTTP_11);
}

/// Whether a fresh connection to the TLS listener under `host` verifies and answers.
async fn answers_as(ca: &TestCa, e: &Stack, host: &str) -> bool {
    let client = ca.client(&[host], tls_addr(e)).build().unwrap();
    client
        .get(https(e, host, "/x"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_certificate_is_served_without_a_restart() {
    let ca = TestCa::new();
    let e = tls_env(&ca, |c| c.tls.reload_interval_secs = 1).await;
    e.scripted().route("GET", "/x", Route::ok("x"));
    assert!(answers_as(&ca, &e, "localhost").await);
    assert!(!answers_as(&ca, &e, "edge.test").await);
    ca.write_leaf(&["edge.test"]);
    eventually_true("the new certificate is served", || {
        answers_as(&ca, &e, "edge.test")
    })
    .await;
    assert!(!answers_as(&ca, &e, "localhost").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate() {
    let ca = TestCa::new();
    // no file polling: only the signal reloads
    let e = tls_env(&ca, |c| c.tls.reload_interval_secs = 0).await;
    e.scripted().route("GET", "/x", Route::ok("x"));
    ca.write_leaf(&["hup.test"]);
    assert!(!answers_as(&ca, &e, "hup.test").await);
    assert!(answers_as(&ca, &e, "localhost").await);
    // nextest runs each test in its own process: the signal reaches this proxy only
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    eventually_true("the certificate is reloaded on SIGHUP", || {
        answers_as(&ca, &e, "hup.test")
    })
    .await;
}
