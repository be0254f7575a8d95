//! Part 4: a read-mostly mix through the proxy. Users are drawn from a Zipf distribution, each
//! read is the user's conversation list, one of their conversations, or the model registry; a
//! configurable share of requests are writes (a new message). Every read that starts after a
//! write completed must show that write, else it is a stale read.
//!
//! In a fleet (several proxies, see [`crate::fleet`]) requests go to the nodes in turn and each
//! user behaves like an API client of the read-your-writes contract: its reads echo the
//! `LLMSelect-Invalidation-Id` of its last completed write.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, Method, StatusCode};
use rand::Rng;
use serde::Serialize;

use crate::fixtures::{self, User};
use crate::loadgen::{self, Expect, Plan, Req, Scenario};
use crate::promtext;
use crate::zipf::Zipf;

const LIST: usize = 0;
const DETAIL: usize = 1;
const MODELS: usize = 2;
const WRITE: usize = 3;

/// Mix and size of the workload.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadSpec {
    pub users: usize,
    pub zipf_s: f64,
    /// Share of requests that are writes (0..1).
    pub write_share: f64,
    /// Of the reads: share of conversation-list reads and of model-registry reads; the rest are
    /// conversation details.
    pub list_share: f64,
    pub models_share: f64,
    pub connections: usize,
    pub duration_secs: f64,
    /// Read every key once before the measured run, so the figures describe a warm cache.
    pub warm_every_key: bool,
}

/// What later reads must see, published by completed writes.
#[derive(Default)]
struct Published {
    /// Conversation id → the content of its latest completed write.
    content: HashMap<String, String>,
    /// User index → (conversation id, createdAt) of the user's latest completed write.
    latest: HashMap<usize, (String, String)>,
    /// User index → the highest `LLMSelect-Invalidation-Id` of the user's completed writes (only
    /// with a bus), echoed on the user's later reads.
    positions: HashMap<usize, (u64, HeaderValue)>,
}

/// The origin's response field (and the proxy's request field) carrying an outbox id.
pub const INVALIDATION_ID: &str = "llmselect-invalidation-id";

/// Locks without caring about poisoning (the critical sections only insert into maps).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Mix {
    users: Arc<Vec<User>>,
    /// `Bearer <token>` of each user, by index.
    bearers: Vec<Option<HeaderValue>>,
    zipf: Zipf,
    spec: WorkloadSpec,
    published: Mutex<Published>,
    nonce: u64,
    /// Reads sent with an echoed `LLMSelect-Invalidation-Id`.
    echoed: AtomicU64,
}

impl Mix {
    /// Adds the user's last write position to a read of the user's data, if there is one.
    fn echo(&self, mut r: Req, published: &Published, ui: usize) -> Req {
        if let Some((_, value)) = published.positions.get(&ui) {
            r.headers.push((
                http::HeaderName::from_static(INVALIDATION_ID),
                value.clone(),
            ));
            self.echoed.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl Scenario for Mix {
    fn kinds(&self) -> Vec<String> {
        ["list", "detail", "models", "write"]
            .map(String::from)
            .to_vec()
    }

    fn next(&self, conn: usize, seq: u64) -> Req {
        let mut rng = rand::thread_rng();
        let ui = self.zipf.sample(&mut rng) % self.users.len();
        let user = &self.users[ui];
        let bearer = self.bearers[ui].as_ref();
        let conv = if user.conversations.is_empty() {
            None
        } else {
            Some(&user.conversations[rng.gen_range(0..user.conversations.len())])
        };
        let roll: f64 = rng.gen();
        if roll < self.spec.write_share {
            if let Some(cid) = conv {
                let content = format!("bench write {:x}-{conn}-{seq}", self.nonce);
                let body = serde_json::json!({"role": "user", "content": content});
                let mut r = Req::get(format!("/api/v1/conversations/{cid}/messages"))
                    .header_value(AUTHORIZATION, bearer)
                    .header(CONTENT_TYPE, "application/json")
                    .kind(WRITE);
                r.method = Method::POST;
                r.body = Bytes::from(body.to_string());
                r.tag = ui as u64;
                return r;
            }
        }
        let read: f64 = rng.gen();
        if read < self.spec.models_share {
            return Req::get("/api/v1/models").kind(MODELS);
        }
        let published = lock(&self.published);
        if read < self.spec.models_share + self.spec.list_share || conv.is_none() {
            let mut r = Req::get("/api/v1/conversations?limit=20")
                .header_value(AUTHORIZATION, bearer)
                .kind(LIST);
            r.expect = published
                .latest
                .get(&ui)
                .map(|(id, at)| Expect::ListedAtLeast {
                    id: id.clone(),
                    at: at.clone(),
                });
            return self.echo(r, &published, ui);
        }
        let cid = conv.expect("checked above");
        let mut r = Req::get(format!("/api/v1/conversations/{cid}"))
            .header_value(AUTHORIZATION, bearer)
            .kind(DETAIL);
        r.expect = published.content.get(cid).cloned().map(Expect::Contains);
        self.echo(r, &published, ui)
    }

    fn completed(&self, req: &Req, status: StatusCode, headers: &HeaderMap, body: &Bytes) {
        if req.kind != WRITE || !status.is_success() {
            return;
        }
        let ui = req.tag as usize;
        let position = headers
            .get(INVALIDATION_ID)
            .and_then(|v| Some((v.to_str().ok()?.trim().parse::<u64>().ok()?, v.clone())));
        if let Some((id, value)) = position {
            let mut p = lock(&self.published);
            if p.positions.get(&ui).is_none_or(|(old, _)| id > *old) {
                p.positions.insert(ui, (id, value));
            }
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return;
        };
        let (Some(cid), Some(content), Some(at)) = (
            v["conversationId"].as_str(),
            v["content"].as_str(),
            v["createdAt"].as_str(),
        ) else {
            return;
        };
        let mut p = lock(&self.published);
        p.content.insert(cid.to_string(), content.to_string());
        let newer = p.latest.get(&ui).is_none_or(|(_, old)| at > old.as_str());
        if newer {
            p.latest.insert(ui, (cid.to_string(), at.to_string()));
        }
    }
}

/// Every list, detail and the models list once, in order (shared cursor over all connections).
struct WarmAll {
    keys: Vec<(String, Option<HeaderValue>)>,
    next: AtomicUsize,
}

impl WarmAll {
    fn new(users: &[User], bearers: &[Option<HeaderValue>]) -> WarmAll {
        let mut keys = vec![("/api/v1/models".to_string(), None)];
        for (u, bearer) in users.iter().zip(bearers) {
            keys.push(("/api/v1/conversations?limit=20".into(), bearer.clone()));
            for c in &u.conversations {
                keys.push((format!("/api/v1/conversations/{c}"), bearer.clone()));
            }
        }
        WarmAll {
            keys,
            next: AtomicUsize::new(0),
        }
    }
}

impl Scenario for WarmAll {
    fn next(&self, _conn: usize, _seq: u64) -> Req {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.keys.len();
        let (path, bearer) = &self.keys[i];
        Req::get(path.clone()).header_value(AUTHORIZATION, bearer.as_ref())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct KindRow {
    pub kind: String,
    pub requests: u64,
    pub errors: u64,
    pub hits: u64,
    pub hit_rate: f64,
    pub stale: u64,
    /// `X-Cache` values seen.
    pub x_cache: std::collections::BTreeMap<String, u64>,
    pub p50_us: f64,
    pub p99_us: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkloadReport {
    pub spec: WorkloadSpec,
    /// Proxy nodes the requests were spread over (1 for the single-node workload).
    pub nodes: usize,
    pub requests: u64,
    pub rps: f64,
    pub reads: u64,
    pub read_hits: u64,
    /// Hits over reads.
    pub hit_rate: f64,
    pub writes: u64,
    /// Reads that echoed the user's last `LLMSelect-Invalidation-Id` (only with a bus).
    pub reads_with_position: u64,
    pub stale_reads: u64,
    pub errors: u64,
    /// Requests the origin(s) served during the run.
    pub origin_requests: f64,
    /// 1 − origin requests / requests through the proxy.
    pub origin_requests_saved: f64,
    pub kinds: Vec<KindRow>,
    /// The proxy's admin `/stats` after the run (an array of them, one per node, in a fleet).
    pub proxy_stats: serde_json::Value,
}

/// Where the workload runs: the proxy nodes (address, admin address) and the origins' operations
/// listeners (their request counters).
pub struct Servers<'a> {
    pub proxies: &'a [(SocketAddr, Option<SocketAddr>)],
    pub origin_ops: &'a [SocketAddr],
}

/// Sum of `origin_http_requests_total` over the origins.
async fn origin_requests(ops: &[SocketAddr]) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for &o in ops {
        total += promtext::origin_requests(o, None).await?;
    }
    Ok(total)
}

pub async fn run(
    servers: Servers<'_>,
    users: Arc<Vec<User>>,
    spec: WorkloadSpec,
) -> anyhow::Result<WorkloadReport> {
    let (first, _) = *servers
        .proxies
        .first()
        .ok_or_else(|| anyhow::anyhow!("the workload needs a proxy"))?;
    let warmup = spec.warm_every_key;
    let mix = Arc::new(Mix {
        zipf: Zipf::new(users.len(), spec.zipf_s),
        bearers: fixtures::bearer_headers(&users),
        users,
        spec: spec.clone(),
        published: Mutex::new(Published::default()),
        nonce: rand::random(),
        echoed: AtomicU64::new(0),
    });
    let plan = Plan {
        addr: first,
        spread: servers.proxies[1..].iter().map(|(a, _)| *a).collect(),
        connections: spec.connections,
        duration: Duration::from_secs_f64(spec.duration_secs),
        warmup: Duration::ZERO,
        max_requests: None,
    };
    if warmup {
        // Every key once on every node (lists, details, models), so the figures describe warm
        // caches.
        for &(node, _) in servers.proxies {
            let keys = WarmAll::new(&mix.users, &mix.bearers);
            let n = keys.keys.len() as u64;
            let warm_plan = Plan {
                addr: node,
                spread: Vec::new(),
                max_requests: Some(n),
                duration: Duration::from_secs(120),
                ..plan.clone()
            };
            let r = loadgen::run(&warm_plan, Arc::new(keys)).await?;
            eprintln!(
                "  workload warm-up of {node}: {} keys, {} errors",
                n, r.total.errors
            );
        }
    }
    let before = origin_requests(servers.origin_ops).await?;
    let r = loadgen::run(&plan, mix.clone()).await?;
    let after = origin_requests(servers.origin_ops).await?;
    let mut stats = Vec::new();
    for &(_, admin) in servers.proxies {
        stats.push(match admin {
            Some(admin) => {
                let reply =
                    crate::client::get(admin, "/stats", Some(crate::procs::PROXY_ADMIN_TOKEN))
                        .await;
                reply.ok().and_then(|r| r.json().ok()).unwrap_or_default()
            }
            None => serde_json::Value::Null,
        });
    }
    let proxy_stats = if stats.len() == 1 {
        stats.pop().unwrap_or_default()
    } else {
        serde_json::Value::Array(stats)
    };
    let kinds: Vec<KindRow> = r
        .kinds
        .iter()
        .map(|k| KindRow {
            kind: k.name.clone(),
            requests: k.requests,
            errors: k.errors,
            hits: k.hits(),
            hit_rate: if k.requests > 0 {
                k.hits() as f64 / k.requests as f64
            } else {
                0.0
            },
            stale: k.stale,
            x_cache: k.x_cache.clone(),
            p50_us: k.latency.p50_us,
            p99_us: k.latency.p99_us,
        })
        .collect();
    let reads: u64 = kinds[..WRITE].iter().map(|k| k.requests).sum();
    let read_hits: u64 = kinds[..WRITE].iter().map(|k| k.hits).sum();
    let origin_requests = after - before;
    let report = WorkloadReport {
        nodes: servers.proxies.len(),
        requests: r.total.requests,
        rps: r.rps(),
        reads,
        read_hits,
        hit_rate: if reads > 0 {
            read_hits as f64 / reads as f64
        } else {
            0.0
        },
        writes: kinds[WRITE].requests,
        reads_with_position: mix.echoed.load(Ordering::Relaxed),
        stale_reads: r.total.stale,
        errors: r.total.errors,
        origin_requests,
        origin_requests_saved: if r.total.requests > 0 {
            1.0 - origin_requests / r.total.requests as f64
        } else {
            0.0
        },
        kinds,
        proxy_stats,
        spec,
    };
    eprintln!(
        "  workload over {} node(s): {} requests ({:.0} req/s), hit rate {:.1} %, {} stale reads, {} reads echoing a write position, origin saw {}",
        report.nodes,
        report.requests,
        report.rps,
        report.hit_rate * 100.0,
        report.stale_reads,
        report.reads_with_position,
        report.origin_requests
    );
    Ok(report)
}
