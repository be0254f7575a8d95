//! Per-instance counters behind the admin `/stats` endpoint (Prometheus metrics are global to
//! the process; several proxies in one test process keep their own stats here).

use crate::status::XCache;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Purges kept for the admin console's "recent purges".
const RECENT_PURGES: usize = 50;

/// One invalidation, as the admin `/purges` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct PurgeRecord {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    /// `mutation`, `admin` or `bus`.
    pub source: &'static str,
    /// What was purged, e.g. `group g1`, `prefix /api/`, `url http://h/x`, `all`.
    pub scopes: Vec<String>,
    pub soft: bool,
    pub entries: usize,
}

#[derive(Debug, Default)]
pub struct Stats {
    hits: AtomicU64,
    fast_hits: AtomicU64,
    front_passes: AtomicU64,
    front_fills: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    revalidated: AtomicU64,
    pass: AtomicU64,
    bypass: AtomicU64,
    errors: AtomicU64,
    purges: AtomicU64,
    purged_entries: AtomicU64,
    origin_fetches: AtomicU64,
    origin_fetch_micros: AtomicU64,
    recent_purges: Mutex<VecDeque<PurgeRecord>>,
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, Serialize)]
pub struct StatsSnapshot {
    pub hits: u64,
    /// Hits answered by the fast path (a subset of `hits`; see `cache::hit`).
    pub fast_hits: u64,
    /// Bypassed requests the raw front forwarded itself (a subset of `bypass`; see
    /// `server::forward`).
    pub front_passes: u64,
    /// Misses fetched and stored by the raw front (`server::fill`).
    pub front_fills: u64,
    pub misses: u64,
    pub stale: u64,
    pub revalidated: u64,
    pub pass: u64,
    pub bypass: u64,
    pub errors: u64,
    pub purges: u64,
    pub purged_entries: u64,
    /// Upstream requests that got a response header, and their summed time to it (µs): the
    /// console derives the mean origin latency of an interval from two snapshots.
    pub origin_fetches: u64,
    pub origin_fetch_micros: u64,
    /// Responses served from the store (hits, stale, revalidated) over cache lookups.
    pub hit_ratio: f64,
}

impl Stats {
    pub fn record(&self, x: XCache) {
        let c = match x {
            XCache::Hit => &self.hits,
            XCache::Miss => &self.misses,
            XCache::Stale => &self.stale,
            XCache::Revalidated => &self.revalidated,
            XCache::Pass => &self.pass,
            XCache::Bypass => &self.bypass,
            XCache::Error => &self.errors,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_fast_hit(&self) {
        self.fast_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_front_pass(&self) {
        self.front_passes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_front_fill(&self) {
        self.front_fills.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_purge(&self, entries: usize) {
        self.purges.fetch_add(1, Ordering::Relaxed);
        self.purged_entries
            .fetch_add(entries as u64, Ordering::Relaxed);
    }

    /// Keeps `record` among the recent purges (the newest first).
    pub fn remember_purge(&self, record: PurgeRecord) {
        let mut recent = self.recent_purges.lock();
        if recent.len() == RECENT_PURGES {
            recent.pop_back();
        }
        recent.push_front(record);
    }

    /// The recent purges, newest first.
    pub fn recent_purges(&self) -> Vec<PurgeRecord> {
        self.recent_purges.lock().iter().cloned().collect()
    }

    pub fn record_origin_fetch(&self, d: Duration) {
        self.origin_fetches.fetch_add(1, Ordering::Relaxed);
        self.origin_fetch_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let served = g(&self.hits) + g(&self.stale) + g(&self.revalidated);
        let lookups = served + g(&self.misses) + g(&self.bypass);
        StatsSnapshot {
            hits: g(&self.hits),
            fast_hits: g(&self.fast_hits),
            front_passes: g(&self.front_passes),
            front_fills: g(&self.front_fills),
            misses: g(&self.misses),
            stale: g(&self.stale),
            revalidated: g(&self.revalidated),
            pass: g(&self.pass),
            bypass: g(&self.bypass),
            errors: g(&self.errors),
            purges: g(&self.purges),
            purged_entries: g(&self.purged_entries),
            origin_fetches: g(&self.origin_fetches),
            origin_fetch_micros: g(&self.origin_fetch_micros),
            hit_ratio: if lookups == 0 {
                0.0
            } else {
                served as f64 / lookups as f64
            },
        }
    }
}

/// Now in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
