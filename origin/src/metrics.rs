//! Prometheus metrics in the origin's own registry (names prefixed `origin_`); the proxy uses the
//! `prometheus` crate's global registry and both may run in one process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use llmselect_llm::Provider;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

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
    /// Monotonic (bb8 counts them since start): a counter, advanced by the difference at scrape.
    pub pool_checkout_timeouts: IntCounter,
    pub model_registry_hits: IntCounter,
    pub model_registry_misses: IntCounter,
    pub model_list_calls: IntCounterVec,
    /// Provider calls of the chat and compare endpoints, by provider, endpoint and outcome.
    /// Recorded through [`LlmCall`].
    pub llm_calls: IntCounterVec,
    pub llm_call_duration: HistogramVec,
    pub llm_time_to_first_token: HistogramVec,
    /// Outbox rows acknowledged by the bus (fleet invalidations).
    pub outbox_published: IntCounter,
    /// Outbox rows waiting to be published, as last seen by this instance's relay.
    pub outbox_pending: IntGauge,
    pub outbox_publish_errors: IntCounter,
    /// From the row's transaction to the bus's acknowledgement.
    pub outbox_publish_latency: Histogram,
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
        let pool_checkout_timeouts = IntCounter::new(
            "origin_db_pool_checkout_timeouts_total",
            "Checkouts that timed out (bb8 get_timed_out)",
        )
        .expect("valid metric");
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
        let llm_calls = IntCounterVec::new(
            Opts::new(
                "origin_llm_calls_total",
                "LLM provider calls by provider, endpoint and outcome (ok, error, cancelled)",
            ),
            &["provider", "endpoint", "outcome"],
        )
        .expect("valid metric");
        let llm_call_duration = HistogramVec::new(
            HistogramOpts::new(
                "origin_llm_call_duration_seconds",
                "LLM provider call latency until the whole reply or the end of the stream \
                 (finished calls: ok and error)",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
            ]),
            &["provider", "endpoint"],
        )
        .expect("valid metric");
        let llm_time_to_first_token = HistogramVec::new(
            HistogramOpts::new(
                "origin_llm_time_to_first_token_seconds",
                "Time from the start of a streaming LLM call to its first non-empty delta",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["provider"],
        )
        .expect("valid metric");
        let outbox_published = IntCounter::new(
            "origin_outbox_published_total",
            "Cache invalidations published from the outbox and acknowledged by the bus",
        )
        .expect("valid metric");
        let outbox_pending = gauge(
            "origin_outbox_pending",
            "Outbox rows waiting to be published (as last seen by this instance's relay)",
        );
        let outbox_publish_errors = IntCounter::new(
            "origin_outbox_publish_errors_total",
            "Relay rounds that failed to connect or publish to the bus (the rows stay)",
        )
        .expect("valid metric");
        let outbox_publish_latency = Histogram::with_opts(
            HistogramOpts::new(
                "origin_outbox_publish_latency_seconds",
                "From the write's transaction to the bus's acknowledgement of its invalidation",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
            ]),
        )
        .expect("valid metric");
        // Every (provider, endpoint, outcome) series exists from the start at 0, so a rate or an
        // alert sees the first error after a restart (a series born at 1 has no increase).
        for provider in Provider::ALL {
            for endpoint in LlmEndpoint::ALL {
                for outcome in LlmOutcome::ALL {
                    llm_calls.with_label_values(&[
                        provider.as_str(),
                        endpoint.as_str(),
                        outcome.as_str(),
                    ]);
                }
            }
        }
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
            llm_calls,
            llm_call_duration,
            llm_time_to_first_token,
            outbox_published,
            outbox_pending,
            outbox_publish_errors,
            outbox_publish_latency,
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
            Box::new(m.llm_calls.clone()),
            Box::new(m.llm_call_duration.clone()),
            Box::new(m.llm_time_to_first_token.clone()),
            Box::new(m.outbox_published.clone()),
            Box::new(m.outbox_pending.clone()),
            Box::new(m.outbox_publish_errors.clone()),
            Box::new(m.outbox_publish_latency.clone()),
        ];
        for c in collectors {
            r.register(c).expect("metric names are unique");
        }
        m
    }

    /// Refreshes the pool gauges from `pool` and renders the registry in the text format.
    pub fn render(&self, pool: PoolStats) -> String {
        self.pool_connections.set(pool.connections.into());
        self.pool_idle.set(pool.idle.into());
        self.pool_in_use
            .set(i64::from(pool.connections) - i64::from(pool.idle));
        self.pool_pending_gets.set(pool.pending_gets as i64);
        // bb8's figure only grows; scrapes may overlap, so advance by what is missing
        let seen = self.pool_checkout_timeouts.get();
        self.pool_checkout_timeouts
            .inc_by(pool.checkout_timeouts.saturating_sub(seen));
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The connection pool's state as plain values, read by the caller (`db::pool_stats`): metrics
/// knows nothing of the pool type, so it depends on no other module of the origin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections managed by the pool, idle or checked out.
    pub connections: u32,
    pub idle: u32,
    /// Checkouts waiting for a connection.
    pub pending_gets: u64,
    /// Checkouts that timed out since start.
    pub checkout_timeouts: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The endpoint an LLM call was made for (the `endpoint` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmEndpoint {
    Chat,
    ChatStream,
    Compare,
    CompareStream,
    Analyze,
}

impl LlmEndpoint {
    pub const ALL: [LlmEndpoint; 5] = [
        LlmEndpoint::Chat,
        LlmEndpoint::ChatStream,
        LlmEndpoint::Compare,
        LlmEndpoint::CompareStream,
        LlmEndpoint::Analyze,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LlmEndpoint::Chat => "chat",
            LlmEndpoint::ChatStream => "chat_stream",
            LlmEndpoint::Compare => "compare",
            LlmEndpoint::CompareStream => "compare_stream",
            LlmEndpoint::Analyze => "analyze",
        }
    }
}

/// How an LLM call ended (the `outcome` label). Deliberately coarse: the error kind or upstream
/// status would be bounded too, but the logs already carry them with the redacted cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmOutcome {
    /// The whole reply arrived (for a stream: the upstream ended cleanly).
    Ok,
    /// Any provider failure: an error status, a timeout, a network error, an unreadable reply or
    /// an error inside the stream.
    Error,
    /// The client went away before the call finished (or the call was dropped unfinished).
    Cancelled,
}

impl LlmOutcome {
    pub const ALL: [LlmOutcome; 3] = [LlmOutcome::Ok, LlmOutcome::Error, LlmOutcome::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            LlmOutcome::Ok => "ok",
            LlmOutcome::Error => "error",
            LlmOutcome::Cancelled => "cancelled",
        }
    }

    /// `Ok` or `Error` after the provider answered.
    pub fn of<T, E>(result: &Result<T, E>) -> LlmOutcome {
        match result {
            Ok(_) => LlmOutcome::Ok,
            Err(_) => LlmOutcome::Error,
        }
    }
}

/// One provider call being measured: started right before the request goes out, finished once
/// with its outcome. A call dropped without [`LlmCall::finish`] (its task was cancelled, for
/// example the handler future of a client that went away) counts as `cancelled`, so every call
/// is counted exactly once.
///
/// Cancelled calls are counted but not timed: their duration measures the client's patience,
/// not the provider.
#[must_use = "an LlmCall dropped right away counts as a cancelled call"]
pub struct LlmCall {
    metrics: Arc<Metrics>,
    provider: Provider,
    endpoint: LlmEndpoint,
    start: Instant,
    first_token_seen: bool,
    finished: bool,
}

impl LlmCall {
    pub fn start(metrics: Arc<Metrics>, provider: Provider, endpoint: LlmEndpoint) -> LlmCall {
        LlmCall {
            metrics,
            provider,
            endpoint,
            start: Instant::now(),
            first_token_seen: false,
            finished: false,
        }
    }

    /// Time since the call started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records the time to first token on the first call (later calls only return the time). Call
    /// it for the first non-empty delta of a stream.
    pub fn first_token(&mut self) -> Duration {
        let elapsed = self.start.elapsed();
        if !self.first_token_seen {
            self.first_token_seen = true;
            self.metrics
                .llm_time_to_first_token
                .with_label_values(&[self.provider.as_str()])
                .observe(elapsed.as_secs_f64());
        }
        elapsed
    }

    /// Counts the call with `outcome` and, unless it was cancelled, observes its duration, which
    /// it returns.
    pub fn finish(mut self, outcome: LlmOutcome) -> Duration {
        self.record(outcome)
    }

    fn record(&mut self, outcome: LlmOutcome) -> Duration {
        let elapsed = self.start.elapsed();
        self.finished = true;
        let (provider, endpoint) = (self.provider.as_str(), self.endpoint.as_str());
        self.metrics
            .llm_calls
            .with_label_values(&[provider, endpoint, outcome.as_str()])
            .inc();
        if outcome != LlmOutcome::Cancelled {
            self.metrics
                .llm_call_duration
                .with_label_values(&[provider, endpoint])
                .observe(elapsed.as_secs_f64());
        }
        elapsed
    }
}

impl Drop for LlmCall {
    fn drop(&mut self) {
        if !self.finished {
            self.record(LlmOutcome::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(m: &Metrics, series: &str) -> Option<String> {
        let text = m.registry.gather();
        let mut out = Vec::new();
        TextEncoder::new().encode(&text, &mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
    }

    #[test]
    fn llm_call_counts_once_and_times_finished_calls() {
        let m = Arc::new(Metrics::new());
        let calls = |outcome: &str| {
            let series = format!(
                "origin_llm_calls_total{{endpoint=\"chat_stream\",outcome=\"{outcome}\",provider=\"gemini\"}}"
            );
            sample(&m, &series)
        };
        assert_eq!(calls("ok").as_deref(), Some("0"), "series exist at 0");

        let mut call = LlmCall::start(m.clone(), Provider::Gemini, LlmEndpoint::ChatStream);
        call.first_token();
        call.first_token();
        call.finish(LlmOutcome::Ok);
        let call = LlmCall::start(m.clone(), Provider::Gemini, LlmEndpoint::ChatStream);
        call.finish(LlmOutcome::Error);
        drop(LlmCall::start(
            m.clone(),
            Provider::Gemini,
            LlmEndpoint::ChatStream,
        ));

        assert_eq!(calls("ok").as_deref(), Some("1"));
        assert_eq!(calls("error").as_deref(), Some("1"));
        assert_eq!(
            calls("cancelled").as_deref(),
            Some("1"),
            "dropped unfinished"
        );
        assert_eq!(
            sample(
                &m,
                "origin_llm_call_duration_seconds_count{endpoint=\"chat_stream\",provider=\"gemini\"}"
            )
            .as_deref(),
            Some("2"),
            "cancelled calls are not timed"
        );
        assert_eq!(
            sample(
                &m,
                "origin_llm_time_to_first_token_seconds_count{provider=\"gemini\"}"
            )
            .as_deref(),
            Some("1"),
            "first token observed once"
        );
    }
}
