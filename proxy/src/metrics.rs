//! Prometheus metrics in the process-global default registry, all prefixed `proxy_`.

use crate::status::XCache;
use once_cell::sync::Lazy;
use prometheus::{
    register_histogram, register_histogram_vec, register_int_counter, register_int_counter_vec,
    register_int_gauge, Encoder, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    TextEncoder,
};

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 120.0,
];

static REQUESTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "proxy_requests_total",
        "Requests by X-Cache status",
        &["cache_status"]
    )
    .expect("metric registers once")
});

static REQUEST_SECONDS: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec!(
        "proxy_request_duration_seconds",
        "Full request duration (body included) by cache status and kind (client or background)",
        &["cache_status", "kind"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("metric registers once")
});

static ORIGIN_SECONDS: Lazy<Histogram> = Lazy::new(|| {
    register_histogram!(
        "proxy_origin_fetch_duration_seconds",
        "Time from sending the upstream request to its response header",
        LATENCY_BUCKETS.to_vec()
    )
    .expect("metric registers once")
});

static COALESCED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "proxy_coalesced_waiters_total",
        "Requests that waited on another request's fill (cache lock)"
    )
    .expect("metric registers once")
});

static PURGES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "proxy_purges_total",
        "Invalidations by source and kind",
        &["source", "kind", "mode"]
    )
    .expect("metric registers once")
});

static PURGED_ENTRIES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "proxy_purged_entries_total",
        "Entries removed or marked stale by invalidations",
        &["source", "kind", "mode"]
    )
    .expect("metric registers once")
});

static COMPRESSION_BYTES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "proxy_compression_bytes_total",
        "Bodies compressed on their way into the store: bytes before (side=in) and after \
         (side=out), by coding",
        &["coding", "side"]
    )
    .expect("metric registers once")
});

static STORE_ENTRIES: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!("proxy_store_entries", "Entries in the cache store")
        .expect("metric registers once")
});

static STORE_BYTES: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!("proxy_store_bytes", "Weight of the cache store in bytes")
        .expect("metric registers once")
});

static STORE_CAPACITY: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "proxy_store_capacity_bytes",
        "Capacity of the cache store in bytes"
    )
    .expect("metric registers once")
});

static STORE_EVICTIONS: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "proxy_store_evictions_total",
        "Entries evicted by the store to stay within its capacity"
    )
    .expect("metric registers once")
});

static BUS_APPLIED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "proxy_bus_messages_applied_total",
        "Invalidation messages applied from the bus"
    )
    .expect("metric registers once")
});

static BUS_PROPAGATION: Lazy<Histogram> = Lazy::new(|| {
    register_histogram!(
        "proxy_bus_propagation_seconds",
        "Time from an invalidation's publication on the bus to its purge on this node",
        LATENCY_BUCKETS.to_vec()
    )
    .expect("metric registers once")
});

static BUS_GAPS: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "proxy_bus_gaps_total",
        "Gaps in the invalidation stream (each one soft-purged everything)"
    )
    .expect("metric registers once")
});

static BUS_RECONNECTS: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "proxy_bus_reconnects_total",
        "Sessions with the invalidation bus that ended and were reopened"
    )
    .expect("metric registers once")
});

static BUS_UNPARSABLE: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "proxy_bus_unparsable_total",
        "Bus messages ignored because they do not parse"
    )
    .expect("metric registers once")
});

static BUS_LAG: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "proxy_bus_lag_messages",
        "Messages in the invalidation stream not yet applied by this node"
    )
    .expect("metric registers once")
});

static BUS_DEGRADED: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "proxy_bus_degraded",
        "1 while the node revalidates group-tagged entries because it lost contact or lags"
    )
    .expect("metric registers once")
});

static UPSTREAM_HEALTHY: Lazy<prometheus::IntGaugeVec> = Lazy::new(|| {
    prometheus::register_int_gauge_vec!(
        "proxy_upstream_healthy",
        "1 when the origin passes its health check",
        &["upstream"]
    )
    .expect("metric registers once")
});

pub fn record_bus_applied(propagation_seconds: f64) {
    BUS_APPLIED.inc();
    BUS_PROPAGATION.observe(propagation_seconds);
}

pub fn record_bus_gap() {
    BUS_GAPS.inc();
}

pub fn record_bus_reconnect() {
    BUS_RECONNECTS.inc();
}

pub fn record_bus_unparsable() {
    BUS_UNPARSABLE.inc();
}

pub fn set_bus(lag: u64, degraded: bool) {
    BUS_LAG.set(lag as i64);
    BUS_DEGRADED.set(i64::from(degraded));
}

pub fn set_upstream_health(upstream: &str, healthy: bool) {
    UPSTREAM_HEALTHY
        .with_label_values(&[upstream])
        .set(i64::from(healthy));
}

static CLIENT_CONNECTIONS: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "proxy_client_connections",
        "Open client connections on the proxy listener"
    )
    .expect("metric registers once")
});

static CONNECTIONS_REFUSED: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "proxy_client_connections_refused_total",
        "Client connections refused at accept (reason: limit = clients.max_connections reached, draining = shutting down)",
        &["reason"]
    )
    .expect("metric registers once")
});

static CLIENT_TIMEOUTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "proxy_client_timeouts_total",
        "Client connections cut because a request header or body deadline passed",
        &["phase"]
    )
    .expect("metric registers once")
});

static ORIGIN_TIMEOUTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "proxy_origin_timeouts_total",
        "Origin requests that timed out (route class: ordinary or long)",
        &["class"]
    )
    .expect("metric registers once")
});

/// One client connection opened (`+1`) or closed (`-1`).
pub fn add_client_connections(delta: i64) {
    CLIENT_CONNECTIONS.add(delta);
}

pub fn record_connection_refused(reason: &str) {
    CONNECTIONS_REFUSED.with_label_values(&[reason]).inc();
}

pub fn record_client_timeout(phase: &str) {
    CLIENT_TIMEOUTS.with_label_values(&[phase]).inc();
}

pub fn record_origin_timeout(long_route: bool) {
    let class = if long_route { "long" } else { "ordinary" };
    ORIGIN_TIMEOUTS.with_label_values(&[class]).inc();
}

/// Registers every metric so `/metrics` lists them before the first request.
pub fn init() {
    Lazy::force(&REQUESTS);
    Lazy::force(&REQUEST_SECONDS);
    Lazy::force(&BY_STATUS);
    Lazy::force(&ORIGIN_SECONDS);
    Lazy::force(&COALESCED);
    Lazy::force(&COMPRESSION_BYTES);
    Lazy::force(&PURGES);
    Lazy::force(&PURGED_ENTRIES);
    Lazy::force(&STORE_ENTRIES);
    Lazy::force(&STORE_BYTES);
    Lazy::force(&STORE_CAPACITY);
    Lazy::force(&STORE_EVICTIONS);
    Lazy::force(&BUS_APPLIED);
    Lazy::force(&BUS_PROPAGATION);
    Lazy::force(&BUS_GAPS);
    Lazy::force(&BUS_RECONNECTS);
    Lazy::force(&BUS_UNPARSABLE);
    Lazy::force(&BUS_LAG);
    Lazy::force(&BUS_DEGRADED);
    Lazy::force(&UPSTREAM_HEALTHY);
    Lazy::force(&CLIENT_CONNECTIONS);
    for reason in ["limit", "draining"] {
        CONNECTIONS_REFUSED.with_label_values(&[reason]);
    }
    for phase in ["header", "body"] {
        CLIENT_TIMEOUTS.with_label_values(&[phase]);
    }
    for long in [false, true] {
        record_origin_timeout_series(long);
    }
}

fn record_origin_timeout_series(long_route: bool) {
    let class = if long_route { "long" } else { "ordinary" };
    ORIGIN_TIMEOUTS.with_label_values(&[class]);
}

/// The per-status series, resolved once: `with_label_values` hashes the labels and takes a lock
/// on every call, which showed up on the hit path.
struct StatusSeries {
    requests: IntCounter,
    client: Histogram,
    background: Histogram,
}

static BY_STATUS: Lazy<Vec<StatusSeries>> = Lazy::new(|| {
    XCache::ALL
        .iter()
        .map(|x| StatusSeries {
            requests: REQUESTS.with_label_values(&[x.as_str()]),
            client: REQUEST_SECONDS.with_label_values(&[x.as_str(), "client"]),
            background: REQUEST_SECONDS.with_label_values(&[x.as_str(), "background"]),
        })
        .collect()
});

pub fn record_request(x: XCache, background: bool, seconds: f64) {
    let series = &BY_STATUS[x as usize];
    series.requests.inc();
    if background {
        series.background.observe(seconds);
    } else {
        series.client.observe(seconds);
    }
}

pub fn record_origin_fetch(seconds: f64) {
    ORIGIN_SECONDS.observe(seconds);
}

/// A body compressed for the store: `bytes_in` before, `bytes_out` after.
pub fn record_compression(coding: &str, bytes_in: u64, bytes_out: u64) {
    COMPRESSION_BYTES
        .with_label_values(&[coding, "in"])
        .inc_by(bytes_in);
    COMPRESSION_BYTES
        .with_label_values(&[coding, "out"])
        .inc_by(bytes_out);
}

pub fn record_coalesced() {
    COALESCED.inc();
}

pub fn record_purge(source: &str, kind: &str, soft: bool, entries: usize) {
    let mode = if soft { "soft" } else { "hard" };
    PURGES.with_label_values(&[source, kind, mode]).inc();
    PURGED_ENTRIES
        .with_label_values(&[source, kind, mode])
        .inc_by(entries as u64);
}

/// Store gauges, and the evictions counted since the last call (`new_evictions`).
pub fn set_store(entries: usize, bytes: u64, capacity: u64, new_evictions: u64) {
    STORE_ENTRIES.set(entries as i64);
    STORE_BYTES.set(bytes as i64);
    STORE_CAPACITY.set(capacity as i64);
    STORE_EVICTIONS.inc_by(new_evictions);
}

/// The default registry in the Prometheus text format.
pub fn render() -> Vec<u8> {
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&prometheus::gather(), &mut out);
    out
}
