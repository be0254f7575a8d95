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
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// Where requests go. Addresses are resolved once, at start-up (or reload), never on the request
/// path.
pub enum Upstreams {
    Single(SocketAddr),
    /// Several origins and the task checking their health (stopped when this is dropped, e.g.
    /// replaced by a reload).
    Balanced(Arc<LoadBalancer<RoundRobin>>, HealthTask),
}

/// The health-check loop of a balanced set; aborted on drop.
pub struct HealthTask(tokio::task::JoinHandle<()>);

impl Drop for HealthTask {
    fn drop(&mut self) {
        self.0.abort();
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
        Ok(Upstreams::Balanced(lb, HealthTask(task)))
    }

    /// The origin for the next attempt: a healthy one that has not failed this request yet, else
    /// any that has not failed it, else `None`.
    pub fn select(&self, failed: &[SocketAddr]) -> Option<SocketAddr> {
        match self {
            Upstreams::Single(addr) => Some(*addr),
            Upstreams::Balanced(lb, _) => {
                let inet = |b: &Backend| b.addr.as_inet().copied();
                let not_failed = |b: &Backend| inet(b).is_some_and(|a| !failed.contains(&a));
                lb.select_with(b"", 256, |b, healthy| healthy && not_failed(b))
                    .or_else(|| lb.select_with(b"", 256, |b, _| not_failed(b)))
                    .and_then(|b| inet(&b))
            }
        }
    }

    /// Whether another origin can take a retry.
    pub fn several(&self) -> bool {
        matches!(self, Upstreams::Balanced(..))
    }

    pub fn health(&self) -> Vec<UpstreamHealth> {
        match self {
            Upstreams::Single(addr) => vec![UpstreamHealth {
                address: addr.to_string(),
                healthy: true,
                checked: false,
            }],
            Upstreams::Balanced(lb, _) => lb
                .backends()
                .get_backend()
                .iter()
                .map(|b| UpstreamHealth {
                    address: b.addr.to_string(),
                    healthy: lb.backends().ready(b),
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
