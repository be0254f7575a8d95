//! The edge as a fleet: several proxy nodes on one invalidation stream (a private nats-server per
//! test), in front of the programmable test origin (`bus.rs`, `upstreams.rs`) and of the real
//! origin with its outbox relay (`outbox.rs`).

mod bus;
mod origins;
mod upstreams;

use llmselect_e2e::proxy::{spawn_proxy, TestProxy};
use std::time::Duration;

/// A proxy node on the bus at `bus_url`, in front of `origin_url`.
pub async fn node(origin_url: &str, bus_url: &str) -> TestProxy {
    let bus = bus_url.to_string();
    spawn_proxy(origin_url, move |c| c.bus.url = Some(bus)).await
}

/// Waits until the node's bus is connected and caught up with the stream.
pub async fn connected(p: &TestProxy) {
    eventually("the node is on the bus", || async {
        let s = p.stats().await;
        s["bus"]["state"] == "connected" && s["bus"]["lag"] == 0
    })
    .await;
}

/// The node's applied stream sequence.
pub async fn applied_seq(p: &TestProxy) -> u64 {
    p.stats().await["bus"]["applied_seq"].as_u64().unwrap_or(0)
}

/// Retries `check` until it returns true (at most ~10 s).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("condition never became true: {what}");
}

/// What the tests look at in a response.
pub struct Resp {
    pub status: u16,
    pub x_cache: String,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
}

pub async fn send(req: reqwest::RequestBuilder) -> Resp {
    let r = req.send().await.expect("request reaches the proxy");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let x_cache = headers
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    Resp {
        status,
        x_cache,
        body: r.text().await.expect("body"),
        headers,
    }
}
