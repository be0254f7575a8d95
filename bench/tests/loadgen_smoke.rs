//! The load generator against a tiny local hyper server for about a second: every request it
//! counts reached the server, the expectations and X-Cache bookkeeping add up. No timing asserts.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use llmselect_bench::loadgen::{self, Expect, Plan, Req, Scenario};
use tokio::net::TcpListener;

/// Answers every request with `hello <path>` and `X-Cache: HIT` on even-numbered requests.
async fn start_server(counter: Arc<AtomicU64>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let body = format!("hello {}", req.uri().path());
                    let mut resp = Response::new(Full::new(Bytes::from(body)));
                    if n % 2 == 0 {
                        resp.headers_mut()
                            .insert("x-cache", http::HeaderValue::from_static("HIT"));
                    }
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Two kinds: "/a" expecting its own path (always fresh) and "/b" expecting text that never
/// appears (always stale).
struct TwoKinds;

impl Scenario for TwoKinds {
    fn kinds(&self) -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    fn next(&self, _conn: usize, seq: u64) -> Req {
        if seq % 2 == 0 {
            let mut r = Req::get("/a").kind(0);
            r.expect = Some(Expect::Contains("hello /a".into()));
            r
        } else {
            let mut r = Req::get("/b").kind(1);
            r.expect = Some(Expect::Contains("never".into()));
            r
        }
    }
}

#[tokio::test]
async fn counts_add_up() {
    let counter = Arc::new(AtomicU64::new(0));
    let addr = start_server(counter.clone()).await;
    let plan = Plan {
        addr,
        spread: Vec::new(),
        connections: 4,
        duration: Duration::from_millis(800),
        warmup: Duration::ZERO,
        max_requests: None,
    };
    let result = loadgen::run(&plan, Arc::new(TwoKinds)).await.unwrap();
    let served = counter.load(Ordering::Relaxed);
    let total = &result.total;
    assert!(total.requests > 0);
    assert_eq!(
        total.requests, served,
        "every counted request reached the server"
    );
    assert_eq!(total.errors, 0);
    assert_eq!(total.ok, total.requests);
    assert_eq!(total.statuses.get(&StatusCode::OK.as_u16()), Some(&served));
    assert_eq!(result.kinds[0].stale, 0, "/a always shows what it should");
    assert_eq!(
        result.kinds[1].stale, result.kinds[1].requests,
        "/b never does"
    );
    assert_eq!(
        result.kinds[0].requests + result.kinds[1].requests,
        total.requests
    );
    let hits = total.hits();
    let misses = total.x_cache.get("-").copied().unwrap_or(0);
    assert_eq!(hits + misses, total.requests);
    assert_eq!(total.latency.count, total.requests);
}

#[tokio::test]
async fn request_budget_is_exact() {
    let counter = Arc::new(AtomicU64::new(0));
    let addr = start_server(counter.clone()).await;
    let plan = Plan {
        addr,
        spread: Vec::new(),
        connections: 50,
        duration: Duration::from_secs(30),
        warmup: Duration::ZERO,
        max_requests: Some(50),
    };
    let result = loadgen::run(&plan, Arc::new(TwoKinds)).await.unwrap();
    assert_eq!(result.total.requests, 50);
    assert_eq!(counter.load(Ordering::Relaxed), 50);
}
