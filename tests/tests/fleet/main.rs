//! The edge as a fleet: several proxy nodes on one invalidation stream (a private nats-server per
//! test) in front of the scripted origin (`bus.rs`), and one proxy in front of several origins
//! (`upstreams.rs`). The real origin's outbox relay onto the stream is tested in the origin suite
//! (`origin/outbox.rs`).

mod bus;
mod origins;
mod upstreams;

use llmselect_e2e::proxy::TestProxy;
use llmselect_e2e::wait::eventually_true;

/// Waits until the node's bus is connected and caught up with the stream.
pub async fn connected(p: &TestProxy) {
    eventually_true("the node is on the bus", || async {
        let s = p.stats().await;
        s["bus"]["state"] == "connected" && s["bus"]["lag"] == 0
    })
    .await;
}

/// The node's applied stream sequence.
pub async fn applied_seq(p: &TestProxy) -> u64 {
    p.stats().await["bus"]["applied_seq"].as_u64().unwrap_or(0)
}
