//! The origins behind the proxy: one address, or several balanced round-robin with active HTTP
//! health checks (pingora's load balancer). A request whose connection to an origin failed is
//! retried on another one when its method is idempotent; nothing is retried once it was sent.

use crate::config::{Config, HealthCheckConfig};
use crate::metrics;
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::HttpHealthCheck;
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::{Backend, LoadBalancer};
use serde::Serialize;
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where requests go. Addresses are resolved once, at start-up (or reload), never on the request
/// path.
pub enum Upstreams {
    Single(SocketAddr),
    /// Several origins, the origins a request found unresponsive, and the task checking their
    /// health (stopped when this is dropped, e.g. replaced by a reload).
    Balanced(Arc<LoadBalancer<RoundRobin>>, Suspensions, HealthTask),
}

/// The health-check loop of a balanced set; aborted on drop.
pub struct HealthTask(tokio::task::JoinHandle<()>);

impl Drop for HealthTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Origins a request found unresponsive (a timeout), kept out of the rotation until the next
/// health checks had time to judge them (the checks then keep a hung origin out).
pub struct Suspensions {
    until: Mutex<HashMap<SocketAddr, Instant>>,
    period: Duration,
}

impl Suspensions {
    fn active(&self, addr: SocketAddr) -> bool {
        let until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        until.get(&addr).is_some_and(|t| Instant::now() < *t)
    }
}

/// `/stats` view of one origin.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamHealth {
    pub address: String,
    pub healthy: bool,
    /// Whether health checks run (several origins); a single origin is assumed healthy.
    pub checked: bool,
}

impl Upstreams {
    /// Builds the upstreams of `config`; with several, the health checks run on `runtime`.
    pub fn new(config: &Config, runtime: Option<&tokio::runtime::Handle>) -> anyhow::Result<Self> {
        let list = config
            .upstreams()
            .map_err(|e| anyhow::anyhow!(e.join("; ")))?;
        let (Some(runtime), true) = (runtime, list.len() > 1) else {
            let address = &list[0].address;
            let resolved = address
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| anyhow::anyhow!("upstream {address} does not resolve"))?;
            return Ok(Upstreams::Single(resolved));
        };
        let mut lb =
            LoadBalancer::<RoundRobin>::try_from_iter(list.iter().map(|u| u.address.as_str()))?;
        lb.set_health_check(health_check(&config.health_check, &list[0].host)?);
        let lb = Arc::new(lb);
        let checker = lb.clone();
        let every = Duration::from_millis(config.health_check.interval_ms);
        let task = runtime.spawn(async move {
            loop {
                checker.backends().run_health_check(true).await;
                for b in checker.backends().get_backend().iter() {
                    metrics::set_upstream_health(&b.addr.to_string(), checker.backends().ready(b));
                }
                tokio::time::sleep(every).await;
            }
        });
        let suspensions = Suspensions {
            until: Mutex::new(HashMap::new()),
            period: every * 2 + Duration::from_millis(config.health_check.timeout_ms),
        };
        Ok(Upstreams::Balanced(lb, suspensions, HealthTask(task)))
    }

    /// The origin for the next attempt: a healthy one that has not failed this request yet and is
    /// not suspended after a timeout, else the same without one condition at a time (suspension,
    /// then health), else `None`.
    pub fn select(&self, failed: &[SocketAddr]) -> Option<SocketAddr> {
        match self {
            Upstreams::Single(addr) => Some(*addr),
            Upstreams::Balanced(lb, suspended, _) => {
                let inet = |b: &Backend| b.addr.as_inet().copied();
                let not_failed = |b: &Backend| inet(b).is_some_and(|a| !failed.contains(&a));
                let up = |b: &Backend| inet(b).is_some_and(|a| !suspended.active(a));
                lb.select_with(b"", 256, |b, healthy| healthy && not_failed(b) && up(b))
                    .or_else(|| lb.select_with(b"", 256, |b, healthy| healthy && not_failed(b)))
                    .or_else(|| lb.select_with(b"", 256, |b, _| not_failed(b) && up(b)))
                    .or_else(|| lb.select_with(b"", 256, |b, _| not_failed(b)))
                    .and_then(|b| inet(&b))
            }
        }
    }

    /// Whether another origin can take a retry.
    pub fn several(&self) -> bool {
        matches!(self, Upstreams::Balanced(..))
    }

    /// Takes an origin that timed out out of the rotation for a while (several origins only).
    pub fn mark_down(&self, addr: SocketAddr) {
        if let Upstreams::Balanced(_, s, _) = self {
            let mut until = s.until.lock().unwrap_or_else(|p| p.into_inner());
            until.insert(addr, Instant::now() + s.period);
            tracing::warn!(upstream = %addr, for_ms = s.period.as_millis() as u64, "origin marked down after a timeout");
        }
    }

    pub fn health(&self) -> Vec<UpstreamHealth> {
        match self {
            Upstreams::Single(addr) => vec![UpstreamHealth {
                address: addr.to_string(),
                healthy: true,
                checked: false,
            }],
            Upstreams::Balanced(lb, suspended, _) => lb
                .backends()
                .get_backend()
                .iter()
                .map(|b| UpstreamHealth {
                    address: b.addr.to_string(),
                    healthy: lb.backends().ready(b)
                        && b.addr.as_inet().is_none_or(|a| !suspended.active(*a)),
                    checked: true,
                })
                .collect(),
        }
    }
}

fn health_check(cfg: &HealthCheckConfig, host: &str) -> anyhow::Result<Box<HttpHealthCheck>> {
    let mut hc = HttpHealthCheck::new(host, false);
    let mut req = RequestHeader::build("GET", cfg.path.as_bytes(), None)?;
    req.insert_header("Host", host)?;
    req.insert_header("User-Agent", "llmselect-proxy health check")?;
    hc.req = req;
    let timeout = Duration::from_millis(cfg.timeout_ms);
    hc.peer_template.options.connection_timeout = Some(timeout);
    hc.peer_template.options.read_timeout = Some(timeout);
    Ok(Box::new(hc))
}
