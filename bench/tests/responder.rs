//! The peer comparison's tiny origin answers what the caches in front of it rely on: cacheable
//! 1 KiB and 64 KiB objects, a `no-store` path, and a count of the requests it served; and the
//! CPU time reader sees this process's own work.

use llmselect_bench::{client, procs, responder};
use tokio::net::TcpListener;

#[tokio::test]
async fn responder_serves_cacheable_objects_no_store_and_counts() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(responder::serve(listener));

    let small = client::get(addr, "/obj/7", None).await.unwrap();
    assert_eq!(small.status, 200);
    assert_eq!(small.body.len(), responder::SMALL);
    assert_eq!(small.headers["cache-control"], "public, max-age=3600");
    assert_eq!(small.headers["content-type"], "application/octet-stream");

    let big = client::get(addr, "/big/3", None).await.unwrap();
    assert_eq!(big.body.len(), responder::BIG);
    assert_eq!(big.headers["cache-control"], "public, max-age=3600");
    assert_eq!(&big.body[..responder::SMALL], &small.body[..]);

    let pass = client::get(addr, "/nostore/1", None).await.unwrap();
    assert_eq!(pass.body.len(), responder::SMALL);
    assert_eq!(pass.headers["cache-control"], "no-store");

    let missing = client::get(addr, "/elsewhere", None).await.unwrap();
    assert_eq!(missing.status, 404);

    // three objects served; the 404 and the count itself are not counted
    let count = client::get(addr, "/__count", None).await.unwrap();
    assert_eq!(count.text(), "3");
}

#[test]
fn cpu_time_grows_with_work_done() {
    let pid = std::process::id();
    let before = procs::cpu_time(pid).unwrap();
    // spin until the kernel has charged at least one more clock tick (bounded: 10 s of wall time)
    let start = std::time::Instant::now();
    let mut x = 0u64;
    let mut after = before;
    while after <= before && start.elapsed() < std::time::Duration::from_secs(10) {
        for _ in 0..100_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        after = procs::cpu_time(pid).unwrap();
    }
    std::hint::black_box(x);
    assert!(after > before, "{before:?} -> {after:?}");
}
