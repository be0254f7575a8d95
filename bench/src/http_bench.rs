//! Part 3: origin direct vs the proxy (hits, misses) vs nginx `proxy_cache` (hits, misses) on the
//! public models list, at fixed concurrency levels, in interleaved rounds (medians reported), and
//! the cold-key coalescing check (many concurrent requests, one origin request).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::loadgen::{self, Plan, Req, Scenario};
use crate::promtext;
use crate::stats::median;
use crate::wrk::{self, WrkRow};

/// The stampede's cold key is a fresh query string on this path.
pub const MODELS: &str = "/api/v1/models";
const MODELS_ROUTE: &str = "GET /api/v1/models";

/// A server and a request pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Target {
    Origin,
    ProxyHit,
    ProxyMiss,
    NginxHit,
    NginxMiss,
}

impl Target {
    pub const ALL: [Target; 5] = [
        Target::Origin,
        Target::ProxyHit,
        Target::NginxHit,
        Target::ProxyMiss,
        Target::NginxMiss,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Target::Origin => "origin direct",
            Target::ProxyHit => "proxy hit",
            Target::ProxyMiss => "proxy miss (cold key each request)",
            Target::NginxHit => "nginx proxy_cache hit",
            Target::NginxMiss => "nginx proxy_cache miss (cold key each request)",
        }
    }

    fn is_hit(self) -> bool {
        matches!(self, Target::ProxyHit | Target::NginxHit)
    }
}

/// The same path every time (hits), or a never-seen query string every time (misses).
enum ModelsScenario {
    Hit(String),
    /// `<path>?miss=<nonce>-` (or `&miss=`), completed by `<conn>-<seq>` per request.
    Miss(String),
}

impl ModelsScenario {
    fn new(path: &str, cold: bool) -> ModelsScenario {
        if cold {
            let sep = if path.contains('?') { '&' } else { '?' };
            ModelsScenario::Miss(format!("{path}{sep}miss={:x}-", rand::random::<u64>()))
        } else {
            ModelsScenario::Hit(path.to_string())
        }
    }
}

impl Scenario for ModelsScenario {
    fn next(&self, conn: usize, seq: u64) -> Req {
        match self {
            ModelsScenario::Hit(path) => Req::get(path.clone()),
            ModelsScenario::Miss(prefix) => Req::get(format!("{prefix}{conn}-{seq}")),
        }
    }
}

/// The addresses under test.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub origin: SocketAddr,
    /// The origin's operations listener (`/metrics`).
    pub origin_ops: SocketAddr,
    pub proxy: SocketAddr,
    pub nginx: SocketAddr,
}

impl Addrs {
    fn of(&self, t: Target) -> SocketAddr {
        match t {
            Target::Origin => self.origin,
            Target::ProxyHit | Target::ProxyMiss => self.proxy,
            Target::NginxHit | Target::NginxMiss => self.nginx,
        }
    }
}

/// Medians over the rounds of one target at one concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct HttpRow {
    pub target: String,
    pub connections: usize,
    pub rounds: usize,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub requests: u64,
    pub errors: u64,
    /// Share of responses with `X-Cache: HIT`.
    pub hit_share: f64,
    /// Origin requests counted during the measured runs (hits must leave this at 0).
    pub origin_requests: f64,
    pub body_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub connections: usize,
    pub proxy_over_nginx_hit_rps: f64,
    pub proxy_over_origin_rps: f64,
    pub proxy_over_nginx_miss_rps: f64,
    pub proxy_hit_p99_us: f64,
    pub nginx_hit_p99_us: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpReport {
    pub path: String,
    pub rows: Vec<HttpRow>,
    pub ratios: Vec<Ratio>,
    /// The same hit runs by `wrk` (one run each), when available.
    pub wrk: Vec<WrkRow>,
}

/// Per-round raw numbers before taking medians.
#[derive(Default)]
struct Acc {
    rps: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    requests: u64,
    errors: u64,
    hits: u64,
    origin: f64,
    body: u64,
}

/// What the comparison runs.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    /// Connection counts.
    pub levels: Vec<usize>,
    pub rounds: usize,
    pub duration: Duration,
    /// The cacheable path (a models list; `?provider=` selects a smaller body).
    pub path: String,
    /// `wrk` binary for the cross-check, if wanted.
    pub wrk: Option<String>,
    /// Record the proxy and nginx with `perf record -g` during their first hit run at the highest
    /// concurrency, into `<prefix>-proxy.data` and `<prefix>-nginx.data`.
    pub perf: Option<PerfSpec>,
}

/// Whom to profile.
#[derive(Debug, Clone)]
pub struct PerfSpec {
    pub proxy_pid: u32,
    pub nginx_pid: u32,
    pub prefix: std::path::PathBuf,
}

impl PerfSpec {
    fn for_target(&self, target: Target) -> Option<(u32, std::path::PathBuf)> {
        let (pid, name) = match target {
            Target::ProxyHit => (self.proxy_pid, "proxy"),
            Target::NginxHit => (self.nginx_pid, "nginx"),
            _ => return None,
        };
        let mut file = self.prefix.clone().into_os_string();
        file.push(format!("-{name}.data"));
        Some((pid, file.into()))
    }
}

/// Starts `perf record` on `pid` for `duration`; the caller waits for the child afterwards.
fn start_perf(pid: u32, out: &std::path::Path, duration: Duration) -> Option<std::process::Child> {
    std::process::Command::new("perf")
        .args(["record", "-F", "999", "-g", "-p", &pid.to_string(), "-o"])
        .arg(out)
        .args(["--", "sleep", &format!("{:.1}", duration.as_secs_f64())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| eprintln!("  perf not started: {e}"))
        .ok()
}

/// Runs `rounds` interleaved rounds over every target and concurrency level.
pub async fn run(addrs: Addrs, spec: &HttpSpec) -> anyhow::Result<HttpReport> {
    let (levels, rounds, duration) = (&spec.levels, spec.rounds, spec.duration);
    let path = spec.path.as_str();
    // Warm both caches (nginx stores on its first miss).
    for addr in [addrs.proxy, addrs.nginx] {
        for _ in 0..2 {
            let r = crate::client::get(addr, path, None).await?;
            anyhow::ensure!(r.status.is_success(), "warm-up via {addr}: {}", r.status);
        }
    }
    let max_level = levels.iter().copied().max().unwrap_or(0);
    let mut accs: Vec<Vec<Acc>> = levels
        .iter()
        .map(|_| Target::ALL.iter().map(|_| Acc::default()).collect())
        .collect();
    for round in 0..rounds {
        for (li, &connections) in levels.iter().enumerate() {
            for (ti, &target) in Target::ALL.iter().enumerate() {
                let plan = Plan {
                    addr: addrs.of(target),
                    spread: Vec::new(),
                    connections,
                    duration,
                    warmup: duration / 5,
                    max_requests: None,
                };
                let cold = !target.is_hit() && target != Target::Origin;
                let scenario = Arc::new(ModelsScenario::new(path, cold));
                let perf = match &spec.perf {
                    Some(p) if round == 0 && connections == max_level => p
                        .for_target(target)
                        .and_then(|(pid, out)| start_perf(pid, &out, duration + duration / 5)),
                    _ => None,
                };
                let before =
                    promtext::origin_requests(addrs.origin_ops, Some(MODELS_ROUTE)).await?;
                let r = loadgen::run(&plan, scenario).await?;
                if let Some(mut child) = perf {
                    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
                }
                let after = promtext::origin_requests(addrs.origin_ops, Some(MODELS_ROUTE)).await?;
                let a = &mut accs[li][ti];
                a.rps.push(r.rps());
                a.p50.push(r.total.latency.p50_us);
                a.p99.push(r.total.latency.p99_us);
                a.requests += r.total.requests;
                a.errors += r.total.errors;
                a.hits += r.total.hits();
                a.origin += after - before;
                if let Some(per) = r.total.body_bytes.checked_div(r.total.requests) {
                    a.body = per;
                }
                eprintln!(
                    "  http round {} c={connections:<3} {:<48} {:>9.0} req/s p50 {:>7.0} µs p99 {:>7.0} µs",
                    round + 1,
                    target.label(),
                    r.rps(),
                    r.total.latency.p50_us,
                    r.total.latency.p99_us
                );
            }
        }
    }
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    for (li, &connections) in levels.iter().enumerate() {
        let first = rows.len();
        for (ti, &target) in Target::ALL.iter().enumerate() {
            let a = &accs[li][ti];
            rows.push(HttpRow {
                target: target.label().to_string(),
                connections,
                rounds,
                rps: median(&a.rps),
                p50_us: median(&a.p50),
                p99_us: median(&a.p99),
                requests: a.requests,
                errors: a.errors,
                hit_share: if a.requests > 0 {
                    a.hits as f64 / a.requests as f64
                } else {
                    0.0
                },
                origin_requests: a.origin,
                body_bytes: a.body,
            });
        }
        // This level's rows, in `Target::ALL` order.
        let level_rows = &rows[first..];
        let get = |t: Target| {
            let i = Target::ALL.iter().position(|&x| x == t);
            &level_rows[i.expect("every target is in Target::ALL")]
        };
        let div = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        let (ph, nh) = (get(Target::ProxyHit), get(Target::NginxHit));
        ratios.push(Ratio {
            connections,
            proxy_over_nginx_hit_rps: div(ph.rps, nh.rps),
            proxy_over_origin_rps: div(ph.rps, get(Target::Origin).rps),
            proxy_over_nginx_miss_rps: div(get(Target::ProxyMiss).rps, get(Target::NginxMiss).rps),
            proxy_hit_p99_us: ph.p99_us,
            nginx_hit_p99_us: nh.p99_us,
        });
    }
    let mut wrk_rows = Vec::new();
    if let Some(bin) = spec.wrk.as_deref() {
        for &connections in levels {
            for target in [Target::Origin, Target::ProxyHit, Target::NginxHit] {
                match wrk::run(
                    bin,
                    target.label(),
                    addrs.of(target),
                    path,
                    connections,
                    duration,
                )
                .await
                {
                    Ok(row) => {
                        eprintln!(
                            "  wrk c={connections:<3} {:<48} {:>9.0} req/s p50 {:>7.0} µs p99 {:>7.0} µs",
                            row.target, row.rps, row.p50_us, row.p99_us
                        );
                        wrk_rows.push(row);
                    }
                    Err(e) => eprintln!("  wrk skipped: {e:#}"),
                }
            }
        }
    }
    Ok(HttpReport {
        path: spec.path.clone(),
        rows,
        ratios,
        wrk: wrk_rows,
    })
}

/// The cold-key stampede: `n` connections send one request each for the same never-seen key at
/// once; the origin should see one request.
#[derive(Debug, Clone, Serialize)]
pub struct Coalescing {
    pub server: String,
    pub concurrent_requests: usize,
    pub ok: u64,
    pub errors: u64,
    pub origin_requests: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// One fixed path for every request (the stampedes).
struct OneKey(String);

impl Scenario for OneKey {
    fn next(&self, _conn: usize, _seq: u64) -> Req {
        Req::get(self.0.clone())
    }
}

/// A cold-key stampede: `n` connections, all connected first, each sending one request for
/// `path` at once.
pub async fn stampede(
    addr: SocketAddr,
    n: usize,
    path: String,
) -> anyhow::Result<loadgen::RunResult> {
    let plan = Plan {
        addr,
        spread: Vec::new(),
        connections: n,
        duration: Duration::from_secs(60),
        warmup: Duration::ZERO,
        max_requests: Some(n as u64),
    };
    loadgen::run(&plan, Arc::new(OneKey(path))).await
}

pub async fn coalescing(
    server: &str,
    addr: SocketAddr,
    origin_ops: SocketAddr,
    n: usize,
) -> anyhow::Result<Coalescing> {
    let path = format!("{MODELS}?stampede={:x}", rand::random::<u64>());
    let before = promtext::origin_requests(origin_ops, Some(MODELS_ROUTE)).await?;
    let r = stampede(addr, n, path).await?;
    let after = promtext::origin_requests(origin_ops, Some(MODELS_ROUTE)).await?;
    let c = Coalescing {
        server: server.to_string(),
        concurrent_requests: n,
        ok: r.total.ok,
        errors: r.total.errors,
        origin_requests: after - before,
        p50_us: r.total.latency.p50_us,
        p99_us: r.total.latency.p99_us,
    };
    eprintln!(
        "  stampede via {server}: {n} concurrent requests -> {} origin request(s), {} ok, {} errors",
        c.origin_requests, c.ok, c.errors
    );
    Ok(c)
}
