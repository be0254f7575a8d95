//! Part 4: a read-mostly mix through the proxy. Users are drawn from a Zipf distribution, each
//! read is the user's conversation list, one of their conversations, or the model registry; a
//! configurable share of requests are writes (a new message). Every read that starts after a
//! write completed must show that write, else it is a stale read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
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
}

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
            return r;
        }
        let cid = conv.expect("checked above");
        let mut r = Req::get(format!("/api/v1/conversations/{cid}"))
            .header_value(AUTHORIZATION, bearer)
            .kind(DETAIL);
        r.expect = published.content.get(cid).cloned().map(Expect::Contains);
        r
    }

    fn completed(&self, req: &Req, status: StatusCode, _headers: &HeaderMap, body: &Bytes) {
        if req.kind != WRITE || !status.is_success() {
            return;
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
        let ui = req.tag as usize;
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
    pub requests: u64,
    pub rps: f64,
    pub reads: u64,
    pub read_hits: u64,
    /// Hits over reads.
    pub hit_rate: f64,
    pub writes: u64,
    pub stale_reads: u64,
    pub errors: u64,
    /// Requests the origin served during the run.
    pub origin_requests: f64,
    /// 1 − origin requests / requests through the proxy.
    pub origin_requests_saved: f64,
    pub kinds: Vec<KindRow>,
    /// The proxy's admin `/stats` after the run.
    pub proxy_stats: serde_json::Value,
}

pub async fn run(
    proxy: SocketAddr,
    proxy_admin: Option<SocketAddr>,
    origin_ops: SocketAddr,
    users: Arc<Vec<User>>,
    spec: WorkloadSpec,
) -> anyhow::Result<WorkloadReport> {
    let warmup = spec.warm_every_key;
    let mix = Arc::new(Mix {
        zipf: Zipf::new(users.len(), spec.zipf_s),
        bearers: fixtures::bearer_headers(&users),
        users,
        spec: spec.clone(),
        published: Mutex::new(Published::default()),
        nonce: rand::random(),
    });
    let plan = Plan {
        addr: proxy,
        connections: spec.connections,
        duration: Duration::from_secs_f64(spec.duration_secs),
        warmup: Duration::ZERO,
        max_requests: None,
    };
    if warmup {
        // Every key once (lists, details, models), so the figures describe a warm cache.
        let keys = WarmAll::new(&mix.users, &mix.bearers);
        let n = keys.keys.len() as u64;
        let warm_plan = Plan {
            max_requests: Some(n),
            duration: Duration::from_secs(120),
            ..plan.clone()
        };
        let r = loadgen::run(&warm_plan, Arc::new(keys)).await?;
        eprintln!("  workload warm-up: {} keys, {} errors", n, r.total.errors);
    }
    let before = promtext::origin_requests(origin_ops, None).await?;
    let r = loadgen::run(&plan, mix).await?;
    let after = promtext::origin_requests(origin_ops, None).await?;
    let proxy_stats = match proxy_admin {
        Some(admin) => {
            let reply =
                crate::client::get(admin, "/stats", Some(crate::procs::PROXY_ADMIN_TOKEN)).await;
            reply.ok().and_then(|r| r.json().ok()).unwrap_or_default()
        }
        None => serde_json::Value::Null,
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
        "  workload: {} requests ({:.0} req/s), hit rate {:.1} %, {} stale reads, origin saw {}",
        report.requests,
        report.rps,
        report.hit_rate * 100.0,
        report.stale_reads,
        report.origin_requests
    );
    Ok(report)
}
