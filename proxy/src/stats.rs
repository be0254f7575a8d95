//! Per-instance counters behind the admin `/stats` endpoint (Prometheus metrics are global to
//! the process; several proxies in one test process keep their own stats here).

use crate::status::XCache;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Stats {
    hits: AtomicU64,
    fast_hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    revalidated: AtomicU64,
    pass: AtomicU64,
    bypass: AtomicU64,
    errors: AtomicU64,
    purges: AtomicU64,
    purged_entries: AtomicU64,
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, Serialize)]
pub struct StatsSnapshot {
    pub hits: u64,
    /// Hits answered by the fast path (a subset of `hits`; see `cache::hit`).
    pub fast_hits: u64,
    pub misses: u64,
    pub stale: u64,
    pub revalidated: u64,
    pub pass: u64,
    pub bypass: u64,
    pub errors: u64,
    pub purges: u64,
    pub purged_entries: u64,
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

    pub fn record_purge(&self, entries: usize) {
        self.purges.fetch_add(1, Ordering::Relaxed);
        self.purged_entries
            .fetch_add(entries as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let served = g(&self.hits) + g(&self.stale) + g(&self.revalidated);
        let lookups = served + g(&self.misses) + g(&self.bypass);
        StatsSnapshot {
            hits: g(&self.hits),
            fast_hits: g(&self.fast_hits),
            misses: g(&self.misses),
            stale: g(&self.stale),
            revalidated: g(&self.revalidated),
            pass: g(&self.pass),
            bypass: g(&self.bypass),
            errors: g(&self.errors),
            purges: g(&self.purges),
            purged_entries: g(&self.purged_entries),
            hit_ratio: if lookups == 0 {
                0.0
            } else {
                served as f64 / lookups as f64
            },
        }
    }
}
