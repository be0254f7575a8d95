//! End-to-end tests of the caching proxy against the programmable test origin. Every test
//! starts its own origin and proxy on ephemeral loopback ports and proves cache behaviour from
//! the origin's request counters.

mod admin;
mod basics;
mod coalescing;
mod freshness;
mod invalidation;
mod isolation;
mod limits;
mod security;
mod stale;
mod streaming;
mod vary;

use llmselect_e2e::proxy::{spawn_proxy, TestProxy};
use llmselect_e2e::test_origin::TestOrigin;
use std::time::Duration;

/// An origin and a proxy in front of it.
pub struct Env {
    pub origin: TestOrigin,
    pub proxy: TestProxy,
}

pub async fn env() -> Env {
    env_with(|_| {}).await
}

pub async fn env_with(customize: impl FnOnce(&mut llmselect_proxy::Config)) -> Env {
    init_logging();
    let origin = TestOrigin::start().await;
    let proxy = spawn_proxy(&origin.url(), customize).await;
    Env { origin, proxy }
}

/// Logs (the proxy's access log and pingora's bridged `log` output) when `RUST_LOG` is set.
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// A response reduced to what the tests look at.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn x_cache(&self) -> &str {
        self.header("x-cache")
    }
}

pub async fn send(req: reqwest::RequestBuilder) -> Resp {
    let resp = req.send().await.expect("request reaches the proxy");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.expect("body");
    Resp {
        status,
        headers,
        body,
    }
}

pub async fn get(p: &TestProxy, path: &str) -> Resp {
    send(p.get(path)).await
}

/// Retries `check` until it returns true (at most ~10 s), for effects that complete after a
/// response was sent (background revalidation, end-of-stream hooks).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition never became true: {what}");
}
