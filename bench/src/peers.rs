//! The peer comparison: the proxy, nginx `proxy_cache` and HAProxy's `cache` in front of the same
//! tiny origin ([`crate::responder`]), with the origin alone as the limit. Scenarios: 1 KiB hits
//! over 100 objects, `no-store` pass-through, 64 KiB hits. Besides req/s and latency, each run
//! records the server CPU time per request from `/proc/<pid>/stat` (steadier than req/s on a
//! shared machine), and for the pass-through the origin's CPU as well. Rounds are interleaved;
//! ratios are taken within each round and their median reported.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::http_bench;
use crate::loadgen::{self, Plan, Req, Scenario};
use crate::procs::cpu_time;
use crate::stats::median;

/// Objects per scenario (each connection walks over them).
pub const OBJECTS: u64 = 100;

/// A request pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Load {
    SmallHit,
    NoStore,
    /// A never-seen 1 KiB object on every request: each one a fill of a cold key.
    Miss,
    BigHit,
}

impl Load {
    /// In the order they run within a round: the misses last, as they may push the hit objects
    /// out of a cache (the objects are stored again before every round).
    pub const ALL: [Load; 4] = [Load::SmallHit, Load::NoStore, Load::BigHit, Load::Miss];

    pub fn label(self) -> &'static str {
        match self {
            Load::SmallHit => "1 KiB hits",
            Load::NoStore => "no-store pass-through",
            Load::Miss => "1 KiB misses",
            Load::BigHit => "64 KiB hits",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Load::SmallHit => "/obj/",
            Load::NoStore => "/nostore/",
            Load::Miss => "/obj/miss-",
            Load::BigHit => "/big/",
        }
    }

    /// Served from the cache: such runs must never reach the origin.
    pub fn is_hit(self) -> bool {
        matches!(self, Load::SmallHit | Load::BigHit)
    }

    /// The requests of this load (`tag` makes the paths of a miss run new to every server).
    fn scenario(self, tag: u64) -> Arc<dyn crate::loadgen::Scenario> {
        match self {
            Load::Miss => Arc::new(Fresh(Load::Miss.prefix(), tag)),
            _ => Arc::new(Walk(self.prefix())),
        }
    }
}

/// A server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Peer {
    Proxy,
    Nginx,
    Haproxy,
    /// The origin alone: the limit of a hit.
    Responder,
}

impl Peer {
    pub const ALL: [Peer; 4] = [Peer::Proxy, Peer::Nginx, Peer::Haproxy, Peer::Responder];

    pub fn label(self) -> &'static str {
        match self {
            Peer::Proxy => "this proxy",
            Peer::Nginx => "nginx proxy_cache",
            Peer::Haproxy => "HAProxy cache",
            Peer::Responder => "bare responder (the limit)",
        }
    }
}

/// Where each server listens and its process id.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddrs {
    pub proxy: (SocketAddr, u32),
    pub nginx: (SocketAddr, u32),
    pub haproxy: (SocketAddr, u32),
    pub responder: (SocketAddr, u32),
}

impl PeerAddrs {
    fn of(&self, p: Peer) -> (SocketAddr, u32) {
        match p {
            Peer::Proxy => self.proxy,
            Peer::Nginx => self.nginx,
            Peer::Haproxy => self.haproxy,
            Peer::Responder => self.responder,
        }
    }
}

/// Walks over [`OBJECTS`] paths `<prefix><n>`.
pub struct Walk(pub &'static str);

impl Scenario for Walk {
    fn next(&self, conn: usize, seq: u64) -> Req {
        Req::get(format!("{}{}", self.0, (conn as u64 * 7 + seq) % OBJECTS))
    }
}

/// Medians over the rounds of one server in one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct PeerRow {
    pub load: Load,
    pub peer: Peer,
    pub connections: usize,
    pub rounds: usize,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// The server's CPU time per request (user + system), µs.
    pub cpu_us: f64,
    /// The origin's CPU time per request during the same runs, µs.
    pub origin_cpu_us: f64,
    /// Requests that reached the origin during the measured runs (hits: 0).
    pub origin_requests: u64,
    pub errors: u64,
    /// Median over the rounds of this row's req/s over nginx's and HAProxy's in the same round.
    pub over_nginx: f64,
    pub over_haproxy: f64,
    pub body_bytes: u64,
}

/// What one more cached entry costs the proxy in memory.
#[derive(Debug, Clone, Serialize)]
pub struct EntryMemory {
    /// New objects requested.
    pub entries: u64,
    /// Entries the store gained meanwhile (admin `/stats`): what the RSS growth is divided by.
    pub stored: u64,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    /// Body bytes of each entry.
    pub body_bytes: u64,
    /// Header bytes of each entry as the origin sent it (names, values, `: ` and CRLF).
    pub header_bytes: u64,
    /// RSS growth per entry minus its body and header bytes.
    pub overhead_bytes: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerReport {
    /// `haproxy -v`'s first line.
    pub haproxy_version: String,
    /// `/proc/loadavg` before and after the runs (the machine may be shared).
    pub loadavg_before: String,
    pub loadavg_after: String,
    pub connections: usize,
    pub rounds: usize,
    pub duration_secs: f64,
    /// Workers of each server (nginx worker processes, HAProxy threads, proxy threads).
    pub workers: usize,
    pub rows: Vec<PeerRow>,
    pub memory: Option<EntryMemory>,
    /// The cold-key stampede on an origin that takes `responder::SLOW` to answer.
    pub slow_stampedes: Vec<SlowStampede>,
}

/// `n` concurrent requests (one per connection, all connected first) for one never-seen key
/// whose origin takes `responder::SLOW` to answer: how many reach the origin, and how long the
/// requests wait.
#[derive(Debug, Clone, Serialize)]
pub struct SlowStampede {
    pub peer: Peer,
    pub requests: usize,
    pub origin_requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// The server's CPU time per request over the stampede (connections included), µs.
    pub cpu_us: f64,
}

/// The slow-origin stampede on each cache, `rounds` times (medians; origin requests summed).
pub async fn slow_stampedes(
    addrs: PeerAddrs,
    n: usize,
    rounds: usize,
) -> anyhow::Result<Vec<SlowStampede>> {
    let mut out = Vec::new();
    for peer in [Peer::Proxy, Peer::Nginx, Peer::Haproxy] {
        let (addr, pid) = addrs.of(peer);
        let (mut p50, mut p99, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
        let (mut origin, mut ok, mut errors) = (0, 0, 0);
        for _ in 0..rounds.max(1) {
            let path = format!("/slow/{:x}", rand::random::<u64>());
            let before = origin_count(addrs.responder.0).await?;
            let cpu_before = cpu_time(pid)?;
            let r = http_bench::stampede(addr, n, path).await?;
            let cpu_after = cpu_time(pid)?;
            origin += origin_count(addrs.responder.0)
                .await?
                .saturating_sub(before);
            ok += r.total.ok;
            errors += r.total.errors;
            p50.push(r.total.latency.p50_us);
            p99.push(r.total.latency.p99_us);
            cpu.push((cpu_after - cpu_before).as_secs_f64() * 1e6 / n as f64);
        }
        eprintln!(
            "  slow-origin stampede via {}: {n} concurrent requests -> {origin} origin request(s), p50 {:.1} ms",
            peer.label(),
            median(&p50) / 1000.0
        );
        out.push(SlowStampede {
            peer,
            requests: n,
            origin_requests: origin,
            ok,
            errors,
            p50_us: median(&p50),
            p99_us: median(&p99),
            cpu_us: median(&cpu),
        });
    }
    Ok(out)
}

impl PeerRow {
    pub fn load_label(&self) -> String {
        self.load.label().to_string()
    }
}

/// The first three fields of `/proc/loadavg` (1, 5 and 15 minutes).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// `<haproxy> -v`'s first line.
pub fn haproxy_version(bin: &str) -> String {
    std::process::Command::new(bin)
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
        .unwrap_or_else(|| "HAProxy (version unknown)".into())
}

impl PeerReport {
    pub fn row(&self, load: Load, peer: Peer) -> Option<&PeerRow> {
        self.rows.iter().find(|r| r.load == load && r.peer == peer)
    }
}

#[derive(Default, Clone)]
struct Acc {
    rps: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    cpu: Vec<f64>,
    origin_cpu: Vec<f64>,
    origin: u64,
    errors: u64,
    body: u64,
}

async fn origin_count(responder: SocketAddr) -> anyhow::Result<u64> {
    let r = crate::client::get(responder, "/__count", None).await?;
    Ok(r.text().trim().parse()?)
}

/// Unique paths under a prefix (`tag` tells runs apart): every request is a miss.
pub struct Fresh(pub &'static str, pub u64);

impl Scenario for Fresh {
    fn next(&self, conn: usize, seq: u64) -> Req {
        Req::get(format!("{}{:x}-{conn}-{seq}", self.0, self.1))
    }
}

/// Resident set size of a process, from `/proc/<pid>/status`.
fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kib * 1024)
}

/// Stores `entries` new 1 KiB objects through the proxy (`admin`: its admin listener) and
/// reports the RSS growth per stored entry beyond its body and header bytes. Divided by what
/// the store gained, not by what was requested: a store that evicted would otherwise look
/// smaller per entry than it is.
pub async fn entry_memory(
    proxy: (SocketAddr, u32),
    admin: SocketAddr,
    responder: SocketAddr,
    entries: u64,
) -> anyhow::Result<EntryMemory> {
    let stored_entries = || async {
        let stats = crate::client::get(admin, "/stats", Some(crate::procs::PROXY_ADMIN_TOKEN))
            .await?
            .json()?;
        stats["entries"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("the proxy's /stats has no entries: {stats}"))
    };
    let sample = crate::client::get(responder, "/obj/sample", None).await?;
    let header_bytes: u64 = sample
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().len() + 2 + v.len() + 2) as u64)
        .sum::<u64>()
        + "HTTP/1.1 200 OK\r\n".len() as u64;
    let body_bytes = sample.body.len() as u64;
    let entries_before = stored_entries().await?;
    let before = rss_bytes(proxy.1)?;
    let plan = Plan {
        addr: proxy.0,
        spread: Vec::new(),
        connections: 16,
        duration: Duration::from_secs(600),
        warmup: Duration::ZERO,
        max_requests: Some(entries),
    };
    let r = loadgen::run(&plan, Arc::new(Fresh(Load::Miss.prefix(), rand::random()))).await?;
    anyhow::ensure!(
        r.total.errors == 0,
        "{} errors while filling",
        r.total.errors
    );
    let after = rss_bytes(proxy.1)?;
    let stored = stored_entries().await?.saturating_sub(entries_before);
    anyhow::ensure!(stored > 0, "no entry was stored");
    let per = after.saturating_sub(before) as f64 / stored as f64;
    Ok(EntryMemory {
        entries,
        stored,
        rss_before_bytes: before,
        rss_after_bytes: after,
        body_bytes,
        header_bytes,
        overhead_bytes: per - (body_bytes + header_bytes) as f64,
    })
}

/// Runs `rounds` interleaved rounds of every scenario on every server.
pub async fn run(
    addrs: PeerAddrs,
    connections: usize,
    rounds: usize,
    duration: Duration,
    haproxy_version: String,
) -> anyhow::Result<PeerReport> {
    let loadavg_before = loadavg();
    let warmup = duration / 5;
    let mut accs = vec![vec![Acc::default(); Peer::ALL.len()]; Load::ALL.len()];
    // per round and load: the req/s of every peer, for the in-round ratios
    let mut per_round = vec![vec![vec![f64::NAN; Peer::ALL.len()]; Load::ALL.len()]; rounds];
    for (round, this_round) in per_round.iter_mut().enumerate() {
        // Every object in every cache before every round (twice: nginx and HAProxy store on the
        // first miss): the miss runs of the round before may have pushed them out.
        for peer in [Peer::Proxy, Peer::Nginx, Peer::Haproxy] {
            for load in [Load::SmallHit, Load::BigHit] {
                for i in 0..OBJECTS {
                    for _ in 0..2 {
                        let path = format!("{}{i}", load.prefix());
                        let r = crate::client::get(addrs.of(peer).0, &path, None).await?;
                        anyhow::ensure!(r.status.is_success(), "warm-up of {path}: {}", r.status);
                    }
                }
            }
        }
        for (li, &load) in Load::ALL.iter().enumerate() {
            for (pi, &peer) in Peer::ALL.iter().enumerate() {
                if peer == Peer::Responder && !load.is_hit() {
                    continue; // the origin alone has nothing to pass through or fill
                }
                let (addr, pid) = addrs.of(peer);
                let plan = Plan {
                    addr,
                    spread: Vec::new(),
                    connections,
                    duration,
                    warmup,
                    max_requests: None,
                };
                let origin_pid = addrs.responder.1;
                // CPU is read when the warm-up ends and after the run: the measured window
                let sampler = tokio::spawn(async move {
                    tokio::time::sleep(warmup).await;
                    (cpu_time(pid), cpu_time(origin_pid))
                });
                let count_before = origin_count(addrs.responder.0).await?;
                let r = loadgen::run(&plan, load.scenario(rand::random())).await?;
                let (cpu_end, origin_end) = (cpu_time(pid)?, cpu_time(origin_pid)?);
                let (cpu_start, origin_start) = sampler.await?;
                let count_after = origin_count(addrs.responder.0).await?;
                let n = r.total.requests.max(1) as f64;
                let cpu_us = (cpu_end - cpu_start?).as_secs_f64() * 1e6 / n;
                let origin_cpu_us = if peer == Peer::Responder {
                    0.0
                } else {
                    (origin_end - origin_start?).as_secs_f64() * 1e6 / n
                };
                let a = &mut accs[li][pi];
                a.rps.push(r.rps());
                a.p50.push(r.total.latency.p50_us);
                a.p99.push(r.total.latency.p99_us);
                a.cpu.push(cpu_us);
                a.origin_cpu.push(origin_cpu_us);
                if peer != Peer::Responder {
                    // the count request itself is not counted by the responder
                    a.origin += count_after.saturating_sub(count_before);
                }
                a.errors += r.total.errors;
                if let Some(per) = r.total.body_bytes.checked_div(r.total.requests) {
                    a.body = per;
                }
                this_round[li][pi] = r.rps();
                eprintln!(
                    "  peers round {} {:<22} {:<28} {:>9.0} req/s p99 {:>7.0} µs  cpu {:>6.1} µs/req (origin {:>5.1})",
                    round + 1,
                    load.label(),
                    peer.label(),
                    r.rps(),
                    r.total.latency.p99_us,
                    cpu_us,
                    origin_cpu_us
                );
            }
        }
    }
    let ratio = |li: usize, pi: usize, other: Peer| {
        let oi = Peer::ALL.iter().position(|&p| p == other).unwrap_or(0);
        let v: Vec<f64> = per_round
            .iter()
            .map(|r| r[li][pi] / r[li][oi])
            .filter(|x| x.is_finite())
            .collect();
        if v.is_empty() {
            f64::NAN
        } else {
            median(&v)
        }
    };
    let mut rows = Vec::new();
    for (li, &load) in Load::ALL.iter().enumerate() {
        for (pi, &peer) in Peer::ALL.iter().enumerate() {
            let a = &accs[li][pi];
            if a.rps.is_empty() {
                continue;
            }
            rows.push(PeerRow {
                load,
                peer,
                connections,
                rounds,
                rps: median(&a.rps),
                p50_us: median(&a.p50),
                p99_us: median(&a.p99),
                cpu_us: median(&a.cpu),
                origin_cpu_us: median(&a.origin_cpu),
                origin_requests: a.origin,
                errors: a.errors,
                over_nginx: ratio(li, pi, Peer::Nginx),
                over_haproxy: ratio(li, pi, Peer::Haproxy),
                body_bytes: a.body,
            });
        }
    }
    Ok(PeerReport {
        haproxy_version,
        loadavg_before,
        loadavg_after: loadavg(),
        connections,
        rounds,
        duration_secs: duration.as_secs_f64(),
        workers: 1,
        rows,
        memory: None,
        slow_stampedes: Vec::new(),
    })
}
