//! A closed-loop HTTP/1.1 load generator: a fixed number of keep-alive connections, each sending
//! its next request as soon as the previous response body has been read.
//!
//! Every connection connects first; all then start together (a barrier), so "1,000 concurrent
//! requests" really are in flight at once. A run ends at its deadline or when its request budget
//! is used up. Latencies are kept exactly (one `u64` of nanoseconds per request) and summarised by
//! [`crate::stats::Summary`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Barrier;

use crate::stats::Summary;

/// What a read must show, checked against the response body; a failed check counts as stale.
#[derive(Debug, Clone)]
pub enum Expect {
    /// The body contains this text (e.g. a message written before the read started).
    Contains(String),
    /// The body is a conversation list whose item `id` has `lastMessageAt` at or after `at`
    /// (same timestamp format, so a string comparison).
    ListedAtLeast { id: String, at: String },
}

impl Expect {
    pub fn holds(&self, body: &[u8]) -> bool {
        match self {
            Expect::Contains(needle) => contains(body, needle.as_bytes()),
            Expect::ListedAtLeast { id, at } => {
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
                    return false;
                };
                v["conversations"].as_array().is_some_and(|items| {
                    items.iter().any(|c| {
                        c["id"].as_str() == Some(id.as_str())
                            && c["lastMessageAt"]
                                .as_str()
                                .is_some_and(|t| t >= at.as_str())
                    })
                })
            }
        }
    }
}

/// One request to send. `kind` indexes [`Scenario::kinds`] (per-kind statistics); `expect`, when
/// set, is what the response body must show, else the response counts as stale.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    pub kind: usize,
    pub expect: Option<Expect>,
    /// Free-form tag the scenario gets back in [`Scenario::completed`].
    pub tag: u64,
}

impl Req {
    pub fn get(path: impl Into<String>) -> Req {
        Req {
            method: Method::GET,
            path: path.into(),
            headers: Vec::new(),
            body: Bytes::new(),
            kind: 0,
            expect: None,
            tag: 0,
        }
    }

    pub fn header(mut self, name: HeaderName, value: &str) -> Req {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    /// Adds a prebuilt header value, if any: cloning it costs no formatting or validation, which
    /// matters on the hot path (see [`crate::fixtures::bearer_headers`]).
    pub fn header_value(mut self, name: HeaderName, value: Option<&HeaderValue>) -> Req {
        if let Some(v) = value {
            self.headers.push((name, v.clone()));
        }
        self
    }

    pub fn kind(mut self, kind: usize) -> Req {
        self.kind = kind;
        self
    }
}

/// What to send. Implementations must be cheap: `next` runs on the load generator's hot path.
pub trait Scenario: Send + Sync + 'static {
    /// Names of the request kinds (at least one).
    fn kinds(&self) -> Vec<String> {
        vec!["all".into()]
    }
    /// The request connection `conn` sends as its `seq`-th request.
    fn next(&self, conn: usize, seq: u64) -> Req;
    /// Called after each complete response (success or not), before the next request of that
    /// connection; writes use it to publish what later reads must see.
    fn completed(&self, _req: &Req, _status: StatusCode, _headers: &HeaderMap, _body: &Bytes) {}
}

/// How to run a scenario.
#[derive(Debug, Clone)]
pub struct Plan {
    pub addr: SocketAddr,
    /// Further servers: when set, each connection keeps one connection to `addr` and to each of
    /// these, and sends its requests to them in turn (request `seq` of connection `conn` goes to
    /// server `(conn + seq) % n`), so consecutive requests of one client hit different nodes.
    pub spread: Vec<SocketAddr>,
    pub connections: usize,
    /// Measured time (after the warm-up).
    pub duration: Duration,
    /// Requests before this much time has passed are sent but not recorded.
    pub warmup: Duration,
    /// Stop after this many requests in total (warm-up included), if set.
    pub max_requests: Option<u64>,
}

/// Counters and latencies of one request kind.
#[derive(Debug, Clone, Default)]
pub struct KindResult {
    pub name: String,
    pub requests: u64,
    /// 2xx and 304.
    pub ok: u64,
    /// Other statuses and transport errors.
    pub errors: u64,
    /// Responses whose body lacked the expected content.
    pub stale: u64,
    /// `X-Cache` values seen (absent header counted as `-`).
    pub x_cache: BTreeMap<String, u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub body_bytes: u64,
    pub latency: Summary,
}

impl KindResult {
    pub fn hits(&self) -> u64 {
        self.x_cache.get("HIT").copied().unwrap_or(0)
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    pub elapsed: Duration,
    pub connections: usize,
    pub transport_errors: u64,
    pub kinds: Vec<KindResult>,
    /// All kinds together.
    pub total: KindResult,
}

impl RunResult {
    pub fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.total.requests as f64 / secs
        } else {
            0.0
        }
    }
}

/// Raw per-connection records, merged at the end.
#[derive(Default)]
struct Recorder {
    kinds: Vec<KindAcc>,
    transport_errors: u64,
}

#[derive(Default, Clone)]
struct KindAcc {
    requests: u64,
    ok: u64,
    errors: u64,
    stale: u64,
    x_cache: BTreeMap<String, u64>,
    statuses: BTreeMap<u16, u64>,
    body_bytes: u64,
    latencies_ns: Vec<u64>,
}

impl KindAcc {
    fn merge(&mut self, o: KindAcc) {
        self.requests += o.requests;
        self.ok += o.ok;
        self.errors += o.errors;
        self.stale += o.stale;
        for (k, v) in o.x_cache {
            *self.x_cache.entry(k).or_default() += v;
        }
        for (k, v) in o.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.body_bytes += o.body_bytes;
        self.latencies_ns.extend(o.latencies_ns);
    }

    fn finish(self, name: String) -> KindResult {
        KindResult {
            name,
            requests: self.requests,
            ok: self.ok,
            errors: self.errors,
            stale: self.stale,
            x_cache: self.x_cache,
            statuses: self.statuses,
            body_bytes: self.body_bytes,
            latency: Summary::from_nanos(self.latencies_ns),
        }
    }
}

/// Runs `scenario` as planned and returns the merged results.
pub async fn run(plan: &Plan, scenario: Arc<dyn Scenario>) -> anyhow::Result<RunResult> {
    let kinds = scenario.kinds();
    let barrier = Arc::new(Barrier::new(plan.connections + 1));
    let budget = Arc::new(AtomicU64::new(0));
    let targets: Arc<Vec<SocketAddr>> = Arc::new(
        std::iter::once(plan.addr)
            .chain(plan.spread.iter().copied())
            .collect(),
    );
    let hosts: Arc<Vec<HeaderValue>> = Arc::new(
        targets
            .iter()
            .map(|a| HeaderValue::from_str(&a.to_string()))
            .collect::<Result<_, _>>()?,
    );
    let mut tasks = Vec::with_capacity(plan.connections);
    let start_cell = Arc::new(std::sync::OnceLock::<Instant>::new());
    for conn in 0..plan.connections {
        let scenario = scenario.clone();
        let barrier = barrier.clone();
        let budget = budget.clone();
        let targets = targets.clone();
        let hosts = hosts.clone();
        let plan = plan.clone();
        let n_kinds = kinds.len();
        let start_cell = start_cell.clone();
        tasks.push(tokio::spawn(async move {
            let mut senders = Vec::with_capacity(targets.len());
            for &addr in targets.iter() {
                senders.push(connect(addr).await.ok());
            }
            barrier.wait().await;
            let start = *start_cell.get_or_init(Instant::now);
            let record_from = start + plan.warmup;
            let deadline = record_from + plan.duration;
            let mut rec = Recorder {
                kinds: vec![KindAcc::default(); n_kinds],
                transport_errors: 0,
            };
            let mut seq = 0u64;
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                if let Some(max) = plan.max_requests {
                    if budget.fetch_add(1, Ordering::Relaxed) >= max {
                        break;
                    }
                }
                let req = scenario.next(conn, seq);
                let node = (conn + seq as usize) % targets.len();
                seq += 1;
                let sender = &mut senders[node];
                let sent_at = Instant::now();
                let outcome = match sender.as_mut() {
                    Some(s) => send(s, &req, &hosts[node]).await,
                    None => Err(anyhow::anyhow!("not connected")),
                };
                let done_at = Instant::now();
                // Count what completes in the measured window, even if it was sent during the
                // warm-up: a request slower than the warm-up (an unindexed query) must still be
                // measured rather than vanish from the figures.
                let record = done_at >= record_from || plan.max_requests.is_some();
                let acc = &mut rec.kinds[req.kind.min(n_kinds - 1)];
                if record {
                    acc.requests += 1;
                }
                match outcome {
                    Ok((status, headers, body)) => {
                        scenario.completed(&req, status, &headers, &body);
                        if record {
                            *acc.statuses.entry(status.as_u16()).or_default() += 1;
                            if status.is_success() || status == StatusCode::NOT_MODIFIED {
                                acc.ok += 1;
                            } else {
                                acc.errors += 1;
                            }
                            if let (true, Some(expect)) = (status.is_success(), &req.expect) {
                                if !expect.holds(&body) {
                                    acc.stale += 1;
                                }
                            }
                            let xc = headers
                                .get("x-cache")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-");
                            match acc.x_cache.get_mut(xc) {
                                Some(n) => *n += 1,
                                None => {
                                    acc.x_cache.insert(xc.to_string(), 1);
                                }
                            }
                            acc.body_bytes += body.len() as u64;
                            acc.latencies_ns.push((done_at - sent_at).as_nanos() as u64);
                        }
                        if headers
                            .get(http::header::CONNECTION)
                            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
                        {
                            *sender = connect(targets[node]).await.ok();
                        }
                    }
                    Err(_) => {
                        if record {
                            rec.transport_errors += 1;
                            acc.errors += 1;
                        }
                        *sender = connect(targets[node]).await.ok();
                        if sender.is_none() {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            }
            rec
        }));
    }
    barrier.wait().await;
    let started = *start_cell.get_or_init(Instant::now);
    let mut merged = vec![KindAcc::default(); kinds.len()];
    let mut transport_errors = 0;
    for t in tasks {
        let rec = t.await?;
        transport_errors += rec.transport_errors;
        for (m, k) in merged.iter_mut().zip(rec.kinds) {
            m.merge(k);
        }
    }
    let measured_from = if plan.max_requests.is_some() {
        started
    } else {
        started + plan.warmup
    };
    let elapsed = Instant::now().saturating_duration_since(measured_from);
    let mut total = KindAcc::default();
    for k in &merged {
        total.merge(k.clone());
    }
    Ok(RunResult {
        elapsed,
        connections: plan.connections,
        transport_errors,
        kinds: merged
            .into_iter()
            .zip(kinds)
            .map(|(acc, name)| acc.finish(name))
            .collect(),
        total: total.finish("all".into()),
    })
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn send(
    sender: &mut Sender,
    req: &Req,
    host: &HeaderValue,
) -> anyhow::Result<(StatusCode, HeaderMap, Bytes)> {
    let mut builder = Request::builder()
        .method(req.method.clone())
        .uri(req.path.as_str())
        .header(HOST, host.clone());
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    let request = builder.body(Full::new(req.body.clone()))?;
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((parts.status, parts.headers, body))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
