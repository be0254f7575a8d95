//! End-to-end tests of the caching proxy in front of the scripted origin. Every test starts its
//! own origin and proxy on ephemeral loopback ports and proves cache behaviour from the origin's
//! request counters.

mod admin;
mod basics;
mod coalescing;
mod compression;
mod console;
mod fill;
mod freshness;
mod front;
mod invalidation;
mod isolation;
mod limits;
mod pass_through;
mod ranges;
mod reliability;
mod reload;
mod security;
mod semantics;
mod stale;
mod streaming;
mod tls;
mod vary;

use llmselect_e2e::http::{send, Resp};
use llmselect_e2e::proxy::TestProxy;
use llmselect_e2e::stack::Stack;

/// The scripted origin and a proxy in front of it with the test configuration.
pub async fn env() -> Stack {
    env_with(|_| {}).await
}

/// [`env`] with `customize` applied to the proxy's configuration.
pub async fn env_with(customize: impl FnOnce(&mut llmselect_proxy::Config)) -> Stack {
    Stack::builder()
        .scripted_origin()
        .proxy(customize)
        .start()
        .await
}

/// `GET path` through `p`.
pub async fn get(p: &TestProxy, path: &str) -> Resp {
    send(p.get(path)).await
}
