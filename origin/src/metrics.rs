//! Prometheus metrics in the origin's own registry (names prefixed `origin_`); the proxy uses the
//! `prometheus` crate's global registry and both may run in one process.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::db::Pool;

#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub http_slow_requests: IntCounter,
    pub db_query_duration: HistogramVec,
    pub db_slow_queries: IntCounter,
    /// Statements executed per request, by route template (the N+1 guard).
    pub db_statements_per_request: HistogramVec,
    pub pool_connections: IntGauge,
    pub pool_idle: IntGauge,
    pub pool_in_use: IntGauge,
    pub pool_pending_gets: IntGauge,
    pub pool_checkout_timeouts: IntGauge,
    pub model_registry_hits: IntCounter,
    pub model_registry_misses: IntCounter,
    pub model_list_calls: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "origin_http_requests_total",
                "HTTP requests by route template and status",
            ),
            &["route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "origin_http_request_duration_seconds",
                "HTTP request latency by route template and status",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route", "status"],
        )
        .expect("valid metric");
        let http_slow_requests = IntCounter::new(
            "origin_http_slow_requests_total",
            "Requests slower than the slow-request threshold",
        )
        .expect("valid metric");
        let db_query_duration = HistogramVec::new(
            HistogramOpts::new(
                "origin_db_query_duration_seconds",
                "Statement latency by statement name",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
            &["statement"],
        )
        .expect("valid metric");
        let db_slow_queries = IntCounter::new(
            "origin_db_slow_queries_total",
            "Statements slower than the slow-query threshold",
        )
        .expect("valid metric");
        let db_statements_per_request = HistogramVec::new(
            HistogramOpts::new(
                "origin_db_statements_per_request",
                "Database statements executed per request, by route template",
            )
            .buckets(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 50.0]),
            &["route"],
        )
        .expect("valid metric");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let pool_connections = gauge(
            "origin_db_pool_connections",
            "Connections managed by the pool",
        );
        let pool_idle = gauge("origin_db_pool_idle_connections", "Idle pooled connections");
        let pool_in_use = gauge(
            "origin_db_pool_in_use_connections",
            "Checked-out connections",
        );
        let pool_pending_gets = gauge(
            "origin_db_pool_pending_gets",
            "Checkouts waiting for a connection",
        );
        let pool_checkout_timeouts = gauge(
            "origin_db_pool_checkout_timeouts",
            "Checkouts that timed out since start (bb8 get_timed_out)",
        );
        let model_registry_hits = IntCounter::new(
            "origin_model_registry_hits_total",
            "Model registry cache hits",
        )
        .expect("valid metric");
        let model_registry_misses = IntCounter::new(
            "origin_model_registry_misses_total",
            "Model registry cache misses",
        )
        .expect("valid metric");
        let model_list_calls = IntCounterVec::new(
            Opts::new(
                "origin_model_list_calls_total",
                "Upstream model-list calls per provider",
            ),
            &["provider"],
        )
        .expect("valid metric");
        let m = Metrics {
            registry,
            http_requests,
            http_duration,
            http_slow_requests,
            db_query_duration,
            db_slow_queries,
            db_statements_per_request,
            pool_connections,
            pool_idle,
            pool_in_use,
            pool_pending_gets,
            pool_checkout_timeouts,
            model_registry_hits,
            model_registry_misses,
            model_list_calls,
        };
        let r = &m.registry;
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.http_requests.clone()),
            Box::new(m.http_duration.clone()),
            Box::new(m.http_slow_requests.clone()),
            Box::new(m.db_query_duration.clone()),
            Box::new(m.db_slow_queries.clone()),
            Box::new(m.db_statements_per_request.clone()),
            Box::new(m.pool_connections.clone()),
            Box::new(m.pool_idle.clone()),
            Box::new(m.pool_in_use.clone()),
            Box::new(m.pool_pending_gets.clone()),
            Box::new(m.pool_checkout_timeouts.clone()),
            Box::new(m.model_registry_hits.clone()),
            Box::new(m.model_registry_misses.clone()),
            Box::new(m.model_list_calls.clone()),
        ];
        for c in collectors {
            r.register(c).expect("metric names are unique");
        }
        m
    }

    /// Refreshes the pool gauges and renders the registry in the text format.
    pub fn render(&self, pool: &Pool) -> String {
        let state = pool.state();
        self.pool_connections.set(state.connections.into());
        self.pool_idle.set(state.idle_connections.into());
        self.pool_in_use
            .set(i64::from(state.connections) - i64::from(state.idle_connections));
        self.pool_pending_gets
            .set(state.statistics.pending_gets() as i64);
        self.pool_checkout_timeouts
            .set(state.statistics.get_timed_out as i64);
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
