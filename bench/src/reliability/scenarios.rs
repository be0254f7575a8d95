//! The scenarios. Each starts its own proxy (release binary, child process) in front of the
//! fault origin, provokes one fault and returns the report rows with their figures.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::origin::FaultOrigin;
use super::report::Row;
use super::Cli;
use crate::client;
use crate::procs::{ProcEnv, Server, PROXY_ADMIN_TOKEN};
use crate::promtext;
use crate::stats::Summary;

/// Header deadline used by the slow-client scenarios (the shipped default).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Store capacity of the memory scenarios (the figure).
const CAPACITY: u64 = 32 << 20;
/// Store capacity of the reference run that measures the fixed base (the proxy's own working
/// set under the same churn: connections, fills in flight, buffers).
const BASE_CAPACITY: u64 = 2 << 20;

fn row(
    area: &str,
    scenario: &str,
    measured: String,
    fixed: bool,
    figures: serde_json::Value,
) -> Row {
    Row {
        area: area.into(),
        scenario: scenario.into(),
        measured,
        fixed,
        figures,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn metric(proxy: &Server, name: &str, labels: &[(&str, &str)]) -> f64 {
    let Some(admin) = proxy.admin_addr else {
        return f64::NAN;
    };
    match client::get(admin, "/metrics", Some(PROXY_ADMIN_TOKEN)).await {
        Ok(r) => promtext::sum(&r.text(), name, labels),
        Err(_) => f64::NAN,
    }
}

/// Latencies of `n` sequential GETs of `path` (a new connection each, as a fresh client).
async fn latencies(addr: SocketAddr, path: &str, n: usize) -> (Summary, usize) {
    let mut samples = Vec::with_capacity(n);
    let mut failed = 0;
    for _ in 0..n {
        let t = Instant::now();
        match client::get(addr, path, None).await {
            Ok(r) if r.status.is_success() => samples.push(t.elapsed().as_nanos() as u64),
            _ => failed += 1,
        }
    }
    (Summary::from_nanos(samples), failed)
}

/// Opens `n` connections that trickle a header one byte every `every`; returns the close times
/// (since each opened; `None` while open) as they happen.
async fn trickle(
    addr: SocketAddr,
    n: usize,
    every: Duration,
) -> (Arc<AtomicUsize>, Arc<AtomicUsize>, Arc<parking::Closes>) {
    let opened = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let closes = Arc::new(parking::Closes::default());
    for _ in 0..n {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        opened.fetch_add(1, Ordering::Relaxed);
        let closes = closes.clone();
        let refused = refused.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let _ = s
                .write_all(b"GET /obj/64/slow HTTP/1.1\r\nHost: a\r\n")
                .await;
            let mut buf = [0u8; 512];
            loop {
                tokio::select! {
                    r = s.read(&mut buf) => {
                        if let Ok(k) = r {
                            if k > 0 && buf[..k].starts_with(b"HTTP/1.1 503") {
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        closes.push(started.elapsed());
                        return;
                    }
                    _ = tokio::time::sleep(every) => {
                        if s.write_all(b"x").await.is_err() {
                            closes.push(started.elapsed());
                            return;
                        }
                    }
                }
            }
        });
    }
    (opened, refused, closes)
}

/// A tiny lock-protected list (the harness is not on any hot path).
mod parking {
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Default)]
    pub struct Closes(Mutex<Vec<Duration>>);

    impl Closes {
        pub fn push(&self, d: Duration) {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(d);
        }

        pub fn snapshot(&self) -> Vec<Duration> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
        }
    }
}

async fn wait_closed(closes: &parking::Closes, expected: usize, limit: Duration) -> Vec<Duration> {
    let deadline = Instant::now() + limit;
    loop {
        let c = closes.snapshot();
        if c.len() >= expected || Instant::now() >= deadline {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 2,000 (`--slow-clients`) trickling clients: are they closed at the deadline, does everyone
/// else keep the normal latency, is the memory returned?
pub async fn slow_clients(
    env: &ProcEnv,
    origin: &FaultOrigin,
    cli: &Cli,
) -> anyhow::Result<Vec<Row>> {
    let proxy = env.start_proxy_with("slow-clients", origin.addr, "", None)?;
    let n = if cli.quick { 200 } else { cli.slow_clients };
    client::get(proxy.addr, "/obj/1024/hot", None).await?;
    let (before, _) = latencies(proxy.addr, "/obj/1024/hot", 200).await;
    let rss_before = proxy.rss_kib();
    let opened_at = Instant::now();
    let (opened, _refused, closes) =
        trickle(proxy.addr, n, Duration::from_secs(cli.trickle_secs)).await;
    let (during, failed) = latencies(proxy.addr, "/obj/1024/hot", 200).await;
    let rss_held = proxy.rss_kib();
    let open = opened.load(Ordering::Relaxed);
    let closed = wait_closed(&closes, open, HEADER_TIMEOUT + Duration::from_secs(10)).await;
    let cut_by = closed.iter().max().copied().unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = proxy.rss_kib();
    let header_timeouts = metric(
        &proxy,
        "proxy_client_timeouts_total",
        &[("phase", "header")],
    )
    .await;
    let per_conn_kib = rss_held.saturating_sub(rss_before) as f64 / open.max(1) as f64;
    let fixed =
        closed.len() == open && cut_by < HEADER_TIMEOUT + Duration::from_secs(3) && failed == 0;
    Ok(vec![row(
        "slow clients",
        &format!("{open} connections trickling a header 1 byte / {} s; 200 other requests meanwhile", cli.trickle_secs),
        format!(
            "{} of {open} closed, the last {:.1} s after it opened (deadline {} s); others p50 {:.2} → {:.2} ms, p99 {:.2} → {:.2} ms, {failed} failed; RSS {} → {} MiB held (~{per_conn_kib:.0} KiB each) → {} MiB after",
            closed.len(),
            cut_by.as_secs_f64(),
            HEADER_TIMEOUT.as_secs(),
            before.p50_us / 1000.0,
            during.p50_us / 1000.0,
            before.p99_us / 1000.0,
            during.p99_us / 1000.0,
            rss_before / 1024,
            rss_held / 1024,
            rss_after / 1024,
        ),
        fixed,
        json!({
            "connections": open, "closed": closed.len(), "last_closed_s": cut_by.as_secs_f64(),
            "since_first_open_s": opened_at.elapsed().as_secs_f64(),
            "header_timeouts_metric": header_timeouts,
            "latency_before": before, "latency_during": during, "failed_during": failed,
            "rss_kib": {"before": rss_before, "held": rss_held, "after_close": rss_after},
        }),
    )])
}

/// 1,100 trickling clients against a proxy whose hard `nofile` is 1024.
pub async fn low_nofile(
    env: &ProcEnv,
    origin: &FaultOrigin,
    cli: &Cli,
) -> anyhow::Result<Vec<Row>> {
    let proxy = env.start_proxy_with("low-nofile", origin.addr, "", Some(1024))?;
    let n = if cli.quick { 600 } else { 1100 };
    let started = Instant::now();
    let (opened, refused, closes) =
        trickle(proxy.addr, n, Duration::from_secs(cli.trickle_secs)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let admin_ok = match proxy.admin_addr {
        Some(a) => client::get(a, "/health", Some(PROXY_ADMIN_TOKEN))
            .await
            .is_ok_and(|r| r.status.is_success()),
        None => false,
    };
    // an ordinary client: refused fast while the slots are taken, served once they are cut
    let mut first_refusal_ms = None;
    let served_after = loop {
        let t = Instant::now();
        match client::get(proxy.addr, "/obj/64/normal", None).await {
            Ok(r) if r.status.is_success() => break Some(started.elapsed()),
            Ok(r) if r.status.as_u16() == 503 => {
                first_refusal_ms.get_or_insert(ms(t.elapsed()));
            }
            _ => {}
        }
        if started.elapsed() > HEADER_TIMEOUT * 3 {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let refused_metric = metric(
        &proxy,
        "proxy_client_connections_refused_total",
        &[("reason", "limit")],
    )
    .await;
    let open = opened.load(Ordering::Relaxed);
    let _ = wait_closed(&closes, open, HEADER_TIMEOUT + Duration::from_secs(10)).await;
    let fixed = admin_ok && served_after.is_some();
    Ok(vec![row(
        "slow clients",
        &format!("{n} trickling connections, proxy under `ulimit -n 1024` (cap 480 = (1024 − 64) / 2)"),
        format!(
            "{} refused at once with 503 ({} by the metric), a refused client answered in {} ms; admin {}; an ordinary client served again {} s after the flood began",
            refused.load(Ordering::Relaxed),
            refused_metric,
            first_refusal_ms.map_or("–".into(), |v| format!("{v:.1}")),
            if admin_ok { "answered" } else { "**did not answer**" },
            served_after.map_or("never (within 30 s)".into(), |d| format!("{:.1}", d.as_secs_f64())),
        ),
        fixed,
        json!({
            "connections": n, "opened": open, "refused_503": refused.load(Ordering::Relaxed),
            "refused_metric": refused_metric, "admin_ok": admin_ok,
            "first_refusal_ms": first_refusal_ms,
            "served_again_after_s": served_after.map(|d| d.as_secs_f64()),
        }),
    )])
}

/// The origin hung (sockets open, no answer), killed, and restarted.
pub async fn origin_faults(env: &ProcEnv, origin: &mut FaultOrigin) -> anyhow::Result<Vec<Row>> {
    let proxy = env.start_proxy_with("origin-faults", origin.addr, "", None)?;
    let timed = |path: &'static str| {
        let addr = proxy.addr;
        async move {
            let t = Instant::now();
            let r = client::get(addr, path, None).await;
            (
                r.map(|r| (r.status.as_u16(), r.text()))
                    .unwrap_or((0, String::new())),
                t.elapsed(),
            )
        }
    };
    timed("/sie/a").await;
    tokio::time::sleep(Duration::from_millis(1300)).await; // /sie/a is now stale
    origin.hang();
    let ((miss_status, _), miss_t) = timed("/obj/64/hung-miss").await;
    let ((stale_status, stale_body), stale_t) = timed("/sie/a").await;
    origin.answer();
    origin.kill();
    let ((down_status, _), down_t) = timed("/obj/64/down-miss").await;
    let ((down_stale_status, down_stale_body), down_stale_t) = timed("/sie/a").await;
    let restarted = Instant::now();
    origin.restart().await?;
    let back = loop {
        let ((s, _), _) = timed("/obj/64/after-restart").await;
        if s == 200 || restarted.elapsed() > Duration::from_secs(30) {
            break (s == 200).then(|| restarted.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let timeouts = metric(
        &proxy,
        "proxy_origin_timeouts_total",
        &[("class", "ordinary")],
    )
    .await;
    let hung_fixed = miss_status == 504
        && miss_t < Duration::from_secs(10)
        && stale_status == 200
        && stale_body.starts_with("fresh")
        && stale_t < Duration::from_secs(10);
    let down_fixed = down_status == 502 && down_stale_status == 200 && back.is_some();
    Ok(vec![
        row(
            "hung origin",
            "origin accepts but never answers; a miss, and an entry with stale-if-error (timeouts.read_ms = 5000)",
            format!(
                "miss: {miss_status} after {:.2} s; stale-if-error entry: {stale_status} (stale body) after {:.2} s; proxy_origin_timeouts_total{{class=\"ordinary\"}} = {timeouts}",
                miss_t.as_secs_f64(),
                stale_t.as_secs_f64()
            ),
            hung_fixed,
            json!({"miss_status": miss_status, "miss_s": miss_t.as_secs_f64(),
                   "stale_status": stale_status, "stale_s": stale_t.as_secs_f64(), "timeouts_metric": timeouts}),
        ),
        row(
            "origin killed / restarted",
            "origin's listener and connections closed, then restarted on the same port",
            format!(
                "miss: {down_status} after {:.1} ms; stale-if-error entry: {down_stale_status} ({}) after {:.1} ms; served again {} after the restart",
                ms(down_t),
                if down_stale_body.starts_with("fresh") { "stale body" } else { "other body" },
                ms(down_stale_t),
                back.map_or("never".into(), |d| format!("{:.1} ms", ms(d))),
            ),
            down_fixed,
            json!({"miss_status": down_status, "miss_ms": ms(down_t), "stale_status": down_stale_status,
                   "stale_ms": ms(down_stale_t), "served_again_ms": back.map(ms)}),
        ),
    ])
}

/// RSS against the store capacity under churn of one object-size mix, and after a purge.
async fn churn(
    env: &ProcEnv,
    origin: &FaultOrigin,
    name: &'static str,
    capacity: u64,
    sizes: (usize, usize),
    quick: bool,
) -> anyhow::Result<serde_json::Value> {
    // one shard for the small reference store, so a 1000 KiB object still fits a shard
    let shards = if capacity < CAPACITY { 1 } else { 16 };
    let settings = format!(
        "[cache]\ncapacity_bytes = {capacity}\nshards = {shards}\nmax_object_bytes = 1048576\nmax_inflight_fill_bytes = {}\n",
        8 << 20
    );
    let proxy = env.start_proxy_with(name, origin.addr, &settings, None)?;
    client::get(proxy.addr, "/obj/1024/warm", None).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = proxy.rss_kib();
    let rounds = if quick { 1 } else { 4 };
    let avg = (sizes.0 + sizes.1) / 2;
    // twice what the large store holds, whatever this run's capacity: the same churn
    let keys = (CAPACITY as usize * 2 / avg).max(16);
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(base));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling, pid) = (peak.clone(), sampling.clone(), proxy.pid());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                let rss = crate::reliability::scenarios::rss_of(pid);
                peak.fetch_max(rss, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..8usize {
        let addr = proxy.addr;
        workers.push(tokio::spawn(async move {
            let mut bytes = 0u64;
            for i in (w..keys * rounds).step_by(8) {
                let key = i % keys;
                // a size per key, spread over the range
                let size = sizes.0 + (key * 7919) % (sizes.1 - sizes.0 + 1);
                if let Ok(r) = client::get(addr, &format!("/obj/{size}/{key}"), None).await {
                    bytes += r.body.len() as u64;
                }
            }
            bytes
        }));
    }
    let mut moved = 0;
    for w in workers {
        moved += w.await.unwrap_or(0);
    }
    let churn_s = started.elapsed().as_secs_f64();
    let rss_end = proxy.rss_kib();
    let admin = proxy.admin_addr.expect("admin address");
    client::request(
        admin,
        http::Method::POST,
        "/purge",
        Some(PROXY_ADMIN_TOKEN),
        Some(&json!({"all": true})),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_purged = proxy.rss_kib();
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let peak = peak.load(Ordering::Relaxed);
    Ok(json!({
        "capacity": capacity, "object_bytes": [sizes.0, sizes.1], "keys": keys,
        "bytes_through_mib": moved >> 20, "seconds": churn_s,
        "rss_kib": {"idle": base, "peak": peak, "end": rss_end, "after_purge": rss_purged},
    }))
}

pub fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub async fn memory(env: &ProcEnv, origin: &FaultOrigin, quick: bool) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (name, base_name, label, sizes) in [
        (
            "memory-small",
            "memory-small-base",
            "small objects (1–16 KiB)",
            (1024, 16 * 1024),
        ),
        (
            "memory-large",
            "memory-large-base",
            "large objects (256–1000 KiB)",
            (256 * 1024, 1000 * 1024),
        ),
    ] {
        let reference = churn(env, origin, base_name, BASE_CAPACITY, sizes, quick).await?;
        let f = churn(env, origin, name, CAPACITY, sizes, quick).await?;
        let kib = |v: &serde_json::Value, k: &str| v["rss_kib"][k].as_u64().unwrap_or(0);
        let base = kib(&reference, "peak");
        let bound = CAPACITY / 1024 * 5 / 4 + base;
        let peak = kib(&f, "peak");
        let mib = |k: u64| k as f64 / 1024.0;
        rows.push(row(
            "memory",
            &format!(
                "32 MiB store, {label}, {} MiB through it with 8 clients, then purge everything",
                f["bytes_through_mib"]
            ),
            format!(
                "RSS peak {:.0} MiB; bound 1.25 × 32 MiB + fixed base {:.0} MiB (peak of the same churn through a 2 MiB store) = {:.0} MiB; idle before {:.0} MiB, {:.0} MiB after the purge (reference run: {:.0})",
                mib(peak),
                mib(base),
                mib(bound),
                mib(kib(&f, "idle")),
                mib(kib(&f, "after_purge")),
                mib(kib(&reference, "after_purge")),
            ),
            peak <= bound,
            json!({"run": f, "reference": reference, "bound_kib": bound}),
        ));
    }
    Ok(rows)
}

pub async fn pipelining(env: &ProcEnv, origin: &FaultOrigin) -> anyhow::Result<Vec<Row>> {
    let proxy = env.start_proxy_with("pipelining", origin.addr, "", None)?;
    let mut s = TcpStream::connect(proxy.addr).await?;
    s.write_all(b"GET /obj/5/one HTTP/1.1\r\nHost: a\r\n\r\nGET /obj/6/two HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    let answers = text.matches("HTTP/1.1 200").count();
    let first_keepalive = text
        .split("HTTP/1.1")
        .nth(1)
        .is_some_and(|r| r.to_ascii_lowercase().contains("keep-alive"));
    Ok(vec![row(
        "pipelining",
        "two GETs in one write (RFC 9112 §9.3.2)",
        format!("{answers} of 2 answered in order on the connection (first says keep-alive: {first_keepalive})"),
        answers == 2,
        json!({"answers": answers, "first_keepalive": first_keepalive}),
    )])
}

/// `n` requests that the origin answers after 2 s, in flight at once; each yields its status.
fn slow_requests(addr: SocketAddr, n: usize) -> Vec<tokio::task::JoinHandle<anyhow::Result<u16>>> {
    (0..n)
        .map(|i| {
            tokio::spawn(async move {
                // distinct URLs: no cache-lock coalescing between them
                client::get(addr, &format!("/slow/2000?i={i}"), None)
                    .await
                    .map(|r| r.status.as_u16())
            })
        })
        .collect()
}

/// SIGTERM idle, at start-up and under load; SIGKILL under load.
pub async fn signals(env: &ProcEnv, origin: &FaultOrigin) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    // idle: grace period 30 s, must not wait for it
    let mut idle = env.start_proxy_with("sigterm-idle", origin.addr, "", None)?;
    client::get(idle.addr, "/obj/8/x", None).await?;
    let t = Instant::now();
    idle.signal("TERM")?;
    let status = tokio::task::block_in_place(|| idle.wait_exit(Duration::from_secs(40)))?;
    let idle_exit = t.elapsed();
    rows.push(row(
        "shutdown",
        "SIGTERM to an idle proxy (grace period 30 s)",
        format!(
            "exited in {:.0} ms ({})",
            ms(idle_exit),
            status.map_or("still running".into(), |s| s.to_string())
        ),
        status.is_some_and(|s| s.success()) && idle_exit < Duration::from_secs(5),
        json!({"exit_ms": ms(idle_exit), "status": status.map(|s| s.to_string())}),
    ));
    // at start-up: the signal arrives while the listeners bind
    let (mut early_ok, mut early_total) = (0, 0);
    for delay_ms in [1u64, 5, 20] {
        early_total += 1;
        let mut p = env.spawn_proxy_unready("sigterm-early", origin.addr)?;
        // from the moment the process runs its own code: before that (exec, the dynamic
        // loader: a few ms on a slow VM) no program can handle a signal
        wait_for_own_code(p.pid()).await;
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        p.signal("TERM")?;
        let status = tokio::task::block_in_place(|| p.wait_exit(Duration::from_secs(40)))?;
        if status.is_some_and(|s| s.success()) {
            early_ok += 1;
        }
    }
    rows.push(row(
        "shutdown",
        "SIGTERM 1, 5 and 20 ms after the process reached `main` (while starting)",
        format!("{early_ok} of {early_total} exited cleanly (status 0), none killed by the signal"),
        early_ok == early_total,
        json!({"clean": early_ok, "total": early_total}),
    ));
    // under load: 16 requests of 2 s in flight
    let mut loaded = env.start_proxy_with("sigterm-load", origin.addr, "", None)?;
    let addr = loaded.addr;
    let inflight = slow_requests(addr, 16);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    loaded.signal("TERM")?;
    let status = tokio::task::block_in_place(|| loaded.wait_exit(Duration::from_secs(40)))?;
    let exit = t.elapsed();
    let mut ok = 0;
    for h in inflight {
        if matches!(h.await, Ok(Ok(200))) {
            ok += 1;
        }
    }
    rows.push(row(
        "shutdown",
        "SIGTERM with 16 requests of 2 s in flight (grace period 30 s)",
        format!(
            "{ok} of 16 answered 200; exited {:.2} s after the signal ({})",
            exit.as_secs_f64(),
            status.map_or("still running".into(), |s| s.to_string())
        ),
        ok == 16 && status.is_some_and(|s| s.success()) && exit < Duration::from_secs(10),
        json!({"completed": ok, "exit_s": exit.as_secs_f64()}),
    ));
    // SIGKILL under load: clients see errors, a new process serves at once
    let mut killed = env.start_proxy_with("sigkill-load", origin.addr, "", None)?;
    let addr = killed.addr;
    let inflight = slow_requests(addr, 16);
    tokio::time::sleep(Duration::from_millis(300)).await;
    killed.signal("KILL")?;
    let status = tokio::task::block_in_place(|| killed.wait_exit(Duration::from_secs(10)))?;
    let mut errors = 0;
    for h in inflight {
        if !matches!(h.await, Ok(Ok(200))) {
            errors += 1;
        }
    }
    let t = Instant::now();
    let again = env.start_proxy_with("sigkill-restart", origin.addr, "", None)?;
    let served = client::get(again.addr, "/obj/8/after-kill", None)
        .await
        .is_ok_and(|r| r.status.is_success());
    rows.push(row(
        "shutdown",
        "SIGKILL with 16 requests in flight, then a new proxy",
        format!("{errors} of 16 clients got a connection error (none a wrong answer); {}; a new proxy served after {:.0} ms", status.map_or("still running".into(), |s| s.to_string()), ms(t.elapsed())),
        served,
        json!({"client_errors": errors, "restart_ms": ms(t.elapsed()), "served": served}),
    ));
    Ok(rows)
}

/// The proxy's Prometheus counters against its `/stats` after a mixed run.
pub async fn metrics_agree(env: &ProcEnv, origin: &FaultOrigin) -> anyhow::Result<Vec<Row>> {
    let proxy = env.start_proxy_with("metrics", origin.addr, "", None)?;
    for i in 0..300 {
        let path = match i % 3 {
            0 => format!("/obj/100/{}", i % 10),
            1 => "/other".to_string(),
            _ => format!("/obj/200/{i}"),
        };
        client::get(proxy.addr, &path, None).await?;
    }
    let admin = proxy.admin_addr.expect("admin address");
    let stats = client::get(admin, "/stats", Some(PROXY_ADMIN_TOKEN))
        .await?
        .json()?;
    let text = client::get(admin, "/metrics", Some(PROXY_ADMIN_TOKEN))
        .await?
        .text();
    let mut pairs = Vec::new();
    let mut agree = true;
    for (field, label) in [
        ("hits", "HIT"),
        ("misses", "MISS"),
        ("pass", "PASS"),
        ("errors", "ERROR"),
    ] {
        let s = stats[field].as_u64().unwrap_or(0) as f64;
        let m = promtext::sum(&text, "proxy_requests_total", &[("cache_status", label)]);
        agree &= (s - m).abs() < 0.5;
        pairs.push(json!({"stats": field, "stats_value": s, "metric": label, "metric_value": m}));
    }
    let entries_ok =
        stats["entries"].as_f64() == Some(promtext::sum(&text, "proxy_store_entries", &[]));
    Ok(vec![row(
        "metrics",
        "300 mixed requests: `/stats` against `/metrics`",
        format!(
            "hits/misses/pass/errors {} ({}); store entries {}",
            if agree { "agree" } else { "**differ**" },
            pairs
                .iter()
                .map(|p| format!("{}={}", p["stats"].as_str().unwrap_or(""), p["stats_value"]))
                .collect::<Vec<_>>()
                .join(", "),
            if entries_ok {
                "agree"
            } else {
                "differ (sampled at different moments)"
            },
        ),
        agree,
        json!({"pairs": pairs, "entries_agree": entries_ok}),
    )])
}

/// PostgreSQL restarted (`pg_ctl restart -m fast`) and stopped for an outage (`stop -m fast`,
/// then start) under concurrent writers through the origin's API, on a private server; then every
/// acknowledged write looked up in the database ([`llmselect_e2e::pg_faults`]).
pub async fn postgres(quick: bool) -> anyhow::Result<Vec<Row>> {
    use llmselect_e2e::pg_faults::{self, Settings};
    let settings = Settings {
        outage: Duration::from_secs(if quick { 2 } else { 10 }),
        writes_per_phase: if quick { 40 } else { 300 },
        ..Settings::default()
    };
    let outage_s = settings.outage.as_secs();
    // The scenario panics when it cannot proceed (no server, no write ever acknowledged): an
    // error of this scenario, not of the whole run.
    let f =
        futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(pg_faults::run(settings)))
            .await
            .map_err(|_| {
                anyhow::anyhow!("the postgres scenario could not proceed (see the panic above)")
            })?;
    let fixed = f.acknowledged > 0
        && f.lost.is_empty()
        && f.half_written == 0
        && f.hangs.is_empty()
        && f.unclean_errors.is_empty()
        && f.errors_during_outage > 0
        && f.final_write_status == 201;
    let errors: usize = f.errors.values().sum();
    let measured = format!(
        "{} writes acknowledged by {} writers, {} present, {} lost, {} half-written, {} \
         committed beyond the acknowledged; {errors} failed writes ({} during the outage), {} \
         not a `503` JSON error, {} without an answer; `/health` {} while down; first write \
         acknowledged {:.0} ms after the restart and {:.0} ms after the start, the origin not \
         restarted",
        f.acknowledged,
        f.writers,
        f.present,
        f.lost.len(),
        f.half_written,
        f.stored_beyond_acknowledged,
        f.errors_during_outage,
        f.unclean_errors.len(),
        f.hangs.len(),
        f.health_during_outage["status"].as_str().unwrap_or("?"),
        f.recovery_after_restart_ms,
        f.recovery_after_start_ms,
    );
    Ok(vec![row(
        "PostgreSQL",
        &format!(
            "`restart -m fast`, then `stop -m fast` for {outage_s} s and start, under write load"
        ),
        measured,
        fixed,
        serde_json::to_value(&f)?,
    )])
}

/// Waits (up to 5 s) until `pid` blocks or handles SIGTERM (`SigBlk` / `SigCgt` of
/// `/proc/<pid>/status`): the proxy blocks it first thing in `main`.
async fn wait_for_own_code(pid: u32) {
    const SIGTERM_BIT: u64 = 1 << (15 - 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let has_term = status.lines().any(|l| {
            let Some((k, v)) = l.split_once(':') else {
                return false;
            };
            matches!(k, "SigBlk" | "SigCgt")
                && u64::from_str_radix(v.trim(), 16).is_ok_and(|m| m & SIGTERM_BIT != 0)
        });
        if has_term {
            return;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}
