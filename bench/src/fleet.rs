//! Part 5: a fleet on one invalidation stream. A private nats-server (JetStream), two origins on
//! the bench database with the bus (transactional outbox and relay, env `NATS_URL`) and three
//! proxies, each balancing over both origins (`--upstream a,b`) and following the stream, all
//! pinned like the other servers. Measured:
//!
//! 1. **propagation**: a conversation renamed through one node; from its response (the commit as
//!    the client sees it) until every node's `/stats` shows `bus.applied_outbox_id` ≥ the
//!    response's `LLMSelect-Invalidation-Id`, each node polled every 0.25 ms on a keep-alive
//!    connection; plus the nodes' own `proxy_bus_propagation_seconds` (publication on
//!    the stream → applied) over the same renames;
//! 2. **throughput**: invalidations published straight to the stream, pipelined, until each
//!    node's `bus.applied_seq` reaches the last one;
//! 3. the [`crate::workload`] mix spread over the three nodes, each user echoing the position of
//!    its last write: hit rate and stale reads.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::Method;
use serde::Serialize;

use crate::client::KeepAlive;
use crate::fixtures::User;
use crate::procs::{ProcEnv, Server, PROXY_ADMIN_TOKEN};
use crate::promtext;
use crate::stats::Summary;
use crate::workload::{self, WorkloadReport, WorkloadSpec, INVALIDATION_ID};

/// The proxies' default subject (the stream `EDGE_INVALIDATIONS` carries only it).
pub const SUBJECT: &str = "edge.invalidations";
const PROXY_NAMES: [&str; 3] = ["proxy-1", "proxy-2", "proxy-3"];
const ORIGIN_NAMES: [&str; 2] = ["origin-1", "origin-2"];
/// Pause between two polls of a node's `/stats` while waiting for one rename.
const POLL: Duration = Duration::from_micros(POLL_MICROS);
/// How often (µs) a node's `/stats` is polled while waiting for a rename.
pub const POLL_MICROS: u64 = 250;
/// Longest wait for one invalidation on every node before it counts as lost.
const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// Renames measured (after a few unmeasured ones that wake every relay and consumer).
    pub renames: usize,
    /// Invalidations published straight to the stream for the throughput run.
    pub messages: usize,
    /// Publications awaiting their JetStream acknowledgement at once.
    pub in_flight: usize,
    pub workload: WorkloadSpec,
}

/// What the fleet runs on.
#[derive(Debug, Clone, Serialize)]
pub struct FleetShape {
    pub proxies: usize,
    pub origins: usize,
    pub nats_server: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Propagation {
    pub renames: usize,
    /// Commit (the rename's response at the client) → applied on the slowest node.
    pub all_nodes: Summary,
    /// Commit → applied on the fastest node.
    pub first_node: Summary,
    /// Renames some node had not applied after 10 s (not in the summaries).
    pub timeouts: usize,
    /// The nodes' `proxy_bus_propagation_seconds` over the renames (publication on the stream →
    /// applied, every node), quantiles interpolated within the histogram's buckets.
    pub bus_histogram: Option<HistogramQuantiles>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistogramQuantiles {
    pub count: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeRate {
    pub node: String,
    /// From the first publication until the node's `applied_seq` reached the last message.
    pub seconds: f64,
    pub applied_per_sec: f64,
    /// Largest gap seen between the last acknowledged sequence and the node's `applied_seq`.
    pub max_behind: u64,
    pub timed_out: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub messages: u64,
    pub in_flight: usize,
    /// First publication → last acknowledgement.
    pub publish_seconds: f64,
    pub acked_per_sec: f64,
    pub nodes: Vec<NodeRate>,
    /// The slowest node's rate.
    pub applied_per_sec: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    pub shape: FleetShape,
    pub propagation: Propagation,
    pub throughput: Throughput,
    pub workload: WorkloadReport,
}

/// The running fleet; every process is stopped when it is dropped.
struct Fleet {
    url: String,
    /// Proxies before origins before nats-server: dropped (stopped) in that order.
    proxies: Vec<Server>,
    origins: Vec<Server>,
    _nats: Server,
}

async fn start(env: &ProcEnv, nats_bin: &Path, origin_config: &Path) -> anyhow::Result<Fleet> {
    let nats = env.start_nats(nats_bin)?;
    let url = format!("nats://{}", nats.addr);
    eprintln!("nats-server on {} (pid {})", nats.addr, nats.pid());
    let mut origins = Vec::new();
    for name in ORIGIN_NAMES {
        let o = env.start_origin_node(name, origin_config, Some(&url))?;
        eprintln!("{name} on {} (pid {})", o.addr, o.pid());
        origins.push(o);
    }
    let upstreams: Vec<SocketAddr> = origins.iter().map(|o| o.addr).collect();
    let mut proxies = Vec::new();
    for name in PROXY_NAMES {
        let p = env.start_proxy_node(name, &upstreams, Some(&url))?;
        eprintln!(
            "{name} on {} (admin {:?}, pid {})",
            p.addr,
            p.admin_addr,
            p.pid()
        );
        proxies.push(p);
    }
    let fleet = Fleet {
        url,
        proxies,
        origins,
        _nats: nats,
    };
    fleet.ready().await?;
    Ok(fleet)
}

impl Fleet {
    fn admins(&self) -> anyhow::Result<Vec<SocketAddr>> {
        self.proxies
            .iter()
            .map(|p| p.admin_addr.context("proxies run with an admin listener"))
            .collect()
    }

    /// Waits until every node is connected to the bus and sees both origins healthy.
    async fn ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        for (p, admin) in self.proxies.iter().zip(self.admins()?) {
            loop {
                let stats = crate::client::get(admin, "/stats", Some(PROXY_ADMIN_TOKEN))
                    .await
                    .and_then(|r| r.json())
                    .unwrap_or_default();
                let connected = stats["bus"]["state"] == "connected";
                let healthy = stats["upstreams"].as_array().is_some_and(|u| {
                    u.len() == self.origins.len() && u.iter().all(|o| o["healthy"] == true)
                });
                if connected && healthy {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "{} not ready within 30 s (bus {}, upstreams {})",
                    p.name,
                    stats["bus"]["state"],
                    stats["upstreams"]
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}

/// Waits `d` by yielding (tokio's timer cannot sleep less than a millisecond, and a timer sleep
/// of 1 ms lasts 1–2 ms): the waits of a propagation measurement are short, and the load
/// generator's CPU has nothing else to do meanwhile.
async fn pause(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        tokio::task::yield_now().await;
    }
}

/// One node's `/stats`, polled on a kept connection.
struct NodePoll {
    name: &'static str,
    conn: KeepAlive,
}

impl NodePoll {
    async fn bus(&mut self, field: &str) -> anyhow::Result<u64> {
        let reply = self.conn.get("/stats", Some(PROXY_ADMIN_TOKEN)).await?;
        anyhow::ensure!(
            reply.status.is_success(),
            "{} /stats: {}",
            self.name,
            reply.status
        );
        reply.json()?["bus"][field]
            .as_u64()
            .with_context(|| format!("{} /stats has no bus.{field}", self.name))
    }

    /// Time from `since` until `bus.<field>` ≥ `target` (None after [`PATIENCE`]).
    async fn until(
        &mut self,
        field: &str,
        target: u64,
        since: Instant,
    ) -> anyhow::Result<Option<Duration>> {
        loop {
            if self.bus(field).await? >= target {
                return Ok(Some(since.elapsed()));
            }
            if since.elapsed() > PATIENCE {
                return Ok(None);
            }
            pause(POLL).await;
        }
    }
}

pub async fn run(
    env: &ProcEnv,
    nats_bin: &Path,
    origin_config: &Path,
    users: Arc<Vec<User>>,
    spec: &FleetSpec,
) -> anyhow::Result<FleetReport> {
    let fleet = start(env, nats_bin, origin_config).await?;
    let admins = fleet.admins()?;
    let mut nodes: Vec<NodePoll> = PROXY_NAMES
        .iter()
        .zip(&admins)
        .map(|(&name, &a)| NodePoll {
            name,
            conn: KeepAlive::new(a),
        })
        .collect();

    let propagation = propagation(&fleet, &mut nodes, &users, spec.renames).await?;
    eprintln!(
        "  fleet propagation, commit → applied on all {} nodes over {} renames: p50 {:.2} ms, p99 {:.2} ms ({} timeouts); bus histogram p50 {} ms, p99 {} ms",
        nodes.len(),
        propagation.renames,
        propagation.all_nodes.p50_us / 1000.0,
        propagation.all_nodes.p99_us / 1000.0,
        propagation.timeouts,
        propagation
            .bus_histogram
            .as_ref()
            .map_or("–".into(), |h| format!("{:.2}", h.p50_us / 1000.0)),
        propagation
            .bus_histogram
            .as_ref()
            .map_or("–".into(), |h| format!("{:.2}", h.p99_us / 1000.0)),
    );

    let throughput = throughput(&fleet.url, &mut nodes, spec.messages, spec.in_flight).await?;
    eprintln!(
        "  fleet throughput: {} invalidations acknowledged at {:.0}/s; slowest node applied {:.0}/s",
        throughput.messages, throughput.acked_per_sec, throughput.applied_per_sec
    );

    let proxies: Vec<(SocketAddr, Option<SocketAddr>)> = fleet
        .proxies
        .iter()
        .map(|p| (p.addr, p.admin_addr))
        .collect();
    let origin_ops: Vec<SocketAddr> = fleet.origins.iter().filter_map(|o| o.admin_addr).collect();
    let workload = workload::run(
        workload::Servers {
            proxies: &proxies,
            origin_ops: &origin_ops,
        },
        users,
        spec.workload.clone(),
    )
    .await?;

    Ok(FleetReport {
        shape: FleetShape {
            proxies: fleet.proxies.len(),
            origins: fleet.origins.len(),
            nats_server: nats_version(nats_bin),
        },
        propagation,
        throughput,
        workload,
    })
}

/// `nats-server --version`, e.g. `nats-server: v2.9.10`.
fn nats_version(program: &Path) -> String {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Sum over the nodes of the `proxy_bus_propagation_seconds` buckets.
async fn bus_buckets(admins: &[SocketAddr]) -> anyhow::Result<Vec<(f64, f64)>> {
    let mut total: Vec<(f64, f64)> = Vec::new();
    for &a in admins {
        let reply = crate::client::get(a, "/metrics", Some(PROXY_ADMIN_TOKEN)).await?;
        anyhow::ensure!(reply.status.is_success(), "/metrics: {}", reply.status);
        let buckets = promtext::buckets(&reply.text(), "proxy_bus_propagation_seconds");
        if total.is_empty() {
            total = buckets;
        } else {
            for (t, b) in total.iter_mut().zip(buckets) {
                t.1 += b.1;
            }
        }
    }
    Ok(total)
}

async fn propagation(
    fleet: &Fleet,
    nodes: &mut [NodePoll],
    users: &[User],
    renames: usize,
) -> anyhow::Result<Propagation> {
    let (user, conv) = users
        .iter()
        .find_map(|u| u.conversations.first().map(|c| (u, c.clone())))
        .context("no bench user with a conversation to rename")?;
    let path = format!("/api/v1/conversations/{conv}");
    let mut writer = KeepAlive::new(fleet.proxies[0].addr);
    let admins = fleet.admins()?;
    let nonce: u32 = rand::random();
    let mut all = Vec::with_capacity(renames);
    let mut first = Vec::with_capacity(renames);
    let mut timeouts = 0;
    // A few unmeasured renames first: every relay connected, every consumer delivering.
    let warm = 3;
    let mut before = Vec::new();
    for i in 0..warm + renames {
        if i == warm {
            before = bus_buckets(&admins).await?;
        }
        let title = format!("bench rename {nonce:x}-{i}");
        let reply = writer
            .request(
                Method::PATCH,
                &path,
                Some(&user.token),
                Some(&serde_json::json!({ "title": title })),
            )
            .await?;
        let committed = Instant::now();
        anyhow::ensure!(
            reply.status.is_success(),
            "rename through {}: {} {}",
            fleet.proxies[0].name,
            reply.status,
            reply.text()
        );
        let id: u64 = reply
            .headers
            .get(INVALIDATION_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .context(
                "the rename's response has no LLMSelect-Invalidation-Id: is the origin on the bus?",
            )?;
        let waits = futures::future::join_all(
            nodes
                .iter_mut()
                .map(|n| n.until("applied_outbox_id", id, committed)),
        )
        .await;
        let mut times = Vec::with_capacity(waits.len());
        for w in waits {
            times.push(w?);
        }
        if i < warm {
            continue;
        }
        if times.iter().any(Option::is_none) {
            timeouts += 1;
            let late: Vec<&str> = nodes
                .iter()
                .zip(&times)
                .filter(|(_, t)| t.is_none())
                .map(|(n, _)| n.name)
                .collect();
            eprintln!(
                "  outbox id {id} not applied on {} after {} s",
                late.join(", "),
                PATIENCE.as_secs()
            );
            continue;
        }
        let times: Vec<Duration> = times.into_iter().flatten().collect();
        all.push(times.iter().max().map_or(0, |d| d.as_nanos() as u64));
        first.push(times.iter().min().map_or(0, |d| d.as_nanos() as u64));
    }
    let after = bus_buckets(&admins).await?;
    let delta: Vec<(f64, f64)> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| (a.0, a.1 - b.1))
        .collect();
    let count = delta.last().map_or(0.0, |b| b.1);
    let bus_histogram = (count > 0.0).then(|| HistogramQuantiles {
        count,
        p50_us: promtext::histogram_quantile(0.5, &delta) * 1e6,
        p99_us: promtext::histogram_quantile(0.99, &delta) * 1e6,
    });
    Ok(Propagation {
        renames: all.len(),
        all_nodes: Summary::from_nanos(all),
        first_node: Summary::from_nanos(first),
        timeouts,
        bus_histogram,
    })
}

async fn throughput(
    url: &str,
    nodes: &mut [NodePoll],
    messages: usize,
    in_flight: usize,
) -> anyhow::Result<Throughput> {
    let client = async_nats::connect(url)
        .await
        .context("connecting to the bench nats-server")?;
    let js = async_nats::jetstream::new(client);
    let acked = AtomicU64::new(0);
    let target = AtomicU64::new(0);
    let nonce: u64 = rand::random();
    let start = Instant::now();

    let publisher = async {
        let mut pending = VecDeque::with_capacity(in_flight);
        let mut first = None;
        let mut duplicates = 0u64;
        let mut on_ack = |ack: async_nats::jetstream::publish::PublishAck| {
            first.get_or_insert(ack.sequence);
            duplicates += u64::from(ack.duplicate);
            acked.fetch_max(ack.sequence, Ordering::AcqRel);
        };
        for i in 0..messages {
            let mut headers = async_nats::HeaderMap::new();
            // not a number: the nodes must not take it for an origin outbox id
            headers.insert("Nats-Msg-Id", format!("bench-{nonce:x}-{i}"));
            let payload = Bytes::from(format!(r#"{{"groups":["bench:{i}"]}}"#));
            let ack = js
                .publish_with_headers(SUBJECT, headers, payload)
                .await
                .context("publishing to the stream")?;
            pending.push_back(ack);
            if pending.len() >= in_flight {
                if let Some(ack) = pending.pop_front() {
                    on_ack(ack.await.context("JetStream acknowledgement")?);
                }
            }
        }
        while let Some(ack) = pending.pop_front() {
            on_ack(ack.await.context("JetStream acknowledgement")?);
        }
        let elapsed = start.elapsed();
        let last = acked.load(Ordering::Acquire);
        target.store(last, Ordering::Release);
        anyhow::ensure!(duplicates == 0, "{duplicates} publications were duplicates");
        anyhow::Ok((first.unwrap_or(last), last, elapsed))
    };
    let watchers = futures::future::join_all(nodes.iter_mut().map(|n| {
        let (acked, target) = (&acked, &target);
        async move {
            let mut max_behind = 0;
            loop {
                let applied = n.bus("applied_seq").await?;
                let done_at = start.elapsed();
                max_behind = max_behind.max(acked.load(Ordering::Acquire).saturating_sub(applied));
                let last = target.load(Ordering::Acquire);
                if last > 0 && applied >= last {
                    return anyhow::Ok((done_at, max_behind, false));
                }
                if last > 0 && done_at > PATIENCE * 6 {
                    return anyhow::Ok((done_at, max_behind, true));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }));
    let (published, watched) = tokio::join!(publisher, watchers);
    let (first, last, publish_elapsed) = published?;
    let count = last.saturating_sub(first) + 1;
    let mut rates = Vec::new();
    for (n, w) in nodes.iter().zip(watched) {
        let (done, max_behind, timed_out) = w?;
        if timed_out {
            eprintln!(
                "  {} did not reach sequence {last} within {} s",
                n.name,
                PATIENCE.as_secs() * 6
            );
        }
        rates.push(NodeRate {
            node: n.name.to_string(),
            seconds: done.as_secs_f64(),
            applied_per_sec: count as f64 / done.as_secs_f64(),
            max_behind,
            timed_out,
        });
    }
    let slowest = rates
        .iter()
        .map(|r| r.applied_per_sec)
        .fold(f64::INFINITY, f64::min);
    Ok(Throughput {
        messages: count,
        in_flight,
        publish_seconds: publish_elapsed.as_secs_f64(),
        acked_per_sec: count as f64 / publish_elapsed.as_secs_f64(),
        nodes: rates,
        applied_per_sec: slowest,
    })
}
