//! `llmselect-bench-load ADDR PREFIX CONNECTIONS SECONDS [unique]`: a steady closed-loop load
//! walking over `<PREFIX>0` … `<PREFIX>99` (the peer comparison's pattern), or with `unique` a
//! new path under `PREFIX` per request (the comparison's misses), for profiling a server by hand
//! (`perf record -p <pid>` while this runs). Prints req/s, p50 and p99.

use std::sync::Arc;
use std::time::Duration;

use llmselect_bench::loadgen::{self, Plan, Scenario};
use llmselect_bench::peers::{Fresh, Walk};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, prefix, connections, seconds, unique) = match args.as_slice() {
        [a, p, c, s] => (a, p, c, s, false),
        [a, p, c, s, u] if u == "unique" => (a, p, c, s, true),
        _ => anyhow::bail!("usage: llmselect-bench-load ADDR PREFIX CONNECTIONS SECONDS [unique]"),
    };
    let plan = Plan {
        addr: addr.parse()?,
        spread: Vec::new(),
        connections: connections.parse()?,
        duration: Duration::from_secs_f64(seconds.parse()?),
        warmup: Duration::from_millis(200),
        max_requests: None,
    };
    // the scenario lives for the whole process
    let prefix: &'static str = Box::leak(prefix.clone().into_boxed_str());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let scenario: Arc<dyn Scenario> = if unique {
        Arc::new(Fresh(prefix, rand::random()))
    } else {
        Arc::new(Walk(prefix))
    };
    let r = runtime.block_on(loadgen::run(&plan, scenario))?;
    println!(
        "{:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, {} requests, {} errors",
        r.rps(),
        r.total.latency.p50_us,
        r.total.latency.p99_us,
        r.total.requests,
        r.total.errors
    );
    Ok(())
}
